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
import { frameTooLarge, malformed, type WireError } from "./errors.ts";
import {
  type Frame,
  type FrameKind,
  frameKindByNumber,
  frameTypes,
  headersMax,
  wireVersion,
} from "./schema.ts";

/** Bytes before the Avro body: the length prefix, the version and the kind. */
export const frameHeaderBytes = 6;
const lengthBytes = 4;

export type EncodeResult = { readonly ok: true } | { readonly ok: false; readonly error: WireError };
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
        this.slab.writeUInt32BE(frameBytes - lengthBytes, this.end);
        this.slab[this.end + 4] = wireVersion;
        this.slab[this.end + 5] = number;
        this.end = next;
        return { ok: true };
      }
      // Move the pending bytes to a new slab with room for this frame; the old slab may still
      // be referenced by taken buffers, so it is left as it is.
      const pending = this.end - this.start;
      const slab = Buffer.allocUnsafe(Math.max(this.slabBytes, pending + frameBytes));
      this.slab.copy(slab, 0, this.start, this.end);
      this.slab = slab;
      this.start = 0;
      this.end = pending;
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
  return decodeBody(buffer, lengthBytes, buffer.length);
}

/** Decodes the frame in buffer[start, end) where start points at the version byte. */
function decodeBody(buffer: Buffer, start: number, end: number): DecodeResult {
  if (end - start < 2) {
    return { ok: false, error: malformed("frame has no version and kind") };
  }
  const version = buffer[start]!;
  if (version !== wireVersion) {
    return {
      ok: false,
      error: {
        tag: "UnsupportedVersion",
        message: `wire version ${version} is not supported; this peer speaks version ${wireVersion}`,
        version,
      },
    };
  }
  const kindNumber = buffer[start + 1]!;
  const kind = frameKindByNumber.get(kindNumber);
  if (kind === undefined) {
    return {
      ok: false,
      error: { tag: "UnknownFrameKind", message: `unknown frame kind ${kindNumber}`, kind: kindNumber },
    };
  }
  const body = buffer.subarray(start + 2, end);
  let decoded: { value: unknown; offset: number };
  try {
    decoded = frameTypes[kind].type.decode(body, 0);
  } catch (error) {
    return { ok: false, error: malformed(`${kind} body does not decode: ${(error as Error).message}`) };
  }
  if (decoded.offset < 0) {
    return { ok: false, error: malformed(`${kind} body is truncated`) };
  }
  if (decoded.offset !== body.length) {
    return { ok: false, error: malformed(`${kind} body has ${body.length - decoded.offset} trailing bytes`) };
  }
  const frame = decoded.value as { kind: FrameKind };
  frame.kind = kind;
  const problem = checkFields(frame as Frame);
  return problem === undefined
    ? { ok: true, frame: frame as Frame }
    : { ok: false, error: malformed(problem) };
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
      if (!isCount(frame.requestId)) return "request id must be a non-negative safe integer";
      if (frame.kind !== "Publish" && !isCount(frame.subscriptionId)) {
        return "subscription id must be a non-negative safe integer";
      }
      return frame.kind === "Publish" ? checkHeaders(frame.headers) : undefined;
    case "Message":
      return isCount(frame.subscriptionId)
        ? checkHeaders(frame.headers)
        : "subscription id must be a non-negative safe integer";
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
  /** Chunks of an incomplete frame, joined once the whole frame has arrived. */
  private pending: Buffer[] = [];
  private pendingTotal = 0;
  /** Bytes the incomplete frame needs in all (prefix included), once its prefix is known. */
  private pendingNeeded = 0;
  private stopped = false;

  private readonly frameMaxBytes: number;

  constructor(frameMaxBytes: number) {
    this.frameMaxBytes = frameMaxBytes;
  }

  /** Feeds a chunk; calls the sink for every complete frame in order. */
  push(chunk: Buffer, sink: FrameSink): void {
    if (this.stopped) return;
    let buffer = chunk;
    if (this.pendingTotal > 0) {
      this.pending.push(chunk);
      this.pendingTotal += chunk.length;
      if (this.pendingTotal < Math.max(this.pendingNeeded, lengthBytes)) return;
      buffer = Buffer.concat(this.pending, this.pendingTotal);
      this.pending = [];
      this.pendingTotal = 0;
      this.pendingNeeded = 0;
    }
    let offset = 0;
    while (buffer.length - offset >= lengthBytes) {
      const length = buffer.readUInt32BE(offset);
      if (length + lengthBytes > this.frameMaxBytes) {
        this.stop();
        sink.error(frameTooLarge(length + lengthBytes, this.frameMaxBytes), true);
        return;
      }
      const end = offset + lengthBytes + length;
      if (end > buffer.length) {
        this.pendingNeeded = lengthBytes + length;
        break;
      }
      const result = decodeBody(buffer, offset + lengthBytes, end);
      offset = end;
      if (result.ok) sink.frame(result.frame);
      else sink.error(result.error, false);
      if (this.stopped) return;
    }
    if (offset < buffer.length) {
      const rest = buffer.subarray(offset);
      this.pending.push(rest);
      this.pendingTotal = rest.length;
    }
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
