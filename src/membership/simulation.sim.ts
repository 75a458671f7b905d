// MembershipSimulation: N MembershipCores on one SimClock and one SimNetwork, from one seed
// (STYLE.md: the same production core, with the clock and the network swapped). Support code
// for simulation.test.ts and bench/membership.ts; `*.sim.ts` files may import src/sim and no
// production file may import them (src/sim/boundaries.test.ts).
//
// Wiring: each member is a core, a datagram socket at "m<i>:7400" and one timer on the clock,
// armed for the core's `nextDeadlineMs()` after every input (a timer that fires early only
// runs a tick that finds nothing due). Gossip packets are SimNetwork datagrams (delay, loss,
// duplicates, partitions). Push-pull is a direct call to the other core with simulated delays
// (three one-way delays for connect and request, one for the reply), drawn from the datagram
// delay range and blocked by the same partitions; a crashed host never answers, so the
// requester's core times the exchange out itself, as against a host that is down. This skips
// TCP's byte stream (pipe.ts), which push-pull would only use as a request/reply channel.
//
// Faults: crash(i) (host down), restart(i) (a new core, same id, incarnation 0, empty table,
// joining through seeds), pause(i, ms) (SIGSTOP or a long stall: no ticks, and what arrives
// waits in a bounded socket buffer; on resume the overdue timers run first, then the buffered
// input, as Node does after a long synchronous stall: the timers phase precedes the poll
// phase), slow(i, ms, delay) (a CPU-starved receive path: input reaches the core late while
// its timers run on time, so its probes time out before it reads the acks: the anomaly
// Lifeguard §IV targets), partition(a, b) and heal, and loss.
//
// Invariants: a run is a pure function of (seed, options, calls): no real time, no ambient
// randomness. Every view change is counted, and logged with its virtual time (EventLog) if
// its kind is kept.
// Traps: `start: "converged"` shares one frozen Member object per member among all cores
// (MembershipCoreOptions.members), so 10,000 cores fit in memory; the "joined" events of
// that start are not logged. Members are indices; ids and hosts are "m<index>".
import type { Timer } from "../ports/index.ts";
import {
  type DatagramSocket,
  type PartitionId,
  SeededRandom,
  SimClock,
  SimNetwork,
  type SimNetworkConfig,
} from "../sim/index.ts";
import { defaultLanConfig, type MembershipConfig } from "./config.ts";
import { MembershipCore, type MembershipStats, type PushPullRequest } from "./core.ts";
import { EventLog } from "./event-log.sim.ts";
import { memberId } from "./member-info.ts";
import type { Member, MemberId, MemberState, ViewEventKind } from "./types.ts";

export interface SimulationOptions {
  readonly seed: number;
  /** Members at the start. */
  readonly members: number;
  /** Every core's config; default defaultLanConfig. */
  readonly config?: MembershipConfig;
  /** Network settings (delays, loss); default 1-5 ms one way, no loss. */
  readonly network?: Partial<SimNetworkConfig>;
  /**
   * "converged" (default): every core starts knowing every member (a steady cluster, cheap at
   * 10,000). "join": member 0 starts alone and the others join through it, `joinSpacingMs`
   * apart (the formation itself is then under test).
   */
  readonly start?: "converged" | "join";
  readonly joinSpacingMs?: number;
  /** Datagrams (and push-pull messages) a paused member's socket buffer holds; default 256. */
  readonly inboxMax?: number;
  /**
   * View changes kept in the log, by kind; default all. Every kind is still counted
   * (EventLog.total). A 10,000-member run under loss makes millions of suspicions a minute.
   */
  readonly logKinds?: readonly ViewEventKind[];
}

export type MemberStatus = "up" | "paused" | "crashed";

type Inbound =
  | { readonly kind: "packet"; readonly from: string; readonly bytes: Uint8Array }
  | {
      readonly kind: "pushPull";
      readonly from: SimMember;
      readonly generation: number;
      readonly request: PushPullRequest;
    }
  | { readonly kind: "reply"; readonly from: string; readonly bytes: Uint8Array | undefined };

export interface SimMember {
  readonly index: number;
  readonly id: MemberId;
  readonly address: string;
  core: MembershipCore;
  status: MemberStatus;
  /** Bumped by restart: replies for an older life are discarded. */
  generation: number;
  socket: DatagramSocket | undefined;
  timer: Timer | undefined;
  timerDueMs: number;
  /** Input that arrived while paused. Invariant: length <= inboxMax. */
  readonly inbox: Inbound[];
  /** Push-pull bytes this member sent (requests and replies): core stats count only datagrams. */
  pushPullBytesOut: number;
  /** While now < slowUntilMs, input reaches the core late (see slow()). */
  slowUntilMs: number;
  slowDelayMs: readonly [number, number];
  /** When the last delayed input is due: slow input stays in order. */
  slowLastDueMs: number;
}

