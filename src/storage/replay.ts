// Replay: applies the records recovery reads (recovery.ts) to every group's view, batch by
// batch, and keeps, per group, what may be wrong with it. Damage leaves a "hole" from the first
// untrusted index; later records repair it when they make it moot (an append or truncate at or
// below its start, a snapshot past its end, a reset), exactly as they did in the live store.
// A group that may have lost records of unknown kind (an unreadable stretch whose commit is also
// gone) is resolved by its next record (its `seq` continues, or jumps: records lost) or by the
// next segment's checkpoint, which holds every group's seq and the lowest index the previous
// segment touched. `finish` reports what is still open, per group: the caller truncates and
// raises `damagedUpTo`, with records that close the same holes on the next replay, so a second
// open sees the same state and reports nothing new.
// Traps: the oldest segment's checkpoint is the base: the entries it lists are "absent" (their
// segments were deleted) until a later compaction drops them; any left at the end mean a
// missing segment. A group unresolved at the end loses its whole log to damage (toIndex
// unbounded): conservative, and only after two independent corruptions in the last segment.
import type { FileSystem } from "./file-system.ts";
import { GroupState, writtenSnapshot } from "./group-state.ts";
import { damagedUnbounded } from "./types.ts";
import {
  ByteReader,
  type CheckpointGroup,
  decodeCheckpointGroup,
  decodeConfiguration,
  decodeHardStateBody,
  decodeSnapshotFile,
  entryHeaderBytes,
  RecordKind,
  recordKindNames,
  type SnapshotRef,
  segmentName,
  snapshotName,
} from "./wal-format.ts";

/** One group's damage as found; `reset`: the snapshot is gone too, drop the whole group. */
export interface DamageFinding {
  readonly group: number;
  readonly fromIndex: number;
  readonly toIndex: number;
  readonly reason: string;
  readonly reset: boolean;
}

interface Hole {
  from: number;
  to: number;
  reason: string;
}

/** What replay knows is wrong with a group, beyond its view. */
interface Marks {
  hole: Hole | null;
  hardStateLost: string | null;
  snapshotLost: string | null;
  /** The group may have lost records in an unreadable stretch; resolved by its next record or checkpoint. */
  unknownLoss: string | null;
  /** The group did lose records (its seq jumped); the extent is known only at the next checkpoint. */
  lossPending: string | null;
}

/** A record of a batch, as read (or as its commit's manifest describes it, if unreadable). */
export interface Described {
  offset: number;
  kind: number;
  flags: number;
  group: number;
  seq: number;
  a: number;
  b: number;
  c: number;
  payloadStart: number;
  payloadLength: number;
  /** "ok"; "damaged": header fine, payload not; "lost": known only from the manifest. */
  status: "ok" | "damaged" | "lost";
  /** For damaged entries: the first index whose data fails its checksum. */
  firstBad: number;
  reason: string;
}

export class Replay {
  readonly groups = new Map<number, GroupState>();
  private readonly marks = new Map<number, Marks>();
  readonly notes: string[] = [];
  maxFileId = 0;
  /** The segment being replayed (for reasons and entry locations). */
  segmentSeq = 0;
  /** Whether a checkpoint has served as the base (the first segment's state before its records). */
  private baseDone = false;
  /** Whether the next checkpoint's `lowTouched` bounds what was lost (only the previous segment
   *  may have lost records). */
  private lowTouchedTrusted = true;
  private readonly fs: FileSystem;
  private readonly dir: string;

  constructor(fs: FileSystem, dir: string) {
    this.fs = fs;
    this.dir = dir;
  }

  segmentsMissing(reason: string): void {
    this.markUnknownAll(reason);
    this.lowTouchedTrusted = false;
  }

  /** Applies the records of one batch (its checkpoint, if it is a segment's first batch). */
  applyBatch(records: Described[], buffer: Buffer | null, firstBatch: boolean): void {
    const isCheckpoint =
      records.length > 0 && records.every((record) => record.kind === RecordKind.checkpoint);
    if (firstBatch) {
      if (isCheckpoint) {
        this.checkpointBatch(records, buffer);
        return;
      }
      if (!this.baseDone) {
        this.baseDone = true;
        this.notes.push(`${segmentName(this.segmentSeq)}: no readable checkpoint starts the oldest segment`);
      }
      this.lowTouchedTrusted = false;
    }
    for (const record of records) {
      if (record.kind === RecordKind.checkpoint) continue;
      this.apply(record, buffer);
    }
  }

