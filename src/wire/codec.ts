// Frame encoding and decoding.
//
// Layout: u32 BE length of the rest | u8 version | u8 kind | Avro record (schema.ts).
//
// `FrameEncoder` writes frames back to back into a slab and hands out everything written
// since the last `take()` as one buffer, so a link makes one socket write per batch of frames
// (batch.ts). Written bytes are never overwritten: a taken buffer may still sit in the
// socket's queue. `FrameDecoder` reassembles frames from arbitrary chunks. Neither throws on
// bad input: the decoder reports a typed WireError; after an error that loses the frame
// boundary (a length over the limit) it stops, since nothing after it can be trusted.
//
// The per-message frames (Publish, Message, Ack, Ping, Pong) take the hand-written path in
// hot-frames.ts, byte for byte the same as avsc's; the rest go through avsc. Per frame the
// encoder allocates nothing and the decoder only the frame and its fields.
import { frameTooLarge, malformed, type WireError } from "./errors.ts";
import {
  AvroReader,
  headersBytes,
  isLong,
  longBytes,
  noHeaders,
  utf8Length,
  writeHeaders,
  writeLong,
  writeString,
} from "./hot-frames.ts";
import {
  type Frame,
  type FrameKind,
  frameKindByNumber,
  frameTypes,
  type Headers,
  headersMax,
  wireVersion,
} from "./schema.ts";

/** Bytes before the Avro body: the length prefix, the version and the kind. */
export const frameHeaderBytes = 6;
const lengthBytes = 4;

export type EncodeResult = { readonly ok: true } | { readonly ok: false; readonly error: WireError };
const encoded: EncodeResult = Object.freeze({ ok: true });
export type DecodeResult =
  | { readonly ok: true; readonly frame: Frame }
  | { readonly ok: false; readonly error: WireError };

/** Encodes frames into a reused slab; `take()` returns the bytes written since the last take. */
export class FrameEncoder {
  private slab: Buffer;
  /** Invariant: start <= end <= slab.length; bytes [start, end) are written but not taken. */
  private start = 0;
  private end = 0;

  private readonly frameMaxBytes: number;
  private readonly slabBytes: number;
  /** The last topic encoded and its UTF-8 length. */
  private lastTopic = "";
  private lastTopicBytes = 0;

  constructor(frameMaxBytes: number, slabBytes = 64 * 1024) {
    this.frameMaxBytes = frameMaxBytes;
    this.slabBytes = slabBytes;
    this.slab = Buffer.allocUnsafe(slabBytes);
  }

  /** Bytes written and not yet taken. */
  get pendingBytes(): number {
    return this.end - this.start;
  }

  encode(frame: Frame): EncodeResult {
    switch (frame.kind) {
      case "Publish":
        return this.encodeCarrier(
          frame.kind,
          4,
          frame.requestId,
          frame.topic,
          frame.payload,
          frame.headers,
          frame.producerId,
          frame.ackedSequence,
          frame.sequence,
        );
      case "Message":
        return this.encodeCarrier(
          frame.kind,
          9,
          frame.subscriptionId,
          frame.topic,
          frame.payload,
          frame.headers,
          null,
          0,
          frame.offset,
        );
      case "Ack":
        return this.encodeLong(frame.kind, 7, frame.throughRequestId);
      case "Ping":
        return this.encodeLong(frame.kind, 2, frame.id);
      case "Pong":
        return this.encodeLong(frame.kind, 3, frame.id);
      default:
        return this.encodeAvro(frame);
    }
  }

  /** Makes room for a frame of `frameBytes` at `end`, keeping the pending bytes. */
  private reserve(frameBytes: number): void {
    if (this.slab.length - this.end >= frameBytes) return;
    // The old slab may still be referenced by taken buffers, so it is left as it is. Past one
    // slab (a caller that does not take) the size doubles, so many frames cost linear copying.
    const pending = this.end - this.start;
    const needed = pending + frameBytes;
    const slab = Buffer.allocUnsafe(needed <= this.slabBytes ? this.slabBytes : needed * 2);
    this.slab.copy(slab, 0, this.start, this.end);
    this.slab = slab;
    this.start = 0;
    this.end = pending;
  }

  private writeHeader(frameBytes: number, kindNumber: number): number {
    const slab = this.slab;
    const at = this.end;
    const length = frameBytes - lengthBytes;
    slab[at] = length >>> 24;
    slab[at + 1] = length >>> 16;
    slab[at + 2] = length >>> 8;
    slab[at + 3] = length;
    slab[at + 4] = wireVersion;
    slab[at + 5] = kindNumber;
    return at + frameHeaderBytes;
  }

