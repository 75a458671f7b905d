// Recovery: reads the write-ahead log's segments, oldest first, and hands every batch to the
// replay (replay.ts), which rebuilds each group's view. It only reads; the caller
// (openDiskStore) truncates the torn tail, deletes a torn new segment and makes the damage
// fixes durable.
//
// A batch (one sync) is applied only at its commit record, in the order of the commit's
// manifest, which lists every record of the batch (offset, group, seq, kind, index range): so
// a record whose bytes are damaged is still known by group and range, and header-only records
// (truncate, reset) are restored from the manifest alone. The commit is written twice; either
// copy serves. What is found is classified:
// - Torn tail: the last segment ends inside a batch whose commit never reached the disk. That
//   batch's sync never resolved (flushes are sequential: batch k+1 is written only after batch
//   k's fdatasync), so it is dropped, whatever its bytes, and is not damage.
// - Damage: anything else that fails a checksum or is missing: a damaged record of a committed
//   batch, a batch or segment missing (batch ids and segment numbers are consecutive), a
//   non-last segment ending inside a batch (its commit lost: every group may have lost records).
// Trap: re-synchronising after damage scans aligned offsets for a valid header, so it could stop
// inside an entry's data that happens to hold a valid record; only committed batches'
// manifests decide what is applied, so such a find is ignored unless both commit copies of
// that batch are also damaged.
import type { FileHandle, FileSystem } from "./file-system.ts";
import type { GroupState } from "./group-state.ts";
import { type DamageFinding, type Described, Replay } from "./replay.ts";
import {
  checkedPayloadLength,
  checksum,
  decodeSegmentHeader,
  emptyRecordHeader,
  entryHeaderBytes,
  manifestItemBytes,
  parseSegmentName,
  parseSnapshotName,
  RecordKind,
  readRecordHeader,
  recordBytes,
  recordHeaderBytes,
  recordKindNames,
  segmentHeaderBytes,
  segmentName,
  temporarySuffix,
} from "./wal-format.ts";

export type { DamageFinding } from "./replay.ts";

export interface RecoveredSegment {
  readonly seq: number;
  readonly handle: FileHandle;
  /** Size on disk when opened. */
  readonly size: number;
  /** End of the last committed batch: bytes after it are a torn tail (last segment only). */
  readonly validEnd: number;
  /** Whether the segment holds a committed batch (its checkpoint). Without one, the last
   *  segment is a torn creation. */
  readonly committed: boolean;
  /** Last segment only: the second commit copy of its last batch is torn; these bytes complete it. */
  readonly repairCopy: { readonly at: number; readonly bytes: Buffer } | null;
}

export interface Recovered {
  readonly groups: Map<number, GroupState>;
  readonly damage: DamageFinding[];
  /** Corruption found that lost nothing (a damaged redundant copy), and torn tails dropped. */
  readonly notes: string[];
  readonly segments: RecoveredSegment[];
  readonly lastBatchId: number;
  readonly maxFileId: number;
  /** Snapshot files and temporary files on disk (names). */
  readonly snapshotFiles: string[];
  readonly temporaryFiles: string[];
}

interface SegmentOutcome {
  readonly validEnd: number;
  readonly committed: boolean;
  /** The last batch's second commit copy is torn: write these bytes at `at` to complete it. */
  readonly repairCopy: { readonly at: number; readonly bytes: Buffer } | null;
}

interface PendingBatch {
  start: number;
  records: Described[];
  unknown: Array<[number, number]>;
}

export async function recover(fs: FileSystem, dir: string): Promise<Recovered> {
  const names = await fs.list(dir);
  const seqs: number[] = [];
  const snapshotFiles: string[] = [];
  const temporaryFiles: string[] = [];
  for (const name of names) {
    const seq = parseSegmentName(name);
    if (seq !== undefined) seqs.push(seq);
    else if (parseSnapshotName(name) !== undefined) snapshotFiles.push(name);
    else if (name.endsWith(temporarySuffix)) temporaryFiles.push(name);
  }
  seqs.sort((x, y) => x - y);
  const replay = new Replay(fs, dir);
  const scanner = new Scanner(replay);
  for (const name of snapshotFiles) {
    replay.maxFileId = Math.max(replay.maxFileId, parseSnapshotName(name)!.fileId);
  }
  const segments: RecoveredSegment[] = [];
  for (let position = 0; position < seqs.length; position++) {
    const seq = seqs[position]!;
    const previous = seqs[position - 1];
    if (previous !== undefined && seq !== previous + 1) {
      replay.segmentsMissing(`${segmentName(previous + 1)} to ${segmentName(seq - 1)} are missing`);
    }
    const handle = await fs.open(`${dir}/${segmentName(seq)}`, "existing");
    const size = await handle.size();
    const bytes = Buffer.allocUnsafe(size);
    const read = handle.readSync(bytes, 0, size, 0);
    const outcome = scanner.segment(bytes.subarray(0, read), seq, position === seqs.length - 1);
    segments.push({ seq, handle, size, ...outcome });
  }
  const damage = replay.finish();
  return {
    groups: replay.groups,
    damage,
    notes: replay.notes,
    segments,
    lastBatchId: scanner.lastBatchId,
    maxFileId: replay.maxFileId,
    snapshotFiles,
    temporaryFiles,
  };
}