export const gossipPort = 7400;
const idOf = (index: number) => memberId(`m${index}`);
const hostOf = (index: number) => `m${index}`;

export class MembershipSimulation {
  readonly seed: number;
  readonly clock = new SimClock();
  readonly network: SimNetwork;
  readonly config: MembershipConfig;
  readonly log: EventLog;
  readonly members: SimMember[] = [];
  private readonly byAddress = new Map<string, SimMember>();
  private readonly coreRandom: SeededRandom;
  private readonly pushPullRandom: SeededRandom;
  private readonly slowRandom: SeededRandom;
  private readonly inboxMax: number;
  /** Active splits: index sets on each side (push-pull checks them; datagrams, the network). */
  private readonly splits = new Map<
    number,
    { readonly a: ReadonlySet<number>; readonly b: ReadonlySet<number>; readonly id: PartitionId }
  >();
  private nextSplit = 1;
  /** Datagrams dropped because a paused member's buffer was full. */
  inboxOverflows = 0;
  /** Push-pull exchanges lost to a partition or a dead host (the requester times out). */
  pushPullsLost = 0;

  constructor(options: SimulationOptions) {
    this.seed = options.seed;
    this.config = options.config ?? defaultLanConfig;
    this.inboxMax = options.inboxMax ?? 256;
    this.log = new EventLog(options.logKinds);
    const root = new SeededRandom(options.seed);
    this.network = new SimNetwork({
      clock: this.clock,
      random: root.fork("network"),
      config: {
        datagramDelayMinMs: 1,
        datagramDelayMaxMs: 5,
        endpointsMax: options.members + 10_000,
        datagramsInFlightMax: 10_000_000,
        traceMax: 0,
        ...options.network,
      },
    });
    this.coreRandom = root.fork("cores");
    this.pushPullRandom = root.fork("push-pull");
    this.slowRandom = root.fork("slow");
    if (options.start === "join") {
      this.add();
      for (let index = 1; index < options.members; index++) {
        this.run(options.joinSpacingMs ?? 10);
        this.join(this.add(), [0]);
      }
      return;
    }
    const everyone: Member[] = [];
    for (let index = 0; index < options.members; index++) {
      everyone.push(
        Object.freeze({
          id: idOf(index),
          region: "sim",
          gossipAddress: `${hostOf(index)}:${gossipPort}`,
          addresses: Object.freeze({}),
          metadata: Object.freeze({}),
          version: 0,
          state: "alive",
          incarnation: 0,
          stateChangedMs: 0,
        }),
      );
    }
    for (let index = 0; index < options.members; index++) {
      const others = everyone.slice(0, index).concat(everyone.slice(index + 1));
      this.add(others, false);
    }
  }

  get nowMs(): number {
    return this.clock.nowMs();
  }

  /** Adds a member knowing `known` (nobody by default); returns its index. Call join() next. */
  add(known: readonly Member[] = [], log = true): number {
    const index = this.members.length;
    const address = `${hostOf(index)}:${gossipPort}`;
    const member: SimMember = {
      index,
      id: idOf(index),
      address,
      core: this.newCore(index, 0, known),
      status: "up",
      generation: 0,
      socket: undefined,
      timer: undefined,
      timerDueMs: Number.POSITIVE_INFINITY,
      inbox: [],
      pushPullBytesOut: 0,
      slowUntilMs: 0,
      slowDelayMs: [0, 0],
      slowLastDueMs: 0,
    };
    this.members.push(member);
    this.byAddress.set(address, member);
    this.bind(member);
    this.drain(member, log);
    this.arm(member);
    return index;
  }

  /** Joins member `index` through the members `seeds` (indices). */
  join(index: number, seeds: readonly number[]): void {
    const member = this.members[index]!;
    const result = member.core.join(
      seeds.map((seed) => this.members[seed]!.address),
      this.nowMs,
    );
    if (!result.ok) throw new Error(`join of m${index} failed: ${result.error.message}`);
    this.drain(member);
    this.arm(member);
  }

  /** Runs the clock `ms` forward. */
  run(ms: number): void {
    this.clock.advance(ms, { maxSteps: 1_000_000_000 });
  }

  /** Runs until `condition()` holds (checked every `everyMs`) or `limitMs` from now; returns whether it held. */
  runUntil(condition: () => boolean, limitMs: number, everyMs = 50): boolean {
    const endMs = this.nowMs + limitMs;
    while (!condition()) {
      if (this.nowMs >= endMs) return false;
      this.run(Math.min(everyMs, endMs - this.nowMs));
    }
    return true;
  }

  // ---- faults ----

