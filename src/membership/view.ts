// The membership view: what this router believes about every member, and the rules that
// change it (SWIM §4.2 with Lifeguard; memberlist's state.go aliveNode/suspectNode/deadNode).
// Pure and synchronous; the core (core.ts) feeds it gossip and probe results.
//
// Rules, for a member X other than us:
// - Alive(X, i): accepted when i > X's incarnation. A first Alive adds X ("joined"). An Alive
//   at another gossip address is refused while X is alive or suspect (addressConflict), and
//   accepted whatever its incarnation once X is dead or left (a restart elsewhere); an Alive
//   for another id at our own gossip address is refused too. Two
//   different announcements at one incarnation (conflictingAlive) and a higher incarnation
//   with an older version (versionRegression) are impossible for an honest X and dropped.
// - Suspect(X, i, from): if X is alive at <= i, X becomes suspect and a suspicion timer starts
//   (suspicion.ts). If X is already suspect, `from` confirms it (Lifeguard §IV-B). A member
//   suspecting itself is impossible (selfAccusation).
// - Dead(X, i, from): if X is alive or suspect at <= i, X is dead.
// - Left(X, i): X said goodbye; it becomes left (also from dead: a graceful goodbye is the
//   better explanation).
// About ourselves: Suspect, Dead or Left at >= our incarnation, or an Alive at >= our
// incarnation that differs from what we say, make us refute: we raise our incarnation above
// it and gossip a fresh Alive (SWIM §4.2); local health gets +1 (Lifeguard §IV-A). An Alive
// about us at another gossip address is someone else's claim to our id: dropped
// (addressConflict), we do not fight over it. While leaving, nothing about us is refuted.
// Every accepted change is re-gossiped (broadcast queue) and reported as a ViewEvent.
//
// Invariants: `probeOrder` is a permutation of the ids in `entries` (self excluded);
// `suspicions` holds a timer for exactly the ids in state suspect; `liveCount` counts alive and suspect members,
// ourselves included. Dead and left members stay as tombstones for `tombstoneRetentionMs`
// and are reaped when a probe round wraps (SWIM §4.3), or when the table is full.
import type { Random } from "../ports/index.ts";
import type { LocalHealth } from "./awareness.ts";
import type { BroadcastQueue } from "./broadcast-queue.ts";
import {
  type Alive,
  type Dead,
  encodeMessage,
  type Left,
  type MemberRecord,
  type Message,
  type Suspect,
} from "./codec.ts";
import type { MembershipConfig } from "./config.ts";
import { assert, type DropReason } from "./errors.ts";
import { infoOf, sameInfo } from "./member-info.ts";
import { confirmationsWanted, Suspicion, suspicionTimeoutMs } from "./suspicion.ts";
import type { Member, MemberId, MemberInfo, MemberState, ViewEvent, ViewEventKind } from "./types.ts";

export interface ViewOptions {
  readonly config: MembershipConfig;
  readonly self: MemberInfo;
  readonly nowMs: number;
  /** Alive members known from the start (MembershipCoreOptions.members). */
  readonly members?: readonly Member[] | undefined;
  readonly random: Random;
  readonly broadcasts: BroadcastQueue;
  readonly health: LocalHealth;
  /** Counts a dropped message. */
  readonly drop: (reason: DropReason) => void;
}

/** Up to this many members, random choices scan every member; past it they sample. */
const exactChoiceMax = 64;

const isLive = (state: MemberState) => state === "alive" || state === "suspect";

export class MembershipView {
  readonly selfId: MemberId;
  private selfMember: Member;
  private leavingFlag = false;
  /** Every member but ourselves, tombstones included. One Member per id, shared with events. */
  private readonly entries = new Map<MemberId, Member>();
  /** A timer for each suspect. Invariant: its keys are exactly the ids in state suspect. */
  private readonly suspicions = new Map<MemberId, Suspicion>();
  private probeOrder: MemberId[] = [];
  private probeIndex = 0;
  private liveCountValue = 1;
  private events: ViewEvent[] = [];
  /** Invariant: events.length <= eventsMax; the shell drains after every input. */
  private readonly eventsMax: number;
  private readonly config: MembershipConfig;
  private readonly random: Random;
  private readonly broadcasts: BroadcastQueue;
  private readonly health: LocalHealth;
  private readonly drop: (reason: DropReason) => void;
  /** Times we refuted a claim about ourselves. */
  refutations = 0;
  /** Members this router declared dead when their suspicion timed out. */
  deathsDeclared = 0;

