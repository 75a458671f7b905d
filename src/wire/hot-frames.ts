// Hand-written Avro for the frames on the per-message path: Publish, Message, Ack, Ping, Pong,
// and the primitives the partition log's Publish command uses too (delivery/partition-commands.ts).
// They are nearly all of what a busy link carries, and avsc's generic path (a Tap and a record
// object per call, a copy into its buffer pool, type checks through several layers) was the
// largest share of a router's CPU per message after TLS (profiles in bench/README.md).
//
// Invariants:
// - The bytes are exactly avsc's for the schemas in schema.ts (codec.test.ts compares them on
//   random frames), so a peer cannot tell which path encoded a frame. Except for a string with
//   a lone surrogate: it is written as U+FFFD, avsc writes the surrogate's own three bytes;
//   neither is valid UTF-8 to avsc's reader, and no string decoded off the wire holds one.
// - Decoding accepts exactly what avsc plus checkFields accept; a bad body is reported, never
//   thrown, and nothing is allocated for a frame that turns out to be bad except its error.
//   Where avsc reads past the end (a count cut short) the refusal's wording may differ.
// Traps:
// - Avro longs are zig-zag varints. avsc refuses to write magnitudes over 2^53 - 2, so do we.
// - A map is one block (count, entries, then 0) in Object.keys order, as avsc writes it. A
//   reader must accept any block layout (negative counts carry a byte size) and must bound the
//   count by the bytes left, or a forged count would make it loop (schema.ts).
// - A decoded payload is a copy (a slice of Node's buffer pool), never a view of the chunk it
//   came in: transports may reuse their read buffers.
import { headersMax } from "./schema.ts";

/** The largest magnitude avsc writes as a long. */
const longMax = 9_007_199_254_740_990;

export function isLong(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= -longMax && value <= longMax;
}

/** Bytes of the zig-zag varint of `n`. */
export function longBytes(n: number): number {
  let zigzag = n >= 0 ? n * 2 : -n * 2 - 1;
  let bytes = 1;
  while (zigzag >= 128) {
    zigzag = Math.floor(zigzag / 128);
    bytes += 1;
  }
  return bytes;
}

/** Writes the zig-zag varint of `n` at `position`; returns the position after it. */
export function writeLong(buffer: Buffer, position: number, n: number): number {
  let zigzag = n >= 0 ? n * 2 : -n * 2 - 1;
  if (zigzag < 0x8000_0000) {
    while (zigzag > 0x7f) {
      buffer[position++] = (zigzag & 0x7f) | 0x80;
      zigzag >>>= 7;
    }
  } else {
    while (zigzag > 0x7f) {
      buffer[position++] = (zigzag % 128) | 0x80;
      zigzag = Math.floor(zigzag / 128);
    }
  }
  buffer[position++] = zigzag;
  return position;
}

/** UTF-8 length of a string; equal to its length exactly when every unit is ASCII. */
export function utf8Length(text: string): number {
  const length = text.length;
  for (let index = 0; index < length; index++) {
    if (text.charCodeAt(index) >= 0x80) return Buffer.byteLength(text, "utf8");
  }
  return length;
}

/** Writes an Avro string whose UTF-8 length is `bytes` (from utf8Length); returns the end. */
export function writeString(buffer: Buffer, position: number, text: string, bytes: number): number {
  position = writeLong(buffer, position, bytes);
  const length = text.length;
  if (bytes === length) {
    for (let index = 0; index < length; index++) buffer[position + index] = text.charCodeAt(index);
    return position + length;
  }
  return position + buffer.write(text, position, bytes, "utf8");
}

/** Bytes of the Avro map `headers`, or -1 if it is not a map of strings. */
export function headersBytes(headers: unknown): number {
  if (typeof headers !== "object" || headers === null || Array.isArray(headers)) return -1;
  const map = headers as Record<string, unknown>;
  let empty = true;
  for (const _ in map) {
    empty = false;
    break;
  }
  if (empty) return 1;
  const keys = Object.keys(map);
  if (keys.length === 0) return 1;
  let total = longBytes(keys.length) + 1;
  for (const key of keys) {
    const value = map[key];
    if (typeof value !== "string") return -1;
    const keyBytes = utf8Length(key);
    const valueBytes = utf8Length(value);
    total += longBytes(keyBytes) + keyBytes + longBytes(valueBytes) + valueBytes;
  }
  return total;
}

/** Writes the map `headers` (checked by headersBytes); returns the end. */
export function writeHeaders(
  buffer: Buffer,
  position: number,
  headers: Readonly<Record<string, string>>,
): number {
  const keys = Object.keys(headers);
  if (keys.length > 0) {
    position = writeLong(buffer, position, keys.length);
    for (const key of keys) {
      const value = headers[key]!;
      position = writeString(buffer, position, key, utf8Length(key));
      position = writeString(buffer, position, value, utf8Length(value));
    }
  }
  buffer[position] = 0;
  return position + 1;
}

/** The headers of every frame that carries none: one shared, frozen, empty map. */
export const noHeaders: Readonly<Record<string, string>> = Object.freeze(Object.create(null));

/** Topics are at most 255 bytes (partitions/topic.ts); longer strings are not cached. */
const topicCacheBytes = 256;

