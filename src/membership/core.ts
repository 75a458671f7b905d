// MembershipCore: SWIM with Lifeguard as a synchronous, deterministic state machine (STYLE.md,
// "pure cores, thin shells"). No I/O, no timers, no ambient time or randomness: time comes in
// as `nowMs` on every input, randomness from the injected Random, and everything to do comes
// out of `takeOutput()`.
//
// Inputs: `tick(nowMs)` when `nextDeadlineMs()` is reached; `receivePacket` for each UDP
// datagram (already decrypted); `receivePushPull` / `receivePushPullReply` / `pushPullFailed`
// for the reliable-link exchanges; `join(seeds)`, `leave()`, `updateSelf(change)`.
// Output (`takeOutput()`, drained after every input):
// - packets: datagrams to send, best effort, in any order. Each fits `packetBudgetBytes`.
// - pushPulls: exchanges to start: open a link to `to`, write `bytes`, read one reply (at most
//   `pushPullBytesMax`) and pass it to `receivePushPullReply(to, ...)`, or call
//   `pushPullFailed(to)` if that takes longer than `pushPullTimeoutMs`.
// - events: view changes, in the order they were applied (see types.ts).
//
// Parts: the view (view.ts: members and the rules that change them), the prober (probe.ts:
// SWIM's failure detector with Lifeguard), the broadcast queue (SWIM §4.1) and push-pull
// anti-entropy (here). Incoming gossip is applied before pings are answered, so a suspect's
// refutation rides on its very ack (Lifeguard §IV-C). Every packet piggybacks queued broadcasts
// up to the byte budget; leftover broadcasts go out in gossip rounds.
// Traps: `nowMs` must never go backwards (asserted). A packet is applied whole or not at all;
// within a valid packet a message breaking a rule is dropped alone (errors.ts, DropReason).
import type { Random } from "../ports/index.ts";
import { LocalHealth } from "./awareness.ts";
import { BroadcastQueue, retransmitLimit } from "./broadcast-queue.ts";
import {
  decodePacket,
  decodePushPull,
  encodePacket,
  encodePushPull,
  type MemberRecord,
  memberRecordBytes,
  messagesPerPacketMax,
  packetHeaderBytes,
} from "./codec.ts";
import { checkMembershipConfig, type MembershipConfig } from "./config.ts";
import {
  assert,
  type DropReason,
  dropReasonOf,
  dropReasons,
  type JoinError,
  type PushPullError,
  type UpdateSelfError,
} from "./errors.ts";
import { checkAddress, checkMemberInfo } from "./member-info.ts";
import { Prober } from "./probe.ts";
import type { Member, MemberId, MemberInfo, ViewEvent } from "./types.ts";
import { MembershipView } from "./view.ts";

export interface MembershipCoreOptions {
  readonly config: MembershipConfig;
  /** This router's own info; it starts alive at incarnation 0. */
  readonly self: MemberInfo;
  readonly random: Random;
  readonly nowMs: number;
  /**
   * Alive members this router knows from the start, instead of learning them by joining: for
   * simulations and benchmarks that start from a converged cluster (at 10,000 members, 10,000
   * joins would flood the network with re-gossiped tables, and every core would hold its own
   * decoded copy of every member: gigabytes). Taken as they are (immutable, so cores may share
   * them), trusted like `self` (no checkMemberInfo per member), reported as "joined" events and
   * not gossiped: everyone else knows them already. Limit: membersMax - 1.
   */
  readonly members?: readonly Member[];
}

export interface OutboundPacket {
  readonly to: string;
  readonly bytes: Uint8Array;
}
export interface PushPullRequest {
  readonly to: string;
  readonly bytes: Uint8Array;
  /** Part of `join` (a seed), rather than periodic anti-entropy. */
  readonly join: boolean;
}
export interface MembershipOutput {
  readonly packets: readonly OutboundPacket[];
  readonly pushPulls: readonly PushPullRequest[];
  readonly events: readonly ViewEvent[];
}

export interface MembershipStats {
  readonly packetsIn: number;
  readonly packetsOut: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Push-pull requests served, started, and failed (refused, timed out, reported failed). */
  readonly pushPullsServed: number;
  readonly pushPullsStarted: number;
  readonly pushPullsFailed: number;
  /** Push-pull payloads cut to `pushPullBytesMax`. */
  readonly pushPullsTruncated: number;
  readonly probes: number;
  readonly probesFailed: number;
  readonly indirectRounds: number;
  readonly acksRelayed: number;
  readonly nacksSent: number;
  /** Acks and nacks for a probe of ours that had already ended: normal, not dropped. */
  readonly lateReplies: number;
  readonly refutations: number;
  readonly deathsDeclared: number;
  readonly broadcastsPruned: number;
  readonly dropped: Readonly<Record<DropReason, number>>;
}