  /**
   * Publish and Message: a long, the topic, the payload, the headers; then Publish's producer
   * id, sequence (`last`) and acknowledged sequence (`acked`), or Message's offset (`last`;
   * `producerId` null).
   */
  private encodeCarrier(
    kind: FrameKind,
    kindNumber: number,
    id: number,
    topic: string,
    payload: Uint8Array,
    headers: Headers,
    producerId: string | null,
    acked: number,
    last: number,
  ): EncodeResult {
    if (
      !isLong(id) ||
      !isLong(last) ||
      !isLong(acked) ||
      acked < 0 ||
      typeof topic !== "string" ||
      !(payload instanceof Uint8Array) ||
      last < 0 ||
      (kindNumber === 4 ? typeof producerId !== "string" : producerId !== null)
    ) {
      return { ok: false, error: malformed(`cannot encode ${kind}: a field has the wrong type`) };
    }
    const mapBytes = headers === noHeaders ? 1 : headersBytes(headers);
    if (mapBytes < 0) {
      return { ok: false, error: malformed(`cannot encode ${kind}: headers must map strings to strings`) };
    }
    // Consecutive frames usually share a topic (the same string object): measure it once.
    if (topic !== this.lastTopic) {
      this.lastTopic = topic;
      this.lastTopicBytes = utf8Length(topic);
    }
    const topicBytes = this.lastTopicBytes;
    const payloadBytes = payload.length;
    const producerBytes = producerId === null ? -1 : utf8Length(producerId);
    const frameBytes =
      frameHeaderBytes +
      longBytes(id) +
      longBytes(topicBytes) +
      topicBytes +
      longBytes(payloadBytes) +
      payloadBytes +
      mapBytes +
      (producerBytes < 0 ? 0 : longBytes(producerBytes) + producerBytes + longBytes(acked)) +
      longBytes(last);
    if (frameBytes > this.frameMaxBytes) {
      return { ok: false, error: frameTooLarge(frameBytes, this.frameMaxBytes) };
    }
    this.reserve(frameBytes);
    const slab = this.slab;
    let at = this.writeHeader(frameBytes, kindNumber);
    at = writeLong(slab, at, id);
    at = writeString(slab, at, topic, topicBytes);
    at = writeLong(slab, at, payloadBytes);
    slab.set(payload, at);
    at += payloadBytes;
    if (mapBytes === 1) slab[at++] = 0;
    else at = writeHeaders(slab, at, headers);
    if (producerId !== null) at = writeString(slab, at, producerId, producerBytes);
    at = writeLong(slab, at, last);
    if (producerId !== null) at = writeLong(slab, at, acked);
    assertWritten(at - this.end, frameBytes);
    this.end = at;
    return encoded;
  }

  /** Ack, Ping, Pong: one long. */
  private encodeLong(kind: FrameKind, kindNumber: number, value: number): EncodeResult {
    if (!isLong(value)) return { ok: false, error: malformed(`cannot encode ${kind}: not a long: ${value}`) };
    const frameBytes = frameHeaderBytes + longBytes(value);
    if (frameBytes > this.frameMaxBytes) {
      return { ok: false, error: frameTooLarge(frameBytes, this.frameMaxBytes) };
    }
    this.reserve(frameBytes);
    const at = writeLong(this.slab, this.writeHeader(frameBytes, kindNumber), value);
    assertWritten(at - this.end, frameBytes);
    this.end = at;
    return encoded;
  }

  private encodeAvro(frame: Frame): EncodeResult {
    const { number, type } = frameTypes[frame.kind];
    for (;;) {
      const bodyStart = this.end + frameHeaderBytes;
      let next: number;
      try {
        next =
          bodyStart < this.slab.length
            ? type.encode(frame, this.slab, bodyStart)
            : this.slab.length - bodyStart - 1;
      } catch (error) {
        return { ok: false, error: malformed(`cannot encode ${frame.kind}: ${(error as Error).message}`) };
      }
      // avsc returns minus the missing bytes when the slab is too small.
      const frameBytes = (next >= 0 ? next : this.slab.length - next) - this.end;
      if (frameBytes > this.frameMaxBytes) {
        return { ok: false, error: frameTooLarge(frameBytes, this.frameMaxBytes) };
      }
      if (next >= 0) {
        this.writeHeader(frameBytes, number);
        this.end = next;
        return encoded;
      }
      this.reserve(frameBytes);
    }
  }

