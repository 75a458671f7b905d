// The read view of one group in the disk store (GroupLog): everything but entry data and
// snapshot data comes from memory (group-state.ts). Entry data comes from the cache window, or
// from the store's staging and in-flight buffers, or from a segment file, read synchronously in
// one read per run of adjacent entries and checked against the checksum kept in memory: a
// mismatch throws StorageDamageError, and the read changes nothing.
// Trap: entries returned from the cache are the caller's own objects (not copies).

import { assert } from "./errors.ts";
import type { GroupState } from "./group-state.ts";
import {
  type Entry,
  type EntryKind,
  type GroupId,
  type GroupLog,
  type HardState,
  type Snapshot,
  type SnapshotMeta,
  StorageDamageError,
} from "./types.ts";
import { checksum, decodeSnapshotFile, entryKindsByCode, segmentName, snapshotName } from "./wal-format.ts";

/** What a group view needs from its store. */
export interface EntryReader {
  /** Bytes at `position` of `segment` (from memory if not yet written); throws StorageDamageError
   *  if they are missing. */
  readBytes(group: GroupId, index: number, segment: number, position: number, length: number): Uint8Array;
  readSnapshotFile(group: GroupId, fileId: number): Uint8Array;
  countRead(fromDisk: number, fromCache: number): void;
}

export class DiskGroupLog implements GroupLog {
  readonly group: GroupId;
  private readonly state: GroupState;
  private readonly reader: EntryReader;

  constructor(state: GroupState, reader: EntryReader) {
    this.group = state.group;
    this.state = state;
    this.reader = reader;
  }

  hardState(): HardState {
    return this.state.hardState;
  }

  snapshot(): Snapshot | null {
    const current = this.state.snapshot;
    if (current === null) return null;
    if (current.staged !== null) return current.staged;
    const ref = current.ref;
    const name = snapshotName(this.group, ref.fileId);
    const damaged = (reason: string): StorageDamageError =>
      new StorageDamageError({
        group: this.group,
        fromIndex: 1,
        toIndex: Math.max(ref.index, this.state.index.last),
        reason: `${name}: ${reason}`,
      });
    let bytes: Uint8Array;
    try {
      bytes = this.reader.readSnapshotFile(this.group, ref.fileId);
    } catch (error) {
      throw damaged(`unreadable: ${(error as Error).message}`);
    }
    const decoded = decodeSnapshotFile(bytes, ref, this.group);
    if (typeof decoded === "string") throw damaged(decoded);
    const data = decoded.data;
    return { meta: current.meta, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  }

  snapshotMeta(): SnapshotMeta | null {
    return this.state.snapshot?.meta ?? null;
  }

  firstIndex(): number {
    return this.state.index.first;
  }

  lastIndex(): number {
    return this.state.index.last;
  }

  term(index: number): number | undefined {
    return this.state.term(index);
  }

  kindOf(index: number): EntryKind | undefined {
    const code = this.state.index.kindAt(index);
    return code === undefined ? undefined : entryKindsByCode[code];
  }

  entries(from: number, to: number, maxBytes: number): readonly Entry[] {
    const state = this.state;
    const index = state.index;
    assert(
      Number.isSafeInteger(from) &&
        Number.isSafeInteger(to) &&
        from >= index.first &&
        to <= index.last + 1 &&
        from <= to,
      `entries [${from}, ${to}) of group ${this.group} out of range ${index.first}..${index.last}`,
    );
    // How many entries fit `maxBytes` (at least one), from the lengths in memory.
    let end = from;
    let bytes = 0;
    while (end < to) {
      bytes += index.lengths[index.slot(end)]!;
      if (end > from && bytes > maxBytes) break;
      end += 1;
    }
    const result: Entry[] = new Array(end - from);
    let fromDisk = 0;
    let fromCache = 0;
    let at = from;
    while (at < end) {
      const cached = state.cached(at);
      if (cached !== undefined) {
        result[at - from] = cached;
        fromCache += 1;
        at += 1;
        continue;
      }
      // A run of adjacent, uncached entries: one read.
      const slot = index.slot(at);
      const segment = index.segments[slot]!;
      const start = index.offsets[slot]!;
      let runEnd = start + index.lengths[slot]!;
      let next = at + 1;
      while (next < end && state.cached(next) === undefined) {
        const nextSlot = index.slot(next);
        if (index.segments[nextSlot] !== segment || index.offsets[nextSlot] !== runEnd) break;
        runEnd += index.lengths[nextSlot]!;
        next += 1;
      }
      const run = this.reader.readBytes(this.group, at, segment, start, runEnd - start);
      for (let entryIndex = at; entryIndex < next; entryIndex++) {
        const entrySlot = index.slot(entryIndex);
        const offset = index.offsets[entrySlot]! - start;
        const data = run.subarray(offset, offset + index.lengths[entrySlot]!);
        if (checksum(data) !== index.crcs[entrySlot]) {
          throw new StorageDamageError({
            group: this.group,
            fromIndex: entryIndex,
            toIndex: index.last,
            reason: `entry ${entryIndex} fails its checksum in ${segmentName(segment)} at byte ${index.offsets[entrySlot]}`,
          });
        }
        result[entryIndex - from] = {
          index: entryIndex,
          term: index.terms[entrySlot]!,
          kind: entryKindsByCode[index.kinds[entrySlot]!] ?? "normal",
          data,
        };
      }
      fromDisk += next - at;
      at = next;
    }
    this.reader.countRead(fromDisk, fromCache);
    return result;
  }
}
