// Broadcasts waiting to be piggybacked (SWIM §4.1, infection-style dissemination; memberlist's
// TransmitLimitedQueue in queue.go). Each broadcast is an encoded message about one member.
//
// Rules: one broadcast per member: news about a member replaces older news about it. Each is
// sent at most `transmitLimit` times, where the limit = retransmitMult * ceil(log10(N + 1))
// grows with the cluster so a rumour still reaches everyone with high probability. Filling a
// packet prefers the least-sent broadcasts (new news first), and among those the largest that
// still fits, then the newest; the greedy fill stops at the byte budget and the message cap.
//
// Structure: one array per transmit count ("tier"), each sorted larger-first then newer-first,
// so the largest broadcast that fits is a binary search away (memberlist walks a btree the same
// way). A packet costs O(tiers * log Q) searches plus array moves, not a sort of the queue: in
// a 10,000-member simulation the queue can hold thousands of entries.
// Invariants: every queued entry sits exactly once in tiers[entry.transmits], and
// entry.transmits < the limit it was last taken under; size <= capacity (past it the most-sent,
// then smallest, then oldest broadcasts are dropped, as memberlist's Prune does).
// broadcast-queue.test.ts checks all of it against a plain sort-and-scan reference.
import { assert } from "./errors.ts";

/** How many times each broadcast is sent in a cluster of `memberCount` (SWIM §4.1). */
export function retransmitLimit(retransmitMult: number, memberCount: number): number {
  return retransmitMult * Math.ceil(Math.log10(Math.max(1, memberCount) + 1));
}

interface Entry {
  readonly key: string;
  readonly bytes: Uint8Array;
  transmits: number;
  /** Insertion order; newer is larger. */
  readonly serial: number;
}

/** Order within a tier: larger first, then newer first. Never 0 for two distinct entries. */
function tierOrder(a: Entry, b: Entry): number {
  return b.bytes.length - a.bytes.length || b.serial - a.serial;
}

/** The first index whose entry does not come before `entry` in tier order. */
function lowerBound(tier: readonly Entry[], entry: Entry): number {
  let low = 0;
  let high = tier.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (tierOrder(tier[middle]!, entry) < 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** The first index whose entry is at most `free` bytes (sizes descend along a tier). */
function firstFitting(tier: readonly Entry[], free: number): number {
  let low = 0;
  let high = tier.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (tier[middle]!.bytes.length > free) low = middle + 1;
    else high = middle;
  }
  return low;
}

export class BroadcastQueue {
  private readonly byKey = new Map<string, Entry>();
  private readonly tiers: Entry[][] = [];
  private serial = 0;
  private readonly capacity: number;
  /** Broadcasts dropped because the queue was full, since construction. */
  prunedCount = 0;

  constructor(capacity: number) {
    if (!(Number.isSafeInteger(capacity) && capacity >= 1)) {
      throw new Error(`broadcast queue capacity must be >= 1, got ${capacity}`);
    }
    this.capacity = capacity;
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Whether a broadcast about `key` is still waiting to be sent (more times). */
  has(key: string): boolean {
    return this.byKey.has(key);
  }

  /** How many times the broadcast about `key` was sent, or undefined if none is queued. */
  transmitsOf(key: string): number | undefined {
    return this.byKey.get(key)?.transmits;
  }

  /** Queues `bytes` as the news about `key`, replacing older news about it. */
  enqueue(key: string, bytes: Uint8Array): void {
    const old = this.byKey.get(key);
    if (old !== undefined) this.remove(old);
    const entry: Entry = { key, bytes, transmits: 0, serial: ++this.serial };
    this.insert(entry);
    if (this.byKey.size > this.capacity) this.prune();
  }

  /**
   * Takes broadcasts for one packet: at most `countMax` of them, `budgetBytes` in all. Each
   * taken broadcast counts one transmission and leaves the queue at `transmitLimit`.
   */
  take(budgetBytes: number, countMax: number, transmitLimit: number): Uint8Array[] {
    const taken: Entry[] = [];
    let free = budgetBytes;
    for (let transmits = 0; transmits < this.tiers.length && taken.length < countMax; transmits++) {
      const tier = this.tiers[transmits]!;
      while (taken.length < countMax && tier.length > 0) {
        const index = firstFitting(tier, free);
        if (index >= tier.length) break;
        const entry = tier.splice(index, 1)[0]!;
        taken.push(entry);
        free -= entry.bytes.length;
      }
    }
    // Re-tier after the walk, so a broadcast is never taken twice for one packet.
    for (const entry of taken) {
      entry.transmits++;
      if (entry.transmits >= transmitLimit) this.byKey.delete(entry.key);
      else this.insert(entry);
    }
    return taken.map((entry) => entry.bytes);
  }

  private insert(entry: Entry): void {
    while (this.tiers.length <= entry.transmits) this.tiers.push([]);
    const tier = this.tiers[entry.transmits]!;
    tier.splice(lowerBound(tier, entry), 0, entry);
    this.byKey.set(entry.key, entry);
  }

  private remove(entry: Entry): void {
    const tier = this.tiers[entry.transmits]!;
    const index = lowerBound(tier, entry);
    assert(tier[index] === entry, `broadcast about ${entry.key} is not where its tier says`);
    tier.splice(index, 1);
    this.byKey.delete(entry.key);
  }

  /** Drops the most-sent, then smallest, then oldest broadcasts until within capacity. */
  private prune(): void {
    for (
      let transmits = this.tiers.length - 1;
      transmits >= 0 && this.byKey.size > this.capacity;
      transmits--
    ) {
      const tier = this.tiers[transmits]!;
      while (tier.length > 0 && this.byKey.size > this.capacity) {
        this.byKey.delete(tier.pop()!.key);
        this.prunedCount++;
      }
    }
  }
}