  /** The bytes written since the last take, or undefined if none. */
  take(): Buffer | undefined {
    if (this.end === this.start) return undefined;
    const out = this.slab.subarray(this.start, this.end);
    this.start = this.end;
    if (this.slab.length - this.end < 256) {
      this.slab = Buffer.allocUnsafe(this.slabBytes);
      this.start = 0;
      this.end = 0;
    }
    return out;
  }
}

/** A hand-written encoder wrote other than the length it computed: a bug, stop here. */
function assertWritten(written: number, expected: number): void {
  if (written !== expected) throw new Error(`frame encoder wrote ${written} bytes, expected ${expected}`);
}

/** Encodes one frame into its own buffer (tests and cold paths). */
export function encodeFrame(frame: Frame, frameMaxBytes = 16 * 1024 * 1024): Buffer {
  const encoder = new FrameEncoder(frameMaxBytes, 256);
  const result = encoder.encode(frame);
  if (!result.ok) throw new Error(result.error.message);
  return encoder.take()!;
}

/** Decodes one whole frame (length prefix included). Never throws. */
export function decodeFrame(bytes: Uint8Array, frameMaxBytes = 16 * 1024 * 1024): DecodeResult {
  if (bytes.length < frameHeaderBytes) {
    return {
      ok: false,
      error: malformed(`${bytes.length} bytes is shorter than the ${frameHeaderBytes}-byte header`),
    };
  }
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const length = buffer.readUInt32BE(0);
  if (length + lengthBytes > frameMaxBytes) {
    return { ok: false, error: frameTooLarge(length + lengthBytes, frameMaxBytes) };
  }
  if (length + lengthBytes !== buffer.length) {
    return {
      ok: false,
      error: malformed(`length prefix says ${length + lengthBytes} bytes but ${buffer.length} were given`),
    };
  }
  const frame = decodeBody(new AvroReader(), buffer, lengthBytes, buffer.length);
  return isFrame(frame) ? { ok: true, frame } : { ok: false, error: frame };
}

// A WireError has a `tag`, and UnknownFrameKind a numeric `kind`; a frame's `kind` is its name.
const isFrame = (value: Frame | WireError): value is Frame => typeof (value as Frame).kind === "string";

/**
 * Decodes the frame in buffer[start, end) where start points at the version byte; returns the
 * frame or what is wrong with it.
 */
function decodeBody(reader: AvroReader, buffer: Buffer, start: number, end: number): Frame | WireError {
  if (end - start < 2) return malformed("frame has no version and kind");
  const version = buffer[start]!;
  if (version !== wireVersion) {
    return {
      tag: "UnsupportedVersion",
      message: `wire version ${version} is not supported; this peer speaks version ${wireVersion}`,
      version,
    };
  }
  const kindNumber = buffer[start + 1]!;
  reader.reset(buffer, start + 2, end);
  switch (kindNumber) {
    case 4: {
      const requestId = reader.longField();
      const topic = reader.topic();
      const payload = reader.bytes();
      const headers = reader.headers();
      const producerId = reader.string();
      const sequence = reader.longField();
      const ackedSequence = reader.longField();
      const problem =
        bodyProblem(reader, "Publish") ??
        (isCount(requestId) ? undefined : requestIdProblem) ??
        (isCount(sequence) && isCount(ackedSequence) ? undefined : sequenceProblem);
      if (problem !== undefined) return malformed(problem);
      return { kind: "Publish", requestId, topic, payload, headers, producerId, sequence, ackedSequence };
    }
    case 9: {
      const subscriptionId = reader.longField();
      const topic = reader.topic();
      const payload = reader.bytes();
      const headers = reader.headers();
      const offset = reader.longField();
      const problem =
        bodyProblem(reader, "Message") ??
        (isCount(subscriptionId) ? undefined : subscriptionIdProblem) ??
        (isCount(offset) ? undefined : offsetProblem);
      if (problem !== undefined) return malformed(problem);
      return { kind: "Message", subscriptionId, topic, payload, headers, offset };
    }
    case 7: {
      const throughRequestId = reader.longField();
      const problem =
        bodyProblem(reader, "Ack") ??
        (isCount(throughRequestId) ? undefined : "Ack id must be a non-negative safe integer");
      if (problem !== undefined) return malformed(problem);
      return { kind: "Ack", throughRequestId };
    }
    case 2:
    case 3: {
      const kind = kindNumber === 2 ? "Ping" : "Pong";
      const id = reader.longField();
      const problem =
        bodyProblem(reader, kind) ??
        (isCount(id) ? undefined : "Ping/Pong id must be a non-negative safe integer");
      if (problem !== undefined) return malformed(problem);
      return { kind, id };
    }
  }
  const kind = frameKindByNumber.get(kindNumber);
  if (kind === undefined) {
    return { tag: "UnknownFrameKind", message: `unknown frame kind ${kindNumber}`, kind: kindNumber };
  }
  const body = buffer.subarray(start + 2, end);
  let decoded: { value: unknown; offset: number };
  try {
    decoded = frameTypes[kind].type.decode(body, 0);
  } catch (error) {
    return malformed(`${kind} body does not decode: ${(error as Error).message}`);
  }
  if (decoded.offset < 0) return malformed(`${kind} body is truncated`);
  if (decoded.offset !== body.length) {
    return malformed(`${kind} body has ${body.length - decoded.offset} trailing bytes`);
  }
  const frame = decoded.value as { kind: FrameKind };
  frame.kind = kind;
  const problem = checkFields(frame as Frame);
  return problem === undefined ? (frame as Frame) : malformed(problem);
}

