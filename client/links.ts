// The client's links to routers: the home one (dialled from the seeds; it takes whatever no
// leader link takes, and holds the subscriptions) and links to partition leaders the routers
// named (partition-map.ts). This file decides where a request goes and keeps the links up;
// client.ts owns the requests and subscriptions and hears of every change through `events`.
//
// - A Leader frame naming a router this client has no link to dials it, unless its last dial
//   failed under `leaderRedialMs` ago (the routers name a leader again while requests keep
//   reaching it the long way, session.ts) or there are `routerLinksMax` links already and
//   none is idle (not the home one, leading no partition known here, nothing waiting on it:
//   such a link is closed to make room). A dial that reaches another router (by its
//   certificate) than the one named is closed: the name was wrong, and its partitions keep
//   going through the home router.
// - A closed leader link forgets the partitions it led (they go home until named again). A
//   closed home link hands the home role to another open link at once; with none left, the
//   seeds are dialled again with backoff and jitter, up to `reconnectAttemptsMax` attempts.
// Invariant: `connections` holds open links only, at most `routerLinksMax` with `dialling`;
// `home`, when set, is one of them.
import {
  type Address,
  AxonFailure,
  type Credentials,
  formatAddress,
  type Link,
  parseAddress,
  type Transport,
} from "../src/axon/index.ts";
import type { Clock, Random, Timer } from "../src/ports/index.ts";
import type { Frame } from "../src/wire/index.ts";
import { RouterConnection } from "./connection.ts";
import { PartitionMap } from "./partition-map.ts";

/** After a failed dial, a leader is not dialled again for this long (its partitions go home). */
const leaderRedialMs = 1_000;
/** Routers the partition map may name (bounded on its own: more routers may lead than are linked). */
const mappedRoutersMax = 1_024;

export interface LinkEvents {
  /** A frame from a router. */
  frame(connection: RouterConnection, frame: Frame): void;
  /** `connection` is the home router now (at start, after a reconnect, or taking over). */
  home(connection: RouterConnection): void;
  /** A leader link opened: requests waiting for a link may go now. */
  linked(connection: RouterConnection): void;
  /** A link closed (before `home` names a successor, if it was the home one). */
  lost(connection: RouterConnection, reason: string, wasHome: boolean): void;
  /** A dial to a named leader failed or reached another router. */
  dialFailed(router: string, reason: string): void;
  /** Status for the application. */
  reconnecting(attempt: number, delayMs: number): void;
  /** Every reconnect attempt failed. */
  gaveUp(reason: string): void;
}

export interface RouterLinksOptions {
  readonly seeds: readonly Address[];
  readonly transport: Transport;
  readonly credentials: Credentials;
  readonly agent: string;
  readonly clock: Clock;
  readonly random: Random;
  readonly connectTimeoutMs: number;
  readonly directToLeaders: boolean;
  readonly routerLinksMax: number;
  readonly reconnectAttemptsMax: number;
  readonly reconnectBackoffMs: readonly [number, number];
  readonly events: LinkEvents;
}

export class RouterLinks {
  private readonly options: RouterLinksOptions;
  private readonly partitions: PartitionMap;
  private readonly connections = new Map<string, RouterConnection>();
  /** Leaders being dialled. */
  private readonly dialling = new Set<string>();
  /** Leaders whose dial failed, and until when they are not dialled again (bounded by mappedRoutersMax). */
  private readonly redialAfterMs = new Map<string, number>();
  private _home: RouterConnection | undefined;
  private seedIndex = 0;
  private reconnectTimer: Timer | undefined;
  private closed = false;

  constructor(options: RouterLinksOptions) {
    this.options = options;
    this.partitions = new PartitionMap(mappedRoutersMax);
  }

  /** The home router's link, if one is open. */
  get home(): RouterConnection | undefined {
    return this._home;
  }

  /** Routers linked, the home router first. */
  get routers(): readonly string[] {
    const home = this._home?.router;
    const others = [...this.connections.keys()].filter((router) => router !== home);
    return home === undefined ? others : [home, ...others];
  }

