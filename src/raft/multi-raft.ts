// The multi-Raft shell of one router: thousands of groups on one store, one ticker and one
// batch per peer router (DESIGN.md, raft). It is the thin loop of STYLE.md: feed inputs to the
// cores, drain their Readies, persist, sync once, send, apply, advance.
//
// - Groups are created on first use: bootstrapped if `configurationOf` lists this router, or
//   empty (a replica being added) when a leader or candidate of the group writes to us. One
//   ticker ticks only awake groups; quiesced ones cost nothing.
// - Group commit: every Ready drained in one round is persisted, then one `store.sync()`
//   covers them all (skipped when none must be synced: Ready.mustSync; committed entries
//   already durable here are applied before it, see appliesBeforeSync). Leader-to-follower
//   messages (appends, heartbeats) leave before that sync (thesis §10.2.1: the leader counts
//   itself only once persisted); votes and acknowledgements leave after it.
// - Coalescing: each round sends at most two batches per peer router (before and after the
//   sync), heartbeats as a few numbers per group (batch.ts). Every `heartbeatTicks` each peer
//   gets a batch, empty if need be: the router-level liveness beat. A peer silent for
//   `electionTicks` is down: groups it led are told `leaderUnreachable()`, so quiesced
//   followers elect a new leader within one election timeout. A peer heard again wakes the
//   groups we lead with it, so it learns the leader.
// Invariants: at most one round in flight (`flushing`); a node's Ready is advanced only after
// the sync covering it resolved, if it must be synced (Ready.mustSync); entries applied before
// that sync were durable already, and the core hears of them at once (appliedEarly).
// Traps: a proposal resolves when its entry is applied with the term it was proposed in;
// another term at that index means it was lost (NotLeader); leadership lost or a snapshot
// covering it first means nobody knows (OutcomeUnknown).
import type { Clock, Random, Timer } from "../ports/index.ts";
import {
  type Configuration,
  type Entry,
  type GroupId,
  type LogStore,
  type NodeId,
  type Snapshot,
  StorageClosedError,
  StorageFailedError,
} from "../storage/index.ts";
import { batchIsEmpty, fromBatch, type RaftBatch, toBatches } from "./batch.ts";
import { defaultRaftConfig, type RaftConfig } from "./config.ts";
import { type ConfigChange, encodeConfigChange } from "./configuration.ts";
import { RaftNode } from "./core.ts";
import { assert, type ProposalError, type ProposalResult } from "./errors.ts";
import { persistReady } from "./persist.ts";
import type { Message, Ready, SoftState } from "./types.ts";

export interface RaftTransport {
  /** Best effort: a batch may be lost; Raft retries. `batch.to` names the peer router. */
  send(batch: RaftBatch): void;
  /** Writes what `send` queued now (the shell calls it before staging a sync). */
  flush?(): void;
}

/** The application above the groups: the partition's stream in Neuron, a checker in the simulator. */
export interface StateMachine {
  /**
   * Committed entries of `group`, in log order, each exactly once per process lifetime. May
   * return one result per entry: a proposal made here resolves with its entry's result.
   */
  apply(group: GroupId, entries: readonly Entry[]): readonly unknown[] | undefined;
  /** A snapshot from the leader replaces the group's state (before any later apply). */
  restore(group: GroupId, snapshot: Snapshot): void;
  leadershipChanged(group: GroupId, state: SoftState): void;
}

export interface MultiRaftOptions {
  readonly id: NodeId;
  readonly store: LogStore;
  readonly transport: RaftTransport;
  readonly clock: Clock;
  readonly random: Random;
  readonly config?: RaftConfig;
  /**
   * The first replicas of a group this router has no state for (null if none yet), used to
   * bootstrap it when it lists this router. Every router must get the same answer for a new
   * group: two different first configurations could elect two leaders. Replicas added later
   * come from membership changes, not from here.
   */
  readonly configurationOf: (group: GroupId) => Configuration | null;
  readonly stateMachine: StateMachine;
  /** Most groups on this router. Default 65,536 (one per partition). */
  readonly groupsMax?: number;
  /** The store failed (a write or an fsync): every group has stopped. */
  readonly onFailure?: (error: Error) => void;
  /** A broken invariant: by default the error is rethrown to stop the process; the simulator records it. */
  readonly onFatal?: (error: Error) => void;
}

