// The bytes of the write-ahead log and of snapshot files: layouts, encoders, decoders, names.
// Everything is little-endian; indexes, terms and sizes are float64 (exact for safe integers).
//
// Segment file `wal-<seq>.log` = a 32-byte segment header, then records, each 8-byte aligned:
//   record header (48 bytes): magic u32 | kind u8 | flags u8 | 0 u16 | payloadLength u32 |
//     payloadCrc u32 | group u32 | seq u32 | a f64 | b f64 | c u32 | headerCrc u32
//   payload (payloadLength bytes), zero padding to a multiple of 8 (outside every checksum).
// The header has its own checksum, so a damaged payload still names its group and index range,
// and recovery can re-synchronise after damage by scanning aligned offsets for a valid header.
// `seq` counts the records of one group (mod 2^32): a jump reveals lost records of that group.
//
// Record kinds (fields a, b, c; payload):
//   entries     firstIndex, lastIndex, count; count 16-byte entry headers (term f64 | data crc
//               u32 | length u24 + kind u8 << 24), then the data of each entry back to back. The
//               payload checksum covers the entry headers only; each header carries its data's
//               checksum, so reads verify one entry without reading its neighbours.
//   hardState   term, commit, 0; damagedUpTo f64 | vote (u16 length, 0xffff = null, utf8).
//   truncate    fromIndex, 0, 0; no payload.
//   snapshot    index, term, fileId; flags bit 0 = the whole log was dropped (install without a
//               matching entry); file crc u32 | file size f64 | configuration.
//   reset       0, 0, 0; the group's snapshot and log are gone (a damaged snapshot was dropped).
//   checkpoint  0, 0, group count; every group's state (see encodeCheckpointGroup).
//   commit      batchId, batch start offset, record count; the manifest: per record of the
//               batch, offset from batch start u32 | group u32 | seq u32 | kind u8 | flags u8 |
//               0 u16 | a f64 | b f64. Written twice, byte for byte, at the end of every batch.
import { crc32 } from "node:zlib";
import type { Configuration, HardState } from "./types.ts";

export const segmentMagic = 0x4e57414c; // "NWAL"
export const recordMagic = 0x4e524543; // "NREC"
export const snapshotMagic = 0x4e534e50; // "NSNP"
export const formatVersion = 1;

export const segmentHeaderBytes = 32;
export const recordHeaderBytes = 48;
export const entryHeaderBytes = 16;
export const manifestItemBytes = 32;
export const snapshotHeaderBytes = 64;
/** An entry's data length must fit the 24 bits of its header. */
export const entryBytesFormatMax = 2 ** 24 - 1;
/** Bytes of an encoded node id or configuration member. */
export const nodeIdBytesMax = 1024;

export const RecordKind = {
  entries: 1,
  hardState: 2,
  truncate: 3,
  snapshot: 4,
  reset: 5,
  checkpoint: 6,
  commit: 7,
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];
export const recordKindNames: Record<number, string> = {
  1: "entries",
  2: "hard state",
  3: "truncate",
  4: "snapshot",
  5: "reset",
  6: "checkpoint",
  7: "commit",
};

export const entryKindCodes = { normal: 0, config: 1, empty: 2 } as const;
export const entryKindsByCode = ["normal", "config", "empty"] as const;

export function align8(value: number): number {
  return (value + 7) & ~7;
}

export function checksum(bytes: Uint8Array, initial = 0): number {
  return crc32(bytes, initial);
}

// --- names ---

export function segmentName(seq: number): string {
  return `wal-${String(seq).padStart(12, "0")}.log`;
}

export function parseSegmentName(name: string): number | undefined {
  const match = /^wal-(\d{12,})\.log$/.exec(name);
  return match === null ? undefined : Number(match[1]);
}

export function snapshotName(group: number, fileId: number): string {
  return `snap-${group}-${fileId}.snap`;
}

export function parseSnapshotName(name: string): { group: number; fileId: number } | undefined {
  const match = /^snap-(\d+)-(\d+)\.snap$/.exec(name);
  return match === null ? undefined : { group: Number(match[1]), fileId: Number(match[2]) };
}

export const temporarySuffix = ".tmp";

// --- a growable buffer ---

export class ByteWriter {
  buffer: Buffer;
  length = 0;

  constructor(capacity: number) {
    this.buffer = Buffer.allocUnsafe(capacity);
  }

