// Storage: the durable log of a router's Raft groups (one write-ahead log, group commit) and
// the in-memory store used as the reference model and by unit tests.
export { MemoryStore } from "./memory-store.ts";
export {
  type Configuration,
  type Damage,
  damagedUnbounded,
  type Entry,
  type EntryKind,
  emptyHardState,
  type GroupId,
  type GroupLog,
  type HardState,
  type LogStore,
  type NodeId,
  type Snapshot,
  type SnapshotMeta,
  StorageDamageError,
} from "./types.ts";
