// Options of the disk store: each value's unit, limits and why, the defaults, and the check
// that turns bad values into a clear error before anything is opened.
import type { FileSystem } from "./file-system.ts";
import { entryBytesFormatMax } from "./wal-format.ts";

export interface DiskStoreOptions {
  readonly fs: FileSystem;
  /** The store's directory; created if missing. One store per directory. */
  readonly dir: string;
  /** Bytes after which the WAL rolls to a new segment; default 64 MiB, 4 KiB to 1 GiB. Smaller
   *  segments free space sooner after compaction; each roll writes a checkpoint of every group. */
  readonly segmentBytes?: number;
  /** Largest entry data accepted, in bytes; default 8 MiB, at most 16 MiB - 1 (the format's limit). */
  readonly entryBytesMax?: number;
  /** Bytes of recent entries kept in memory for reads; default 64 MiB; 0 turns the cache off. */
  readonly cacheBytes?: number;
  /** Bytes staged and not yet synced before staging refuses more; default 1 GiB, 1 MiB to 1 GiB
   *  (with `segmentBytes`, it keeps every offset within a segment below 2^32). */
  readonly stagedBytesMax?: number;
}

export const defaultDiskStoreOptions = {
  segmentBytes: 64 * 1024 * 1024,
  entryBytesMax: 8 * 1024 * 1024,
  cacheBytes: 64 * 1024 * 1024,
  stagedBytesMax: 1024 * 1024 * 1024,
} as const;

export type ResolvedDiskStoreOptions = {
  readonly [Key in keyof typeof defaultDiskStoreOptions]: number;
};

/** Checks options; returns the resolved values or throws an Error naming the bad one. */
export function resolveDiskStoreOptions(options: DiskStoreOptions): ResolvedDiskStoreOptions {
  const segmentBytes = options.segmentBytes ?? defaultDiskStoreOptions.segmentBytes;
  const entryBytesMax = options.entryBytesMax ?? defaultDiskStoreOptions.entryBytesMax;
  const cacheBytes = options.cacheBytes ?? defaultDiskStoreOptions.cacheBytes;
  const stagedBytesMax = options.stagedBytesMax ?? defaultDiskStoreOptions.stagedBytesMax;
  const check = (ok: boolean, message: string) => {
    if (!ok) throw new Error(`disk store options: ${message}`);
  };
  check(
    Number.isInteger(segmentBytes) && segmentBytes >= 4096 && segmentBytes <= 2 ** 30,
    `segmentBytes must be 4 KiB to 1 GiB, got ${segmentBytes}`,
  );
  check(
    Number.isInteger(entryBytesMax) && entryBytesMax >= 0 && entryBytesMax <= entryBytesFormatMax,
    `entryBytesMax must be 0 to ${entryBytesFormatMax}, got ${entryBytesMax}`,
  );
  check(
    Number.isInteger(cacheBytes) && cacheBytes >= 0,
    `cacheBytes must be a non-negative integer, got ${cacheBytes}`,
  );
  check(
    Number.isInteger(stagedBytesMax) && stagedBytesMax >= 2 ** 20 && stagedBytesMax <= 2 ** 30,
    `stagedBytesMax must be 1 MiB to 1 GiB, got ${stagedBytesMax}`,
  );
  check(options.dir.length > 0, "dir must not be empty");
  return { segmentBytes, entryBytesMax, cacheBytes, stagedBytesMax };
}

export interface DiskStoreStats {
  /** Batches written (each one write and one fdatasync). */
  flushes: number;
  bytesWritten: number;
  /** Entries read from segment files or write buffers (not from the cache). */
  entriesReadUncached: number;
  cacheHits: number;
  segmentsCreated: number;
  segmentsDeleted: number;
  snapshotFilesWritten: number;
  snapshotFilesDeleted: number;
}