  /** Makes room for `extra` more bytes; returns the offset they start at. */
  reserve(extra: number): number {
    const needed = this.length + extra;
    if (needed > this.buffer.byteLength) {
      const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.byteLength * 2));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    const start = this.length;
    this.length = needed;
    return start;
  }

  // Each writer reserves first: `reserve` may replace `buffer`.
  u8(value: number): void {
    const at = this.reserve(1);
    this.buffer[at] = value;
  }
  u16(value: number): void {
    const at = this.reserve(2);
    this.buffer.writeUInt16LE(value, at);
  }
  u32(value: number): void {
    const at = this.reserve(4);
    this.buffer.writeUInt32LE(value >>> 0, at);
  }
  f64(value: number): void {
    const at = this.reserve(8);
    this.buffer.writeDoubleLE(value, at);
  }
  bytes(value: Uint8Array): void {
    const at = this.reserve(value.byteLength);
    this.buffer.set(value, at);
  }
  /** A short string: u16 byte length, then utf8; `null` as length 0xffff. */
  shortString(value: string | null): void {
    if (value === null) {
      this.u16(0xffff);
      return;
    }
    const length = Buffer.byteLength(value);
    this.u16(length);
    const at = this.reserve(length);
    this.buffer.write(value, at, "utf8");
  }
  /** Zeros up to the next multiple of 8. */
  pad8(): void {
    const padded = align8(this.length);
    if (padded > this.length) {
      const at = this.reserve(padded - this.length);
      this.buffer.fill(0, at, padded);
    }
  }
}

/** Reads fields in order; every read is bounds-checked (`ok` turns false past the end). */
export class ByteReader {
  readonly buffer: Buffer;
  offset: number;
  private readonly end: number;
  ok = true;

  constructor(buffer: Buffer, offset: number, end: number) {
    this.buffer = buffer;
    this.offset = offset;
    this.end = end;
  }

  private take(bytes: number): number {
    const at = this.offset;
    if (at + bytes > this.end) {
      this.ok = false;
      return -1;
    }
    this.offset += bytes;
    return at;
  }
  u8(): number {
    const at = this.take(1);
    return at < 0 ? 0 : this.buffer[at]!;
  }
  u16(): number {
    const at = this.take(2);
    return at < 0 ? 0 : this.buffer.readUInt16LE(at);
  }
  u32(): number {
    const at = this.take(4);
    return at < 0 ? 0 : this.buffer.readUInt32LE(at);
  }
  f64(): number {
    const at = this.take(8);
    return at < 0 ? 0 : this.buffer.readDoubleLE(at);
  }
  shortString(): string | null {
    const length = this.u16();
    if (length === 0xffff) return null;
    const at = this.take(length);
    return at < 0 ? "" : this.buffer.toString("utf8", at, at + length);
  }
}

// --- segment header ---

export function encodeSegmentHeader(target: ByteWriter, seq: number): void {
  const at = target.reserve(segmentHeaderBytes);
  const buffer = target.buffer;
  buffer.fill(0, at, at + segmentHeaderBytes);
  buffer.writeUInt32LE(segmentMagic, at);
  buffer.writeUInt32LE(formatVersion, at + 4);
  buffer.writeDoubleLE(seq, at + 8);
  buffer.writeUInt32LE(checksum(buffer.subarray(at, at + 28)), at + 28);
}

/** The sequence number in a segment header, or undefined if the header is damaged or foreign. */
export function decodeSegmentHeader(buffer: Buffer): number | undefined {
  if (buffer.byteLength < segmentHeaderBytes) return undefined;
  if (buffer.readUInt32LE(0) !== segmentMagic || buffer.readUInt32LE(4) !== formatVersion) return undefined;
  if (checksum(buffer.subarray(0, 28)) !== buffer.readUInt32LE(28)) return undefined;
  return buffer.readDoubleLE(8);
}

// --- record headers ---

/** A decoded record header; reused by decoders to avoid an allocation per record. */
export interface RecordHeader {
  kind: number;
  flags: number;
  payloadLength: number;
  payloadCrc: number;
  group: number;
  seq: number;
  a: number;
  b: number;
  c: number;
}

export function emptyRecordHeader(): RecordHeader {
  return { kind: 0, flags: 0, payloadLength: 0, payloadCrc: 0, group: 0, seq: 0, a: 0, b: 0, c: 0 };
}

/**
 * Writes a record header at `at` (the payload must already follow it, `payloadLength` bytes):
 * computes the payload checksum over `[at + 48, at + 48 + crcLength)` and the header checksum.
 */
