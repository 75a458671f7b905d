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
// The node is one class split by role: raft-state.ts (shared state and role transitions),
// leader.ts (replication, commit, reads, transfer, quiescence) and this file (the inputs,
// elections, followers and candidates, Ready and advance).
import type { Entry, NodeId } from "../storage/index.ts";
import { quorumOf } from "./configuration.ts";
import { assert } from "./errors.ts";
import { LeaderRole } from "./leader.ts";
import type { RaftNodeOptions } from "./raft-state.ts";
import type { Message, MessageType, Ready } from "./types.ts";

export { entryOverheadBytes } from "./leader.ts";
export type { RaftNodeOptions } from "./raft-state.ts";

const voteContextTransfer = 1;

function responseTypeOf(type: MessageType): MessageType {
  return type === "preVote" ? "preVoteResponse" : "voteResponse";
}

export class RaftNode extends LeaderRole {
  constructor(options: RaftNodeOptions) {
    super(options);
    try {
      this.loadConfiguration();
    } catch (error) {
      this.handleStorageError(error);
    }
  }

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
        this.send({ type: "appendResponse", to: message.from, term: this.term });
      } else if (message.type === "preVote") {
        this.send({
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

  /**
   * The shell's verdict that this group's leader is unreachable (its router stopped answering).
   * Wakes a quiesced follower and ends its lease, so it campaigns within one election timeout.
   */
  leaderUnreachable(linkBroken = false): void {
    if (this.role === "leader") return;
    this.quiesced = false;
    // The lease ends now, so this replica grants pre-votes at once; its own campaign waits at
    // least a heartbeat interval more, by when the other replicas (whose verdict on the leader
    // comes from the same, last, heartbeat) have ended their leases too. Campaigning earlier
    // would meet replicas still in lease, lose the pre-vote, and wait a whole timeout again.
    // A broken link (`linkBroken`: the leader's router reset its sockets, as a killed process
    // does) reaches every replica at the same instant, so the wait is only a random fraction
    // of a heartbeat interval; a pre-vote tie goes to the larger id anyway.
    if (this.electionElapsed < this.config.electionTicks) {
      this.electionElapsed = this.config.electionTicks;
      this.randomizedElectionTimeout = linkBroken
        ? this.config.electionTicks + 1 + this.random.nextInt(this.config.heartbeatTicks)
        : this.config.electionTicks +
          this.config.heartbeatTicks +
          this.random.nextInt(this.config.electionTicks);
    }
  }

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
    const persistBeforeSending = previous.term !== this.term || previous.vote !== this.vote;
    const ready: Ready = {
      persistBeforeSending,
      mustSync:
        persistBeforeSending ||
        previous.damagedUpTo !== hardState.damagedUpTo ||
        this.truncateFrom !== 0 ||
        this.log.pendingSnapshot !== null ||
        this.log.unstable.length > 0,
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

  /**
   * The shell applied `ready`'s committed entries before the sync of its writes (they were
   * durable already): the applied index and the configurations they commit count from now, not
   * from advance(), so a config change proposed meanwhile is not refused as still pending.
   */
  appliedEarly(ready: Ready): void {
    assert(this.readyOutstanding, "appliedEarly() without ready()");
    for (const entry of ready.committedEntries) {
      if (entry.index > this.log.applied) this.log.applied = entry.index;
    }
    this.foldAppliedConfiguration();
    this.stepDownIfRemoved();
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
      if (entry.index > this.log.applied) this.log.applied = entry.index;
    }
    this.foldAppliedConfiguration();
    this.stepDownIfRemoved();
  }

  /** Thesis §4.2.2: a leader outside the configuration it committed (and applied) steps down. */
  private stepDownIfRemoved(): void {
    if (
      this.role === "leader" &&
      this.configEntries.length === 0 &&
      !this.configuration.voters.includes(this.id)
    ) {
      this.becomeFollower(this.term, null);
    }
  }

  private tickElection(): void {
    this.electionElapsed += 1;
    if (this.electionElapsed < this.randomizedElectionTimeout) return;
    this.electionElapsed = 0;
    if (this.promotable()) this.campaign(this.config.preVote ? "preElection" : "election");
    else if (
      this.leader === null &&
      (this.damagedUpTo !== 0 ||
        this.configuration.learners.concat(this.configuration.voters).includes(this.id))
    ) {
      this.nudge();
    }
  }

  /**
   * A replica that may not campaign (a learner, or one repairing damage) and knows no leader
   * asks to be found: a rejection carrying its last index wakes quiesced replicas (whose
   * timers then run) and makes a leader probe it. Without it, a learner or damaged replica
   * restarted under a quiesced group would wait for a leader forever. A replica whose damage
   * took its configuration too asks the peers the shell told it of.
   */
  private nudge(): void {
    const lastIndex = this.log.lastIndex();
    const voters = this.configuration.voters.length > 0 ? this.configuration.voters : this.peersHint;
    for (const voter of voters) {
      if (voter === this.id) continue;
      this.send({
        type: "appendResponse",
        to: voter,
        term: this.term,
        index: lastIndex,
        reject: true,
        rejectHint: lastIndex,
      });
    }
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
        type: responseTypeOf(message.type),
        to: message.from,
        term: this.term,
        reject: true,
      });
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
        type: "appendResponse",
        to: message.from,
        term: this.term,
        index: this.log.committed,
      });
      return;
    }
    const lastNew = this.log.maybeAppend(message.index, message.logTerm, message.entries);
    if (lastNew >= 0) this.syncConfiguration(message.entries);
    if (lastNew < 0) {
      this.send({
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
    this.send({ type: "appendResponse", to: message.from, term: this.term, index: lastNew });
  }

  private handleHeartbeat(message: Message): void {
    this.log.commitTo(Math.min(message.commit, this.log.lastIndex()));
    this.send({
      type: "heartbeatResponse",
      to: message.from,
      term: this.term,
      context: message.context,
    });
    if (this.log.lastIndex() < message.commit) {
      // The leader believes we hold entries we lost (damage): have it probe from our end.
      const lastIndex = this.log.lastIndex();
      this.send({
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
      this.restoreConfiguration(snapshot.meta.configuration, index);
      if (this.damagedUpTo !== 0 && index >= this.damagedUpTo) this.damagedUpTo = 0;
    }
    this.send({
      type: "appendResponse",
      to: message.from,
      term: this.term,
      index: Math.max(this.log.committed, this.log.pendingSnapshot?.meta.index ?? 0),
    });
  }

  /** At start: every config entry in the log after the snapshot is in force (thesis §4.1). */
  private loadConfiguration(): void {
    // Entry kinds are in memory: only the config entries themselves are read from the disk.
    const store = this.log.store;
    for (let index = store.firstIndex(); index <= store.lastIndex(); index++) {
      if (store.kindOf(index) === "config") this.syncConfiguration(store.entries(index, index + 1, 0));
    }
  }

  /**
   * Which messages wake a quiesced group. A leader wakes for anything but the answers to its
   * quiescing heartbeat (a restarted replica's pre-vote, say, so it learns the leader). A
   * follower does not wake for vote requests: it is in its leader's lease and ignores them, and
   * waking would restart its election timer with no heartbeat coming (the leader is still
   * quiet), so one stray candidate (a removed replica that never learned it) would depose a
   * healthy leader. A dead leader is the shell's verdict (leaderUnreachable), or the leader's
   * own vote request after a restart, not another candidate's.
   */
  private wakeFor(message: Message): void {
    if (!this.quiesced) return;
    if (this.role === "leader") {
      if (message.type === "heartbeatResponse" && message.context === 0) return;
    } else if (message.type === "heartbeat" && message.quiesce) {
      return;
    } else if (message.type === "preVote" || message.type === "vote") {
      // From our own leader: it restarted (faster than its router was missed) and lost its
      // leadership, so the lease is over. From anyone else: ignored within the lease.
      if (message.from === this.leader) this.leaderUnreachable();
      return;
    }
    this.wake();
  }
}
