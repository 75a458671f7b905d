import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeFrame,
  encodeFrame,
  errorCodes,
  type Frame,
  FrameDecoder,
  FrameEncoder,
  frameHeaderBytes,
  headersMax,
  type WireError,
  wireVersion,
} from "./index.ts";
import { frameTypes } from "./schema.ts";

// avsc encodes longs up to 2^53 - 2 as numbers (it refuses anything that might lose precision).
const id = fc.integer({ min: 0, max: 2 ** 53 - 2 });
const text = fc.string({ maxLength: 40 });
const payload = fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes));
const headers = fc.dictionary(text, text, { maxKeys: 5 }).map((entries) => {
  const out: Record<string, string> = Object.create(null);
  for (const [key, value] of Object.entries(entries)) out[key] = value;
  return out;
});
const code = fc.constantFrom(...errorCodes);

const frame: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({
    kind: fc.constant("Hello" as const),
    agent: text,
    frameMaxBytes: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    payloadMaxBytes: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  }),
  fc.record({ kind: fc.constant("Ping" as const), id }),
  fc.record({ kind: fc.constant("Pong" as const), id }),
  fc.record({ kind: fc.constant("Publish" as const), requestId: id, topic: text, payload, headers }),
  fc.record({ kind: fc.constant("Subscribe" as const), requestId: id, subscriptionId: id, topic: text }),
  fc.record({ kind: fc.constant("Unsubscribe" as const), requestId: id, subscriptionId: id }),
  fc.record({ kind: fc.constant("Ack" as const), throughRequestId: id }),
  fc.record({ kind: fc.constant("Refusal" as const), requestId: id, code, message: text }),
  fc.record({ kind: fc.constant("Message" as const), subscriptionId: id, topic: text, payload, headers }),
  fc.record({ kind: fc.constant("Goodbye" as const), code, message: text }),
  fc.record({ kind: fc.constant("Sync" as const), requestId: id, payload }),
  fc.record({ kind: fc.constant("SyncReply" as const), requestId: id, payload }),
  fc.record({ kind: fc.constant("RaftBatch" as const), payload }),
);

/** Decodes a stream split into the given chunk sizes, collecting frames and errors. */
function decodeChunked(bytes: Buffer, sizes: number[], frameMaxBytes = 1 << 20) {
  const decoder = new FrameDecoder(frameMaxBytes);
  const frames: Frame[] = [];
  const errors: { error: WireError; fatal: boolean }[] = [];
  const sink = {
    frame: (f: Frame) => frames.push(f),
    error: (error: WireError, fatal: boolean) => errors.push({ error, fatal }),
  };
  let offset = 0;
  for (const size of sizes) {
    if (offset >= bytes.length) break;
    decoder.push(bytes.subarray(offset, offset + size), sink);
    offset += size;
  }
  if (offset < bytes.length) decoder.push(bytes.subarray(offset), sink);
  return { frames, errors, decoder };
}

const plain = (value: unknown) =>
  JSON.parse(JSON.stringify(value, (_k, v) => (Buffer.isBuffer(v) ? [...v] : v)));

describe("frame codec", () => {
  it("round-trips every frame kind", () => {
    fc.assert(
      fc.property(frame, (original) => {
        const result = decodeFrame(encodeFrame(original));
        expect(result.ok).toBe(true);
        if (result.ok) expect(plain(result.frame)).toEqual(plain(original));
      }),
    );
  });

  it("reassembles batches of frames split into arbitrary chunks", () => {
    fc.assert(
      fc.property(
        fc.array(frame, { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 64 })),
        (frames, sizes) => {
          const encoder = new FrameEncoder(1 << 20, 512);
          for (const f of frames) expect(encoder.encode(f).ok).toBe(true);
          const bytes = encoder.take() ?? Buffer.alloc(0);
          const decoded = decodeChunked(bytes, sizes);
          expect(decoded.errors).toEqual([]);
          expect(plain(decoded.frames)).toEqual(plain(frames));
          expect(decoded.decoder.pendingBytes).toBe(0);
        },
      ),
    );
  });

  it("never overwrites bytes already taken from the encoder", () => {
    const encoder = new FrameEncoder(1 << 20, 300);
    const taken: Buffer[] = [];
    const frames: Frame[] = [];
    for (let index = 0; index < 50; index++) {
      const f: Frame = { kind: "Ping", id: index };
      frames.push(f);
      encoder.encode(f);
      if (index % 3 === 0) taken.push(Buffer.from(encoder.take()!));
      if (index % 3 === 0) taken[taken.length - 1] = encoder.take() ?? taken[taken.length - 1]!;
    }
    const copies = taken.map((b) => Buffer.from(b));
    for (let index = 0; index < 200; index++) encoder.encode({ kind: "Ping", id: 1e6 + index });
    expect(taken).toEqual(copies);
  });

  it("refuses to encode a frame over the limit and keeps earlier frames intact", () => {
    const encoder = new FrameEncoder(1000, 256);
    expect(encoder.encode({ kind: "Ping", id: 7 }).ok).toBe(true);
    const big = encoder.encode({
      kind: "Publish",
      requestId: 1,
      topic: "t",
      payload: Buffer.alloc(2000),
      headers: {},
    });
    expect(big).toMatchObject({ ok: false, error: { tag: "FrameTooLarge", limitBytes: 1000 } });
    const decoded = decodeFrame(encoder.take()!);
    expect(decoded).toMatchObject({ ok: true, frame: { kind: "Ping", id: 7 } });
  });
});

