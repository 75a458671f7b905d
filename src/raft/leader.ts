import type { Entry, NodeId } from "../storage/index.ts";
import { type ConfigChange, configChangeProblem, encodeConfigChange, quorumOf } from "./configuration.ts";
import { assert, type ProposalError, type ProposalResult } from "./errors.ts";
import type { Progress } from "./progress.ts";
import { RaftState } from "./raft-state.ts";
import type { Message } from "./types.ts";

/** What an entry costs beyond its data (object, index, term, waiter), for the uncommitted limit. */
export const entryOverheadBytes = 128;

/** Most bytes an entry takes in a message besides its data (index, term, kind, length). */
export const entryEncodingBytesMax = 32;

/**
 * The longest prefix of `entries` (at least one) whose data plus per-entry encoding fits
 * `maxBytes`: the log slices by data bytes alone, and a message of many small entries would
 * otherwise overshoot the transport's frame by their framing (found under load: an append a
 * link could never carry stalled a lagging follower).
 */
function fitMessage(entries: Entry[], maxBytes: number): Entry[] {
  let bytes = 0;
  for (let count = 0; count < entries.length; count++) {
    bytes += entries[count]!.data.byteLength + entryEncodingBytesMax;
    if (count > 0 && bytes > maxBytes) return entries.slice(0, count);
  }
  return entries;
}

export class LeaderRole extends RaftState {
  protected becomeLeader(): void {
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
    this.termStartIndex = index;
    this.appendPending = true;
  }

  /**
   * Leader only: its term's first entry is applied, so its state machine holds every entry
   * committed before it took over (§6.4): decisions read from that state (a topic's kind) may
   * be made now, not earlier.
   */
  get caughtUpAsLeader(): boolean {
    return this.role === "leader" && this.log.applied >= this.termStartIndex;
  }

  /** Is this leader the group's only voter (its own quorum)? */
  private soleVoter(): boolean {
    return this.configuration.voters.length === 1 && this.configuration.voters[0] === this.id;
  }

  /** A new configuration (appended, undone, or from a snapshot): track exactly its replicas. */
  protected override configurationChanged(): void {
    if (this.role !== "leader") return;
    const next = this.log.lastIndex() + 1;
    const members = new Set([...this.configuration.voters, ...this.configuration.learners]);
    const applied = this.appliedConfiguration();
    for (const id of this.progress.keys()) {
      // Kept (outside every quorum, since quorums count configuration.voters): the leader
      // itself, which leads until its removal applies (§4.2.2), and a replica whose removal is
      // not applied yet, which must still receive that entry and learn it is committed (or it
      // would count itself a voter and campaign, and wake the quiesced group, forever). Once
      // the removal applies here, the replica is kept for `departingTicks` more: it may not
      // have heard the commit yet (its progress paused, or cut off for a moment), and the
      // heartbeats of that grace carry it.
      if (id === this.id || members.has(id)) continue;
      const leaving = applied.voters.includes(id) || applied.learners.includes(id);
      if (!leaving && !this.departing.has(id)) this.departing.set(id, this.departingTicks());
    }
    for (const id of members) this.departing.delete(id);
    for (const id of members) {
      const existing = this.progress.get(id);
      if (existing === undefined) this.addProgress(id, next, !this.configuration.voters.includes(id));
      else existing.isLearner = !this.configuration.voters.includes(id);
    }
    if (this.transferee !== null && !this.configuration.voters.includes(this.transferee))
      this.transferee = null;
    if (this.maybeCommit()) this.bcastAppend();
    else this.appendPending = true;
  }

  /** How long a removed replica is still sent to after its removal applied: two election timeouts. */
  private departingTicks(): number {
    return 2 * this.config.electionTicks;
  }