export type JoinResult =
  | { readonly ok: true; readonly seeds: number }
  | { readonly ok: false; readonly error: JoinError };
export type UpdateSelfResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly error: UpdateSelfError };
export type PushPullAnswer =
  | { readonly ok: true; readonly reply: Uint8Array }
  | { readonly ok: false; readonly error: PushPullError };
export type PushPullResult = { readonly ok: true } | { readonly ok: false; readonly error: PushPullError };

/** Seeds one `join` may name. */
export const seedsMax = 64;
/** Datagrams waiting in the output; past it new ones are dropped (outputFull), like UDP loss. */
export const outputPacketsMax = 10_000;

/** memberlist's pushPullScale: the interval grows with log2(N / 32) past 32 members. */
export function pushPullIntervalScaledMs(intervalMs: number, memberCount: number): number {
  if (memberCount <= 32) return intervalMs;
  return intervalMs * (Math.ceil(Math.log2(memberCount) - Math.log2(32)) + 1);
}

type Counters = {
  -readonly [K in keyof Omit<
    MembershipStats,
    "dropped" | "refutations" | "deathsDeclared" | "broadcastsPruned"
  >]: number;
};

export class MembershipCore {
  private readonly config: MembershipConfig;
  private readonly random: Random;
  private readonly health: LocalHealth;
  private readonly broadcasts: BroadcastQueue;
  private readonly view: MembershipView;
  private lastNowMs: number;
  private readonly prober: Prober;
  private nextGossipMs: number;
  private nextPushPullMs: number;
  /** Exchanges started and not yet answered, by address. Invariant: size <= 2 * seedsMax. */
  private readonly pushPullsInFlight = new Map<
    string,
    { readonly join: boolean; readonly expiresAtMs: number }
  >();
  private packets: OutboundPacket[] = [];
  private pushPulls: PushPullRequest[] = [];
  private readonly counters: Counters = {
    packetsIn: 0,
    packetsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    pushPullsServed: 0,
    pushPullsStarted: 0,
    pushPullsFailed: 0,
    pushPullsTruncated: 0,
    probes: 0,
    probesFailed: 0,
    indirectRounds: 0,
    acksRelayed: 0,
    nacksSent: 0,
    lateReplies: 0,
  };
  private readonly dropped = Object.fromEntries(dropReasons.map((reason) => [reason, 0])) as Record<
    DropReason,
    number
  >;

  constructor(options: MembershipCoreOptions) {
    // The router checks its config and identity first (checkMembershipConfig, checkMemberInfo);
    // invalid ones here are a programmer error.
    const problems = checkMembershipConfig(options.config);
    assert(problems.length === 0, problems.map((problem) => problem.message).join("; "));
    const selfProblem = checkMemberInfo(options.self);
    assert(selfProblem === undefined, `self: ${selfProblem}`);
    assert(Number.isFinite(options.nowMs), "nowMs must be finite");
    this.config = options.config;
    this.random = options.random;
    this.lastNowMs = options.nowMs;
    // Without Lifeguard the score is pinned at 0 (a maximum of 1): timers are never stretched.
    this.health = new LocalHealth(options.config.lifeguard ? options.config.awarenessMax : 1);
    this.broadcasts = new BroadcastQueue(options.config.broadcastQueueMax);
    this.view = new MembershipView({
      config: options.config,
      self: options.self,
      nowMs: options.nowMs,
      members: options.members,
      random: options.random,
      broadcasts: this.broadcasts,
      health: this.health,
      drop: (reason) => this.drop(reason),
    });
    // Random phases, so routers started together do not probe and sync in lockstep.
    this.prober = new Prober({
      config: options.config,
      view: this.view,
      health: this.health,
      send: (to, messages) => this.send(to, messages),
      drop: (reason) => this.drop(reason),
      counters: this.counters,
      firstProbeMs: options.nowMs + this.random.nextInt(options.config.probeIntervalMs),
    });
    this.nextGossipMs = options.nowMs + this.random.nextInt(options.config.gossipIntervalMs);
    // Over the interval scaled for the members we start with: a core started knowing thousands
    // of members must not sync in the first (unscaled) interval along with all the others.
    const pushPullMs = pushPullIntervalScaledMs(options.config.pushPullIntervalMs, this.view.liveCount);
    this.nextPushPullMs = options.nowMs + this.random.nextInt(pushPullMs);
  }