/** A proposal, read or transfer the Raft core refused; `error.tag` says why. */
export class RaftRequestError extends Error {
  readonly error: ProposalError;
  constructor(group: GroupId, error: ProposalError) {
    super(`group ${group}: ${error.tag}`);
    this.name = "RaftRequestError";
    this.error = error;
  }
}

export interface MultiRaftStats {
  groups: number;
  awake: number;
  ticks: number;
  rounds: number;
  syncs: number;
  batchesSent: number;
  batchesReceived: number;
  beatsSent: number;
  messagesSent: number;
  droppedUnknownGroup: number;
}

/** A proposal applied: where, and what the state machine's apply returned for it. */
export interface Applied {
  readonly index: number;
  readonly term: number;
  readonly result: unknown;
}

interface Waiter {
  readonly term: number;
  readonly resolve: (value: Applied) => void;
  readonly reject: (error: Error) => void;
}

interface ReadWaiter {
  index: number;
  readonly resolve: (index: number) => void;
  readonly reject: (error: Error) => void;
}

const earlyTypes = new Set<Message["type"]>(["append", "heartbeat", "snapshot", "timeoutNow"]);
/** Rounds in a row that waited for no sync before the loop yields to timers and sockets. */
const roundsWithoutSyncMax = 8;

/** Messages that may create an empty replica of a group this router does not hold yet. */
const creatingTypes = new Set<Message["type"]>(["append", "heartbeat", "snapshot", "vote", "preVote"]);

/**
 * Whether a Ready's committed entries may be applied before the sync of its writes: they are
 * all durable here already (none is among the entries it stages, and it installs or drops
 * nothing), so only the commit index in its hard state is not. An applied entry that is not in
 * the local log after a crash broke etcd's persisted state machine (etcd-io/etcd#10508); ours
 * is rebuilt from the log, but the rule keeps it safe for when it is not. A commit index lost
 * in a crash is learned again from the leader, and reads wait for a commit in the reader's
 * own term (leader.ts), so a stale one never answers a read.
 */
function appliesBeforeSync(ready: Ready): boolean {
  if (ready.committedEntries.length === 0 || ready.snapshot !== null || ready.truncateFrom !== 0)
    return false;
  const firstStaged = ready.entries[0];
  return firstStaged === undefined || ready.committedEntries.at(-1)!.index < firstStaged.index;
}

export class MultiRaft {
  readonly id: NodeId;
  readonly config: RaftConfig;
  private readonly options: MultiRaftOptions;
  private readonly nodes = new Map<GroupId, RaftNode>();
  /** Groups the store holds (recovered at open, or created here). */
  private readonly stored: Set<GroupId>;
  /** Per group, the index the state machine has applied (the shell's own count, see resolveReads). */
  private readonly applied = new Map<GroupId, number>();
  private readonly awake = new Set<RaftNode>();
  private readonly dirty = new Set<RaftNode>();
  /** Peers of each group, and how many groups share each peer. */
  private readonly groupPeers = new Map<GroupId, readonly NodeId[]>();
  private readonly peerGroups = new Map<NodeId, number>();
  private readonly lastHeardTick = new Map<NodeId, number>();
  private readonly lastSentTick = new Map<NodeId, number>();
  private readonly peersDown = new Set<NodeId>();
  private readonly proposals = new Map<GroupId, Map<number, Waiter>>();
  private readonly reads = new Map<GroupId, Map<number, ReadWaiter>>();
  private nextReadId = 1;
  /** True while the state machine runs apply() or restore(). */
  private applying = false;
  private ticks = 0;
  private timer: Timer | null = null;
  private flushing = false;
  private flushScheduled = false;
  private stopped = false;
  private failure: Error | null = null;
  private readonly counters: MultiRaftStats = {
    groups: 0,
    awake: 0,
    ticks: 0,
    rounds: 0,
    syncs: 0,
    batchesSent: 0,
    batchesReceived: 0,
    beatsSent: 0,
    messagesSent: 0,
    droppedUnknownGroup: 0,
  };