  constructor(options: ViewOptions) {
    this.config = options.config;
    this.random = options.random;
    this.broadcasts = options.broadcasts;
    this.health = options.health;
    this.drop = options.drop;
    this.eventsMax = 4 * options.config.membersMax + 1024;
    this.selfId = options.self.id;
    this.selfMember = Object.freeze({
      ...infoOf(options.self),
      state: "alive",
      incarnation: 0,
      stateChangedMs: options.nowMs,
    });
    this.emit("joined", this.selfMember);
    for (const member of options.members ?? []) this.adopt(member);
    this.broadcastSelf();
  }

  /**
   * Takes `member` into the table as it is (Member objects are immutable, so several cores may
   * share one), announced as joined but not gossiped. Only for a core starting from a known view.
   */
  private adopt(member: Member): void {
    assert(
      member.state === "alive" && Object.isFrozen(member),
      `members given at start must be frozen and alive: ${member.id} is ${member.state}`,
    );
    assert(
      member.id !== this.selfId && member.gossipAddress !== this.selfMember.gossipAddress,
      `members given at start must not include this member (${member.id})`,
    );
    assert(!this.entries.has(member.id), `member ${member.id} given twice`);
    assert(
      this.tableSize < this.config.membersMax,
      `more than membersMax (${this.config.membersMax}) members`,
    );
    this.entries.set(member.id, member);
    this.insertInProbeOrder(member.id);
    this.liveCountValue++;
    this.emit("joined", member);
  }

  get self(): Member {
    return this.selfMember;
  }

  get leaving(): boolean {
    return this.leavingFlag;
  }

  /** Alive and suspect members, ourselves included: the N of SWIM's log N. */
  get liveCount(): number {
    return this.liveCountValue;
  }

  /** Members in the table, tombstones and ourselves included. */
  get tableSize(): number {
    return this.entries.size + 1;
  }

  member(id: string): Member | undefined {
    return id === this.selfId ? this.selfMember : this.entries.get(id as MemberId);
  }

  /** Every member we know, ourselves first. */
  members(): Member[] {
    const out: Member[] = [this.selfMember];
    for (const member of this.entries.values()) out.push(member);
    return out;
  }

  takeEvents(): ViewEvent[] {
    const events = this.events;
    this.events = [];
    return events;
  }

  /** Applies one gossip message (Alive, Suspect, Dead or Left). */
  apply(message: Alive | Suspect | Dead | Left, nowMs: number): void {
    switch (message.kind) {
      case "Alive":
        return this.applyAlive(message, nowMs);
      case "Suspect":
      case "Dead":
        if (message.fromId === message.memberId) return this.drop("selfAccusation");
        if (message.kind === "Suspect")
          return this.suspect(message.memberId, message.incarnation, message.fromId, nowMs);
        return this.declareDead(message.memberId, message.incarnation, message.fromId, nowMs);
      case "Left":
        return this.applyLeft(message, nowMs);
    }
  }

  /**
   * Merges a push-pull peer's full state (memberlist's mergeState). Its dead members are only
   * suspected here: we let our own timers decide. `senderId` stands as the suspecter.
   */
  merge(records: readonly MemberRecord[], senderId: MemberId, nowMs: number): void {
    for (const record of records) {
      const id = record.member.id;
      switch (record.state) {
        case "alive":
          this.applyAlive({ kind: "Alive", incarnation: record.incarnation, member: record.member }, nowMs);
          break;
        case "left":
          this.applyLeft({ kind: "Left", incarnation: record.incarnation, memberId: id }, nowMs);
          break;
        case "suspect":
        case "dead":
          // A record about the sender itself is never a suspicion of it by itself.
          if (id !== senderId) this.suspect(id, record.incarnation, senderId, nowMs);
          break;
      }
    }
  }

  /** Our full state for a push-pull, live members first, cut to `bytesMax` by the caller. */
  records(): MemberRecord[] {
    const live: MemberRecord[] = [];
    const tombstones: MemberRecord[] = [];
    for (const member of this.members()) {
      const record = { incarnation: member.incarnation, state: member.state, member: infoOf(member) };
      (isLive(member.state) ? live : tombstones).push(record);
    }
    return live.concat(tombstones);
  }

