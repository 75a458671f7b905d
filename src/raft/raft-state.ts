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
  type GroupId,
  type GroupLog,
  type HardState,
  type NodeId,
  StorageDamageError,
} from "../storage/index.ts";
import { defaultRaftConfig, type RaftConfig } from "./config.ts";
import { assert } from "./errors.ts";
import { Progress } from "./progress.ts";
import { RaftLog } from "./raft-log.ts";
import type { Message, ReadState, Role, SoftState } from "./types.ts";

export interface RaftNodeOptions {
  readonly id: NodeId;
  readonly group: GroupId;
  readonly log: GroupLog;
  readonly random: Random;
  readonly config?: RaftConfig;
  /** Highest index the application already applied (default: the snapshot's index). */
  readonly applied?: number;
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
  /** The configuration as of the applied index. */
  configuration: Configuration;
  /** See HardState.damagedUpTo. */
  damagedUpTo: number;
  /** True while the group is idle and its timers are stopped. */
  quiesced = false;

  /** Leader only: what it knows of each replica, itself included. */
  protected progress = new Map<NodeId, Progress>();
  protected votes = new Map<NodeId, boolean>();
  protected electionElapsed = 0;
  protected heartbeatElapsed = 0;
  protected randomizedElectionTimeout = 0;
  protected transferee: NodeId | null = null;
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
    // A group's first configuration is its bootstrap snapshot at index 0 (multi-raft.ts).
    const snapshotMeta = store.snapshotMeta();
    this.configuration = snapshotMeta?.configuration ?? noConfiguration;
    this.log = new RaftLog(store, options.applied ?? snapshotMeta?.index ?? 0);
    this.resetRandomizedElectionTimeout();
  }

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
  }

  protected send(message: Message): void {
    this.messages.push({ ...message, group: this.group, from: this.id });
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

  /** Leader only: the match index of each replica (for status and tests). */
  matchIndexes(): ReadonlyMap<NodeId, number> {
    const result = new Map<NodeId, number>();
    for (const [id, progress] of this.progress) result.set(id, progress.match);
    return result;
  }
}