  /** Dials the seeds in order until one answers; returns each failed seed's reason, or undefined. */
  async connectFirst(): Promise<string[] | undefined> {
    const failures: string[] = [];
    const seeds = this.options.seeds;
    for (let index = 0; index < seeds.length; index++) {
      const error = await this.tryHome(index);
      if (error === undefined) return undefined;
      failures.push(`${seeds[index]!.host}:${seeds[index]!.port}: ${error}`);
    }
    return failures;
  }

  /**
   * The link a request for `partition` goes on now: its leader's if known and linked (unless
   * `homeOnly`), else the home router's; undefined while none is open.
   */
  connectionFor(partition: number, homeOnly: boolean): RouterConnection | undefined {
    if (partition >= 0 && !homeOnly) {
      const leader = this.partitions.leaderOf(partition);
      if (leader !== undefined) {
        const connection = this.connections.get(leader);
        if (connection !== undefined) return connection;
      }
    }
    return this._home;
  }

  /** A router named `router` (serving clients at `address`) as the leader of `partition`. */
  learnLeader(partition: number, router: string, address: string): void {
    if (!this.options.directToLeaders || this.closed) return;
    const parsed = parseAddress(address);
    if (!parsed.ok || !this.partitions.learn(partition, router, parsed.address)) return;
    if (!this.connections.has(router)) this.dialLeader(router, parsed.address);
  }

  /** Closes every link; nothing is reported after this. */
  close(): void {
    this.closed = true;
    this.reconnectTimer?.cancel();
    this.reconnectTimer = undefined;
    const connections = [...this.connections.values()];
    this.connections.clear();
    this._home = undefined;
    for (const connection of connections) connection.link.close("ShuttingDown", "client closing");
  }

  private dialLeader(router: string, address: Address): void {
    if (this.dialling.has(router)) return;
    const redialMs = this.redialAfterMs.get(router);
    if (redialMs !== undefined && this.options.clock.nowMs() < redialMs) return;
    const full = this.connections.size + this.dialling.size >= this.options.routerLinksMax;
    if (full && !this.closeIdleLink()) return;
    this.redialAfterMs.delete(router);
    this.dialling.add(router);
    void this.dial(address).then((dialled) => {
      this.dialling.delete(router);
      if (typeof dialled !== "string" && (this.closed || this.connections.has(router))) {
        // Closed meanwhile, or linked already (that router became the home one): nothing to add.
        dialled.close("ShuttingDown", this.closed ? "client closed while connecting" : "linked already");
        return;
      }
      let opened: RouterConnection | string;
      if (typeof dialled === "string") {
        opened = dialled;
      } else if (dialled.peer.id !== router) {
        dialled.close("ShuttingDown", "not the router this client dialled");
        opened = `reached ${dialled.peer.id}, not ${router}`;
      } else {
        opened = this.open(dialled, formatAddress(address));
      }
      if (typeof opened === "string") {
        if (this.closed) return;
        if (this.redialAfterMs.size >= mappedRoutersMax) this.redialAfterMs.clear();
        this.redialAfterMs.set(router, this.options.clock.nowMs() + leaderRedialMs);
        // Its partitions go through the home router, which names their leaders again.
        this.partitions.forget(router);
        this.options.events.dialFailed(router, opened);
        return;
      }
      this.options.events.linked(opened);
      // The home link broke while this one was being dialled: this one takes over.
      if (this._home === undefined) {
        this.reconnectTimer?.cancel();
        this.reconnectTimer = undefined;
        this.becomeHome(opened);
      }
    });
  }

  /** Closes a link nothing needs (see the header) to make room for another; false if none. */
  private closeIdleLink(): boolean {
    for (const connection of this.connections.values()) {
      if (connection === this._home || connection.waiting > 0) continue;
      if (this.partitions.partitionsLedBy(connection.router) > 0) continue;
      // Reported as any lost link (lost() runs as the link closes), then surely unfiled.
      connection.link.close("ShuttingDown", "this client no longer needs the link");
      this.connections.delete(connection.router);
      return true;
    }
    return false;
  }

