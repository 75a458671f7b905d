// The Raft core of one group: a synchronous, deterministic state machine (STYLE.md; etcd's
// RawNode is the model). Inputs: `tick()`, `step(message)`, and commands (`propose`,
// `proposeConfigChange`, `readIndex`, `transferLeadership`, `leaderUnreachable`). Output: a
// `Ready` batch (types.ts gives its ordering rule), acknowledged with `advance(ready)`.
//
// What it implements, by the paper (Ongaro's thesis sections): leader election with random
// timeouts from the injected Random (§3.4), pre-vote (§9.6), check-quorum and vote leases
// (§6.2, §4.2.3), log replication with pipelining and flow control (§3.5, §10.2), commit by
// quorum of the current term (§3.6.2), learners and single-server changes (§4.1-4.2),
// leader transfer (§3.10), install-snapshot (§5.3), read-index (§6.4), plus quiescence of
// idle groups (CockroachDB) and protocol-aware repair of a damaged replica (PAR, FAST '18).
//
// Invariants: at most one vote per term, persisted before the vote is sent (Ready order); an
// entry counts toward commit on the leader only once persisted (advance); a replica with
// `damagedUpTo > 0` never votes nor campaigns.
// Traps: ready() hands out messages and read states once; call advance() before the next
// ready(). A quiesced group ignores ticks: its shell must call `leaderUnreachable()` when the
// leader's router stops answering, or it would never elect a new leader.
import type { Random } from "../ports/index.ts";
import {
  type Configuration,
  type Damage,
  type Entry,
  type GroupId,
  type GroupLog,
  type HardState,
  type NodeId,
  StorageDamageError,
} from "../storage/index.ts";
import { defaultRaftConfig, type RaftConfig } from "./config.ts";
import {
  applyConfigChange,
  type ConfigChange,
  configChangeProblem,
  decodeConfigChange,
  encodeConfigChange,
  quorumOf,
} from "./configuration.ts";
import { assert, type ProposalError, type ProposalResult } from "./errors.ts";
import { Progress } from "./progress.ts";
import { RaftLog } from "./raft-log.ts";
import {
  emptyMessage,
  type Message,
  type MessageType,
  type ReadState,
  type Ready,
  type Role,
  type SoftState,
} from "./types.ts";

export interface RaftNodeOptions {
  readonly id: NodeId;
  readonly group: GroupId;
  readonly log: GroupLog;
  readonly random: Random;
  readonly config?: RaftConfig;
  /** Highest index the application already applied (default: the snapshot's index). */
  readonly applied?: number;
}

interface ReadRound {
  readonly context: number;
  readonly index: number;
  readonly requestIds: number[];
  readonly acks: Set<NodeId>;
}

const voteContextTransfer = 1;
/** What an entry costs beyond its data (object, index, term, waiter), for the uncommitted limit. */
export const entryOverheadBytes = 128;
const noConfiguration: Configuration = { voters: [], learners: [] };

function responseTypeOf(type: MessageType): MessageType {
  return type === "preVote" ? "preVoteResponse" : "voteResponse";
}

export class RaftNode {
  readonly id: NodeId;
  readonly group: GroupId;
  readonly config: RaftConfig;
  readonly log: RaftLog;
  private readonly random: Random;

  term: number;
  vote: NodeId | null;
  leader: NodeId | null = null;
  role: Role = "follower";
  /** The configuration as of the applied index. */
  configuration: Configuration;
  /** See HardState.damagedUpTo. */
  damagedUpTo: number;
  /** True while the group is idle and its timers are stopped. */
  quiesced = false;

  /** Leader only: what it knows of each replica, itself included. */
  private progress = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private transferee: NodeId | null = null;
  /** Index of the last config entry appended by this leader; a new one waits until it is applied. */
  private pendingConfigIndex = 0;
  /** Leader only: (index, bytes) of its proposals not yet committed, oldest first. */
  private uncommitted: { index: number; bytes: number }[] = [];
  private uncommittedBytes = 0;
  /** Leader only: proposals appended since the last broadcast (sent at ready(), batched). */
  private appendPending = false;
  private readBatch: number[] = [];
  private readRounds: ReadRound[] = [];
  private readContext = 0;

  private messages: Message[] = [];
  private readStates: ReadState[] = [];
  private truncateFrom = 0;
  private prevHardState: HardState;
  private prevSoftState: SoftState = { leader: null, role: "follower" };
  private readyOutstanding = false;
  /** Damage met while running, for the shell's status and metrics. */
  readonly damageSeen: Damage[] = [];