  // ---- queries ----

  get selfId(): MemberId {
    return this.view.selfId;
  }

  self(): Member {
    return this.view.self;
  }

  member(id: string): Member | undefined {
    return this.view.member(id);
  }

  /** Every member we know, ourselves first, tombstones included. */
  members(): Member[] {
    return this.view.members();
  }

  /** Lifeguard's local health score: 0 healthy, awarenessMax - 1 worst. */
  localHealth(): number {
    return this.health.score;
  }

  /** The suspicion timer of a suspect: confirmations so far and when it will be declared dead. */
  suspicion(id: string): { readonly confirmations: number; readonly deadlineMs: number } | undefined {
    const suspicion = this.view.suspicionOf(id);
    return suspicion && { confirmations: suspicion.confirmations, deadlineMs: suspicion.deadlineMs() };
  }

  /** Whether our Left has been gossiped its full retransmit count (or nobody is left to tell). */
  leaveComplete(): boolean {
    return this.view.leaving && (!this.broadcasts.has(this.selfId) || this.view.liveCount === 0);
  }

  /** When `tick` must next run; Infinity if nothing is scheduled. Past values mean "now". */
  nextDeadlineMs(): number {
    let deadline = Math.min(this.view.nextSuspicionDeadlineMs(), this.prober.nextDeadlineMs());
    if (!this.view.leaving) deadline = Math.min(deadline, this.nextPushPullMs);
    if (this.broadcasts.size > 0 && this.config.gossipNodes > 0) {
      deadline = Math.min(deadline, this.nextGossipMs);
    }
    for (const flight of this.pushPullsInFlight.values()) deadline = Math.min(deadline, flight.expiresAtMs);
    return deadline;
  }

  stats(): MembershipStats {
    return {
      ...this.counters,
      refutations: this.view.refutations,
      deathsDeclared: this.view.deathsDeclared,
      broadcastsPruned: this.broadcasts.prunedCount,
      dropped: { ...this.dropped },
    };
  }

  takeOutput(): MembershipOutput {
    const output = { packets: this.packets, pushPulls: this.pushPulls, events: this.view.takeEvents() };
    this.packets = [];
    this.pushPulls = [];
    return output;
  }

  // ---- commands ----

  /** Joins through any of `seeds` ("host:port" gossip addresses) by push-pull with each. */
  join(seeds: readonly string[], nowMs: number): JoinResult {
    this.advance(nowMs);
    if (this.view.leaving)
      return { ok: false, error: { tag: "Leaving", message: "cannot join after leave()" } };
    if (seeds.length > seedsMax) {
      const message = `${seeds.length} seeds given; the limit is ${seedsMax}`;
      return { ok: false, error: { tag: "TooManySeeds", message, limit: seedsMax } };
    }
    for (const seed of seeds) {
      const problem = checkAddress(seed);
      if (problem !== undefined)
        return { ok: false, error: { tag: "InvalidSeed", message: `seed: ${problem}`, seed } };
    }
    const targets = [...new Set(seeds)].filter((seed) => seed !== this.view.self.gossipAddress);
    if (targets.length === 0) {
      return {
        ok: false,
        error: { tag: "NoSeeds", message: "no seed other than this member's own address" },
      };
    }
    for (const seed of targets) this.startPushPull(seed, true, nowMs);
    return { ok: true, seeds: targets.length };
  }

  /** Leaves gracefully: stops probing, gossips a Left about us (see leaveComplete()). */
  leave(nowMs: number): void {
    this.advance(nowMs);
    this.view.leave(nowMs);
  }

  /** Announces new addresses, metadata or region; version and incarnation go up. */
  updateSelf(
    change: Partial<Pick<MemberInfo, "region" | "addresses" | "metadata">>,
    nowMs: number,
  ): UpdateSelfResult {
    this.advance(nowMs);
    if (this.view.leaving)
      return { ok: false, error: { tag: "Leaving", message: "cannot update after leave()" } };
    const info: MemberInfo = { ...this.view.self, ...change, version: this.view.self.version + 1 };
    const problem = checkMemberInfo(info);
    if (problem !== undefined) return { ok: false, error: { tag: "InvalidMemberInfo", message: problem } };
    this.view.updateSelf(info);
    return { ok: true };
  }