/** Reads segments record by record, groups records into batches, and replays each batch at its commit. */
class Scanner {
  readonly replay: Replay;
  lastBatchId = -1;
  private segmentSeq = 0;
  private readonly header = emptyRecordHeader();

  constructor(replay: Replay) {
    this.replay = replay;
  }

  /** Replays one segment; returns where its committed content ends. */
  segment(buffer: Buffer, seq: number, isLast: boolean): SegmentOutcome {
    this.segmentSeq = seq;
    this.replay.segmentSeq = seq;
    const name = segmentName(seq);
    const headerSeq = decodeSegmentHeader(buffer);
    if (headerSeq !== undefined && headerSeq !== seq) {
      this.replay.notes.push(`${name}: its header says segment ${headerSeq}`);
    }
    const size = buffer.byteLength;
    let position = segmentHeaderBytes;
    let batch: PendingBatch = { start: position, records: [], unknown: [] };
    let validEnd = headerSeq === undefined ? 0 : segmentHeaderBytes;
    let committed = false;
    let firstBatch = true;
    let repairCopy: { at: number; bytes: Buffer } | null = null;
    const header = this.header;
    while (position < size) {
      if (
        readRecordHeader(buffer, position, size, header) &&
        position + recordHeaderBytes + header.payloadLength <= size
      ) {
        const payloadStart = position + recordHeaderBytes;
        const checked = checkedPayloadLength(header);
        const payloadOk =
          checked <= header.payloadLength &&
          checksum(buffer.subarray(payloadStart, payloadStart + checked)) === header.payloadCrc;
        const length = recordBytes(header.payloadLength);
        if (header.kind === RecordKind.commit) {
          if (!payloadOk) {
            batch.unknown.push([position, Math.min(size, position + length)]);
            position += length;
            continue;
          }
          const firstCopy = this.commit(buffer, position, batch, firstBatch);
          firstBatch = false;
          committed = true;
          let end = position + length;
          if (firstCopy) {
            // The second copy always follows the first: in full, or torn at the end of the log.
            if (end + length <= size) {
              if (!buffer.subarray(end, end + length).equals(buffer.subarray(position, end))) {
                this.replay.notes.push(
                  `${name}: the second commit copy at byte ${end} is damaged (the first is intact)`,
                );
              }
            } else if (isLast) {
              repairCopy = { at: end, bytes: Buffer.from(buffer.subarray(position, end)) };
            }
            end += length;
          }
          position = Math.min(size, end);
          validEnd = end;
          batch = { start: position, records: [], unknown: [] };
          continue;
        }
        const described: Described = {
          offset: position,
          kind: header.kind,
          flags: header.flags,
          group: header.group,
          seq: header.seq,
          a: header.a,
          b: header.b,
          c: header.c,
          payloadStart,
          payloadLength: header.payloadLength,
          status: payloadOk ? "ok" : "damaged",
          firstBad: 0,
          reason: payloadOk
            ? ""
            : `${recordKindNames[header.kind]} record payload fails its checksum in ${name} at byte ${position}`,
        };
        if (payloadOk && header.kind === RecordKind.entries) this.verifyEntryData(buffer, described, name);
        batch.records.push(described);
        position = Math.min(size, position + length);
        continue;
      }
      const next = this.scanForward(buffer, position + 8);
      batch.unknown.push([position, next]);
      position = next;
    }
    if (batch.records.length > 0 || batch.unknown.length > 0) {
      if (isLast) {
        if (size > batch.start)
          this.replay.notes.push(
            `${name}: dropped a torn tail of ${size - batch.start} bytes at byte ${batch.start}`,
          );
      } else {
        this.withoutCommit(
          batch,
          buffer,
          `${name} ends inside a batch (byte ${batch.start}): its commit is missing`,
          firstBatch,
        );
      }
    }
    if (headerSeq === undefined && committed)
      this.replay.notes.push(`${name}: its segment header is damaged`);
    if (repairCopy !== null && repairCopy.at + repairCopy.bytes.byteLength !== validEnd) repairCopy = null;
    return { validEnd, committed, repairCopy };
  }

