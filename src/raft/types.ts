// The nouns of Raft: messages between replicas, the Ready batch a node hands its shell, and
// the roles. Message fields follow etcd's raftpb.Message, trimmed to what this core uses; a
// field a message type does not use is 0, false, null or empty, so every Message has one
// shape (one hidden class for V8, one Avro record on the wire).
import type { Entry, GroupId, HardState, NodeId, Snapshot } from "../storage/index.ts";

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

export const messageTypes = [
  "preVote",
  "preVoteResponse",
  "vote",
  "voteResponse",
  "append",
  "appendResponse",
  "heartbeat",
  "heartbeatResponse",
  "snapshot",
  "timeoutNow",
] as const;
export type MessageType = (typeof messageTypes)[number];

export interface Message {
  readonly type: MessageType;
  readonly group: GroupId;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /**
   * append: term of the entry at `index` (the one before `entries`). vote/preVote: the
   * candidate's last log term (Raft §5.4.1).
   */
  readonly logTerm: number;
  /**
   * append: index of the entry before `entries`. vote/preVote: the candidate's last index.
   * appendResponse: the highest index now matching (accept) or the rejected `index` (reject).
   */
  readonly index: number;
  readonly entries: readonly Entry[];
  /** append/heartbeat: the leader's commit index, capped at what the follower is known to hold. */
  readonly commit: number;
  readonly reject: boolean;
  /** appendResponse with reject: the follower's last index, so the leader skips back at once. */
  readonly rejectHint: number;
  /** append: the leader's last index when sent (a damaged follower is repaired once it matches it). */
  readonly lastIndex: number;
  readonly snapshot: Snapshot | null;
  /** heartbeat/heartbeatResponse: the read-index round this answers (0: none). vote: 1 = leader transfer. */
  readonly context: number;
  /** heartbeat: the leader is going quiet (all replicas caught up); followers stop their timers. */
  readonly quiesce: boolean;
}

/** A Message with every field at its empty value; build messages as `{ ...emptyMessage, ... }`. */
export const emptyMessage: Message = {
  type: "heartbeat",
  group: 0,
  from: "",
  to: "",
  term: 0,
  logTerm: 0,
  index: 0,
  entries: [],
  commit: 0,
  reject: false,
  rejectHint: 0,
  lastIndex: 0,
  snapshot: null,
  context: 0,
  quiesce: false,
};

/** A linearizable read may be served once the state machine has applied `index` (Raft §6.4). */
export interface ReadState {
  readonly requestId: number;
  readonly index: number;
}

export interface SoftState {
  readonly leader: NodeId | null;
  readonly role: Role;
}

/**
 * What a node needs done, in this order (etcd's Ready):
 * 1. persist: `truncateFrom` (if non-zero), then `snapshot`, then `entries`, then `hardState`;
 * 2. sync the store if `mustSync` (one fsync may cover many groups' Readies: group commit);
 * 3. only then send `messages` (a vote or an append acknowledgement must not outrun the disk);
 * 4. apply `committedEntries` in order (and a received `snapshot` before them), serve `readStates`
 *    once applied up to their index; committed entries already durable before this Ready (none
 *    of them among its `entries`, no snapshot or truncation in it) may be applied before step 2,
 *    then `appliedEarly(ready)` says so;
 * 5. call `advance(ready)`.
 */
export interface Ready {
  /**
   * True when this Ready changes the term or the vote: then even a leader's appends wait for the
   * sync (a leader may send its appends before its own fsync only in a term already durable).
   */
  readonly persistBeforeSending: boolean;
  /**
   * True when this Ready's writes must be durable before its messages go and it is advanced:
   * entries, a snapshot, a truncation, or a hard state whose term, vote or damage mark moved.
   * A hard state that only moves the commit index is staged but need not be synced (it is
   * persisted lazily, HardState.commit; etcd's MustSync): the next sync carries it.
   */
  readonly mustSync: boolean;
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  /** Non-zero: drop this index and everything after it (a damaged range; see HardState.damagedUpTo). */
  readonly truncateFrom: number;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
}