export function sealRecord(
  buffer: Buffer,
  at: number,
  header: Omit<RecordHeader, "payloadCrc">,
  crcLength: number,
): number {
  const payloadStart = at + recordHeaderBytes;
  const payloadCrc = checksum(buffer.subarray(payloadStart, payloadStart + crcLength));
  buffer.writeUInt32LE(recordMagic, at);
  buffer[at + 4] = header.kind;
  buffer[at + 5] = header.flags;
  buffer.writeUInt16LE(0, at + 6);
  buffer.writeUInt32LE(header.payloadLength, at + 8);
  buffer.writeUInt32LE(payloadCrc, at + 12);
  buffer.writeUInt32LE(header.group >>> 0, at + 16);
  buffer.writeUInt32LE(header.seq >>> 0, at + 20);
  buffer.writeDoubleLE(header.a, at + 24);
  buffer.writeDoubleLE(header.b, at + 32);
  buffer.writeUInt32LE(header.c >>> 0, at + 40);
  buffer.writeUInt32LE(checksum(buffer.subarray(at, at + 44)), at + 44);
  return payloadCrc;
}

/** Decodes the header at `at` into `out`; false if it is cut off or fails its checksum. */
export function readRecordHeader(buffer: Buffer, at: number, end: number, out: RecordHeader): boolean {
  if (at + recordHeaderBytes > end) return false;
  if (buffer.readUInt32LE(at) !== recordMagic) return false;
  if (checksum(buffer.subarray(at, at + 44)) !== buffer.readUInt32LE(at + 44)) return false;
  out.kind = buffer[at + 4]!;
  out.flags = buffer[at + 5]!;
  out.payloadLength = buffer.readUInt32LE(at + 8);
  out.payloadCrc = buffer.readUInt32LE(at + 12);
  out.group = buffer.readUInt32LE(at + 16);
  out.seq = buffer.readUInt32LE(at + 20);
  out.a = buffer.readDoubleLE(at + 24);
  out.b = buffer.readDoubleLE(at + 32);
  out.c = buffer.readUInt32LE(at + 40);
  return out.kind >= RecordKind.entries && out.kind <= RecordKind.commit;
}

/** Bytes a record with this payload takes, header and padding included. */
export function recordBytes(payloadLength: number): number {
  return recordHeaderBytes + align8(payloadLength);
}

/** The payload's checksummed length: the entry headers for `entries`, all of it otherwise. */
export function checkedPayloadLength(header: RecordHeader): number {
  return header.kind === RecordKind.entries ? header.c * entryHeaderBytes : header.payloadLength;
}

// --- payload pieces ---

export function encodeConfiguration(target: ByteWriter, configuration: Configuration): void {
  target.u16(configuration.voters.length);
  for (const voter of configuration.voters) target.shortString(voter);
  target.u16(configuration.learners.length);
  for (const learner of configuration.learners) target.shortString(learner);
}

export function decodeConfiguration(reader: ByteReader): Configuration {
  const voters: string[] = [];
  const voterCount = reader.u16();
  for (let index = 0; index < voterCount && reader.ok; index++) voters.push(reader.shortString() ?? "");
  const learners: string[] = [];
  const learnerCount = reader.u16();
  for (let index = 0; index < learnerCount && reader.ok; index++) learners.push(reader.shortString() ?? "");
  return { voters, learners };
}

/** A snapshot as the log refers to it: its meta and the file holding its data. */
export interface SnapshotRef {
  readonly fileId: number;
  readonly index: number;
  readonly term: number;
  readonly configuration: Configuration;
  /** Checksum of the file's body (configuration and data), as in its header. */
  readonly fileCrc: number;
  readonly fileBytes: number;
}

/** One group's state in a checkpoint record. */
export interface CheckpointGroup {
  readonly group: number;
  readonly seq: number;
  /** Lowest index an entries/truncate/snapshot/reset record of the previous segment touched
   *  (Infinity if none). */
  readonly lowTouched: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly lastTerm: number;
  readonly hardState: HardState;
  readonly snapshot: SnapshotRef | null;
}

export function encodeCheckpointGroup(target: ByteWriter, group: CheckpointGroup): void {
  target.u32(group.group);
  target.u32(group.seq);
  target.f64(group.lowTouched);
  target.f64(group.firstIndex);
  target.f64(group.lastIndex);
  target.f64(group.lastTerm);
  encodeHardStateBody(target, group.hardState);
  const snapshot = group.snapshot;
  target.u8(snapshot === null ? 0 : 1);
  if (snapshot !== null) encodeSnapshotRef(target, snapshot);
}

export function decodeCheckpointGroup(reader: ByteReader): CheckpointGroup {
  const group = reader.u32();
  const seq = reader.u32();
  const lowTouched = reader.f64();
  const firstIndex = reader.f64();
  const lastIndex = reader.f64();
  const lastTerm = reader.f64();
  const hardState = decodeHardStateBody(reader);
  const snapshot = reader.u8() === 1 ? decodeSnapshotRef(reader) : null;
  return { group, seq, lowTouched, firstIndex, lastIndex, lastTerm, hardState, snapshot };
}