  /** Runs every timer due at `nowMs`. */
  tick(nowMs: number): void {
    this.advance(nowMs);
    this.view.expireSuspicions(nowMs);
    for (const [address, flight] of this.pushPullsInFlight) {
      if (nowMs >= flight.expiresAtMs) {
        this.pushPullsInFlight.delete(address);
        this.counters.pushPullsFailed++;
      }
    }
    this.prober.tick(nowMs);
    this.tickGossip(nowMs);
    this.tickPushPull(nowMs);
  }

  /** One datagram from `fromAddress`. A bad packet is dropped and counted, changing nothing. */
  receivePacket(fromAddress: string, bytes: Uint8Array, nowMs: number): void {
    this.advance(nowMs);
    this.counters.packetsIn++;
    this.counters.bytesIn += bytes.length;
    const decoded = decodePacket(bytes, this.config.packetBudgetBytes);
    if (!decoded.ok) return this.drop(dropReasonOf(decoded.error));
    const self = this.selfId;
    for (const message of decoded.messages) {
      const claimsSelf =
        ((message.kind === "Ping" || message.kind === "IndirectPing" || message.kind === "Nack") &&
          message.senderId === self) ||
        (message.kind === "Ack" && message.memberId === self);
      if (claimsSelf) return this.drop("impersonation");
    }
    // Gossip first: a refutation it triggers then rides on the ack we send below.
    for (const message of decoded.messages) {
      if (
        message.kind === "Alive" ||
        message.kind === "Suspect" ||
        message.kind === "Dead" ||
        message.kind === "Left"
      ) {
        this.view.apply(message, nowMs);
      }
    }
    for (const message of decoded.messages) {
      if (message.kind === "Ping") this.prober.onPing(message, fromAddress);
      else if (message.kind === "IndirectPing") this.prober.onIndirectPing(message, fromAddress, nowMs);
      else if (message.kind === "Ack") this.prober.onAck(message);
      else if (message.kind === "Nack") this.prober.onNack(message);
    }
  }

  /** A push-pull request from a peer; returns our reply (our full state) for the shell to send. */
  receivePushPull(_fromAddress: string, bytes: Uint8Array, nowMs: number): PushPullAnswer {
    this.advance(nowMs);
    if (this.view.leaving) return { ok: false, error: { tag: "Leaving", message: "this member is leaving" } };
    const decoded = decodePushPull(bytes, "Request", this.config.pushPullBytesMax, this.config.membersMax);
    if (!decoded.ok) {
      this.drop(dropReasonOf(decoded.error));
      return decoded;
    }
    if (decoded.pushPull.senderId === this.selfId) {
      this.drop("impersonation");
      return {
        ok: false,
        error: { tag: "Malformed", message: "push-pull request claims to come from this member" },
      };
    }
    this.counters.pushPullsServed++;
    this.view.merge(decoded.pushPull.members, decoded.pushPull.senderId, nowMs);
    const reply = this.encodeState("Reply", false);
    return { ok: true, reply };
  }

  /** The reply to a push-pull we started with `fromAddress`. */
  receivePushPullReply(fromAddress: string, bytes: Uint8Array, nowMs: number): PushPullResult {
    this.advance(nowMs);
    if (!this.pushPullsInFlight.delete(fromAddress)) {
      this.drop("unexpectedReply");
      return {
        ok: false,
        error: { tag: "UnexpectedReply", message: `no push-pull with ${fromAddress} is waiting` },
      };
    }
    const decoded = decodePushPull(bytes, "Reply", this.config.pushPullBytesMax, this.config.membersMax);
    if (!decoded.ok || decoded.pushPull.senderId === this.selfId) {
      this.counters.pushPullsFailed++;
      if (!decoded.ok) {
        this.drop(dropReasonOf(decoded.error));
        return decoded;
      }
      this.drop("impersonation");
      return {
        ok: false,
        error: { tag: "Malformed", message: "push-pull reply claims to come from this member" },
      };
    }
    this.view.merge(decoded.pushPull.members, decoded.pushPull.senderId, nowMs);
    return { ok: true };
  }

  /** The shell could not complete the push-pull with `address` (connect, write, read or timeout). */
  pushPullFailed(address: string, nowMs: number): void {
    this.advance(nowMs);
    if (this.pushPullsInFlight.delete(address)) this.counters.pushPullsFailed++;
  }

  // ---- dissemination (SWIM §4.1) and anti-entropy ----