  private checkpointBatch(records: Described[], buffer: Buffer | null): void {
    const name = segmentName(this.segmentSeq);
    const readable = buffer === null ? undefined : records.find((record) => record.status === "ok");
    if (readable === undefined || buffer === null) {
      if (!this.baseDone) {
        this.baseDone = true;
        this.notes.push(`${name}: the checkpoint of the oldest segment is unreadable`);
      } else {
        this.notes.push(
          `${name}: both checkpoint copies are unreadable (not needed: older segments were replayed)`,
        );
      }
      this.lowTouchedTrusted = false;
      return;
    }
    if (records.some((record) => record.status !== "ok")) {
      this.notes.push(`${name}: one checkpoint copy is damaged; used the other`);
    }
    const reader = new ByteReader(
      buffer,
      readable.payloadStart,
      readable.payloadStart + readable.payloadLength,
    );
    const checkpoint: CheckpointGroup[] = [];
    for (let item = 0; item < readable.c && reader.ok; item++) checkpoint.push(decodeCheckpointGroup(reader));
    const base = !this.baseDone;
    this.baseDone = true;
    for (const saved of checkpoint) {
      if (saved.snapshot !== null) this.maxFileId = Math.max(this.maxFileId, saved.snapshot.fileId);
      if (base) this.baseGroup(saved);
      else this.checkGroup(saved, name);
    }
    for (const state of this.groups.values()) state.lowTouched = Number.POSITIVE_INFINITY;
    this.lowTouchedTrusted = true;
  }

  /** The oldest segment's checkpoint: the group as it was, its entries absent (in deleted segments). */
  private baseGroup(saved: CheckpointGroup): void {
    const state = this.stateOf(saved.group);
    state.seq = saved.seq;
    state.hardState = saved.hardState;
    state.snapshot = saved.snapshot === null ? null : writtenSnapshot(saved.snapshot);
    state.index.reset(saved.firstIndex);
    for (let index = saved.firstIndex; index <= saved.lastIndex; index++) {
      state.index.push(index === saved.lastIndex ? saved.lastTerm : Number.NaN, 0, 0, 0, 0, 0);
    }
  }

  /** A later checkpoint: confirms the group's replay, or rebases a group that lost records. */
  private checkGroup(saved: CheckpointGroup, name: string): void {
    const state = this.stateOf(saved.group);
    const marks = this.marksOf(saved.group);
    if (state.seq === saved.seq && marks.lossPending === null) {
      // Every record of the group was seen: the replay is right (holes included).
      marks.unknownLoss = null;
      if (marks.hole !== null) marks.hole.to = Math.max(marks.hole.to, saved.lastIndex);
      return;
    }
    const reason =
      marks.lossPending ?? marks.unknownLoss ?? `the group's records disagree with the checkpoint in ${name}`;
    // The checkpoint's hard state and snapshot are the latest: take them.
    state.hardState = saved.hardState;
    marks.hardStateLost = null;
    marks.snapshotLost = null;
    state.snapshot = saved.snapshot === null ? null : writtenSnapshot(saved.snapshot);
    state.seq = saved.seq;
    // Entries below the lowest index the previous segment touched were not changed by the
    // records lost there; the rest may have been.
    const index = state.index;
    let from = this.lowTouchedTrusted ? Math.max(saved.firstIndex, saved.lowTouched) : saved.firstIndex;
    if (marks.hole !== null) from = Math.min(from, marks.hole.from);
    if (index.first > saved.firstIndex) from = saved.firstIndex;
    from = Math.max(saved.firstIndex, Math.min(from, index.last + 1));
    if (index.first < saved.firstIndex) index.dropThrough(saved.firstIndex - 1);
    else if (index.first > saved.firstIndex) index.reset(saved.firstIndex);
    index.truncateFrom(from);
    if (from <= saved.lastIndex || marks.hole !== null) {
      marks.hole = {
        from,
        to: Math.max(saved.lastIndex, marks.hole?.to ?? 0),
        reason: `${reason}; entries from ${from} may be lost (checkpoint in ${name})`,
      };
    }
    marks.lossPending = null;
    marks.unknownLoss = null;
  }