  constructor(options: RaftNodeOptions) {
    this.id = options.id;
    this.group = options.group;
    this.config = options.config ?? defaultRaftConfig;
    this.random = options.random;
    const store = options.log;
    const hard = store.hardState();
    this.term = hard.term;
    this.vote = hard.vote;
    this.damagedUpTo = hard.damagedUpTo;
    this.prevHardState = hard;
    // A group's first configuration is its bootstrap snapshot at index 0 (multi-raft.ts).
    const snapshotMeta = store.snapshotMeta();
    this.configuration = snapshotMeta?.configuration ?? noConfiguration;
    this.log = new RaftLog(store, options.applied ?? snapshotMeta?.index ?? 0);
    try {
      this.replayConfigUpTo(this.log.applied);
    } catch (error) {
      this.handleStorageError(error);
    }
    this.resetRandomizedElectionTimeout();
  }

  // ---- inputs -------------------------------------------------------------------------

  /** One tick of the router's ticker (config.tickMs). A quiesced group does nothing. */
  tick(): void {
    if (this.quiesced) return;
    if (this.role === "leader") this.tickHeartbeat();
    else this.tickElection();
  }

  step(message: Message): void {
    assert(message.group === this.group && message.to === this.id, "message routed to the wrong node");
    if (message.from === this.id) return;
    this.wakeFor(message);
    if (message.term > this.term) {
      if (message.type === "vote" || message.type === "preVote") {
        const force = message.context === voteContextTransfer;
        const inLease =
          this.config.checkQuorum && this.leader !== null && this.electionElapsed < this.config.electionTicks;
        if (!force && inLease) return; // thesis §4.2.3: ignore disruptive candidates
      }
      if (message.type === "preVote") {
        // Never change term for a pre-vote (§9.6).
      } else if (message.type === "preVoteResponse" && !message.reject) {
        // The term we would campaign in; not ours yet.
      } else if (message.type === "append" || message.type === "heartbeat" || message.type === "snapshot") {
        this.becomeFollower(message.term, message.from);
      } else {
        this.becomeFollower(message.term, null);
      }
    } else if (message.term < this.term) {
      if (
        (this.config.checkQuorum || this.config.preVote) &&
        (message.type === "append" || message.type === "heartbeat")
      ) {
        // Tell a stale leader about the newer term (§6.2: it would otherwise never learn it).
        this.send({ ...emptyMessage, type: "appendResponse", to: message.from, term: this.term });
      } else if (message.type === "preVote") {
        this.send({
          ...emptyMessage,
          type: "preVoteResponse",
          to: message.from,
          term: this.term,
          reject: true,
        });
      }
      return;
    }

    if (message.type === "vote" || message.type === "preVote") {
      this.handleVoteRequest(message);
      return;
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(message);
        break;
      case "candidate":
      case "preCandidate":
        this.stepCandidate(message);
        break;
      case "follower":
        this.stepFollower(message);
        break;
    }
  }

  /** Appends a proposal; it is committed once its index is applied with the same term. */
  propose(data: Uint8Array): ProposalResult {
    const problem = this.proposalProblem(data.byteLength);
    if (problem !== null) return { ok: false, error: problem };
    return this.appendProposal("normal", data);
  }

  /** Proposes one single-server change (thesis §4.1). */
  proposeConfigChange(change: ConfigChange): ProposalResult {
    const problem = this.proposalProblem(0);
    if (problem !== null) return { ok: false, error: problem };
    if (this.pendingConfigIndex > this.log.applied) {
      return { ok: false, error: { tag: "ConfigChangePending", index: this.pendingConfigIndex } };
    }
    const invalid = configChangeProblem(this.configuration, change);
    if (invalid !== null) return { ok: false, error: { tag: "InvalidConfigChange", reason: invalid } };
    const result = this.appendProposal("config", encodeConfigChange(change));
    if (result.ok) this.pendingConfigIndex = result.index;
    return result;
  }

  /**
   * Asks for a linearizable read (§6.4). The answer comes as a ReadState with this id once a
   * quorum confirmed this leader; serve the read after applying up to its index. Requests
   * still pending when leadership is lost are dropped (the shell sees softState change).
   */
  readIndex(requestId: number): ProposalError | null {
    if (this.role !== "leader") return { tag: "NotLeader", leader: this.leader };
    this.wake();
    if (this.configuration.voters.length === 1 && this.log.term(this.log.committed) === this.term) {
      this.readStates.push({ requestId, index: this.log.committed });
    } else {
      this.readBatch.push(requestId);
    }
    return null;
  }

