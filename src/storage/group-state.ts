// The in-memory view of one group's log, shared by the disk store and its recovery: hard state,
// snapshot reference, and a compact index of entries in parallel typed arrays (term, segment,
// data offset, data length, data checksum, kind: 25 bytes an entry), so `term()` and the
// placement of every entry's bytes never touch the disk. A window of recently appended Entry
// objects serves caught-up followers without a read.
//
// Invariants: entries are held for [first, last], contiguously, at array slots
// [start, start + last - first]; `last >= first - 1`. Segment 0 marks an entry recovery knows
// of (from a checkpoint) but has not found yet ("absent"); the store never holds one after open.
// The cache window holds entries [cacheFirst, cacheFirst + cache.length - cacheHead), a suffix
// or middle part of the log, never stale: every truncate and overwrite trims it.
import type { Entry, HardState, Snapshot, SnapshotMeta } from "./types.ts";
import { emptyHardState } from "./types.ts";
import type { SnapshotRef } from "./wal-format.ts";

const initialCapacity = 8;

export class EntryIndex {
  first = 1;
  last = 0;
  /** Array slot of `first`. */
  private start = 0;
  terms = new Float64Array(initialCapacity);
  segments = new Uint32Array(initialCapacity);
  offsets = new Uint32Array(initialCapacity);
  lengths = new Uint32Array(initialCapacity);
  crcs = new Uint32Array(initialCapacity);
  kinds = new Uint8Array(initialCapacity);

  slot(index: number): number {
    return this.start + (index - this.first);
  }

  /** The term at `index` in [first, last], else undefined. */
  termAt(index: number): number | undefined {
    if (index < this.first || index > this.last) return undefined;
    return this.terms[this.slot(index)];
  }

  /** The kind code (wal-format's entryKindsByCode) at `index` in [first, last], else undefined. */
  kindAt(index: number): number | undefined {
    if (index < this.first || index > this.last) return undefined;
    return this.kinds[this.slot(index)];
  }

  /** Appends one entry at `last + 1`. */
  push(term: number, segment: number, offset: number, length: number, crc: number, kind: number): void {
    const count = this.last - this.first + 1;
    if (this.start + count >= this.terms.length) this.makeRoom(count);
    const slot = this.start + count;
    this.terms[slot] = term;
    this.segments[slot] = segment;
    this.offsets[slot] = offset;
    this.lengths[slot] = length;
    this.crcs[slot] = crc;
    this.kinds[slot] = kind;
    this.last += 1;
  }

  /** Drops every entry >= `index` (index >= first). */
  truncateFrom(index: number): void {
    if (index <= this.last) this.last = Math.max(this.first - 1, index - 1);
  }

  /** Drops every entry <= `index`; the log then starts at index + 1 (empty if index >= last). */
  dropThrough(index: number): void {
    if (index < this.first) return;
    if (index >= this.last) {
      this.reset(index + 1);
      return;
    }
    this.start += index + 1 - this.first;
    this.first = index + 1;
  }

  /** Empties the log, which will start at `first`. */
  reset(first: number): void {
    this.first = first;
    this.last = first - 1;
    this.start = 0;
    if (this.terms.length > 4 * initialCapacity) this.allocate(initialCapacity);
  }

  private makeRoom(count: number): void {
    if (this.start > 0 && this.start >= this.terms.length / 2) {
      // Slide the live slots to the front instead of growing.
      for (const array of this.arrays()) array.copyWithin(0, this.start, this.start + count);
      this.start = 0;
      return;
    }
    const old = this.arrays();
    const oldStart = this.start;
    this.allocate(Math.max(initialCapacity, this.terms.length * 2));
    const fresh = this.arrays();
    for (let which = 0; which < old.length; which++) {
      fresh[which]!.set(old[which]!.subarray(oldStart, oldStart + count));
    }
    this.start = 0;
  }

  private allocate(capacity: number): void {
    this.terms = new Float64Array(capacity);
    this.segments = new Uint32Array(capacity);
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.crcs = new Uint32Array(capacity);
    this.kinds = new Uint8Array(capacity);
  }

  private arrays(): Array<Float64Array | Uint32Array | Uint8Array> {
    return [this.terms, this.segments, this.offsets, this.lengths, this.crcs, this.kinds];
  }
}