  protected tickHeartbeat(): void {
    this.heartbeatElapsed += 1;
    this.electionElapsed += 1;
    for (const [id, ticks] of this.departing) {
      if (ticks > 1) {
        this.departing.set(id, ticks - 1);
        continue;
      }
      this.departing.delete(id);
      this.progress.delete(id);
    }
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

  /**
   * Asks for a linearizable read (§6.4). The answer comes as a ReadState with this id once a
   * quorum confirmed this leader; serve the read after applying up to its index. Requests
   * still pending when leadership is lost are dropped (the shell sees softState change).
   */
  readIndex(requestId: number): ProposalError | null {
    if (this.role !== "leader") return { tag: "NotLeader", leader: this.leader };
    this.wake();
    if (this.soleVoter() && this.log.term(this.log.committed) === this.term) {
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
    if (change.type === "addVoter") {
      // Thesis §4.2.1: a new voter that has not caught up adds a member the quorum must wait
      // for: one more failure and the group stalls. Promote learners once they hold nearly
      // all of the committed log (promoteLagMaxEntries: what a streaming learner trails by).
      const match = this.progress.get(change.node)?.match ?? 0;
      const behind = match < this.log.committed;
      if (behind && (match === 0 || match + this.config.promoteLagMaxEntries < this.log.committed)) {
        return {
          ok: false,
          error: { tag: "NotCaughtUp", node: change.node, match, commit: this.log.committed },
        };
      }
    }
    const result = this.appendProposal("config", encodeConfigChange(change));
    if (result.ok) this.pendingConfigIndex = result.index;
    return result;
  }

  protected proposalProblem(dataBytes: number): ProposalError | null {
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

  protected appendProposal(kind: "normal" | "config", data: Uint8Array): ProposalResult {
    this.wake();
    const index = this.log.lastIndex() + 1;
    const entry = { index, term: this.term, kind, data };
    this.log.append([entry]);
    this.syncConfiguration([entry]); // thesis §4.1: in force from now, not from commit
    this.uncommitted.push({ index, bytes: data.byteLength + entryOverheadBytes });
    this.uncommittedBytes += data.byteLength + entryOverheadBytes;
    this.appendPending = true;
    return { ok: true, index, term: this.term };
  }

  /** Sends what was batched since the last Ready: appends for proposals, read-index rounds. */
  protected flushBatches(): void {
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
      if (this.soleVoter()) {
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
        // A leader that removed itself still leads until that applies (§4.2.2), but its own
        // ack no longer counts toward the quorum.
        acks: new Set(this.configuration.voters.includes(this.id) ? [this.id] : []),
      });
      this.readBatch = [];
      this.bcastHeartbeat(this.readContext, false);
    }
  }

  /** §3.6: the highest index stored on a quorum, if it is of the current term. */
  protected maybeCommit(): boolean {
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

  protected bcastAppend(): void {
    for (const id of this.progress.keys()) {
      if (this.role !== "leader") return;
      if (id !== this.id) this.sendAppend(id, true);
    }
  }

  protected bcastHeartbeat(context: number, quiesce: boolean): void {
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      this.send({
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
  protected sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const progress = this.progress.get(to);
    if (progress === undefined || progress.isPaused()) return false;
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) return this.sendSnapshot(to, progress);
    const lastIndex = this.log.lastIndex();
    let entries: Entry[] = [];
    if (progress.next <= lastIndex) {
      try {
        entries = fitMessage(
          this.log.slice(progress.next, lastIndex + 1, this.config.maxMessageBytes),
          this.config.maxMessageBytes,
        );
      } catch (error) {
        this.handleStorageError(error);
        return false;
      }
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const entry of entries) bytes += entry.data.byteLength;
    this.send({
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

  protected sendSnapshot(to: NodeId, progress: Progress): boolean {
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
    this.send({ type: "snapshot", to, term: this.term, snapshot });
    return true;
  }

  protected sendTimeoutNow(to: NodeId): void {
    this.send({ type: "timeoutNow", to, term: this.term });
  }

  protected canQuiesce(): boolean {
    // A quiet group would never end a removed replica's grace (tickHeartbeat).
    if (!this.config.quiesce || this.transferee !== null || this.departing.size > 0) return false;
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
  protected quorumActive(): boolean {
    let active = 0;
    for (const voter of this.configuration.voters) {
      const progress = this.progress.get(voter);
      if (voter === this.id || progress?.recentActive) active += 1;
    }
    for (const [id, progress] of this.progress) progress.recentActive = id === this.id;
    return active >= quorumOf(this.configuration.voters.length);
  }

  protected stepLeader(message: Message): void {
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

  protected handleAppendResponse(message: Message, progress: Progress): void {
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

  protected handleHeartbeatResponse(message: Message, progress: Progress): void {
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
}