  /** Hands leadership to `to` (thesis §3.10); proposals are refused until done or timed out. */
  transferLeadership(to: NodeId): ProposalError | null {
    if (this.role !== "leader") return { tag: "NotLeader", leader: this.leader };
    if (to === this.id) return null;
    if (!this.configuration.voters.includes(to)) {
      return { tag: "InvalidConfigChange", reason: `${to} is not a voter of group ${this.group}` };
    }
    this.wake();
    if (this.transferee === to) return null;
    this.transferee = to;
    this.electionElapsed = 0;
    const progress = this.progress.get(to)!;
    if (progress.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
    return null;
  }

  /**
   * The shell's verdict that this group's leader is unreachable (its router stopped answering).
   * Wakes a quiesced follower and ends its lease, so it campaigns within one election timeout.
   */
  leaderUnreachable(): void {
    if (this.role === "leader") return;
    this.quiesced = false;
    // The lease ends now, so this replica grants pre-votes at once; its own campaign waits at
    // least a heartbeat interval more, by when the other replicas (whose verdict on the leader
    // comes from the same, last, heartbeat) have ended their leases too. Campaigning earlier
    // would meet replicas still in lease, lose the pre-vote, and wait a whole timeout again.
    if (this.electionElapsed < this.config.electionTicks) {
      this.electionElapsed = this.config.electionTicks;
      this.randomizedElectionTimeout =
        this.config.electionTicks +
        this.config.heartbeatTicks +
        this.random.nextInt(this.config.electionTicks);
    }
  }

  /** Wakes a quiesced group (e.g. a replica's router came back and must learn the leader). */
  wake(): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.electionElapsed = 0;
    if (this.role === "leader") {
      for (const progress of this.progress.values()) progress.recentActive = true;
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(0, false);
    }
  }

  /** The shell could not deliver to `peer`: stop pipelining to it. */
  reportUnreachable(peer: NodeId): void {
    const progress = this.progress.get(peer);
    if (this.role === "leader" && progress !== undefined && progress.state === "replicate")
      progress.becomeProbe();
  }

  /** The shell's outcome of sending a snapshot to `peer`. */
  reportSnapshot(peer: NodeId, delivered: boolean): void {
    const progress = this.progress.get(peer);
    if (this.role !== "leader" || progress === undefined || progress.state !== "snapshot") return;
    if (!delivered) progress.pendingSnapshot = 0;
    progress.becomeProbe();
    progress.probeSent = true; // wait for the follower's answer or the next heartbeat
  }

  // ---- output -------------------------------------------------------------------------

  hasReady(): boolean {
    if (this.appendPending) return true;
    // A read batch waits (without making the group busy) until this term has a committed entry.
    if (
      this.readBatch.length > 0 &&
      this.role === "leader" &&
      this.log.term(this.log.committed) === this.term
    ) {
      return true;
    }
    if (this.messages.length > 0 || this.readStates.length > 0 || this.truncateFrom !== 0) return true;
    if (this.log.unstable.length > 0 || this.log.pendingSnapshot !== null) return true;
    if (this.log.hasNextCommitted()) return true;
    const soft = this.prevSoftState;
    if (soft.leader !== this.leader || soft.role !== this.role) return true;
    return !this.sameHardState(this.prevHardState);
  }

  ready(): Ready {
    assert(!this.readyOutstanding, "ready() called twice without advance()");
    this.flushBatches();
    let committedEntries: Entry[] = [];
    try {
      committedEntries = this.log.nextCommitted(this.config.maxApplyBytes);
    } catch (error) {
      this.handleStorageError(error);
    }
    const hardState = this.currentHardState();
    const soft = this.prevSoftState;
    const previous = this.prevHardState;
    const ready: Ready = {
      persistBeforeSending: previous.term !== this.term || previous.vote !== this.vote,
      softState:
        soft.leader !== this.leader || soft.role !== this.role
          ? { leader: this.leader, role: this.role }
          : null,
      hardState: this.sameHardState(this.prevHardState) ? null : hardState,
      truncateFrom: this.truncateFrom,
      snapshot: this.log.pendingSnapshot,
      entries: this.log.unstable.slice(),
      committedEntries,
      messages: this.messages,
      readStates: this.readStates,
    };
    this.messages = [];
    this.readStates = [];
    this.readyOutstanding = true;
    return ready;
  }

  /** The shell did everything `ready` asked (persisted, synced, sent, applied). */
  advance(ready: Ready): void {
    assert(this.readyOutstanding, "advance() without ready()");
    this.readyOutstanding = false;
    if (ready.hardState !== null) this.prevHardState = ready.hardState;
    if (ready.softState !== null) this.prevSoftState = ready.softState;
    if (ready.truncateFrom !== 0 && ready.truncateFrom === this.truncateFrom) this.truncateFrom = 0;
    if (ready.snapshot !== null) this.log.stableSnapshot(ready.snapshot.meta.index);
    const last = ready.entries.at(-1);
    if (last !== undefined) {
      this.log.stableTo(last.index, last.term);
      if (this.role === "leader" && this.log.matchTerm(last.index, last.term)) {
        this.progress.get(this.id)!.maybeUpdate(last.index);
        if (this.maybeCommit()) this.bcastAppend();
      }
    }
    for (const entry of ready.committedEntries) {
      if (entry.index <= this.log.applied) continue;
      this.log.applied = entry.index;
      if (entry.kind === "config") this.applyConfigEntry(entry);
    }
  }