  private apply(record: Described, buffer: Buffer | null): void {
    const state = this.stateOf(record.group);
    const marks = this.marksOf(record.group);
    const expected = (state.seq + 1) >>> 0;
    if (record.seq !== expected) {
      marks.lossPending ??=
        marks.unknownLoss ??
        `records ${expected} to ${(record.seq - 1) >>> 0} of the group are missing before ${segmentName(this.segmentSeq)} byte ${record.offset}`;
    }
    state.seq = record.seq;
    marks.unknownLoss = null;
    const ok = record.status === "ok" && buffer !== null;
    switch (record.kind) {
      case RecordKind.entries:
        if (ok) {
          this.applyEntries(state, marks, record, buffer, record.c);
          return;
        }
        // Entries before the first bad one passed their own checksums: keep them.
        if (record.status === "damaged" && buffer !== null && record.firstBad > record.a) {
          this.applyEntries(state, marks, record, buffer, record.firstBad - record.a);
        }
        this.openHole(state, marks, record.firstBad || record.a, record.b, record.reason);
        return;
      case RecordKind.hardState:
        if (ok) {
          const reader = new ByteReader(
            buffer,
            record.payloadStart,
            record.payloadStart + record.payloadLength,
          );
          state.hardState = decodeHardStateBody(reader);
          marks.hardStateLost = null;
        } else {
          marks.hardStateLost = record.reason;
        }
        return;
      case RecordKind.truncate:
        // No payload: the manifest alone restores a truncate whose header is unreadable.
        if (!ok) this.notes.push(`${record.reason}; restored from the batch manifest`);
        if (marks.hole !== null && record.a <= marks.hole.from) marks.hole = null;
        state.index.truncateFrom(Math.max(record.a, state.index.first));
        state.touch(record.a);
        return;
      case RecordKind.reset:
        if (!ok) this.notes.push(`${record.reason}; restored from the batch manifest`);
        state.index.reset(1);
        state.snapshot = null;
        marks.hole = null;
        marks.snapshotLost = null;
        state.touch(1);
        return;
      case RecordKind.snapshot:
        if (ok) this.applySnapshot(state, marks, record, buffer);
        else {
          const to = Math.max(record.a, state.index.last);
          state.index.reset(1);
          state.snapshot = null;
          marks.snapshotLost = record.reason;
          marks.hole = null;
          this.openHole(state, marks, 1, to, record.reason);
        }
        return;
      default:
        this.notes.push(
          `unexpected ${recordKindNames[record.kind] ?? record.kind} record in ${segmentName(this.segmentSeq)}`,
        );
    }
  }

  /** Applies the first `count` entries of an entries record. */
  private applyEntries(
    state: GroupState,
    marks: Marks,
    record: Described,
    buffer: Buffer,
    count: number,
  ): void {
    const first = record.a;
    const last = first + count - 1;
    const hole = marks.hole;
    if (hole !== null) {
      if (first > hole.from) {
        hole.to = Math.max(hole.to, last);
        return;
      }
      marks.hole = null;
    }
    const index = state.index;
    if (first > index.last + 1) {
      this.openHole(
        state,
        marks,
        index.last + 1,
        last,
        `entries ${first} to ${last} follow a gap after ${index.last} in ${segmentName(this.segmentSeq)}`,
      );
      return;
    }
    const skip = Math.max(0, index.first - first);
    if (skip >= count) return;
    index.truncateFrom(first + skip);
    let data = record.payloadStart + record.c * entryHeaderBytes;
    for (let k = 0; k < count; k++) {
      const at = record.payloadStart + k * entryHeaderBytes;
      const term = buffer.readDoubleLE(at);
      const crc = buffer.readUInt32LE(at + 8);
      const lengthAndKind = buffer.readUInt32LE(at + 12);
      const length = lengthAndKind & 0xffffff;
      if (k >= skip) index.push(term, this.segmentSeq, data, length, crc, lengthAndKind >>> 24);
      data += length;
    }
    state.touch(first + skip);
  }

  private applySnapshot(state: GroupState, marks: Marks, record: Described, buffer: Buffer): void {
    const reader = new ByteReader(buffer, record.payloadStart, record.payloadStart + record.payloadLength);
    const fileCrc = reader.u32();
    const fileBytes = reader.f64();
    const configuration = decodeConfiguration(reader);
    const index = record.a;
    const dropAll = (record.flags & 1) === 1;
    const hole = marks.hole;
    if (hole !== null) {
      if (dropAll || index >= hole.to) marks.hole = null;
      else if (index >= hole.from) hole.from = index + 1;
    }
    if (dropAll || index > state.index.last) state.index.reset(index + 1);
    else state.index.dropThrough(index);
    state.snapshot = writtenSnapshot({
      fileId: record.c,
      index,
      term: record.b,
      configuration,
      fileCrc,
      fileBytes,
    });
    this.maxFileId = Math.max(this.maxFileId, record.c);
    marks.snapshotLost = null;
    if (dropAll) state.touch(index + 1);
  }