  private applyAlive(message: Alive, nowMs: number): void {
    const info = message.member;
    if (info.id === this.selfId) return this.aliveAboutSelf(message);
    // Another id at our own gossip address: a misconfiguration or an impostor, never us.
    if (info.gossipAddress === this.selfMember.gossipAddress) return this.drop("addressConflict");
    const known = this.entries.get(info.id);
    if (known === undefined) {
      if (!this.makeRoom(nowMs)) return this.drop("membersFull");
      const member: Member = Object.freeze({
        ...infoOf(info),
        state: "alive",
        incarnation: message.incarnation,
        stateChangedMs: nowMs,
      });
      this.entries.set(info.id, member);
      this.insertInProbeOrder(info.id);
      this.liveCountValue++;
      this.emit("joined", member);
      this.broadcast(message);
      return;
    }
    const reclaim = known.gossipAddress !== info.gossipAddress;
    if (reclaim && isLive(known.state)) return this.drop("addressConflict");
    if (!reclaim) {
      if (message.incarnation < known.incarnation) return; // stale news: normal in gossip
      if (message.incarnation === known.incarnation) {
        if (!sameInfo(known, info)) this.drop("conflictingAlive");
        return;
      }
      if (info.version < known.version) return this.drop("versionRegression");
    }
    const changed = !sameInfo(known, info);
    const next: Member = Object.freeze({
      ...infoOf(info),
      state: "alive",
      incarnation: message.incarnation,
      stateChangedMs: known.state === "alive" ? known.stateChangedMs : nowMs,
    });
    const kinds: ViewEventKind[] = [];
    if (!isLive(known.state)) kinds.push("joined");
    else {
      if (known.state === "suspect") kinds.push("alive");
      if (changed) kinds.push("updated");
    }
    this.replace(known, next, kinds);
    this.broadcast(message);
  }

  private aliveAboutSelf(message: Alive): void {
    if (this.leavingFlag || message.incarnation < this.selfMember.incarnation) return;
    if (message.member.gossipAddress !== this.selfMember.gossipAddress) return this.drop("addressConflict");
    if (message.incarnation === this.selfMember.incarnation && sameInfo(message.member, this.selfMember))
      return;
    // The cluster holds a claim about us at >= our incarnation that is not what we say: we
    // restarted and it remembers our previous life. Outbid it, version included.
    this.refute(message.incarnation, message.member);
  }

  /** Marks `id` suspect at `incarnation`, on `fromId`'s word (a probe of ours, or gossip). */
  suspect(id: MemberId, incarnation: number, fromId: MemberId, nowMs: number): void {
    if (id === this.selfId) {
      if (!this.leavingFlag && incarnation >= this.selfMember.incarnation) this.refute(incarnation);
      return;
    }
    const member = this.entries.get(id);
    if (member === undefined || incarnation < member.incarnation) return;
    const suspicion = this.suspicions.get(id);
    if (suspicion !== undefined) {
      // Lifeguard §IV-B: an independent confirmation shrinks the timer; pass it on.
      if (suspicion.confirm(fromId)) this.broadcast({ kind: "Suspect", incarnation, memberId: id, fromId });
      return;
    }
    if (member.state !== "alive") return;
    const n = this.liveCountValue;
    const minMs = suspicionTimeoutMs(this.config.suspicionMult, n, this.config.probeIntervalMs);
    // Plain SWIM (lifeguard off): a fixed timeout at the floor, which confirmations cannot move.
    const lifeguard = this.config.lifeguard;
    this.suspicions.set(
      id,
      new Suspicion({
        fromId,
        startedMs: nowMs,
        k: lifeguard ? confirmationsWanted(this.config.suspicionMult, n) : 0,
        minMs,
        maxMs: lifeguard ? this.config.suspicionMaxTimeoutMult * minMs : minMs,
      }),
    );
    this.replace(member, Object.freeze({ ...member, state: "suspect", incarnation, stateChangedMs: nowMs }), [
      "suspect",
    ]);
    this.broadcast({ kind: "Suspect", incarnation, memberId: id, fromId });
  }