/** A snapshot staged or written, as the group's current one. */
export interface CurrentSnapshot {
  readonly ref: SnapshotRef;
  /** The meta `snapshotMeta()` returns (the same object every call). */
  readonly meta: SnapshotMeta;
  /** The snapshot itself while its file is not yet durable (reads use it); null after. */
  staged: Snapshot | null;
  /** Whether its file has been written (false: it was superseded before any flush wrote it). */
  written: boolean;
}

/** A snapshot recovery found in the log: its file is on disk. */
export function writtenSnapshot(ref: SnapshotRef): CurrentSnapshot {
  return {
    ref,
    meta: { index: ref.index, term: ref.term, configuration: ref.configuration },
    staged: null,
    written: true,
  };
}

export class GroupState {
  readonly group: number;
  /** Records written for this group, mod 2^32 (the `seq` of its last record). */
  seq = 0;
  hardState: HardState = emptyHardState;
  snapshot: CurrentSnapshot | null = null;
  readonly index = new EntryIndex();
  /** Lowest index touched by an entries/truncate/snapshot/reset record in the current segment. */
  lowTouched = Number.POSITIVE_INFINITY;
  /** The cache window (see the file header). */
  cache: Entry[] = [];
  cacheHead = 0;
  cacheFirst = 1;

  constructor(group: number) {
    this.group = group;
  }

  nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    return this.seq;
  }

  touch(index: number): void {
    if (index < this.lowTouched) this.lowTouched = index;
  }

  /** Term at `index` for first - 1 <= index <= last (the snapshot's term, or 0, at first - 1). */
  term(index: number): number | undefined {
    if (index === this.index.first - 1) return this.snapshot?.ref.term ?? 0;
    return this.index.termAt(index);
  }

  // --- the cache window ---

  cached(index: number): Entry | undefined {
    const offset = index - this.cacheFirst;
    if (offset < 0) return undefined;
    return this.cache[this.cacheHead + offset];
  }

  cacheAppend(entries: readonly Entry[]): void {
    const first = entries[0]!.index;
    const held = this.cache.length - this.cacheHead;
    if (first < this.cacheFirst || first > this.cacheFirst + held) {
      this.cache = [];
      this.cacheHead = 0;
      this.cacheFirst = first;
    } else {
      this.cache.length = this.cacheHead + (first - this.cacheFirst);
    }
    for (const entry of entries) this.cache.push(entry);
  }

  cacheTruncateFrom(index: number): void {
    const keep = index - this.cacheFirst;
    if (keep <= 0) {
      this.cache = [];
      this.cacheHead = 0;
      this.cacheFirst = index;
    } else if (this.cacheHead + keep < this.cache.length) {
      this.cache.length = this.cacheHead + keep;
    }
  }

  cacheDropThrough(index: number): void {
    const drop = index + 1 - this.cacheFirst;
    if (drop <= 0) return;
    const held = this.cache.length - this.cacheHead;
    if (drop >= held) {
      this.cache = [];
      this.cacheHead = 0;
      this.cacheFirst = index + 1;
      return;
    }
    this.cacheHead += drop;
    this.cacheFirst = index + 1;
    if (this.cacheHead > 1024 && this.cacheHead * 2 > this.cache.length) {
      this.cache = this.cache.slice(this.cacheHead);
      this.cacheHead = 0;
    }
  }
}

/**
 * The byte budget of every group's cache window: a FIFO of appended chunks; past the budget, the
 * oldest chunks leave their group's window. Eviction is by index, so it may drop a newer entry
 * at the same index (after an overwrite): harmless, that read then goes to the buffers or disk.
 * Invariant: `total` is the sum of the bytes of the chunks from `head` on.
 */
export class EntryCache {
  private readonly budget: number;
  private chunks: Array<{ state: GroupState; last: number; bytes: number } | undefined> = [];
  private head = 0;
  private total = 0;

  constructor(budgetBytes: number) {
    this.budget = budgetBytes;
  }

  /** Counts `bytes` just appended to `state`'s window (through `last`); evicts the oldest past
   *  the budget. */
  add(state: GroupState, last: number, bytes: number): void {
    this.chunks.push({ state, last, bytes });
    this.total += bytes;
    while (this.total > this.budget && this.head < this.chunks.length) {
      const chunk = this.chunks[this.head]!;
      this.chunks[this.head] = undefined;
      this.head += 1;
      this.total -= chunk.bytes;
      chunk.state.cacheDropThrough(chunk.last);
    }
    if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}