  // ---- status -------------------------------------------------------------------------

  hardState(): HardState {
    return this.currentHardState();
  }

  softState(): SoftState {
    return { leader: this.leader, role: this.role };
  }

  /** Leader only: the match index of each replica (for status and tests). */
  matchIndexes(): ReadonlyMap<NodeId, number> {
    const result = new Map<NodeId, number>();
    for (const [id, progress] of this.progress) result.set(id, progress.match);
    return result;
  }

  // ---- timers -------------------------------------------------------------------------

  private tickElection(): void {
    this.electionElapsed += 1;
    if (this.electionElapsed < this.randomizedElectionTimeout) return;
    this.electionElapsed = 0;
    if (this.promotable()) this.campaign(this.config.preVote ? "preElection" : "election");
    else if (
      this.leader === null &&
      this.configuration.learners.concat(this.configuration.voters).includes(this.id)
    ) {
      this.nudge();
    }
  }

  /**
   * A replica that may not campaign (a learner, or one repairing damage) and knows no leader
   * asks to be found: a rejection carrying its last index wakes quiesced replicas (whose
   * timers then run) and makes a leader probe it. Without it, a learner or damaged replica
   * restarted under a quiesced group would wait for a leader forever.
   */
  private nudge(): void {
    const lastIndex = this.log.lastIndex();
    for (const voter of this.configuration.voters) {
      if (voter === this.id) continue;
      this.send({
        ...emptyMessage,
        type: "appendResponse",
        to: voter,
        term: this.term,
        index: lastIndex,
        reject: true,
        rejectHint: lastIndex,
      });
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed += 1;
    this.electionElapsed += 1;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, null);
        return;
      }
      this.transferee = null; // §3.10: abort a transfer that did not finish in an election timeout
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      const quiesce = this.canQuiesce();
      // Carrying the newest read round's context re-asks for it if its own heartbeats were lost.
      this.bcastHeartbeat(this.readRounds.at(-1)?.context ?? 0, quiesce);
      if (quiesce) this.quiesced = true;
    }
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout =
      this.config.electionTicks + this.random.nextInt(this.config.electionTicks);
  }

  // ---- roles --------------------------------------------------------------------------

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = null;
    }
    this.leader = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.transferee = null;
    this.votes.clear();
    this.progress.clear();
    this.uncommitted = [];
    this.uncommittedBytes = 0;
    this.appendPending = false;
    this.readBatch = [];
    this.readRounds = [];
    this.quiesced = false;
  }

  private becomeFollower(term: number, leader: NodeId | null): void {
    this.reset(term);
    this.role = "follower";
    this.leader = leader;
  }

  private becomePreCandidate(): void {
    assert(this.role !== "leader", "a leader cannot become a pre-candidate");
    this.votes.clear();
    this.leader = null;
    this.role = "preCandidate";
  }

  private becomeCandidate(): void {
    assert(this.role !== "leader", "a leader cannot become a candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    assert(this.role === "candidate", "only a candidate becomes leader");
    this.reset(this.term);
    this.role = "leader";
    this.leader = this.id;
    const next = this.log.lastIndex() + 1;
    const persisted = this.log.unstable.length > 0 ? this.log.unstableOffset - 1 : this.log.lastIndex();
    for (const id of this.configuration.voters) this.addProgress(id, next, false);
    for (const id of this.configuration.learners) this.addProgress(id, next, true);
    const self = this.progress.get(this.id)!;
    self.becomeReplicate();
    self.maybeUpdate(persisted);
    // §6.4 / §3.6.2: an empty entry of the new term, so earlier entries commit and reads can be served.
    const index = this.log.lastIndex() + 1;
    this.log.append([{ index, term: this.term, kind: "empty", data: new Uint8Array(0) }]);
    this.pendingConfigIndex = index; // no config change before this term's first entry is applied
    this.appendPending = true;
  }

  private addProgress(id: NodeId, next: number, isLearner: boolean): void {
    this.progress.set(
      id,
      new Progress(next, isLearner, this.config.maxInflightMessages, this.config.maxInflightBytes),
    );
  }

  private promotable(): boolean {
    return (
      this.configuration.voters.includes(this.id) &&
      this.damagedUpTo === 0 &&
      this.log.pendingSnapshot === null
    );
  }

  private campaign(kind: "preElection" | "election" | "transfer"): void {
    if (!this.promotable()) return;
    let voteType: MessageType;
    let term: number;
    if (kind === "preElection") {
      this.becomePreCandidate();
      voteType = "preVote";
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = "vote";
      term = this.term;
    }
    if (this.recordVote(this.id, true) === "won") {
      if (kind === "preElection") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    for (const voter of this.configuration.voters) {
      if (voter === this.id) continue;
      this.send({
        ...emptyMessage,
        type: voteType,
        to: voter,
        term,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        context: kind === "transfer" ? voteContextTransfer : 0,
      });
    }
  }

  private recordVote(from: NodeId, granted: boolean): "won" | "lost" | "pending" {
    if (this.configuration.voters.includes(from) && !this.votes.has(from)) this.votes.set(from, granted);
    let yes = 0;
    let no = 0;
    for (const vote of this.votes.values()) {
      if (vote) yes += 1;
      else no += 1;
    }
    const quorum = quorumOf(this.configuration.voters.length);
    if (yes >= quorum) return "won";
    if (no > this.configuration.voters.length - quorum) return "lost";
    return "pending";
  }

  // ---- message handling ---------------------------------------------------------------

  private handleVoteRequest(message: Message): void {
    const isPreVote = message.type === "preVote";
    const canVote =
      this.vote === message.from ||
      (this.vote === null && this.leader === null) ||
      (isPreVote && message.term > this.term);
    // Two replicas pre-campaigning at once with equal logs would both pass the pre-vote and
    // split the real vote, costing a whole election timeout: between two pre-candidates the
    // larger id wins the tie. Pre-votes bind nothing, so this only ever affects liveness.
    const tieLost =
      isPreVote &&
      this.role === "preCandidate" &&
      message.from < this.id &&
      message.index === this.log.lastIndex() &&
      message.logTerm === this.log.lastTerm();
    if (
      canVote &&
      !tieLost &&
      this.damagedUpTo === 0 &&
      this.log.isUpToDate(message.index, message.logTerm)
    ) {
      // A granted pre-vote answers in the candidate's future term (§9.6).
      this.send({
        ...emptyMessage,
        type: responseTypeOf(message.type),
        to: message.from,
        term: message.term,
      });
      if (!isPreVote) {
        this.electionElapsed = 0;
        this.vote = message.from;
      }
    } else {
      this.send({
        ...emptyMessage,
        type: responseTypeOf(message.type),
        to: message.from,
        term: this.term,
        reject: true,
      });
    }
  }

  private stepLeader(message: Message): void {
    const progress = this.progress.get(message.from);
    switch (message.type) {
      case "appendResponse":
        if (progress !== undefined) this.handleAppendResponse(message, progress);
        return;
      case "heartbeatResponse":
        if (progress !== undefined) this.handleHeartbeatResponse(message, progress);
        return;
      case "append":
      case "heartbeat":
      case "snapshot":
        assert(false, `two leaders in term ${this.term}: ${this.id} and ${message.from}`);
        return;
      default:
        return; // stale vote responses, a timeoutNow meant for an earlier role
    }
  }

  private stepCandidate(message: Message): void {
    switch (message.type) {
      case "append":
      case "heartbeat":
      case "snapshot":
        this.becomeFollower(message.term, message.from);
        this.stepFollower(message);
        return;
      case "preVoteResponse":
      case "voteResponse": {
        const expected = this.role === "preCandidate" ? "preVoteResponse" : "voteResponse";
        if (message.type !== expected) return;
        const outcome = this.recordVote(message.from, !message.reject);
        if (outcome === "won") {
          if (this.role === "preCandidate") this.campaign("election");
          else {
            this.becomeLeader();
          }
        } else if (outcome === "lost") {
          this.becomeFollower(this.term, null);
        }
        return;
      }
      default:
        return;
    }
  }

  private stepFollower(message: Message): void {
    switch (message.type) {
      case "append":
        this.electionElapsed = 0;
        this.leader = message.from;
        this.handleAppend(message);
        return;
      case "heartbeat":
        this.electionElapsed = 0;
        this.leader = message.from;
        this.handleHeartbeat(message);
        return;
      case "snapshot":
        this.electionElapsed = 0;
        this.leader = message.from;
        this.handleSnapshot(message);
        return;
      case "timeoutNow":
        this.campaign("transfer"); // §3.10: skip pre-vote and the leases
        return;
      default:
        return;
    }
  }

  private handleAppend(message: Message): void {
    if (message.index < this.log.committed) {
      this.send({
        ...emptyMessage,
        type: "appendResponse",
        to: message.from,
        term: this.term,
        index: this.log.committed,
      });
      return;
    }
    const lastNew = this.log.maybeAppend(message.index, message.logTerm, message.entries);
    if (lastNew < 0) {
      this.send({
        ...emptyMessage,
        type: "appendResponse",
        to: message.from,
        term: this.term,
        index: message.index,
        reject: true,
        rejectHint: Math.min(message.index, this.log.lastIndex()),
      });
      return;
    }
    this.log.commitTo(Math.min(message.commit, lastNew));
    if (this.damagedUpTo !== 0 && (lastNew >= this.damagedUpTo || lastNew >= message.lastIndex)) {
      // Repaired: our log matches a current leader's through every index we may have acknowledged.
      this.damagedUpTo = 0;
    }
    this.send({ ...emptyMessage, type: "appendResponse", to: message.from, term: this.term, index: lastNew });
  }

  private handleHeartbeat(message: Message): void {
    this.log.commitTo(Math.min(message.commit, this.log.lastIndex()));
    this.send({
      ...emptyMessage,
      type: "heartbeatResponse",
      to: message.from,
      term: this.term,
      context: message.context,
    });
    if (this.log.lastIndex() < message.commit) {
      // The leader believes we hold entries we lost (damage): have it probe from our end.
      const lastIndex = this.log.lastIndex();
      this.send({
        ...emptyMessage,
        type: "appendResponse",
        to: message.from,
        term: this.term,
        index: message.commit,
        reject: true,
        rejectHint: lastIndex,
      });
    }
    if (message.quiesce && this.log.lastIndex() === message.commit && this.log.committed === message.commit) {
      this.quiesced = true;
    }
  }

  private handleSnapshot(message: Message): void {
    const snapshot = message.snapshot;
    if (snapshot === null) return;
    const { index, term } = snapshot.meta;
    if (index <= this.log.committed) {
      // Stale or already covered.
    } else if (this.log.matchTerm(index, term)) {
      this.log.commitTo(index); // our log already holds it: fast-forward (§7)
    } else {
      this.log.restore(snapshot);
      this.configuration = snapshot.meta.configuration;
      if (this.damagedUpTo !== 0 && index >= this.damagedUpTo) this.damagedUpTo = 0;
    }
    this.send({
      ...emptyMessage,
      type: "appendResponse",
      to: message.from,
      term: this.term,
      index: Math.max(this.log.committed, this.log.pendingSnapshot?.meta.index ?? 0),
    });
  }

  private handleAppendResponse(message: Message, progress: Progress): void {
    progress.recentActive = true;
    if (message.reject) {
      if (progress.maybeDecreaseTo(message.index, message.rejectHint)) {
        if (progress.state === "replicate") progress.becomeProbe();
        this.sendAppend(message.from, true);
      }
      return;
    }
    const wasPaused = progress.isPaused();
    if (!progress.maybeUpdate(message.index)) return;
    if (progress.state === "probe") progress.becomeReplicate();
    else if (progress.state === "snapshot" && progress.match + 1 >= this.log.firstIndex())
      progress.becomeReplicate();
    else if (progress.state === "replicate") progress.inflights.freeLE(message.index);

    if (this.maybeCommit()) {
      this.bcastAppend();
    } else if (wasPaused) {
      this.sendAppend(message.from, true);
    }
    while (this.role === "leader" && this.sendAppend(message.from, false)) {
      // keep the pipe full (§10.2.1)
    }
    if (
      this.role === "leader" &&
      message.from === this.transferee &&
      progress.match === this.log.lastIndex()
    ) {
      this.sendTimeoutNow(message.from);
    }
  }

  private handleHeartbeatResponse(message: Message, progress: Progress): void {
    progress.recentActive = true;
    progress.probeSent = false;
    // The follower is alive but its window is full: appends were lost. Free one slot so the
    // next append goes out; its gap makes the follower reject, and the leader probes back.
    if (progress.state === "replicate" && progress.inflights.full()) progress.inflights.freeFirst();
    if (progress.match < this.log.lastIndex()) this.sendAppend(message.from, true);
    if (message.context === 0) return;
    const position = this.readRounds.findIndex((round) => round.context === message.context);
    if (position < 0) return;
    const round = this.readRounds[position]!;
    if (this.configuration.voters.includes(message.from)) round.acks.add(message.from);
    if (round.acks.size < quorumOf(this.configuration.voters.length)) return;
    // A quorum confirmed us as leader at this round: it and every earlier round are safe (§6.4).
    for (const released of this.readRounds.splice(0, position + 1)) {
      for (const requestId of released.requestIds) this.readStates.push({ requestId, index: released.index });
    }
  }

  // ---- leader actions -----------------------------------------------------------------

  private proposalProblem(dataBytes: number): ProposalError | null {
    const bytes = dataBytes + entryOverheadBytes;
    if (this.role !== "leader") return { tag: "NotLeader", leader: this.leader };
    if (this.transferee !== null) return { tag: "Transferring", to: this.transferee };
    if (dataBytes > this.config.maxEntryBytes)
      return { tag: "TooLarge", bytes: dataBytes, limitBytes: this.config.maxEntryBytes };
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.config.maxUncommittedBytes) {
      return {
        tag: "Overloaded",
        uncommittedBytes: this.uncommittedBytes,
        limitBytes: this.config.maxUncommittedBytes,
      };
    }
    return null;
  }

  private appendProposal(kind: "normal" | "config", data: Uint8Array): ProposalResult {
    this.wake();
    const index = this.log.lastIndex() + 1;
    this.log.append([{ index, term: this.term, kind, data }]);
    this.uncommitted.push({ index, bytes: data.byteLength + entryOverheadBytes });
    this.uncommittedBytes += data.byteLength + entryOverheadBytes;
    this.appendPending = true;
    return { ok: true, index, term: this.term };
  }

  /** Sends what was batched since the last Ready: appends for proposals, read-index rounds. */
  private flushBatches(): void {
    if (this.role !== "leader") {
      this.appendPending = false;
      this.readBatch = [];
      return;
    }
    if (this.appendPending) {
      this.appendPending = false;
      this.bcastAppend();
    }
    if (this.readBatch.length > 0 && this.log.term(this.log.committed) === this.term) {
      if (this.configuration.voters.length === 1) {
        // A single voter is its own quorum: no round, but still only once step 1 holds.
        for (const requestId of this.readBatch)
          this.readStates.push({ requestId, index: this.log.committed });
        this.readBatch = [];
        return;
      }
      // §6.4 step 1 holds (an entry of this term is committed): start one round for the batch.
      this.readContext += 1;
      this.readRounds.push({
        context: this.readContext,
        index: this.log.committed,
        requestIds: this.readBatch,
        acks: new Set([this.id]),
      });
      this.readBatch = [];
      this.bcastHeartbeat(this.readContext, false);
    }
  }

  /** §3.6: the highest index stored on a quorum, if it is of the current term. */
  private maybeCommit(): boolean {
    const matches: number[] = [];
    for (const voter of this.configuration.voters) matches.push(this.progress.get(voter)?.match ?? 0);
    matches.sort((a, b) => b - a);
    const candidate = matches[quorumOf(matches.length) - 1] ?? 0;
    if (candidate <= this.log.committed || this.log.term(candidate) !== this.term) return false;
    this.log.commitTo(candidate);
    while (this.uncommitted.length > 0 && this.uncommitted[0]!.index <= candidate) {
      this.uncommittedBytes -= this.uncommitted.shift()!.bytes;
    }
    return true;
  }

  private bcastAppend(): void {
    for (const id of this.progress.keys()) {
      if (this.role !== "leader") return;
      if (id !== this.id) this.sendAppend(id, true);
    }
  }

  private bcastHeartbeat(context: number, quiesce: boolean): void {
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      this.send({
        ...emptyMessage,
        type: "heartbeat",
        to: id,
        term: this.term,
        commit: Math.min(progress.match, this.log.committed),
        context,
        quiesce,
      });
    }
  }

  /** Sends the next append (or a snapshot) to `to`; false if paused or nothing to send. */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const progress = this.progress.get(to);
    if (progress === undefined || progress.isPaused()) return false;
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) return this.sendSnapshot(to, progress);
    const lastIndex = this.log.lastIndex();
    let entries: Entry[] = [];
    if (progress.next <= lastIndex) {
      try {
        entries = this.log.slice(progress.next, lastIndex + 1, this.config.maxMessageBytes);
      } catch (error) {
        this.handleStorageError(error);
        return false;
      }
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const entry of entries) bytes += entry.data.byteLength;
    this.send({
      ...emptyMessage,
      type: "append",
      to,
      term: this.term,
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: this.log.committed,
      lastIndex,
    });
    progress.sentEntries(entries.length > 0 ? entries.at(-1)!.index : prevIndex, bytes);
    return true;
  }

  private sendSnapshot(to: NodeId, progress: Progress): boolean {
    let snapshot = null;
    try {
      snapshot = this.log.store.snapshot();
    } catch (error) {
      this.handleStorageError(error);
      return false;
    }
    assert(
      snapshot !== null,
      `follower ${to} needs index ${progress.next - 1}, compacted without a snapshot`,
    );
    progress.becomeSnapshot(snapshot.meta.index);
    this.send({ ...emptyMessage, type: "snapshot", to, term: this.term, snapshot });
    return true;
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ ...emptyMessage, type: "timeoutNow", to, term: this.term });
  }

  private canQuiesce(): boolean {
    if (!this.config.quiesce || this.transferee !== null) return false;
    if (this.readRounds.length > 0 || this.readBatch.length > 0 || this.appendPending) return false;
    const last = this.log.lastIndex();
    if (this.log.committed !== last || this.log.applied !== last || this.log.unstable.length > 0)
      return false;
    for (const progress of this.progress.values()) {
      if (progress.match !== last || progress.state !== "replicate") return false;
    }
    return true;
  }

  /** §6.2 check-quorum: heard from a quorum of voters since the last check? Resets the marks. */
  private quorumActive(): boolean {
    let active = 0;
    for (const voter of this.configuration.voters) {
      const progress = this.progress.get(voter);
      if (voter === this.id || progress?.recentActive) active += 1;
    }
    for (const [id, progress] of this.progress) progress.recentActive = id === this.id;
    return active >= quorumOf(this.configuration.voters.length);
  }

  // ---- configuration ------------------------------------------------------------------

  private applyConfigEntry(entry: Entry): void {
    const change = decodeConfigChange(entry.data);
    assert(change !== null, `config entry ${entry.index} of group ${this.group} does not decode`);
    if (configChangeProblem(this.configuration, change) !== null) return; // already in force
    this.configuration = applyConfigChange(this.configuration, change);
    if (this.role !== "leader") return;
    if (!this.configuration.voters.includes(this.id)) {
      this.becomeFollower(this.term, null); // thesis §4.2.2: a removed leader steps down once committed
      return;
    }
    const next = this.log.lastIndex() + 1;
    for (const id of this.progress.keys()) {
      if (!this.configuration.voters.includes(id) && !this.configuration.learners.includes(id))
        this.progress.delete(id);
    }
    for (const id of this.configuration.voters) {
      const existing = this.progress.get(id);
      if (existing === undefined) this.addProgress(id, next, false);
      else existing.isLearner = false;
    }
    for (const id of this.configuration.learners) {
      if (!this.progress.has(id)) this.addProgress(id, next, true);
    }
    if (this.transferee !== null && !this.configuration.voters.includes(this.transferee))
      this.transferee = null;
    if (this.maybeCommit()) this.bcastAppend();
    else this.appendPending = true;
  }

  /** At start, re-applies config entries the application had already applied past the snapshot. */
  private replayConfigUpTo(applied: number): void {
    let index = this.log.firstIndex();
    while (index <= applied) {
      const entries = this.log.slice(index, applied + 1, this.config.maxApplyBytes);
      for (const entry of entries) {
        if (entry.kind !== "config") continue;
        const change = decodeConfigChange(entry.data);
        assert(change !== null, `config entry ${entry.index} of group ${this.group} does not decode`);
        if (configChangeProblem(this.configuration, change) === null) {
          this.configuration = applyConfigChange(this.configuration, change);
        }
      }
      index += entries.length;
    }
  }

  // ---- damage -------------------------------------------------------------------------

  private handleStorageError(error: unknown): void {
    if (!(error instanceof StorageDamageError)) throw error;
    const damage = error.damage;
    this.damageSeen.push(damage);
    const from = Math.max(damage.fromIndex, this.log.firstIndex());
    // We may have acknowledged everything we held: stay out of elections until it is re-replicated.
    // The store's view may already end before the damage: count what it says may have existed.
    this.damagedUpTo = Math.max(this.damagedUpTo, this.log.lastIndex(), damage.toIndex);
    this.truncateFrom = this.truncateFrom === 0 ? from : Math.min(this.truncateFrom, from);
    this.log.discardFrom(from);
    if (this.role !== "follower") this.becomeFollower(this.term, null);
  }

  // ---- helpers ------------------------------------------------------------------------

  private wakeFor(message: Message): void {
    if (!this.quiesced) return;
    if (this.role === "leader" && message.type === "heartbeatResponse" && message.context === 0) return;
    if (this.role !== "leader" && message.type === "heartbeat" && message.quiesce) return;
    this.wake();
  }

  private send(message: Message): void {
    this.messages.push({ ...message, group: this.group, from: this.id });
  }

  private currentHardState(): HardState {
    const previous = this.prevHardState;
    if (this.sameHardState(previous)) return previous;
    return { term: this.term, vote: this.vote, commit: this.log.committed, damagedUpTo: this.damagedUpTo };
  }

  private sameHardState(state: HardState): boolean {
    return (
      state.term === this.term &&
      state.vote === this.vote &&
      state.commit === this.log.committed &&
      state.damagedUpTo === this.damagedUpTo
    );
  }
}