  /** Scans 8-aligned offsets from `from` for the next valid record header; the size if none. */
  private scanForward(buffer: Buffer, from: number): number {
    const size = buffer.byteLength;
    const probe = emptyRecordHeader();
    for (let at = from; at + recordHeaderBytes <= size; at += 8) {
      if (readRecordHeader(buffer, at, size, probe)) return at;
    }
    return size;
  }

  private verifyEntryData(buffer: Buffer, described: Described, name: string): void {
    let data = described.payloadStart + described.c * entryHeaderBytes;
    const end = described.payloadStart + described.payloadLength;
    for (let k = 0; k < described.c; k++) {
      const at = described.payloadStart + k * entryHeaderBytes;
      const crc = buffer.readUInt32LE(at + 8);
      const length = buffer.readUInt32LE(at + 12) & 0xffffff;
      if (data + length > end || checksum(buffer.subarray(data, data + length)) !== crc) {
        described.status = "damaged";
        described.firstBad = described.a + k;
        described.reason = `entry ${described.a + k} fails its checksum in ${name} at byte ${data}`;
        return;
      }
      data += length;
    }
  }

  /** Applies the batch a valid commit closes. Returns whether this commit is the first copy. */
  private commit(buffer: Buffer, position: number, batch: PendingBatch, firstBatch: boolean): boolean {
    const header = this.header;
    const batchId = header.a;
    const batchStart = header.b;
    const count = header.c;
    const name = segmentName(this.segmentSeq);
    const payloadStart = position + recordHeaderBytes;
    const recordsEnd = buffer.readUInt32LE(payloadStart);
    const isFirstCopy = position === batchStart + recordsEnd;
    if (!isFirstCopy)
      this.replay.notes.push(
        `${name}: the first commit copy of batch ${batchId} is damaged; used the second`,
      );
    if (this.lastBatchId >= 0 && batchId !== this.lastBatchId + 1) {
      if (batchId > this.lastBatchId + 1) {
        this.replay.markUnknownAll(
          `batches ${this.lastBatchId + 1} to ${batchId - 1} are missing before ${name}`,
        );
      } else {
        this.replay.markUnknownAll(`batch ${batchId} in ${name} repeats an earlier batch id`);
      }
    }
    if (batchStart > batch.start) {
      const earlier: PendingBatch = {
        start: batch.start,
        records: batch.records.filter((record) => record.offset < batchStart),
        unknown: batch.unknown.filter(([start]) => start < batchStart),
      };
      this.withoutCommit(
        earlier,
        buffer,
        `the commit of the batch at ${name} byte ${batch.start} is unreadable`,
        firstBatch,
      );
      firstBatch = false;
    } else if (batchStart < batch.start) {
      this.replay.markUnknownAll(
        `the commit of batch ${batchId} in ${name} starts at byte ${batchStart}, inside earlier records`,
      );
    }
    const byOffset = new Map<number, Described>();
    for (const record of batch.records) if (record.offset >= batchStart) byOffset.set(record.offset, record);
    const described: Described[] = [];
    const manifest = payloadStart + 8;
    for (let item = 0; item < count; item++) {
      const at = manifest + item * manifestItemBytes;
      const offset = batchStart + buffer.readUInt32LE(at);
      const group = buffer.readUInt32LE(at + 4);
      const seq = buffer.readUInt32LE(at + 8);
      const kind = buffer[at + 12]!;
      const read = byOffset.get(offset);
      if (read !== undefined && read.kind === kind && read.group === group && read.seq === seq) {
        described.push(read);
        continue;
      }
      described.push({
        offset,
        kind,
        flags: buffer[at + 13]!,
        group,
        seq,
        a: buffer.readDoubleLE(at + 16),
        b: buffer.readDoubleLE(at + 24),
        c: 0,
        payloadStart: 0,
        payloadLength: 0,
        status: "lost",
        firstBad: 0,
        reason: `${recordKindNames[kind]} record unreadable in ${name} at byte ${offset}`,
      });
    }
    this.replay.applyBatch(described, buffer, firstBatch);
    this.lastBatchId = batchId;
    return isFirstCopy;
  }

  /** Applies what can be read of a batch whose commit is gone; every group may have lost records. */
  private withoutCommit(batch: PendingBatch, buffer: Buffer, reason: string, firstBatch: boolean): void {
    this.replay.applyBatch(batch.records, buffer, firstBatch);
    this.replay.markUnknownAll(reason);
  }
}
