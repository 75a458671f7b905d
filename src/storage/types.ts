// The nouns of the durable log, shared by every store (disk, memory) and by the Raft core
// that reads it. A router keeps one store for all its Raft groups: one write-ahead log, so one
// fsync covers many groups' appends (DESIGN.md, storage: group commit).
//
// Invariants: within a group, entry indexes are contiguous and terms never decrease along the
// log. `firstIndex() - 1` is the snapshot's index (0 with no snapshot); `lastIndex() >=
// firstIndex() - 1`. Nothing staged is durable until the `sync()` that follows it resolves.
// Trap: reads see staged (unsynced) writes; only the Raft core decides what may be
// acknowledged, and it does so after `sync()` (src/raft: "persist before sending").

/** A Raft group: a partition id (0..65535) in Neuron; any non-negative integer to the store. */
export type GroupId = number;
/** A router id, as its certificate names it. */
export type NodeId = string;

/** The kind of an entry: proposed data, a membership change, or the empty entry a new leader appends. */
export type EntryKind = "normal" | "config" | "empty";

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly kind: EntryKind;
  /** Opaque to the store. For "config" entries, the Raft core's encoding of the change. */
  readonly data: Uint8Array;
}

/** Voters decide elections and commits; learners only replicate (Raft thesis §4.2.1). */
export interface Configuration {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** `damagedUpTo` when the upper end of a damaged range is unknown. */
export const damagedUnbounded = Number.MAX_SAFE_INTEGER;

/** What must survive a crash besides the entries (Raft §5.1, Figure 2 "persistent state"). */
export interface HardState {
  readonly term: number;
  /** Whom this node voted for in `term`; null if nobody. */
  readonly vote: NodeId | null;
  /** Highest index known committed. Persisted lazily: may lag; never ahead of the truth. */
  readonly commit: number;
  /**
   * 0, or the highest index this replica may have acknowledged before part of its log was
   * found damaged (`damagedUnbounded` if unknown). While non-zero the replica neither votes
   * nor campaigns, until it has re-replicated its log from a leader up to this index
   * (protocol-aware recovery: a replica that lost acknowledged entries must not help elect a
   * leader missing them).
   */
  readonly damagedUpTo: number;
}

export const emptyHardState: HardState = { term: 0, vote: null, commit: 0, damagedUpTo: 0 };

export interface SnapshotMeta {
  /** Last index covered by the snapshot. */
  readonly index: number;
  /** Term of the entry at `index`. */
  readonly term: number;
  /** The configuration in force at `index`. */
  readonly configuration: Configuration;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The application's state at `meta.index`; opaque to the store. */
  readonly data: Uint8Array;
}

/** A range of one group's log that failed its checksum or went missing. */
export interface Damage {
  readonly group: GroupId;
  /** First index that cannot be trusted; the store's view of the group now ends before it. */
  readonly fromIndex: number;
  /** Highest index that may have existed in the damaged range (`damagedUnbounded` if unknown). */
  readonly toIndex: number;
  /** What was found, for a person: "checksum mismatch in wal-000003 at byte 4096", ... */
  readonly reason: string;
}

/**
 * Thrown by a read (`entries`, `snapshot`) that meets bytes failing their checksum. Not a
 * programmer error: the caller (the Raft core) stops serving the range and repairs it.
 */
export class StorageDamageError extends Error {
  readonly damage: Damage;
  constructor(damage: Damage) {
    super(`damaged log: group ${damage.group} from index ${damage.fromIndex}: ${damage.reason}`);
    this.name = "StorageDamageError";
    this.damage = damage;
  }
}

/** The synchronous read view of one group's log: what the Raft core consults. */
export interface GroupLog {
  readonly group: GroupId;
  hardState(): HardState;
  /** The latest snapshot, or null. Throws StorageDamageError if its bytes are damaged. */
  snapshot(): Snapshot | null;
  /** The snapshot's meta (kept in memory: never touches the disk), or null. */
  snapshotMeta(): SnapshotMeta | null;
  /** Index of the first entry held (snapshot index + 1, or 1). */
  firstIndex(): number;
  /** Index of the last entry held, or `firstIndex() - 1` if none. */
  lastIndex(): number;
  /**
   * Term of the entry at `index`, for firstIndex-1 <= index <= lastIndex (firstIndex-1 gives
   * the snapshot's term, or 0); undefined outside that range. Never reads the disk.
   */
  term(index: number): number | undefined;
  /** Kind of the entry at `index` in [firstIndex, lastIndex], else undefined. Never reads the disk. */
  kindOf(index: number): EntryKind | undefined;
  /**
   * Entries [from, to) within [firstIndex, lastIndex + 1], stopping once their data passes
   * `maxBytes` (always at least one entry). Throws StorageDamageError on a checksum mismatch.
   */
  entries(from: number, to: number, maxBytes: number): readonly Entry[];
}

/** One router's store for all its groups. Writes are staged, then made durable by `sync()`. */
export interface LogStore {
  /** Groups that have anything on disk (recovered at open) or were written since. */
  groups(): readonly GroupId[];
  /** The read view of a group; an empty log if the group is new. The same object every call. */
  group(group: GroupId): GroupLog;
  /**
   * Stages entries. `entries[0].index` may be <= lastIndex + 1: the suffix from there is
   * replaced (Raft §5.3: a conflicting suffix is deleted). Must not leave a gap.
   */
  append(group: GroupId, entries: readonly Entry[]): void;
  /** Stages a hard state. */
  setHardState(group: GroupId, state: HardState): void;
  /** Stages the drop of every entry >= `fromIndex` (a damaged range, see Damage). */
  truncate(group: GroupId, fromIndex: number): void;
  /**
   * Stages a snapshot received from a leader (Raft §7): entries up to `meta.index` are dropped;
   * if the log holds the snapshot's last entry with the same term, later entries are kept,
   * otherwise the whole log is dropped.
   */
  installSnapshot(group: GroupId, snapshot: Snapshot): void;
  /**
   * Stages the application's own snapshot at `snapshot.meta.index` (<= the applied index) and
   * drops entries up to it (log compaction, Raft §7). Space is reclaimed when whole segments
   * hold nothing live.
   */
  compact(group: GroupId, snapshot: Snapshot): void;
  /** Makes everything staged so far durable: one fsync covering all groups. */
  sync(): Promise<void>;
  close(): Promise<void>;
}