  private tickGossip(nowMs: number): void {
    if (nowMs < this.nextGossipMs) return;
    this.nextGossipMs = nowMs + this.config.gossipIntervalMs;
    if (this.broadcasts.size === 0 || this.config.gossipNodes === 0) return;
    const recentDeadMs = this.config.gossipToTheDeadMs;
    const targets = this.view.randomMembers(
      this.config.gossipNodes,
      (member) =>
        member.state === "alive" ||
        member.state === "suspect" ||
        (member.state === "dead" && nowMs - member.stateChangedMs < recentDeadMs),
    );
    for (const target of targets) {
      if (!this.send(target.gossipAddress, [])) break;
    }
  }

  private tickPushPull(nowMs: number): void {
    if (this.view.leaving || nowMs < this.nextPushPullMs) return;
    this.nextPushPullMs =
      nowMs + pushPullIntervalScaledMs(this.config.pushPullIntervalMs, this.view.liveCount);
    // Dead members are picked as often as alive ones (left ones never: they said goodbye). That
    // is how a healed split reconnects: each side holds the other dead, and nothing else would
    // ever reach it again (memberlist leaves this to Serf's reconnect loop). A crashed member's
    // tombstone costs an exchange that times out, one pick in N, until it is reaped; a split
    // longer than tombstoneRetentionMs forgets the other side and needs a join through seeds.
    const [peer] = this.view.randomMembers(
      1,
      (member) => member.state === "alive" || member.state === "dead",
    );
    if (peer !== undefined) this.startPushPull(peer.gossipAddress, false, nowMs);
  }

  private startPushPull(address: string, join: boolean, nowMs: number): void {
    if (this.pushPullsInFlight.has(address) || this.pushPullsInFlight.size >= 2 * seedsMax) return;
    this.pushPullsInFlight.set(address, { join, expiresAtMs: nowMs + this.config.pushPullTimeoutMs });
    this.pushPulls.push({ to: address, bytes: this.encodeState("Request", join), join });
    this.counters.pushPullsStarted++;
  }

  /** Our full state as a push-pull payload, live members first, cut to pushPullBytesMax. */
  private encodeState(kind: "Request" | "Reply", join: boolean): Uint8Array {
    const records: MemberRecord[] = this.view.records();
    const encode = (members: MemberRecord[]) =>
      encodePushPull({ kind, senderId: this.selfId, join, members }, this.config.membersMax);
    // A record is at most ~1.1 KB but typically ~50 bytes: try the whole table first, and only
    // if it is over the limit measure record by record (encoding each twice costs at 10,000).
    if (records.length * 1200 + 256 <= this.config.pushPullBytesMax) return encode(records);
    const whole = encode(records);
    if (whole.length <= this.config.pushPullBytesMax) return whole;
    let bytes = 256;
    let count = 0;
    while (count < records.length) {
      bytes += memberRecordBytes(records[count]!);
      if (bytes > this.config.pushPullBytesMax) break;
      count++;
    }
    this.counters.pushPullsTruncated++;
    return encode(records.slice(0, count));
  }

  // ---- output ----

  /**
   * Sends `messages` to `to`, filling the rest of the packet with queued broadcasts. With no
   * messages it is a gossip packet, sent only if there is something to say. Returns whether a
   * packet went out.
   */
  private send(to: string, messages: Uint8Array[]): boolean {
    if (this.packets.length >= outputPacketsMax) {
      this.drop("outputFull");
      return false;
    }
    let free = this.config.packetBudgetBytes - packetHeaderBytes;
    for (const message of messages) free -= message.length;
    assert(free >= 0, "required messages exceed the packet budget");
    const limit = retransmitLimit(this.config.retransmitMult, this.view.liveCount);
    const all = messages.concat(this.broadcasts.take(free, messagesPerPacketMax - messages.length, limit));
    if (all.length === 0) return false;
    const bytes = encodePacket(all);
    assert(bytes.length <= this.config.packetBudgetBytes, "packet over budget");
    this.packets.push({ to, bytes });
    this.counters.packetsOut++;
    this.counters.bytesOut += bytes.length;
    return true;
  }

  private drop(reason: DropReason): void {
    this.dropped[reason]++;
  }

  private advance(nowMs: number): void {
    assert(
      Number.isFinite(nowMs) && nowMs >= this.lastNowMs,
      `time went backwards: ${nowMs} < ${this.lastNowMs}`,
    );
    this.lastNowMs = nowMs;
  }
}