type SliceableBuffer = Buffer & { utf8Slice(start: number, end: number): string };
const hasUtf8Slice = typeof (Buffer.prototype as Partial<SliceableBuffer>).utf8Slice === "function";

/**
 * Reads Avro values from buffer[position, end). A read past the end or a negative length
 * sets `failed` (the body is truncated or malformed) and returns a dummy;
 * callers check `failed` once at the end. Reused: one per decoder, no allocation per frame.
 */
export class AvroReader {
  buffer: Buffer = Buffer.alloc(0);
  position = 0;
  end = 0;
  failed = false;
  /** Why the read failed, when `failed`. */
  problem = "";
  /** The last topic read: its bytes (the first `lastTopicBytes` of them) and its string. */
  private readonly lastTopic = Buffer.alloc(topicCacheBytes);
  private lastTopicBytes = -1;
  private lastTopicText = "";

  reset(buffer: Buffer, position: number, end: number): void {
    this.buffer = buffer;
    this.position = position;
    this.end = end;
    this.failed = false;
    this.problem = "";
  }

  private fail(problem: string): void {
    if (!this.failed) this.problem = problem;
    this.failed = true;
    this.position = this.end;
  }

  /** A long-typed field: like avsc, a magnitude over 2^53 - 2 is refused (precision loss). */
  longField(): number {
    const value = this.long();
    if (!(value >= -longMax && value <= longMax)) this.fail("a long field is out of range");
    return value;
  }

  long(): number {
    const buffer = this.buffer;
    let position = this.position;
    const end = this.end;
    if (position < end) {
      const first = buffer[position]!;
      if (first < 0x80) {
        this.position = position + 1;
        return (first >>> 1) ^ -(first & 1);
      }
    }
    // Like avsc, any number of continuation bytes (bounded by the body): a long past 2^53 loses
    // precision or becomes NaN, and the callers' range checks refuse it.
    let value = 0;
    let factor = 1;
    while (position < end) {
      const byte = buffer[position++]!;
      value += (byte & 0x7f) * factor;
      if (byte < 0x80) {
        this.position = position;
        return value % 2 === 0 ? value / 2 : -(value + 1) / 2;
      }
      factor *= 128;
    }
    this.fail("truncated");
    return 0;
  }

  /**
   * Passes over a long it does not need (a block's byte size) without failing at the end (avsc
   * does not fail there either; it runs past the end): the count checks that follow then report
   * too many entries before a truncation, as avsc does.
   */
  private skipLong(): void {
    const buffer = this.buffer;
    const end = this.end;
    let position = this.position;
    while (position < end && buffer[position++]! >= 0x80) {}
    this.position = position;
  }

  /** Start of a length-prefixed run, or -1 (and `failed`) if it does not fit. */
  private run(): number {
    const length = this.long();
    const start = this.position;
    if (!(length >= 0 && length <= this.end - start)) {
      this.fail("truncated");
      return -1;
    }
    this.position = start + length;
    return start;
  }

  string(): string {
    const start = this.run();
    if (start < 0) return "";
    return hasUtf8Slice
      ? (this.buffer as SliceableBuffer).utf8Slice(start, this.position)
      : this.buffer.toString("utf8", start, this.position);
  }

  /**
   * A string that usually repeats, such as a topic: when its bytes are those of the previous
   * one, that string is returned again. This saves decoding and allocating it, and a Map lookup
   * by it finds the string's hash already computed.
   */
  topic(): string {
    const start = this.run();
    if (start < 0) return "";
    const length = this.position - start;
    const buffer = this.buffer;
    if (length === this.lastTopicBytes) {
      const last = this.lastTopic;
      let index = 0;
      while (index < length && buffer[start + index] === last[index]) index++;
      if (index === length) return this.lastTopicText;
    }
    const text = hasUtf8Slice
      ? (buffer as SliceableBuffer).utf8Slice(start, this.position)
      : buffer.toString("utf8", start, this.position);
    if (length <= topicCacheBytes) {
      buffer.copy(this.lastTopic, 0, start, this.position);
      this.lastTopicBytes = length;
      this.lastTopicText = text;
    }
    return text;
  }

  bytes(): Buffer {
    const start = this.run();
    if (start < 0) return noBytes;
    const copy = Buffer.allocUnsafe(this.position - start);
    this.buffer.copy(copy, 0, start, this.position);
    return copy;
  }

  /** An Avro map of strings with at most headersMax entries in all. */
  headers(): Readonly<Record<string, string>> {
    let count = this.long();
    if (count === 0 && !this.failed) return noHeaders;
    const value: Record<string, string> = Object.create(null);
    let total = 0;
    while (!this.failed) {
      if (count === 0) return value;
      if (count < 0) {
        count = -count;
        this.skipLong(); // the block's size in bytes
      }
      total += count;
      // Each entry takes at least two bytes (two empty strings).
      if (!(total <= headersMax && count * 2 <= this.end - this.position)) {
        this.fail(total > headersMax ? `more than ${headersMax} headers` : "truncated");
        break;
      }
      for (let index = 0; index < count; index++) {
        const key = this.string();
        value[key] = this.string();
      }
      count = this.long();
    }
    return value;
  }
}

const noBytes = Buffer.alloc(0);