  /** The host goes down: no more ticks, datagrams to it are lost, push-pulls time out. */
  crash(index: number): void {
    const member = this.members[index]!;
    if (member.status === "crashed") return;
    member.status = "crashed";
    member.inbox.length = 0;
    this.disarm(member);
    this.network.crash(hostOf(index));
    member.socket = undefined;
  }

  /** A new process for a crashed member: same id and address, incarnation 0, joining `seeds`. */
  restart(index: number, seeds: readonly number[]): void {
    const member = this.members[index]!;
    if (member.status !== "crashed") throw new Error(`m${index} is ${member.status}, not crashed`);
    this.network.restart(hostOf(index));
    member.generation++;
    member.core = this.newCore(index, member.generation, []);
    member.status = "up";
    this.bind(member);
    this.drain(member);
    this.join(index, seeds);
  }

  /** Stops member `index` for `ms` (see the header: resumes with its old state, timers first). */
  pause(index: number, ms: number): void {
    const member = this.members[index]!;
    if (member.status !== "up") return;
    member.status = "paused";
    this.disarm(member);
    const generation = member.generation;
    this.clock.schedule(ms, () => {
      if (member.status === "paused" && member.generation === generation) this.resume(member);
    });
  }

  /**
   * Makes member `index` slow for `ms`: what arrives reaches its core `delayMs` later (drawn per
   * datagram, kept in order), while its timers run on time. A CPU-starved receive path: its
   * probes time out before it reads the acks, and refutations reach it after its suspicion
   * timers ran out.
   */
  slow(index: number, ms: number, delayMs: readonly [number, number]): void {
    const member = this.members[index]!;
    member.slowUntilMs = this.nowMs + ms;
    member.slowDelayMs = delayMs;
  }

  /** Blocks all traffic between the members in `a` and those in `b`; returns a split id for heal(). */
  partition(a: readonly number[], b: readonly number[]): number {
    const id = this.network.partition(a.map(hostOf), b.map(hostOf));
    const split = this.nextSplit++;
    this.splits.set(split, { a: new Set(a), b: new Set(b), id });
    return split;
  }

  heal(split?: number): void {
    for (const [key, entry] of this.splits) {
      if (split !== undefined && key !== split) continue;
      this.network.heal(entry.id);
      this.splits.delete(key);
    }
  }

  /** Chance each datagram is lost, from now on. */
  setLoss(probability: number): void {
    this.network.configure({ dropProbability: probability });
  }

  // ---- observation ----

  status(index: number): MemberStatus {
    return this.members[index]!.status;
  }

  /** Indices of members that are up (not crashed, not paused). */
  upIndices(): number[] {
    return this.members.filter((member) => member.status === "up").map((member) => member.index);
  }

  /** What member `observer` believes about member `subject`, or undefined if it does not know it. */
  stateOf(observer: number, subject: number): MemberState | undefined {
    return this.members[observer]!.core.member(this.members[subject]!.id)?.state;
  }

  /** Whether every member in `observers` sees exactly `expected` (subject index -> state) for those subjects. */
  agrees(observers: readonly number[], expected: ReadonlyMap<number, MemberState>): boolean {
    for (const observer of observers)
      for (const [subject, state] of expected) if (this.stateOf(observer, subject) !== state) return false;
    return true;
  }

  /** Sum of every member's core stats (current lives only). */
  totals(): {
    readonly packetsOut: number;
    readonly bytesOut: number;
    readonly pushPullBytesOut: number;
    readonly stats: MembershipStats[];
  } {
    let packetsOut = 0;
    let bytesOut = 0;
    let pushPullBytesOut = 0;
    const stats: MembershipStats[] = [];
    for (const member of this.members) {
      const s = member.core.stats();
      stats.push(s);
      packetsOut += s.packetsOut;
      bytesOut += s.bytesOut;
      pushPullBytesOut += member.pushPullBytesOut;
    }
    return { packetsOut, bytesOut, pushPullBytesOut, stats };
  }

  /** Whether a split blocks traffic between members `i` and `j`. */
  blocked(i: number, j: number): boolean {
    for (const { a, b } of this.splits.values()) {
      if ((a.has(i) && b.has(j)) || (b.has(i) && a.has(j))) return true;
    }
    return false;
  }

  // ---- wiring ----

  private newCore(index: number, generation: number, known: readonly Member[]): MembershipCore {
    return new MembershipCore({
      config: this.config,
      self: {
        id: idOf(index),
        region: "sim",
        gossipAddress: `${hostOf(index)}:${gossipPort}`,
        addresses: {},
        metadata: {},
        version: 0,
      },
      random: this.coreRandom.fork(generation === 0 ? `m${index}` : `m${index}-${generation}`),
      nowMs: this.nowMs,
      members: known,
    });
  }

