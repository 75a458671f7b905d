// The staging buffer of the write-ahead log: every staged write is encoded here at once, at the
// position in its segment it will be written to, so an entry's place on disk is known (and
// indexed) when it is appended. `take()` seals the batch (its commit record, twice, listing
// every record) and hands its bytes to the flush; the stage then continues right after them.
// Two buffers alternate, so the bytes of the batch being written stay readable until the next
// take (which happens only once that flush is done).
//
// Invariant: the stage holds the bytes for [base, base + length) of segment `segment`; the open
// batch's records start at `batchStart`; each record's manifest item is written as it is sealed.
// Trap: `ByteWriter.reserve` may move the buffer: read `this.buffer.buffer` only after reserving.
import type { GroupState } from "./group-state.ts";
import type { Entry } from "./types.ts";
import {
  ByteWriter,
  checksum,
  encodeCheckpointGroup,
  encodeHardStateBody,
  encodeSegmentHeader,
  entryHeaderBytes,
  entryKindCodes,
  RecordKind,
  recordBytes,
  recordHeaderBytes,
  sealRecord,
} from "./wal-format.ts";

const initialBytes = 1024 * 1024;

/** The sealed bytes of one batch and where they go. */
export interface TakenBatch {
  readonly segment: number;
  readonly position: number;
  readonly bytes: Buffer;
  /** The bytes begin a new segment (its file must be created). */
  readonly creates: boolean;
}

export class WalStage {
  /** Segment and offset of the stage's first byte. */
  segment = 0;
  base = 0;
  /** Whether the stage begins a segment not yet created. */
  creates = false;
  private buffer = new ByteWriter(initialBytes);
  private spare = new ByteWriter(initialBytes);
  private batchStart = 0;
  private readonly manifest = new ByteWriter(16 * 1024);
  private recordCount = 0;
  private nextBatchId: number;

  constructor(nextBatchId: number) {
    this.nextBatchId = nextBatchId;
  }

  get length(): number {
    return this.buffer.length;
  }

  /** Whether the open batch holds any record. */
  get hasRecords(): boolean {
    return this.recordCount > 0;
  }

  /** Continues an existing segment at `base` (after recovery). */
  continueSegment(segment: number, base: number): void {
    this.segment = segment;
    this.base = base;
    this.creates = false;
  }

  /**
   * Begins segment `segment` (the stage must be empty): its header, then a checkpoint of every
   * group in `states` as a batch of its own, written twice. Resets each group's `lowTouched`.
   */
  startSegment(segment: number, states: Iterable<GroupState>): void {
    this.segment = segment;
    this.base = 0;
    this.creates = true;
    encodeSegmentHeader(this.buffer, segment);
    this.batchStart = this.buffer.length;
    const payload = new ByteWriter(64 * 1024);
    let count = 0;
    for (const state of states) {
      encodeCheckpointGroup(payload, {
        group: state.group,
        seq: state.seq,
        lowTouched: state.lowTouched,
        firstIndex: state.index.first,
        lastIndex: state.index.last,
        lastTerm: state.term(state.index.last) ?? 0,
        hardState: state.hardState,
        snapshot: state.snapshot?.ref ?? null,
      });
      count += 1;
      state.lowTouched = Number.POSITIVE_INFINITY;
    }
    this.record(RecordKind.checkpoint, 0, null, 0, 0, count, payload);
    this.record(RecordKind.checkpoint, 0, null, 0, 0, count, payload);
    this.sealBatch();
  }

  /**
   * Encodes an entries record and indexes its entries in `state` (already truncated before
   * `entries[0].index`). `dataBytes` is the sum of the entries' data lengths.
   */
  entries(state: GroupState, entries: readonly Entry[], dataBytes: number): void {
    const headersBytes = entries.length * entryHeaderBytes;
    const payloadLength = headersBytes + dataBytes;
    const at = this.buffer.reserve(recordBytes(payloadLength));
    const buffer = this.buffer.buffer;
    const index = state.index;
    const base = this.base;
    const segment = this.segment;
    let header = at + recordHeaderBytes;
    let data = header + headersBytes;
    for (const entry of entries) {
      const length = entry.data.byteLength;
      const crc = checksum(entry.data);
      const kind = entryKindCodes[entry.kind];
      buffer.writeDoubleLE(entry.term, header);
      buffer.writeUInt32LE(crc, header + 8);
      buffer.writeUInt32LE((length + kind * 2 ** 24) >>> 0, header + 12);
      buffer.set(entry.data, data);
      index.push(entry.term, segment, base + data, length, crc, kind);
      header += entryHeaderBytes;
      data += length;
    }
    const first = entries[0]!.index;
    this.seal(
      at,
      RecordKind.entries,
      0,
      payloadLength,
      state,
      first,
      first + entries.length - 1,
      entries.length,
      headersBytes,
    );
  }

