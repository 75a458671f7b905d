// Storage: the durable log of a router's Raft groups (one write-ahead log, group commit) and
// the in-memory store used as the reference model and by unit tests.
export {
  DiskStore,
  type OpenedDiskStore,
  openDiskStore,
} from "./disk-store.ts";
export {
  type DiskStoreOptions,
  type DiskStoreStats,
  defaultDiskStoreOptions,
  resolveDiskStoreOptions,
} from "./disk-store-options.ts";
export {
  StorageAssertionError,
  StorageClosedError,
  StorageFailedError,
  StorageLimitError,
} from "./errors.ts";
export { type FileHandle, type FileSystem, nodeFileSystem, type OpenMode } from "./file-system.ts";
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