const requestIdProblem = "request id must be a non-negative safe integer";
const subscriptionIdProblem = "subscription id must be a non-negative safe integer";
const sequenceProblem = "sequence and acked sequence must be non-negative safe integers";
const offsetProblem = "offset must be a non-negative safe integer";

/** After a hand-written read: truncated, trailing bytes, or nothing wrong. */
function bodyProblem(reader: AvroReader, kind: FrameKind): string | undefined {
  if (reader.failed)
    return `${kind} body is ${reader.problem === "truncated" ? "truncated" : `malformed: ${reader.problem}`}`;
  if (reader.position !== reader.end)
    return `${kind} body has ${reader.end - reader.position} trailing bytes`;
  return undefined;
}

const isCount = (value: number) => Number.isSafeInteger(value) && value >= 0;

/** Range checks that Avro's types cannot express. Returns what is wrong, or undefined. */
function checkFields(frame: Frame): string | undefined {
  switch (frame.kind) {
    case "Hello":
      return frame.frameMaxBytes > 0 && frame.payloadMaxBytes > 0 && frame.frameMaxBytes <= 2 ** 31 - 1
        ? undefined
        : "Hello limits must be positive 32-bit integers";
    case "Ping":
    case "Pong":
      return isCount(frame.id) ? undefined : "Ping/Pong id must be a non-negative safe integer";
    case "Ack":
      return isCount(frame.throughRequestId) ? undefined : "Ack id must be a non-negative safe integer";
    case "Refusal":
      return isCount(frame.requestId) ? undefined : "request id must be a non-negative safe integer";
    case "Publish":
    case "Subscribe":
    case "Unsubscribe":
      if (!isCount(frame.requestId)) return requestIdProblem;
      if (frame.kind !== "Publish" && !isCount(frame.subscriptionId)) return subscriptionIdProblem;
      if (frame.kind === "Subscribe" && !isCount(frame.fromOffset)) return offsetProblem;
      if (frame.kind === "Publish" && !(isCount(frame.sequence) && isCount(frame.ackedSequence)))
        return sequenceProblem;
      return frame.kind === "Publish" ? checkHeaders(frame.headers) : undefined;
    case "Message":
      if (!isCount(frame.offset)) return offsetProblem;
      return isCount(frame.subscriptionId) ? checkHeaders(frame.headers) : subscriptionIdProblem;
    case "Forward":
      if (!(frame.group >= 0 && frame.group <= 65_536)) return "group must be in 0..65536";
      return isCount(frame.requestId) ? undefined : requestIdProblem;
    case "DeclareTopic":
    case "Drain":
      return isCount(frame.requestId) ? undefined : requestIdProblem;
    case "Subscribed":
      if (!isCount(frame.offset)) return offsetProblem;
      return isCount(frame.subscriptionId) ? undefined : subscriptionIdProblem;
    case "ForwardResult":
      if (!isCount(frame.offset)) return offsetProblem;
      return isCount(frame.requestId) ? undefined : requestIdProblem;
    case "Deliver":
      if (!(isCount(frame.offset) && isCount(frame.previous) && isCount(frame.replay))) return offsetProblem;
      return frame.partition >= 0 && frame.partition < 65_536
        ? checkHeaders(frame.headers)
        : "partition must be in 0..65535";
    case "Leader":
      return frame.partition >= 0 && frame.partition < 65_536 ? undefined : "partition must be in 0..65535";
    case "Goodbye":
      return undefined;
  }
}