  /** Entries from `from` are untrusted (up to `to` at least): the view ends before them. */
  private openHole(state: GroupState, marks: Marks, from: number, to: number, reason: string): void {
    const index = state.index;
    to = Math.max(to, index.last);
    if (to < index.first) return;
    from = Math.max(index.first, Math.min(from, index.last + 1));
    if (marks.hole === null) marks.hole = { from, to, reason };
    else {
      marks.hole.from = Math.min(marks.hole.from, from);
      marks.hole.to = Math.max(marks.hole.to, to);
      if (!marks.hole.reason.includes(reason)) marks.hole.reason += `; ${reason}`;
    }
    index.truncateFrom(marks.hole.from);
  }

  /** Every group may have lost records at an unreadable stretch. */
  markUnknownAll(reason: string): void {
    for (const group of this.groups.keys()) {
      const marks = this.marksOf(group);
      marks.unknownLoss ??= reason;
    }
  }

  private stateOf(group: number): GroupState {
    let state = this.groups.get(group);
    if (state === undefined) {
      state = new GroupState(group);
      this.groups.set(group, state);
    }
    return state;
  }

  private marksOf(group: number): Marks {
    let marks = this.marks.get(group);
    if (marks === undefined) {
      marks = { hole: null, hardStateLost: null, snapshotLost: null, unknownLoss: null, lossPending: null };
      this.marks.set(group, marks);
    }
    return marks;
  }

  /** What is still wrong with each group once every segment is replayed. */
  finish(): DamageFinding[] {
    const findings: DamageFinding[] = [];
    const sorted = [...this.groups.keys()].sort((x, y) => x - y);
    for (const group of sorted) {
      const state = this.groups.get(group)!;
      const marks = this.marksOf(group);
      const index = state.index;
      let from = Number.POSITIVE_INFINITY;
      let to = 0;
      let reset = false;
      const reasons: string[] = [];
      const lost = marks.lossPending ?? marks.unknownLoss;
      if (lost !== null) {
        from = index.first;
        to = damagedUnbounded;
        reasons.push(`${lost}; the group may have lost records of any kind`);
      }
      if (marks.hole !== null) {
        from = Math.min(from, marks.hole.from);
        to = Math.max(to, marks.hole.to);
        reasons.push(marks.hole.reason);
      }
      if (index.last >= index.first && index.segments[index.slot(index.first)] === 0) {
        let absent = index.first;
        while (absent + 1 <= index.last && index.segments[index.slot(absent + 1)] === 0) absent += 1;
        from = Math.min(from, index.first);
        to = Math.max(to, absent);
        reasons.push(`entries ${index.first} to ${absent} are in no segment (an old segment is missing)`);
      }
      if (marks.hardStateLost !== null) {
        from = Math.min(from, index.last + 1);
        to = damagedUnbounded;
        reasons.push(`${marks.hardStateLost}; the hard state (term, vote) may be lost`);
      }
      if (marks.snapshotLost !== null) {
        reset = true;
        from = 1;
        to = Math.max(to, index.last);
        reasons.push(marks.snapshotLost);
      }
      const snapshot = state.snapshot;
      if (snapshot !== null) {
        const problem = this.checkSnapshotFile(group, snapshot.ref);
        if (problem !== null) {
          reset = true;
          from = 1;
          to = Math.max(to, snapshot.ref.index, index.last);
          reasons.push(problem);
        }
      }
      // The view will end before `from`; a persisted commit past that end means acknowledged
      // entries are missing (unless an earlier open already raised damagedUpTo over them).
      const end = Math.min(index.last, from - 1);
      const commit = state.hardState.commit;
      if (commit > end && commit > state.hardState.damagedUpTo) {
        if (from === Number.POSITIVE_INFINITY) {
          reasons.push(`the log ends at ${index.last}, before its own persisted commit ${commit}`);
        }
        from = Math.min(from, end + 1);
        to = Math.max(to, commit);
      }
      if (from !== Number.POSITIVE_INFINITY) {
        // Everything the view held from `from` on is dropped: it may all have existed.
        if (from <= index.last) to = Math.max(to, index.last);
        findings.push({
          group,
          fromIndex: from,
          toIndex: Math.max(to, from - 1),
          reason: reasons.join("; "),
          reset,
        });
      }
    }
    return findings;
  }

  private checkSnapshotFile(group: number, ref: SnapshotRef): string | null {
    const name = snapshotName(group, ref.fileId);
    let bytes: Uint8Array;
    try {
      bytes = this.fs.readFileSync(`${this.dir}/${name}`);
    } catch (error) {
      return `snapshot file ${name} is unreadable: ${(error as Error).message}`;
    }
    const decoded = decodeSnapshotFile(bytes, ref, group);
    return typeof decoded === "string" ? `${name}: ${decoded}` : null;
  }
}
