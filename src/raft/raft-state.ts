// The state every role of a Raft node shares (core.ts's RaftNode is the whole node): the
// persistent state (term, vote, log), the volatile state of each role, the role transitions
// (Raft §5.2: follower, candidate, leader; thesis §9.6: pre-candidate) and the helpers that
// turn state into output. The node is one class split by role across three files:
// raft-state.ts (this), leader.ts (what only a leader does) and core.ts (the public inputs,
// elections, and what followers and candidates do).
//
// Invariants: a field marked "Leader only" is empty unless role === "leader" (reset() clears
// it on every transition). `prevHardState` is what the shell last persisted.
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
import { applyConfigChange, configChangeProblem, decodeConfigChange } from "./configuration.ts";
import { assert } from "./errors.ts";
import { Progress } from "./progress.ts";
import { RaftLog } from "./raft-log.ts";
import { emptyMessage, type Message, type ReadState, type Role, type SoftState } from "./types.ts";

export interface RaftNodeOptions {
  readonly id: NodeId;
  readonly group: GroupId;
  readonly log: GroupLog;
  readonly random: Random;
  readonly config?: RaftConfig;
  /** Highest index the application already applied (default: the snapshot's index). */
  readonly applied?: number;
  /**
   * Where the group's other replicas probably are (the shell's assignment), for a replica that
   * lost its configuration to damage and must still ask a leader for repair.
   */
  readonly peersHint?: readonly NodeId[];
}

export interface ReadRound {
  readonly context: number;
  readonly index: number;
  readonly requestIds: number[];
  readonly acks: Set<NodeId>;
}

const noConfiguration: Configuration = { voters: [], learners: [] };

export class RaftState {
  readonly id: NodeId;
  readonly group: GroupId;
  readonly config: RaftConfig;
  readonly log: RaftLog;
  protected readonly random: Random;

  term: number;
  vote: NodeId | null;
  leader: NodeId | null = null;
  role: Role = "follower";
  /**
   * The configuration in force: the latest one in the log, committed or not (thesis §4.1: a
   * server uses the newest configuration in its log, so a replica whose log could win votes
   * knows every committed change).
   */
  configuration: Configuration;
  /** RaftNodeOptions.peersHint. */
  protected readonly peersHint: readonly NodeId[];
  /** The configuration of the snapshot, plus every applied change folded in. */
  protected baseConfiguration: Configuration;
  /**
   * The config entries in the log past the applied index, oldest first, each with the
   * configuration it makes. Invariant: each (index, term) is in the log and index > log.applied.
   */
  protected configEntries: { index: number; term: number; configuration: Configuration }[] = [];
  /** See HardState.damagedUpTo. */
  damagedUpTo: number;
  /** True while the group is idle and its timers are stopped. */
  quiesced = false;

  /** Leader only: what it knows of each replica, itself included. */
  protected progress = new Map<NodeId, Progress>();
  /**
   * Leader only: replicas whose removal this leader applied, with the ticks they are still
   * kept (their progress too, outside every quorum): see LeaderRole.configurationChanged.
   */
  protected departing = new Map<NodeId, number>();
  protected votes = new Map<NodeId, boolean>();
  protected electionElapsed = 0;
  protected heartbeatElapsed = 0;
  protected randomizedElectionTimeout = 0;
  protected transferee: NodeId | null = null;
  /** Leader only: the index of its term's first (empty) entry. */
  protected termStartIndex = 0;
  /** Index of the last config entry appended by this leader; a new one waits until it is applied. */
  protected pendingConfigIndex = 0;
  /** Leader only: (index, bytes) of its proposals not yet committed, oldest first. */
  protected uncommitted: { index: number; bytes: number }[] = [];
  protected uncommittedBytes = 0;
  /** Leader only: proposals appended since the last broadcast (sent at ready(), batched). */
  protected appendPending = false;
  protected readBatch: number[] = [];
  protected readRounds: ReadRound[] = [];
  protected readContext = 0;