  private bind(member: SimMember): void {
    const generation = member.generation;
    member.socket = this.network.bindDatagram(member.address, (payload, from) => {
      if (member.generation === generation) this.receive(member, { kind: "packet", from, bytes: payload });
    });
  }

  private receive(member: SimMember, input: Inbound, delayed = false): void {
    if (member.status === "crashed") return;
    if (!delayed && this.nowMs < member.slowUntilMs) {
      const [min, max] = member.slowDelayMs;
      const dueMs = Math.max(member.slowLastDueMs, this.nowMs + this.slowRandom.between(min, max));
      member.slowLastDueMs = dueMs;
      const generation = member.generation;
      this.clock.schedule(dueMs - this.nowMs, () => {
        if (member.generation === generation) this.receive(member, input, true);
      });
      return;
    }
    if (member.status === "paused") {
      if (member.inbox.length < this.inboxMax) member.inbox.push(input);
      else this.inboxOverflows++;
      return;
    }
    const now = this.nowMs;
    const core = member.core;
    switch (input.kind) {
      case "packet":
        core.receivePacket(input.from, input.bytes, now);
        break;
      case "pushPull":
        this.serve(member, input.from, input.generation, input.request);
        break;
      case "reply":
        if (input.bytes === undefined) core.pushPullFailed(input.from, now);
        else core.receivePushPullReply(input.from, input.bytes, now);
        break;
    }
    this.drain(member);
    this.arm(member);
  }

  private resume(member: SimMember): void {
    member.status = "up";
    // Timers first (the overdue probe and suspicion deadlines), then the buffered input.
    member.core.tick(this.nowMs);
    this.drain(member);
    for (const input of member.inbox.splice(0)) this.receive(member, input);
    this.arm(member);
  }

  /** Arms the member's timer for its core's next deadline, unless one already fires by then. */
  private arm(member: SimMember): void {
    if (member.status !== "up") return;
    const dueMs = member.core.nextDeadlineMs();
    if (dueMs === Number.POSITIVE_INFINITY || (member.timer !== undefined && member.timerDueMs <= dueMs))
      return;
    member.timer?.cancel();
    const now = this.nowMs;
    member.timerDueMs = Math.max(now, dueMs);
    member.timer = this.clock.schedule(member.timerDueMs - now, () => {
      member.timer = undefined;
      member.timerDueMs = Number.POSITIVE_INFINITY;
      if (member.status !== "up") return;
      member.core.tick(this.nowMs);
      this.drain(member);
      this.arm(member);
    });
  }

  private disarm(member: SimMember): void {
    member.timer?.cancel();
    member.timer = undefined;
    member.timerDueMs = Number.POSITIVE_INFINITY;
  }

  private drain(member: SimMember, log = true): void {
    const output = member.core.takeOutput();
    if (log) {
      const atMs = this.nowMs;
      for (const event of output.events) {
        this.log.add({
          atMs,
          observer: member.index,
          kind: event.kind,
          subject: event.member.id,
          incarnation: event.member.incarnation,
        });
      }
    }
    const socket = member.socket!;
    for (const packet of output.packets) socket.send(packet.to, packet.bytes);
    for (const request of output.pushPulls) this.startPushPull(member, request);
  }

  private oneWayMs(): number {
    const { datagramDelayMinMs, datagramDelayMaxMs } = this.network.config;
    return this.pushPullRandom.between(datagramDelayMinMs, datagramDelayMaxMs);
  }

  /** Connect and request: three one-way delays; then the target serves it (or never answers). */
  private startPushPull(from: SimMember, request: PushPullRequest): void {
    from.pushPullBytesOut += request.bytes.length;
    const target = this.byAddress.get(request.to);
    const generation = from.generation;
    const delayMs = this.oneWayMs() + this.oneWayMs() + this.oneWayMs();
    this.clock.schedule(delayMs, () => {
      if (target === undefined || target.status === "crashed" || this.blocked(from.index, target.index)) {
        this.pushPullsLost++;
        return;
      }
      this.receive(target, { kind: "pushPull", from, generation, request });
    });
  }

  private serve(target: SimMember, from: SimMember, generation: number, request: PushPullRequest): void {
    const answer = target.core.receivePushPull(from.address, request.bytes, this.nowMs);
    const bytes = answer.ok ? answer.reply : undefined;
    if (bytes !== undefined) target.pushPullBytesOut += bytes.length;
    this.clock.schedule(this.oneWayMs(), () => {
      if (
        from.generation !== generation ||
        from.status === "crashed" ||
        this.blocked(from.index, target.index)
      ) {
        this.pushPullsLost++;
        return;
      }
      this.receive(from, { kind: "reply", from: target.address, bytes });
    });
  }
}