describe("decoding bad input gives a typed error and never throws", () => {
  const ping = encodeFrame({ kind: "Ping", id: 42 });

  it("wrong version", () => {
    const bad = Buffer.from(ping);
    bad[4] = wireVersion + 1;
    expect(decodeFrame(bad)).toMatchObject({
      ok: false,
      error: { tag: "UnsupportedVersion", version: wireVersion + 1 },
    });
  });

  it("unknown kind", () => {
    const bad = Buffer.from(ping);
    bad[5] = 200;
    expect(decodeFrame(bad)).toMatchObject({ ok: false, error: { tag: "UnknownFrameKind", kind: 200 } });
  });

  it("truncated frame and truncated body", () => {
    expect(decodeFrame(ping.subarray(0, 3))).toMatchObject({ ok: false, error: { tag: "MalformedFrame" } });
    expect(decodeFrame(ping.subarray(0, ping.length - 1))).toMatchObject({
      ok: false,
      error: { tag: "MalformedFrame" },
    });
    const publish = encodeFrame({
      kind: "Publish",
      requestId: 1,
      topic: "orders",
      payload: Buffer.alloc(10),
      headers: {},
    });
    const cut = Buffer.from(publish.subarray(0, publish.length - 5));
    cut.writeUInt32BE(cut.length - 4, 0);
    expect(decodeFrame(cut)).toMatchObject({
      ok: false,
      error: { tag: "MalformedFrame", message: expect.stringMatching(/truncated/) },
    });
  });

  it("trailing bytes after the body", () => {
    const padded = Buffer.concat([ping, Buffer.from([0])]);
    padded.writeUInt32BE(padded.length - 4, 0);
    expect(decodeFrame(padded)).toMatchObject({
      ok: false,
      error: { tag: "MalformedFrame", message: expect.stringMatching(/trailing/) },
    });
  });

  it("oversized frame stops the stream decoder (the frame boundary is lost)", () => {
    const header = Buffer.alloc(8);
    header.writeUInt32BE(5_000_000, 0);
    const { frames, errors } = decodeChunked(Buffer.concat([header, ping]), [3, 5, 100], 1 << 20);
    expect(frames).toEqual([]);
    expect(errors).toEqual([
      { error: expect.objectContaining({ tag: "FrameTooLarge", bytes: 5_000_004 }), fatal: true },
    ]);
  });

  it("a bad frame in a stream is reported and the next frame still decodes", () => {
    const bad = Buffer.from(ping);
    bad[5] = 99;
    const { frames, errors } = decodeChunked(Buffer.concat([bad, ping]), [1, 2, 3, 100]);
    expect(errors.map((e) => [e.error.tag, e.fatal])).toEqual([["UnknownFrameKind", false]]);
    expect(frames).toMatchObject([{ kind: "Ping", id: 42 }]);
  });

  it("enum index out of range", () => {
    const goodbye = Buffer.from(encodeFrame({ kind: "Goodbye", code: "Internal", message: "" }));
    goodbye[frameHeaderBytes] = 0x7e; // zig-zag 63: no such error code
    expect(decodeFrame(goodbye)).toMatchObject({ ok: false, error: { tag: "MalformedFrame" } });
  });

  it("a forged header count is refused at once instead of looping", () => {
    // Publish body: requestId 1, topic "t", empty payload, then a map block count of 2^40.
    const body = Buffer.from([0x02, 0x02, 0x74, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    const bytes = Buffer.concat([Buffer.alloc(6), body]);
    bytes.writeUInt32BE(bytes.length - 4, 0);
    bytes[4] = wireVersion;
    bytes[5] = 4;
    expect(decodeFrame(bytes)).toMatchObject({ ok: false, error: { tag: "MalformedFrame" } });
  });

  it(`more than ${headersMax} headers`, () => {
    const many: Record<string, string> = {};
    for (let index = 0; index <= headersMax; index++) many[`h${index}`] = "v";
    const bytes = encodeFrame({
      kind: "Message",
      subscriptionId: 1,
      topic: "t",
      payload: Buffer.alloc(0),
      headers: many,
    });
    expect(decodeFrame(bytes)).toMatchObject({ ok: false, error: { tag: "MalformedFrame" } });
  });

  it("random bytes", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.array(fc.integer({ min: 1, max: 50 })),
        (bytes, sizes) => {
          const buffer = Buffer.from(bytes);
          const single = decodeFrame(buffer);
          expect(typeof single.ok).toBe("boolean");
          decodeChunked(buffer, sizes, 1 << 16);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("random bytes behind a valid header", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), fc.uint8Array({ maxLength: 100 }), (kind, body) => {
        const bytes = Buffer.concat([Buffer.alloc(6), Buffer.from(body)]);
        bytes.writeUInt32BE(bytes.length - 4, 0);
        bytes[4] = wireVersion;
        bytes[5] = kind;
        const result = decodeFrame(bytes);
        if (!result.ok) expect(result.error.message.length).toBeGreaterThan(0);
      }),
      { numRuns: 3000 },
    );
  });

  it("mutated valid frames", () => {
    fc.assert(
      fc.property(
        frame,
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.nat(),
        (original, mutations, cut) => {
          const bytes = Buffer.from(encodeFrame(original));
          for (const { at, value } of mutations) bytes[at % bytes.length] = value;
          const truncated = bytes.subarray(0, Math.max(0, bytes.length - (cut % 4)));
          decodeFrame(bytes);
          decodeFrame(truncated);
          decodeChunked(Buffer.concat([bytes, truncated]), [7, 1, 13], 1 << 16);
        },
      ),
      { numRuns: 3000 },
    );
  });
});