  /** Marks `id` dead at `incarnation` on `fromId`'s word. */
  declareDead(id: MemberId, incarnation: number, fromId: MemberId, nowMs: number): void {
    if (id === this.selfId) {
      if (!this.leavingFlag && incarnation >= this.selfMember.incarnation) this.refute(incarnation);
      return;
    }
    const member = this.entries.get(id);
    if (member === undefined || incarnation < member.incarnation || !isLive(member.state)) return;
    this.replace(member, Object.freeze({ ...member, state: "dead", incarnation, stateChangedMs: nowMs }), [
      "dead",
    ]);
    this.broadcast({ kind: "Dead", incarnation, memberId: id, fromId });
  }

  private applyLeft(message: Left, nowMs: number): void {
    const id = message.memberId;
    if (id === this.selfId) {
      // Only we say that we leave. We did not, so this claim is refuted like an accusation.
      if (!this.leavingFlag && message.incarnation >= this.selfMember.incarnation)
        this.refute(message.incarnation);
      return;
    }
    const member = this.entries.get(id);
    if (member === undefined || message.incarnation < member.incarnation || member.state === "left") return;
    this.replace(
      member,
      Object.freeze({
        ...member,
        state: "left",
        incarnation: message.incarnation,
        stateChangedMs: nowMs,
      }),
      ["left"],
    );
    this.broadcast(message);
  }

  /**
   * SWIM §4.2: outbid the claim at `accusedIncarnation` and gossip a fresh Alive. If the
   * cluster holds other info about us (`claimed`, our previous life) at a version at least as
   * high as ours, our version jumps past it, so what we say now is not refused as a version
   * regression or a conflicting announcement.
   */
  private refute(accusedIncarnation: number, claimed?: MemberInfo): void {
    const self = this.selfMember;
    const outbid =
      claimed !== undefined &&
      (claimed.version > self.version || (claimed.version === self.version && !sameInfo(claimed, self)));
    const version = outbid ? claimed.version + 1 : self.version;
    this.selfMember = Object.freeze({
      ...self,
      incarnation: Math.max(self.incarnation, accusedIncarnation) + 1,
      version,
    });
    this.refutations++;
    this.health.applyDelta(1);
    if (version !== self.version) this.emit("updated", this.selfMember);
    this.broadcastSelf();
  }

  /** Announces new info about ourselves: version and incarnation go up by one. */
  updateSelf(info: MemberInfo): void {
    assert(info.id === this.selfId && !this.leavingFlag, "updateSelf: same id, not leaving");
    this.selfMember = Object.freeze({
      ...infoOf(info),
      version: this.selfMember.version + 1,
      state: "alive",
      incarnation: this.selfMember.incarnation + 1,
      stateChangedMs: this.selfMember.stateChangedMs,
    });
    this.emit("updated", this.selfMember);
    this.broadcastSelf();
  }

  /** Graceful leave: we become left and gossip a Left about ourselves. */
  leave(nowMs: number): void {
    if (this.leavingFlag) return;
    this.leavingFlag = true;
    this.selfMember = Object.freeze({ ...this.selfMember, state: "left", stateChangedMs: nowMs });
    this.liveCountValue--;
    this.emit("left", this.selfMember);
    this.broadcast({ kind: "Left", incarnation: this.selfMember.incarnation, memberId: this.selfId });
  }

  /** Declares dead every suspect whose suspicion timer ran out. */
  expireSuspicions(nowMs: number): void {
    if (this.suspicions.size === 0) return;
    const expired: Member[] = [];
    for (const [id, suspicion] of this.suspicions) {
      if (suspicion.deadlineMs() <= nowMs) expired.push(this.entries.get(id)!);
    }
    for (const member of expired) {
      this.deathsDeclared++;
      this.declareDead(member.id, member.incarnation, this.selfId, nowMs);
    }
  }

  /** The earliest suspicion deadline, or Infinity. */
  nextSuspicionDeadlineMs(): number {
    let earliest = Number.POSITIVE_INFINITY;
    for (const suspicion of this.suspicions.values()) earliest = Math.min(earliest, suspicion.deadlineMs());
    return earliest;
  }

  /** The suspicion timer of `id`, if it is suspect (for tests and status pages). */
  suspicionOf(id: string): Suspicion | undefined {
    return this.suspicions.get(id as MemberId);
  }