  /** Dials a router; returns its link, or why not. */
  private async dial(address: Address): Promise<Link | string> {
    try {
      return await this.options.transport.connect({
        address,
        credentials: this.options.credentials,
        hello: {
          kind: "Hello",
          agent: this.options.agent,
          frameMaxBytes: 2 ** 31 - 1,
          payloadMaxBytes: 2 ** 31 - 1,
        },
        expectRole: "router",
        timeoutMs: this.options.connectTimeoutMs,
      });
    } catch (error) {
      return error instanceof AxonFailure ? error.message : String(error);
    }
  }

  /**
   * Starts a dialled link and files it; returns why not if it closed while starting (a link
   * may close before `start`, e.g. on a Goodbye that came with the Hello).
   */
  private open(link: Link, address: string): RouterConnection | string {
    const connection = new RouterConnection(link, address);
    let started = false;
    let closedWhileStarting: string | undefined;
    link.start({
      frame: (frame) => this.options.events.frame(connection, frame),
      closed: (reason) => {
        if (started) this.lost(connection, reason.message);
        else closedWhileStarting = reason.message;
      },
    });
    started = true;
    if (closedWhileStarting !== undefined) return closedWhileStarting;
    this.connections.set(connection.router, connection);
    return connection;
  }

  /** One attempt to make seed `index` the home router; returns why it failed, or undefined. */
  private async tryHome(index: number): Promise<string | undefined> {
    const address = this.options.seeds[index]!;
    const dialled = await this.dial(address);
    if (typeof dialled === "string") return dialled;
    if (this.closed) {
      dialled.close("ShuttingDown", "client closed while connecting");
      return "client closed";
    }
    if (this._home !== undefined) {
      // A leader link took over meanwhile.
      dialled.close("ShuttingDown", "this client has a home router already");
      return undefined;
    }
    this.seedIndex = index;
    // Already linked to that router as a leader: that link becomes the home one.
    const existing = this.connections.get(dialled.peer.id);
    if (existing !== undefined)
      dialled.close("ShuttingDown", "this client has a link to this router already");
    const opened = existing ?? this.open(dialled, formatAddress(address));
    if (typeof opened === "string") return opened;
    this.becomeHome(opened);
    return undefined;
  }

  private becomeHome(connection: RouterConnection): void {
    this._home = connection;
    this.options.events.home(connection);
  }

  private lost(connection: RouterConnection, reason: string): void {
    if (this.connections.get(connection.router) !== connection || this.closed) return;
    this.connections.delete(connection.router);
    this.partitions.forget(connection.router);
    const wasHome = connection === this._home;
    if (wasHome) this._home = undefined;
    this.options.events.lost(connection, reason, wasHome);
    if (!wasHome || this.closed) return;
    // Another router this client is linked to takes over at once; else back to the seeds.
    const next = this.connections.values().next();
    if (!next.done) this.becomeHome(next.value);
    else this.scheduleReconnect(1);
  }

  private scheduleReconnect(attempt: number): void {
    const limit = this.options.reconnectAttemptsMax;
    if (attempt > limit) {
      this.options.events.gaveUp(`gave up after ${limit} reconnect attempts`);
      return;
    }
    const [firstMs, maxMs] = this.options.reconnectBackoffMs;
    // The first retry goes to another seed at once; later ones back off with jitter.
    const baseMs = attempt === 1 ? 0 : Math.min(maxMs, firstMs * 2 ** (attempt - 2));
    const delayMs = baseMs * (0.5 + this.options.random.nextFloat() / 2);
    this.options.events.reconnecting(attempt, delayMs);
    this.reconnectTimer = this.options.clock.schedule(delayMs, () => {
      this.reconnectTimer = undefined;
      if (this.closed || this._home !== undefined) return;
      const index = (this.seedIndex + attempt) % this.options.seeds.length;
      void this.tryHome(index).then((error) => {
        if (error !== undefined && !this.closed && this._home === undefined)
          this.scheduleReconnect(attempt + 1);
      });
    });
  }
}