  hardState(state: GroupState): void {
    const payload = new ByteWriter(64);
    encodeHardStateBody(payload, state.hardState);
    this.record(RecordKind.hardState, 0, state, state.hardState.term, state.hardState.commit, 0, payload);
  }

  truncate(state: GroupState, fromIndex: number): void {
    this.record(RecordKind.truncate, 0, state, fromIndex, 0, 0, null);
  }

  reset(state: GroupState): void {
    this.record(RecordKind.reset, 0, state, 0, 0, 0, null);
  }

  /** A snapshot record; `payload` is its file checksum, size and configuration. */
  snapshot(
    state: GroupState,
    index: number,
    term: number,
    fileId: number,
    dropAll: boolean,
    payload: ByteWriter,
  ): void {
    this.record(RecordKind.snapshot, dropAll ? 1 : 0, state, index, term, fileId, payload);
  }

  /** Seals the open batch and hands over the stage's bytes; the stage continues after them. */
  take(): TakenBatch {
    this.sealBatch();
    const taken: TakenBatch = {
      segment: this.segment,
      position: this.base,
      bytes: this.buffer.buffer.subarray(0, this.buffer.length),
      creates: this.creates,
    };
    const filled = this.buffer;
    this.buffer = this.spare;
    this.spare = filled;
    this.buffer.length = 0;
    this.base += taken.bytes.byteLength;
    this.creates = false;
    this.batchStart = 0;
    return taken;
  }

  /** A copy of bytes [position, position + length) of `segment` if the stage holds them. */
  read(segment: number, position: number, length: number): Uint8Array | undefined {
    if (segment !== this.segment || position < this.base) return undefined;
    const at = position - this.base;
    return new Uint8Array(this.buffer.buffer.subarray(at, at + length));
  }

  /** Writes a record whose payload is `payload` (copied), and seals it. */
  private record(
    kind: RecordKind,
    flags: number,
    state: GroupState | null,
    a: number,
    b: number,
    c: number,
    payload: ByteWriter | null,
  ): void {
    const payloadLength = payload?.length ?? 0;
    const at = this.buffer.reserve(recordBytes(payloadLength));
    if (payload !== null) payload.buffer.copy(this.buffer.buffer, at + recordHeaderBytes, 0, payloadLength);
    this.seal(at, kind, flags, payloadLength, state, a, b, c, payloadLength);
  }

  /** Seals the record at `at` (its payload written), pads it, and lists it in the manifest. */
  private seal(
    at: number,
    kind: RecordKind,
    flags: number,
    payloadLength: number,
    state: GroupState | null,
    a: number,
    b: number,
    c: number,
    crcLength: number,
  ): void {
    const group = state?.group ?? 0;
    const seq = state === null ? 0 : state.nextSeq();
    const buffer = this.buffer.buffer;
    sealRecord(buffer, at, { kind, flags, payloadLength, group, seq, a, b, c }, crcLength);
    buffer.fill(0, at + recordHeaderBytes + payloadLength, at + recordBytes(payloadLength));
    const manifest = this.manifest;
    manifest.u32(at - this.batchStart);
    manifest.u32(group);
    manifest.u32(seq);
    manifest.u8(kind);
    manifest.u8(flags);
    manifest.u16(0);
    manifest.f64(a);
    manifest.f64(b);
    this.recordCount += 1;
  }

  /** Closes the open batch with its commit record, twice. Nothing if the batch is empty. */
  private sealBatch(): void {
    if (this.recordCount === 0) return;
    const manifest = this.manifest;
    const payloadLength = 8 + manifest.length;
    const length = recordBytes(payloadLength);
    const recordsEnd = this.buffer.length - this.batchStart;
    const at = this.buffer.reserve(length);
    const buffer = this.buffer.buffer;
    buffer.writeUInt32LE(recordsEnd, at + recordHeaderBytes);
    buffer.writeUInt32LE(0, at + recordHeaderBytes + 4);
    manifest.buffer.copy(buffer, at + recordHeaderBytes + 8, 0, manifest.length);
    buffer.fill(0, at + recordHeaderBytes + payloadLength, at + length);
    const header = {
      kind: RecordKind.commit,
      flags: 0,
      payloadLength,
      group: 0,
      seq: 0,
      a: this.nextBatchId,
      b: this.base + this.batchStart,
      c: this.recordCount,
    };
    sealRecord(buffer, at, header, payloadLength);
    this.nextBatchId += 1;
    const copy = this.buffer.reserve(length);
    this.buffer.buffer.copy(this.buffer.buffer, copy, at, at + length);
    manifest.length = 0;
    this.recordCount = 0;
    this.batchStart = this.buffer.length;
  }
}