  /**
   * The next member to probe, round-robin over a shuffled order (SWIM §4.3): every live member
   * is probed once per round. A wrap reaps old tombstones and reshuffles.
   */
  nextProbeTarget(nowMs: number): Member | undefined {
    for (let checked = 0; checked <= this.probeOrder.length; checked++) {
      if (this.probeIndex >= this.probeOrder.length) {
        this.reap(nowMs);
        this.probeIndex = 0;
        if (this.probeOrder.length === 0) return undefined;
      }
      const member = this.entries.get(this.probeOrder[this.probeIndex++]!)!;
      if (isLive(member.state)) return member;
    }
    return undefined;
  }

  /** Up to `k` distinct random members (never ourselves) that `accept` allows. */
  randomMembers(k: number, accept: (member: Member) => boolean): Member[] {
    const order = this.probeOrder;
    const chosen: Member[] = [];
    if (k <= 0 || order.length === 0) return chosen;
    if (order.length <= exactChoiceMax) {
      const candidates = order.map((id) => this.entries.get(id)!).filter(accept);
      for (let index = 0; index < candidates.length && chosen.length < k; index++) {
        const pick = index + this.random.nextInt(candidates.length - index);
        [candidates[index], candidates[pick]] = [candidates[pick]!, candidates[index]!];
        chosen.push(candidates[index]!);
      }
      return chosen;
    }
    const attempts = Math.min(3 * order.length, 16 * k + 64);
    const seen = new Set<MemberId>();
    for (let attempt = 0; attempt < attempts && chosen.length < k; attempt++) {
      const id = order[this.random.nextInt(order.length)]!;
      if (seen.has(id)) continue;
      seen.add(id);
      const member = this.entries.get(id)!;
      if (accept(member)) chosen.push(member);
    }
    return chosen;
  }

  /** Replaces `before` (the member in the table) with `next`, keeping the invariants. */
  private replace(before: Member, next: Member, kinds: readonly ViewEventKind[]): void {
    if (isLive(before.state) && !isLive(next.state)) this.liveCountValue--;
    if (!isLive(before.state) && isLive(next.state)) this.liveCountValue++;
    if (next.state !== "suspect") this.suspicions.delete(next.id);
    this.entries.set(next.id, next);
    for (const kind of kinds) this.emit(kind, next);
  }

  /** New members go to a random place in the probe order, so detection stays fast (SWIM §4.3). */
  private insertInProbeOrder(id: MemberId): void {
    const order = this.probeOrder;
    order.push(id);
    const at = this.random.nextInt(order.length);
    [order[at], order[order.length - 1]] = [order[order.length - 1]!, order[at]!];
  }

  /** Removes tombstones older than the retention, then reshuffles the probe order. */
  private reap(nowMs: number): void {
    for (const [id, { state, stateChangedMs }] of this.entries) {
      if (!isLive(state) && nowMs - stateChangedMs >= this.config.tombstoneRetentionMs)
        this.entries.delete(id);
    }
    const order = [...this.entries.keys()];
    for (let index = order.length - 1; index > 0; index--) {
      const pick = this.random.nextInt(index + 1);
      [order[index], order[pick]] = [order[pick]!, order[index]!];
    }
    this.probeOrder = order;
    this.probeIndex = 0;
  }

  /** Whether one more member fits, reaping old tombstones if the table is full. */
  private makeRoom(nowMs: number): boolean {
    if (this.tableSize < this.config.membersMax) return true;
    this.reap(nowMs);
    return this.tableSize < this.config.membersMax;
  }

  private broadcastSelf(): void {
    const self = this.selfMember;
    this.broadcast({ kind: "Alive", incarnation: self.incarnation, member: infoOf(self) });
  }

  private broadcast(message: Message & { kind: "Alive" | "Suspect" | "Dead" | "Left" }): void {
    const key = message.kind === "Alive" ? message.member.id : message.memberId;
    this.broadcasts.enqueue(key, encodeMessage(message));
  }

  private emit(kind: ViewEventKind, member: Member): void {
    assert(this.events.length < this.eventsMax, `more than ${this.eventsMax} view events were not taken`);
    this.events.push({ kind, member });
  }
}