  protected messages: Message[] = [];
  protected readStates: ReadState[] = [];
  protected truncateFrom = 0;
  protected prevHardState: HardState;
  protected prevSoftState: SoftState = { leader: null, role: "follower" };
  protected readyOutstanding = false;
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
    this.peersHint = options.peersHint ?? [];
    // The configuration starts from the snapshot's (a test may bootstrap with one at index 0);
    // config entries in the log then apply on top (core.ts loadConfiguration, multi-raft.ts bootstrap).
    const snapshotMeta = store.snapshotMeta();
    this.baseConfiguration = snapshotMeta?.configuration ?? noConfiguration;
    this.configuration = this.baseConfiguration;
    this.foldedIndex = snapshotMeta?.index ?? 0;
    this.log = new RaftLog(store, options.applied ?? snapshotMeta?.index ?? 0);
    this.resetRandomizedElectionTimeout();
  }

  /**
   * Thesis §4.1: a configuration takes effect as soon as its entry is in the log. Call after
   * every change of the log: config entries that left it (a conflicting suffix, a damaged
   * range) are undone, those among `appended` take effect, committed ones are folded into the
   * base. Calls `configurationChanged()` when the configuration in force changed.
   */
  protected syncConfiguration(appended: readonly Entry[]): void {
    while (this.configEntries.length > 0) {
      const last = this.configEntries.at(-1)!;
      if (this.log.term(last.index) === last.term) break;
      this.configEntries.pop();
    }
    for (const entry of appended) {
      if (entry.kind !== "config" || this.log.term(entry.index) !== entry.term) continue;
      const last = this.configEntries.at(-1);
      if (last !== undefined && last.index >= entry.index) continue;
      if (entry.index <= this.foldedIndex) continue; // already part of the base
      const change = decodeConfigChange(entry.data);
      assert(change !== null, `config entry ${entry.index} of group ${this.group} does not decode`);
      const current = last?.configuration ?? this.baseConfiguration;
      const next =
        configChangeProblem(current, change) === null ? applyConfigChange(current, change) : current;
      this.configEntries.push({ index: entry.index, term: entry.term, configuration: next });
    }
    this.foldAppliedConfiguration();
    const latest = this.configEntries.at(-1)?.configuration ?? this.baseConfiguration;
    if (latest !== this.configuration) {
      this.configuration = latest;
      this.configurationChanged();
    }
  }

  /**
   * Applied (so committed) configurations never revert: they join the base, which is then the
   * configuration as of the applied index, what a snapshot taken there must carry.
   */
  protected foldAppliedConfiguration(): void {
    let folded = false;
    while (this.configEntries.length > 0 && this.configEntries[0]!.index <= this.log.applied) {
      const first = this.configEntries.shift()!;
      this.baseConfiguration = first.configuration;
      this.foldedIndex = first.index;
      folded = true;
    }
    // A leader stops tracking replicas once their removal applies.
    if (folded) this.configurationChanged();
  }

  /** The index of the last config entry folded into the base (0 if none). */
  protected foldedIndex = 0;

  /** The configuration as of the applied index: what a snapshot taken there records (Raft §7). */
  appliedConfiguration(): Configuration {
    return this.baseConfiguration;
  }

  /** A snapshot replaced the log: its configuration is the base, nothing is pending. */
  protected restoreConfiguration(configuration: Configuration, index: number): void {
    this.baseConfiguration = configuration;
    this.foldedIndex = index;
    this.configEntries = [];
    if (configuration !== this.configuration) {
      this.configuration = configuration;
      this.configurationChanged();
    }
  }

  /** The configuration in force changed; the leader adjusts its replicas (leader.ts). */
  protected configurationChanged(): void {}

  protected resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout =
      this.config.electionTicks + this.random.nextInt(this.config.electionTicks);
  }

  protected reset(term: number): void {
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
    this.departing.clear();
    this.uncommitted = [];
    this.uncommittedBytes = 0;
    this.appendPending = false;
    this.readBatch = [];
    this.readRounds = [];
    this.quiesced = false;
  }

  protected becomeFollower(term: number, leader: NodeId | null): void {
    this.reset(term);
    this.role = "follower";
    this.leader = leader;
  }

  protected becomePreCandidate(): void {
    assert(this.role !== "leader", "a leader cannot become a pre-candidate");
    this.votes.clear();
    this.leader = null;
    this.role = "preCandidate";
  }

  protected becomeCandidate(): void {
    assert(this.role !== "leader", "a leader cannot become a candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  protected addProgress(id: NodeId, next: number, isLearner: boolean): void {
    this.progress.set(
      id,
      new Progress(next, isLearner, this.config.maxInflightMessages, this.config.maxInflightBytes),
    );
  }

  protected promotable(): boolean {
    return (
      this.configuration.voters.includes(this.id) &&
      this.damagedUpTo === 0 &&
      this.log.pendingSnapshot === null
    );
  }

  protected handleStorageError(error: unknown): void {
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
    this.syncConfiguration([]);
  }

  /** Queues a message: the fields given, every other one empty, from this node of this group. */
  protected send(fields: Partial<Message> & Pick<Message, "type" | "to" | "term">): void {
    this.messages.push({ ...emptyMessage, ...fields, group: this.group, from: this.id });
  }

  protected currentHardState(): HardState {
    const previous = this.prevHardState;
    if (this.sameHardState(previous)) return previous;
    return { term: this.term, vote: this.vote, commit: this.log.committed, damagedUpTo: this.damagedUpTo };
  }

  protected sameHardState(state: HardState): boolean {
    return (
      state.term === this.term &&
      state.vote === this.vote &&
      state.commit === this.log.committed &&
      state.damagedUpTo === this.damagedUpTo
    );
  }

  hardState(): HardState {
    return this.currentHardState();
  }

  softState(): SoftState {
    return { leader: this.leader, role: this.role };
  }

  /** Leader only: a config change of this leader is not applied yet (a new one would be refused). */
  get configChangePending(): boolean {
    return this.pendingConfigIndex > this.log.applied;
  }

  /** Leader only: each other replica's match index and whether it was heard lately (check-quorum). */
  replicaProgress(): ReadonlyMap<NodeId, { readonly match: number; readonly active: boolean }> {
    const result = new Map<NodeId, { match: number; active: boolean }>();
    for (const [id, progress] of this.progress) {
      if (id !== this.id) result.set(id, { match: progress.match, active: progress.recentActive });
    }
    return result;
  }

  /** Leader only: the match index of each replica (for status and tests). */
  matchIndexes(): ReadonlyMap<NodeId, number> {
    const result = new Map<NodeId, number>();
    for (const [id, progress] of this.progress) result.set(id, progress.match);
    return result;
  }
}