export function encodeHardStateBody(target: ByteWriter, state: HardState): void {
  target.f64(state.term);
  target.f64(state.commit);
  target.f64(state.damagedUpTo);
  target.shortString(state.vote);
}

export function decodeHardStateBody(reader: ByteReader): HardState {
  const term = reader.f64();
  const commit = reader.f64();
  const damagedUpTo = reader.f64();
  const vote = reader.shortString();
  return { term, vote, commit, damagedUpTo };
}

export function encodeSnapshotRef(target: ByteWriter, ref: SnapshotRef): void {
  target.u32(ref.fileId);
  target.f64(ref.index);
  target.f64(ref.term);
  target.u32(ref.fileCrc);
  target.f64(ref.fileBytes);
  encodeConfiguration(target, ref.configuration);
}

export function decodeSnapshotRef(reader: ByteReader): SnapshotRef {
  const fileId = reader.u32();
  const index = reader.f64();
  const term = reader.f64();
  const fileCrc = reader.u32();
  const fileBytes = reader.f64();
  const configuration = decodeConfiguration(reader);
  return { fileId, index, term, fileCrc, fileBytes, configuration };
}

// --- snapshot files ---
// Header (64 bytes): magic u32 | version u32 | group u32 | fileId u32 | index f64 | term f64 |
// configLength u32 | dataLength f64 | bodyCrc u32 | zeros | headerCrc u32 (at 60); then the
// encoded configuration, then the data. `bodyCrc` covers configuration and data.

/** The header and configuration of a snapshot file (the data follows them on disk). */
export function encodeSnapshotHead(
  group: number,
  fileId: number,
  index: number,
  term: number,
  configuration: Configuration,
  data: Uint8Array,
): { head: Buffer; bodyCrc: number; fileBytes: number } {
  const writer = new ByteWriter(snapshotHeaderBytes + 256);
  writer.reserve(snapshotHeaderBytes);
  encodeConfiguration(writer, configuration);
  const head = writer.buffer.subarray(0, writer.length);
  const configLength = writer.length - snapshotHeaderBytes;
  const bodyCrc = checksum(data, checksum(head.subarray(snapshotHeaderBytes)));
  head.fill(0, 0, snapshotHeaderBytes);
  head.writeUInt32LE(snapshotMagic, 0);
  head.writeUInt32LE(formatVersion, 4);
  head.writeUInt32LE(group, 8);
  head.writeUInt32LE(fileId, 12);
  head.writeDoubleLE(index, 16);
  head.writeDoubleLE(term, 24);
  head.writeUInt32LE(configLength, 32);
  head.writeDoubleLE(data.byteLength, 36);
  head.writeUInt32LE(bodyCrc, 44);
  head.writeUInt32LE(checksum(head.subarray(0, 60)), 60);
  return { head, bodyCrc, fileBytes: head.byteLength + data.byteLength };
}

/** Decodes and verifies a whole snapshot file against what the log says; a reason if it fails. */
export function decodeSnapshotFile(
  bytes: Uint8Array,
  ref: SnapshotRef,
  group: number,
): { configuration: Configuration; data: Uint8Array } | string {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.byteLength < snapshotHeaderBytes)
    return `snapshot file is ${buffer.byteLength} bytes, too short`;
  if (
    buffer.readUInt32LE(0) !== snapshotMagic ||
    checksum(buffer.subarray(0, 60)) !== buffer.readUInt32LE(60)
  ) {
    return "snapshot file header fails its checksum";
  }
  const configLength = buffer.readUInt32LE(32);
  const dataLength = buffer.readDoubleLE(36);
  if (
    buffer.readUInt32LE(8) !== group ||
    buffer.readUInt32LE(12) !== ref.fileId ||
    buffer.readDoubleLE(16) !== ref.index ||
    buffer.readDoubleLE(24) !== ref.term
  ) {
    return "snapshot file header does not match the log's snapshot record";
  }
  if (
    snapshotHeaderBytes + configLength + dataLength !== buffer.byteLength ||
    buffer.byteLength !== ref.fileBytes
  ) {
    return `snapshot file is ${buffer.byteLength} bytes, expected ${ref.fileBytes}`;
  }
  const body = buffer.subarray(snapshotHeaderBytes);
  const bodyCrc = checksum(body);
  if (bodyCrc !== buffer.readUInt32LE(44) || bodyCrc !== ref.fileCrc)
    return "snapshot file body fails its checksum";
  const reader = new ByteReader(buffer, snapshotHeaderBytes, snapshotHeaderBytes + configLength);
  const configuration = decodeConfiguration(reader);
  if (!reader.ok) return "snapshot file configuration is malformed";
  return { configuration, data: body.subarray(configLength) };
}
