// Errors of the durable log store. Damage found on disk is `StorageDamageError` (types.ts) on
// reads and a `Damage` list at open. Operating errors are typed here: a store that lost a write
// or an fsync (`StorageFailedError`, the fsync gate: after a failed fsync the page cache cannot
// be trusted, so every later write is refused until the process reopens the store), a closed
// store, and a request past a limit. Broken invariants (a gap in an append, a decreasing term)
// are programmer errors: `assert` throws `StorageAssertionError` before anything changes.

/** The store lost a write or an fsync, or a later write was refused because of that. */
export class StorageFailedError extends Error {
  readonly tag = "StorageFailed";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StorageFailedError";
  }
}

/** The store was closed; it accepts nothing more. */
export class StorageClosedError extends Error {
  readonly tag = "StorageClosed";
  constructor(message = "the log store is closed") {
    super(message);
    this.name = "StorageClosedError";
  }
}

/** A request past one of the store's limits (an oversized entry, a batch too large to stage). */
export class StorageLimitError extends Error {
  readonly tag = "StorageLimit";
  readonly limit: string;
  readonly value: number;
  readonly max: number;
  constructor(limit: string, value: number, max: number, message: string) {
    super(message);
    this.name = "StorageLimitError";
    this.limit = limit;
    this.value = value;
    this.max = max;
  }
}

/** A broken invariant: the caller (the Raft core) or the store itself has a bug. */
export class StorageAssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = "StorageAssertionError";
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new StorageAssertionError(message);
}
