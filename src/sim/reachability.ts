// Who can reach whom on the simulated network: partitions (symmetric or one-way blocks between
// groups of addresses) and crashed hosts. Pure bookkeeping; SimNetwork consults it on every
// send and every delivery.
//
// Addresses are "host:port". A group member or a crash target is a pattern: a whole host
// ("10.0.0.1": every port of it, the usual case, since a router process owns several ports)
// or one address ("10.0.0.1:7400").
// Invariants: a partition blocks traffic only in the directions it names; healing removes
// exactly that partition. Bounded: at most `partitionsMax` partitions and `crashedMax` crash
// marks at once. Lookups are set lookups (the address, then its host), not scans, so a split
// of a 10,000-member simulation costs the same per datagram as a split of two hosts.
// Trap: crash marks are patterns, so crashing "10.0.0.1:7400" does not crash the dialer ends
// the same process opened from ephemeral ports; crash the host for a whole process.

/** A partition's number, counted from 1; what `heal` takes. */
export type PartitionId = number & { readonly __brand: "PartitionId" };

export const partitionsMax = 1000;
export const crashedMax = 10_000;

const hostPattern = /^[A-Za-z0-9][A-Za-z0-9.\-_]{0,252}$/;

export function formatAddress(host: string, port: number): string {
  return `${host}:${port}`;
}

/** Splits "host:port"; undefined unless the host is a plain name or IPv4 and 0 <= port <= 65535. */
export function parseAddress(address: string): { readonly host: string; readonly port: number } | undefined {
  const colon = address.lastIndexOf(":");
  if (colon < 0) return undefined;
  const host = address.slice(0, colon);
  const portText = address.slice(colon + 1);
  if (!hostPattern.test(host) || !/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  return port <= 65535 ? { host, port } : undefined;
}

export function hostOf(address: string): string {
  const colon = address.lastIndexOf(":");
  return colon < 0 ? address : address.slice(0, colon);
}

/** Whether `pattern` (a host or a host:port) covers `address`. */
export function covers(pattern: string, address: string): boolean {
  return pattern === address || pattern === hostOf(address);
}

/** A problem with a pattern, or undefined if it is a host or a host:port. */
export function checkPattern(pattern: string): string | undefined {
  if (hostPattern.test(pattern) || parseAddress(pattern) !== undefined) return undefined;
  return `${JSON.stringify(pattern)} is neither a host nor a host:port`;
}

export interface Partition {
  readonly id: PartitionId;
  /** Traffic from a member of `from` to a member of `to` is blocked. */
  readonly from: readonly string[];
  readonly to: readonly string[];
  /** If false, traffic from `to` to `from` is blocked too. */
  readonly oneWay: boolean;
}

/** Whether one of `patterns` covers `address` (see `covers`). */
function coveredBy(patterns: ReadonlySet<string>, address: string): boolean {
  return patterns.has(address) || patterns.has(hostOf(address));
}

interface Active {
  readonly partition: Partition;
  readonly from: ReadonlySet<string>;
  readonly to: ReadonlySet<string>;
}

export class Reachability {
  private nextId = 1;
  /** Invariant: size <= partitionsMax. */
  private readonly active = new Map<PartitionId, Active>();
  /** Crash marks (patterns), each with the order it was made in. Invariant: size <= crashedMax. */
  private readonly crashed = new Map<string, number>();
  private crashCount = 0;

  /** Blocks `from` -> `to` (and `to` -> `from` unless `oneWay`). */
  partition(from: readonly string[], to: readonly string[], oneWay: boolean): PartitionId {
    if (from.length === 0 || to.length === 0) throw new Error("a partition needs two non-empty groups");
    for (const pattern of [...from, ...to]) {
      const problem = checkPattern(pattern);
      if (problem !== undefined) throw new Error(`partition: ${problem}`);
    }
    if (this.active.size >= partitionsMax) {
      throw new Error(`more than ${partitionsMax} partitions at once; heal some first`);
    }
    const id = this.nextId++ as PartitionId;
    this.active.set(id, {
      partition: { id, from: [...from], to: [...to], oneWay },
      from: new Set(from),
      to: new Set(to),
    });
    return id;
  }

  /** Removes one partition; false if it was not active. */
  heal(id: PartitionId): boolean {
    return this.active.delete(id);
  }

  healAll(): void {
    this.active.clear();
  }

  get partitions(): Partition[] {
    return [...this.active.values()].map((active) => active.partition);
  }

  crash(pattern: string): void {
    const problem = checkPattern(pattern);
    if (problem !== undefined) throw new Error(`crash: ${problem}`);
    if (this.crashed.size >= crashedMax) throw new Error(`more than ${crashedMax} crashed hosts at once`);
    if (!this.crashed.has(pattern)) this.crashed.set(pattern, this.crashCount++);
  }

  /** Clears a crash mark; false if there was none. */
  restart(pattern: string): boolean {
    return this.crashed.delete(pattern);
  }

  /** Why `address` is down (its host or itself crashed), or undefined if it is up. */
  down(address: string): string | undefined {
    if (this.crashed.size === 0) return undefined;
    const host = hostOf(address);
    const byAddress = this.crashed.get(address);
    const byHost = host === address ? undefined : this.crashed.get(host);
    // The earlier mark names the reason, as a scan in order would.
    if (byAddress !== undefined && (byHost === undefined || byAddress < byHost)) return `${address} crashed`;
    return byHost === undefined ? undefined : `${host} crashed`;
  }

  /** The partition that blocks `from` -> `to`, as a reason, or undefined if none does. */
  blocked(from: string, to: string): string | undefined {
    for (const active of this.active.values()) {
      const forward = coveredBy(active.from, from) && coveredBy(active.to, to);
      const backward = !active.partition.oneWay && coveredBy(active.to, from) && coveredBy(active.from, to);
      if (forward || backward) return `partition #${active.partition.id}`;
    }
    return undefined;
  }
}