function checkHeaders(headers: Readonly<Record<string, string>>): string | undefined {
  let count = 0;
  for (const _ in headers) count++;
  return count <= headersMax ? undefined : `more than ${headersMax} headers`;
}

export interface FrameSink {
  frame(frame: Frame): void;
  /** A bad frame. `fatal` means the frame boundary is lost and the decoder has stopped. */
  error(error: WireError, fatal: boolean): void;
}

/** Reassembles frames from a byte stream. */
export class FrameDecoder {
  /**
   * Chunks of an incomplete frame, joined once the whole frame has arrived.
   * Invariant: pendingTotal is their length; pendingNeeded is 0 until the length prefix is known.
   */
  private pending: Buffer[] = [];
  private pendingTotal = 0;
  /** Bytes the incomplete frame needs in all (prefix included), once its prefix is known. */
  private pendingNeeded = 0;
  private stopped = false;
  private readonly reader = new AvroReader();

  private readonly frameMaxBytes: number;

  constructor(frameMaxBytes: number) {
    this.frameMaxBytes = frameMaxBytes;
  }

  /** Feeds a chunk; calls the sink for every complete frame in order. */
  push(chunk: Buffer, sink: FrameSink): void {
    if (this.stopped) return;
    let offset = 0;
    if (this.pendingTotal > 0) {
      offset = this.completePending(chunk, sink);
      if (offset < 0 || this.stopped) return;
    }
    while (chunk.length - offset >= lengthBytes) {
      const length = chunk.readUInt32BE(offset);
      if (length + lengthBytes > this.frameMaxBytes) {
        this.stop();
        sink.error(frameTooLarge(length + lengthBytes, this.frameMaxBytes), true);
        return;
      }
      const end = offset + lengthBytes + length;
      if (end > chunk.length) {
        this.pendingNeeded = lengthBytes + length;
        break;
      }
      this.deliver(chunk, offset + lengthBytes, end, sink);
      offset = end;
      if (this.stopped) return;
    }
    if (offset < chunk.length) {
      const rest = chunk.subarray(offset);
      this.pending.push(rest);
      this.pendingTotal = rest.length;
    }
  }

  private deliver(buffer: Buffer, start: number, end: number, sink: FrameSink): void {
    const result = decodeBody(this.reader, buffer, start, end);
    if (isFrame(result)) sink.frame(result);
    else sink.error(result, false);
  }

  /**
   * Completes the held-back frame with only the bytes it lacks from `chunk` (the rest of the
   * chunk is then decoded in place, not copied); returns where the rest starts, or -1 if the
   * chunk was used up or the frame's length was refused.
   */
  private completePending(chunk: Buffer, sink: FrameSink): number {
    let taken = 0;
    if (this.pendingTotal < lengthBytes) {
      // The length prefix itself was split.
      const want = lengthBytes - this.pendingTotal;
      if (chunk.length < want) {
        this.pending.push(chunk);
        this.pendingTotal += chunk.length;
        return -1;
      }
      this.pending.push(chunk.subarray(0, want));
      taken = want;
      const prefix = Buffer.concat(this.pending, lengthBytes);
      const length = prefix.readUInt32BE(0);
      if (length + lengthBytes > this.frameMaxBytes) {
        this.stop();
        sink.error(frameTooLarge(length + lengthBytes, this.frameMaxBytes), true);
        return -1;
      }
      this.pending = [prefix];
      this.pendingTotal = lengthBytes;
      this.pendingNeeded = lengthBytes + length;
    }
    const want = this.pendingNeeded - this.pendingTotal;
    if (chunk.length - taken < want) {
      this.pending.push(taken === 0 ? chunk : chunk.subarray(taken));
      this.pendingTotal += chunk.length - taken;
      return -1;
    }
    this.pending.push(chunk.subarray(taken, taken + want));
    const frame = Buffer.concat(this.pending, this.pendingNeeded);
    this.pending = [];
    this.pendingTotal = 0;
    this.pendingNeeded = 0;
    this.deliver(frame, lengthBytes, frame.length, sink);
    return taken + want;
  }

  /** Stops decoding; later pushes are ignored. */
  stop(): void {
    this.stopped = true;
    this.pending = [];
    this.pendingTotal = 0;
  }

  /** Bytes of an incomplete frame held back. */
  get pendingBytes(): number {
    return this.pendingTotal;
  }
}