  constructor(options: MultiRaftOptions) {
    this.options = options;
    this.id = options.id;
    this.config = options.config ?? defaultRaftConfig;
    this.stored = new Set(options.store.groups());
    for (const group of this.stored) this.group(group);
  }

  /** Starts the ticker. */
  start(): void {
    const loop = () => {
      if (this.stopped) return;
      this.tick();
      this.timer = this.options.clock.schedule(this.config.tickMs, loop);
    };
    this.timer = this.options.clock.schedule(this.config.tickMs, loop);
  }

  /** Stops ticking and refuses new work; pending requests are rejected. */
  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
    const stopped = new Error("multi-raft stopped");
    for (const waiters of this.proposals.values())
      for (const waiter of waiters.values()) waiter.reject(stopped);
    for (const waiters of this.reads.values()) for (const waiter of waiters.values()) waiter.reject(stopped);
    this.proposals.clear();
    this.reads.clear();
  }

  /** The group's node, created if `configurationOf` lists this router; undefined otherwise. */
  group(group: GroupId): RaftNode | undefined {
    return this.groupFor(group, false);
  }

  /**
   * The group's node, created if needed: bootstrapped from `configurationOf` if it lists this
   * router, or else (`asked`: a leader's append, heartbeat or snapshot, or a candidate's vote
   * request) created empty, as a replica being added to the group: it has no configuration,
   * never campaigns, and learns everything (its membership included) from the leader's log or
   * snapshot. It may vote (an empty log grants any candidate, which is safe): a group whose
   * new voter has not received anything yet can still reach a quorum.
   */
  private groupFor(group: GroupId, asked: boolean): RaftNode | undefined {
    const existing = this.nodes.get(group);
    if (existing !== undefined) return existing;
    // Nothing is created in the store for a group this router does not replicate: a peer
    // naming arbitrary group ids must not make it grow (groupsMax bounds what leaders can add).
    const known = this.stored.has(group);
    let initial = known ? null : this.options.configurationOf(group);
    if (initial !== null && !initial.voters.concat(initial.learners).includes(this.id)) initial = null;
    if (!known && initial === null && !asked) return undefined;
    if (this.nodes.size >= (this.options.groupsMax ?? 65_536)) return undefined;
    this.stored.add(group);
    const log = this.options.store.group(group);
    if (initial !== null) {
      // Bootstrap, as etcd does: the first configuration is a run of config entries at term 1,
      // the same on every first replica and committed by construction. Replicas added later
      // receive them from the leader like any entry, so they learn the group from index 1.
      const changes: ConfigChange[] = [
        ...[...initial.voters].sort().map((node) => ({ type: "addVoter" as const, node })),
        ...[...initial.learners].sort().map((node) => ({ type: "addLearner" as const, node })),
      ];
      const entries = changes.map((change, position) => ({
        index: position + 1,
        term: 1,
        kind: "config" as const,
        data: encodeConfigChange(change),
      }));
      this.options.store.append(group, entries);
      this.options.store.setHardState(group, { term: 1, vote: null, commit: entries.length, damagedUpTo: 0 });
    }
    const assigned = this.options.configurationOf(group);
    const node = new RaftNode({
      id: this.id,
      group,
      log,
      random: this.options.random,
      config: this.config,
      peersHint:
        assigned === null ? [] : [...assigned.voters, ...assigned.learners].filter((id) => id !== this.id),
    });
    this.nodes.set(group, node);
    this.applied.set(group, node.log.applied);
    this.setGroupPeers(group, node);
    this.awake.add(node);
    this.dirty.add(node);
    this.scheduleFlush();
    return node;
  }

  groups(): IterableIterator<RaftNode> {
    return this.nodes.values();
  }

  stats(): MultiRaftStats {
    return { ...this.counters, groups: this.nodes.size, awake: this.awake.size };
  }

  /** Resolves once the data is committed and applied here; rejects with RaftRequestError. */
  propose(group: GroupId, data: Uint8Array): Promise<Applied> {
    return this.request(group, (node) => node.propose(data));
  }

  proposeConfigChange(group: GroupId, change: ConfigChange): Promise<Applied> {
    return this.request(group, (node) => node.proposeConfigChange(change));
  }

  /** Resolves with an index once a linearizable read may be served (applied up to it here). */
  readIndex(group: GroupId): Promise<number> {
    const node = this.nodes.get(group);
    if (node === undefined)
      return Promise.reject(new RaftRequestError(group, { tag: "NotLeader", leader: null }));
    const requestId = this.nextReadId++;
    const refused = node.readIndex(requestId);
    if (refused !== null) return Promise.reject(new RaftRequestError(group, refused));
    this.touch(node);
    return new Promise((resolve, reject) => {
      let waiters = this.reads.get(group);
      if (waiters === undefined) {
        waiters = new Map();
        this.reads.set(group, waiters);
      }
      waiters.set(requestId, { index: -1, resolve, reject });
    });
  }

  transferLeadership(group: GroupId, to: NodeId): ProposalError | null {
    const node = this.nodes.get(group);
    if (node === undefined) return { tag: "NotLeader", leader: null };
    const refused = node.transferLeadership(to);
    this.touch(node);
    return refused;
  }

  /**
   * Log compaction: `data` is the application's state as of the applied index (everything
   * apply() was given so far); it becomes the snapshot there and the log before it is dropped.
   * Not from inside apply() or restore().
   */
  compact(group: GroupId, data: Uint8Array): void {
    // Inside apply() the state machine is mid-batch: its state matches no index the shell knows.
    assert(!this.applying, "compact() called from inside StateMachine.apply or restore");
    const node = this.nodes.get(group);
    if (node === undefined) return;
    // A snapshot received while a round waits on the disk moves the core's applied index before
    // the state machine has restored it (see resolveReads): the state matches no index the core
    // knows until the round ends. Compact later.
    if ((this.applied.get(group) ?? 0) !== node.log.applied) return;
    const index = node.log.applied;
    const term = node.log.term(index);
    if (term === undefined || index < node.log.firstIndex()) return;
    const configuration = node.appliedConfiguration();
    this.options.store.compact(group, { meta: { index, term, configuration }, data });
    this.scheduleFlush();
  }

  /** A batch from a peer router. */
  receive(batch: RaftBatch): void {
    if (this.stopped || batch.to !== this.id) return;
    this.counters.batchesReceived += 1;
    this.heard(batch.from);
    for (const message of fromBatch(batch)) {
      const node = this.groupFor(message.group, creatingTypes.has(message.type));
      if (node === undefined) {
        this.counters.droppedUnknownGroup += 1;
        continue;
      }
      node.step(message);
      this.touch(node);
    }
  }

  /** One tick: awake groups tick; peers get their liveness beat; silent peers are declared down. */
  tick(): void {
    if (this.stopped) return;
    this.ticks += 1;
    this.counters.ticks += 1;
    for (const node of this.awake) {
      node.tick();
      if (node.quiesced) this.awake.delete(node);
      if (node.hasReady()) this.dirty.add(node);
    }
    for (const peer of this.peerGroups.keys()) {
      const heard = this.lastHeardTick.get(peer) ?? 0;
      if (!this.peersDown.has(peer) && this.ticks - heard > this.config.electionTicks) this.peerDown(peer);
    }
    if (this.flushing) {
      // A round is waiting on the disk: the router's liveness beat must not wait with it, or
      // one slow fsync would make every peer declare this router down.
      for (const peer of this.peerGroups.keys()) {
        if (this.ticks - (this.lastSentTick.get(peer) ?? 0) < this.config.heartbeatTicks) continue;
        this.lastSentTick.set(peer, this.ticks);
        this.counters.batchesSent += 1;
        this.options.transport.send({ from: this.id, to: peer, beats: [], beatResponses: [], messages: [] });
      }
    }
    this.scheduleFlush(true);
  }

  // ---- the loop -----------------------------------------------------------------------

  private touch(node: RaftNode): void {
    if (!node.quiesced) this.awake.add(node);
    this.dirty.add(node);
    this.scheduleFlush();
  }

  private scheduleFlush(fromTick = false): void {
    if (fromTick && this.dirty.size === 0 && !this.beatDue()) return;
    if (this.flushScheduled || this.flushing) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush().catch((error: unknown) => this.fail(error as Error));
    });
  }

  private beatDue(): boolean {
    for (const peer of this.peerGroups.keys()) {
      if (this.ticks - (this.lastSentTick.get(peer) ?? 0) >= this.config.heartbeatTicks) return true;
    }
    return false;
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.stopped) return;
    this.flushing = true;
    try {
      let roundsWithoutSync = 0;
      do {
        if (await this.round()) roundsWithoutSync = 0;
        else if (++roundsWithoutSync >= roundsWithoutSyncMax && this.dirty.size > 0) {
          // Rounds that only apply (a backlog of committed entries) chain as microtasks: let
          // timers and sockets run between some of them, as a sync would.
          roundsWithoutSync = 0;
          await new Promise<void>((resolve) => this.options.clock.schedule(0, resolve));
        }
      } while (this.dirty.size > 0 && !this.stopped);
    } finally {
      this.flushing = false;
    }
  }

  /** One round (see the file's header); true if it waited for a sync. */
  private async round(): Promise<boolean> {
    this.counters.rounds += 1;
    const work: [RaftNode, Ready][] = [];
    for (const node of this.dirty) if (node.hasReady()) work.push([node, node.ready()]);
    this.dirty.clear();
    const store = this.options.store;
    const early: Message[] = [];
    const late: Message[] = [];
    let mustSync = false;
    for (const [node, ready] of work) {
      if (persistReady(store, node.group, ready)) mustSync = true;
      for (const message of ready.messages) {
        (earlyTypes.has(message.type) && !ready.persistBeforeSending ? early : late).push(message);
      }
    }
    this.sendAll(early, false);
    // Out before the sync is staged (checksums and copies of the whole round's writes, done
    // synchronously): the followers start their own fsync that much sooner.
    if (mustSync && early.length > 0) this.options.transport.flush?.();
    for (const [node, ready] of work) {
      // The transport is best effort: treat a sent snapshot as delivered and let the probe
      // that follows find out (a lost one is sent again when the follower rejects the probe).
      for (const message of ready.messages)
        if (message.type === "snapshot") node.reportSnapshot(message.to, true);
    }
    // Committed entries this node already holds durably need not wait for this sync (etcd's
    // server applies them while it persists the Ready): a leader's commit index moving on is
    // only a hard state to write, and its proposers hear at once. Entries staged in this round
    // wait.
    for (const [node, ready] of work) {
      if (!appliesBeforeSync(ready)) continue;
      this.applyCommitted(node, ready);
      node.appliedEarly(ready);
    }
    if (mustSync) {
      await store.sync();
      this.counters.syncs += 1;
    }
    if (this.stopped) return mustSync;
    this.sendAll(late, true);
    for (const [node, ready] of work) {
      this.applyCommitted(node, ready);
      this.applyState(node, ready);
      node.advance(ready);
      if (ready.snapshot !== null || ready.committedEntries.some((entry) => entry.kind === "config")) {
        this.setGroupPeers(node.group, node);
      }
      this.resolveReads(node);
      if (!node.quiesced) this.awake.add(node);
      if (node.hasReady()) this.dirty.add(node);
    }
    return mustSync;
  }

  private sendAll(messages: readonly Message[], withBeats: boolean): void {
    const batches = toBatches(this.id, messages);
    if (withBeats && this.ticks > 0) {
      for (const peer of this.peerGroups.keys()) {
        if (
          !batches.has(peer) &&
          this.ticks - (this.lastSentTick.get(peer) ?? 0) >= this.config.heartbeatTicks
        ) {
          batches.set(peer, { from: this.id, to: peer, beats: [], beatResponses: [], messages: [] });
        }
      }
    }
    for (const batch of batches.values()) {
      this.lastSentTick.set(batch.to, this.ticks);
      this.counters.batchesSent += 1;
      this.counters.beatsSent += batch.beats.length;
      this.counters.messagesSent += batch.messages.length + batch.beats.length + batch.beatResponses.length;
      if (!batchIsEmpty(batch) || withBeats) this.options.transport.send(batch);
    }
  }

  /** A Ready's snapshot and committed entries to the state machine; proposals settle. Idempotent. */
  private applyCommitted(node: RaftNode, ready: Ready): void {
    const group = node.group;
    const waiters = this.proposals.get(group);
    if (ready.snapshot !== null) {
      this.applying = true;
      try {
        this.options.stateMachine.restore(group, ready.snapshot);
      } finally {
        this.applying = false;
      }
      this.applied.set(group, ready.snapshot.meta.index);
      if (waiters !== undefined) {
        for (const [index, waiter] of waiters) {
          if (index > ready.snapshot.meta.index) continue;
          waiters.delete(index);
          waiter.reject(
            new RaftRequestError(group, { tag: "OutcomeUnknown", reason: "a snapshot covered it" }),
          );
        }
      }
    }
    if (ready.committedEntries.length > 0) {
      const appliedBefore = this.applied.get(group) ?? 0;
      const fresh = ready.committedEntries.filter((entry) => entry.index > appliedBefore);
      let results: readonly unknown[] | undefined;
      if (fresh.length > 0) {
        this.applying = true;
        try {
          results = this.options.stateMachine.apply(group, fresh);
        } finally {
          this.applying = false;
        }
        this.applied.set(group, fresh.at(-1)!.index);
      }
      if (waiters !== undefined) {
        for (const [position, entry] of fresh.entries()) {
          const waiter = waiters.get(entry.index);
          if (waiter === undefined) continue;
          waiters.delete(entry.index);
          if (entry.term === waiter.term)
            waiter.resolve({ index: entry.index, term: entry.term, result: results?.[position] });
          else waiter.reject(new RaftRequestError(group, { tag: "NotLeader", leader: node.leader }));
        }
      }
    }
  }

  /** A Ready's leadership change and read states, once its writes are durable. */
  private applyState(node: RaftNode, ready: Ready): void {
    const group = node.group;
    const waiters = this.proposals.get(group);
    if (ready.softState !== null) {
      this.options.stateMachine.leadershipChanged(group, ready.softState);
      if (ready.softState.role !== "leader") {
        this.rejectReads(node);
        // Appended by us, not applied yet: the next leader may commit them or not.
        if (waiters !== undefined) {
          for (const waiter of waiters.values()) {
            waiter.reject(new RaftRequestError(group, { tag: "OutcomeUnknown", reason: "leadership lost" }));
          }
          waiters.clear();
        }
      }
    }
    const reads = this.reads.get(group);
    for (const state of ready.readStates) {
      const waiter = reads?.get(state.requestId);
      if (waiter !== undefined) waiter.index = state.index;
    }
  }

  private resolveReads(node: RaftNode): void {
    const waiters = this.reads.get(node.group);
    if (waiters === undefined) return;
    for (const [requestId, waiter] of waiters) {
      // The shell's count, not the core's: a snapshot received while this round waited on the
      // disk moves the core's applied index before the state machine has restored it.
      if (waiter.index >= 0 && (this.applied.get(node.group) ?? 0) >= waiter.index) {
        waiters.delete(requestId);
        waiter.resolve(waiter.index);
      }
    }
  }

  private rejectReads(node: RaftNode): void {
    const waiters = this.reads.get(node.group);
    if (waiters === undefined) return;
    for (const waiter of waiters.values()) {
      waiter.reject(new RaftRequestError(node.group, { tag: "NotLeader", leader: node.leader }));
    }
    waiters.clear();
  }

  private request(group: GroupId, act: (node: RaftNode) => ProposalResult): Promise<Applied> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.stopped) return Promise.reject(new Error("multi-raft stopped"));
    const node = this.group(group);
    if (node === undefined)
      return Promise.reject(new RaftRequestError(group, { tag: "NotLeader", leader: null }));
    const result = act(node);
    if (!result.ok) return Promise.reject(new RaftRequestError(group, result.error));
    this.touch(node);
    return new Promise((resolve, reject) => {
      let waiters = this.proposals.get(group);
      if (waiters === undefined) {
        waiters = new Map();
        this.proposals.set(group, waiters);
      }
      assert(!waiters.has(result.index), `two proposals at index ${result.index} of group ${group}`);
      waiters.set(result.index, { term: result.term, resolve, reject });
    });
  }

  // ---- peers --------------------------------------------------------------------------

  private setGroupPeers(group: GroupId, node: RaftNode): void {
    for (const peer of this.groupPeers.get(group) ?? []) {
      const count = (this.peerGroups.get(peer) ?? 1) - 1;
      if (count === 0) this.peerGroups.delete(peer);
      else this.peerGroups.set(peer, count);
    }
    const peers = [...node.configuration.voters, ...node.configuration.learners].filter(
      (id) => id !== this.id,
    );
    this.groupPeers.set(group, peers);
    for (const peer of peers) {
      this.peerGroups.set(peer, (this.peerGroups.get(peer) ?? 0) + 1);
      if (!this.lastHeardTick.has(peer)) this.lastHeardTick.set(peer, this.ticks);
    }
  }

  /**
   * The transport lost its link to `peer` (a killed router's socket resets at once): treat it
   * as down now rather than after an election timeout of silence. Safe if it is alive: its
   * groups' other followers are still in its lease and refuse the pre-votes, and the next
   * batch from it marks it up again.
   */
  peerUnreachable(peer: NodeId): void {
    if (this.stopped || this.peersDown.has(peer) || !this.peerGroups.has(peer)) return;
    this.peerDown(peer, true);
    this.scheduleFlush();
  }

  private heard(peer: NodeId): void {
    this.lastHeardTick.set(peer, this.ticks);
    if (!this.peersDown.delete(peer)) return;
    // Back: wake the groups we lead with it, so a restarted replica learns its leader.
    for (const node of this.nodes.values()) {
      if (node.role === "leader" && node.quiesced && this.groupPeers.get(node.group)?.includes(peer)) {
        node.wake();
        this.touch(node);
      }
    }
  }

  private peerDown(peer: NodeId, linkBroken = false): void {
    this.peersDown.add(peer);
    for (const node of this.nodes.values()) {
      if (node.leader === peer) {
        node.leaderUnreachable(linkBroken);
        this.touch(node);
      } else if (node.role === "leader") {
        node.reportUnreachable(peer);
      }
    }
  }

  private fail(error: Error): void {
    if (!(error instanceof StorageFailedError || error instanceof StorageClosedError)) {
      // A broken invariant (an assertion) or a bug in the state machine: stop the process.
      this.stop();
      const fatal =
        this.options.onFatal ??
        ((cause: Error) =>
          queueMicrotask(() => {
            throw cause;
          }));
      fatal(error);
      return;
    }
    // The disk can no longer be trusted (the fsync gate): stop every group, say why.
    this.failure = error;
    this.stop();
    this.options.onFailure?.(error);
  }
}