// The per-message frames are encoded and decoded by hand (hot-frames.ts); avsc with the
// schemas in schema.ts is the reference they must match byte for byte and verdict for verdict.
describe("hand-written path matches avsc", () => {
  const hotKinds = ["Publish", "Message", "Ack", "Ping", "Pong"] as const;
  type HotKind = (typeof hotKinds)[number];
  const hotFrame = frame.filter((f) => (hotKinds as readonly string[]).includes(f.kind));
  const unicode = fc.string({ unit: "grapheme", maxLength: 20 });

  /** avsc's encoding of a frame, with the same 6-byte header. */
  function avscBytes(f: Frame): Buffer {
    const { number, type } = frameTypes[f.kind];
    const body = type.toBuffer(f);
    const header = Buffer.alloc(frameHeaderBytes);
    header.writeUInt32BE(body.length + 2, 0);
    header[4] = wireVersion;
    header[5] = number;
    return Buffer.concat([header, body]);
  }

  /** avsc's decoding of a body plus the range checks; undefined where it refuses. */
  function avscDecode(kind: HotKind, body: Buffer): Record<string, unknown> | undefined {
    let decoded: { value: unknown; offset: number };
    try {
      decoded = frameTypes[kind].type.decode(body, 0);
    } catch {
      return undefined;
    }
    if (decoded.offset !== body.length) return undefined;
    const value = decoded.value as Record<string, unknown>;
    const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
    for (const field of ["requestId", "subscriptionId", "throughRequestId", "id"]) {
      if (field in value && !count(value[field])) return undefined;
    }
    if ("headers" in value && Object.keys(value.headers as object).length > headersMax) return undefined;
    return { ...value, kind };
  }

  it("encodes exactly avsc's bytes", () => {
    fc.assert(
      fc.property(hotFrame, (f) => {
        expect(encodeFrame(f)).toEqual(avscBytes(f));
      }),
    );
    fc.assert(
      fc.property(
        fc.oneof(fc.constant("Publish" as const), fc.constant("Message" as const)),
        fc.integer({ min: 0, max: 2 ** 53 - 2 }),
        unicode,
        fc.dictionary(unicode, unicode, { maxKeys: 5 }),
        (kind, id, topic, headers) => {
          const f: Frame =
            kind === "Publish"
              ? { kind, requestId: id, topic, payload: Buffer.from(topic), headers }
              : { kind, subscriptionId: id, topic, payload: Buffer.from(topic), headers };
          expect(encodeFrame(f)).toEqual(avscBytes(f));
        },
      ),
    );
  });

  it("a decoder reuses a repeated topic's string but never confuses topics of one length", () => {
    const topics = ["ab", "ac", "ab", "ab", "é", "\u00e9", "ab", "x".repeat(300), "x".repeat(300), "a"];
    const encoder = new FrameEncoder(1 << 20);
    for (const [index, topic] of topics.entries()) {
      encoder.encode({
        kind: "Message",
        subscriptionId: index,
        topic,
        payload: Buffer.alloc(1),
        headers: {},
      });
    }
    const { frames, errors } = decodeChunked(encoder.take()!, [5, 1000]);
    expect(errors).toEqual([]);
    expect(frames.map((f) => (f.kind === "Message" ? f.topic : ""))).toEqual(topics);
  });

  it("refuses a long past 2^53 - 2, as avsc does, though 2^53 - 1 is a safe integer", () => {
    const ack = (id: number) => {
      const body = Buffer.alloc(10);
      let zigzag = id * 2;
      let length = 0;
      while (zigzag >= 128) {
        body[length++] = (zigzag % 128) | 0x80;
        zigzag = Math.floor(zigzag / 128);
      }
      body[length++] = zigzag;
      const bytes = Buffer.concat([
        Buffer.from([0, 0, 0, length + 2, wireVersion, 7]),
        body.subarray(0, length),
      ]);
      return decodeFrame(bytes);
    };
    expect(ack(2 ** 53 - 2)).toMatchObject({
      ok: true,
      frame: { kind: "Ack", throughRequestId: 2 ** 53 - 2 },
    });
    expect(ack(2 ** 53 - 1)).toMatchObject({ ok: false, error: { tag: "MalformedFrame" } });
  });

  it("refuses to encode what avsc refuses", () => {
    const bad: Frame[] = [
      { kind: "Ack", throughRequestId: 2 ** 53 },
      { kind: "Ping", id: 1.5 },
      {
        kind: "Publish",
        requestId: 1,
        topic: "t",
        payload: Buffer.alloc(1),
        headers: { a: 1 as unknown as string },
      },
      { kind: "Message", subscriptionId: -(2 ** 53), topic: "t", payload: Buffer.alloc(1), headers: {} },
    ];
    for (const f of bad) {
      expect(() => frameTypes[f.kind].type.toBuffer(f)).toThrow();
      expect(new FrameEncoder(1 << 20).encode(f)).toMatchObject({
        ok: false,
        error: { tag: "MalformedFrame" },
      });
    }
  });

  it("decodes any body to the same value or the same refusal", () => {
    const kindNumbers: Record<HotKind, number> = { Publish: 4, Message: 9, Ack: 7, Ping: 2, Pong: 3 };
    const check = (kind: HotKind, body: Buffer) => {
      const bytes = Buffer.concat([Buffer.alloc(frameHeaderBytes), body]);
      bytes.writeUInt32BE(bytes.length - 4, 0);
      bytes[4] = wireVersion;
      bytes[5] = kindNumbers[kind];
      const ours = decodeFrame(bytes);
      const reference = avscDecode(kind, body);
      expect(ours.ok).toBe(reference !== undefined);
      if (ours.ok) expect(plain(ours.frame)).toEqual(plain(reference));
    };
    const kind = fc.constantFrom(...hotKinds);
    fc.assert(
      fc.property(kind, fc.uint8Array({ maxLength: 60 }), (k, body) => check(k, Buffer.from(body))),
      { numRuns: 5000 },
    );
    fc.assert(
      fc.property(
        hotFrame,
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 3 }),
        fc.nat({ max: 3 }),
        (f, mutations, cut) => {
          const body = Buffer.from(encodeFrame(f).subarray(frameHeaderBytes));
          for (const { at, value } of mutations) if (body.length > 0) body[at % body.length] = value;
          check(f.kind as HotKind, body.subarray(0, Math.max(0, body.length - cut)));
        },
      ),
      { numRuns: 5000 },
    );
  });
});
