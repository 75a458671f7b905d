import avro from "avsc";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeFrame,
  encodeFrame,
  errorCodes,
  type Frame,
  FrameDecoder,
  FrameEncoder,
  type FrameKind,
  frameHeaderBytes,
  headersMax,
  type Message,
  type Publish,
  type WireError,
  wireVersion,
} from "./index.ts";
import { frameTypes } from "./schema.ts";

// avsc encodes longs up to 2^53 - 2 as numbers (it refuses anything that might lose precision).
const longMax = 2 ** 53 - 2;
const id = fc.integer({ min: 0, max: longMax });
const text = fc.string({ maxLength: 40 });
// Any Unicode (multi-byte UTF-8, astral planes, combining marks), but no lone surrogates: those
// do not survive UTF-8 and no peer could send them.
const unicode = fc.string({ unit: "grapheme", maxLength: 20 });
// Schema: 1..64 bytes. ASCII ids, and non-ASCII ones whose UTF-8 is longer than their length.
const producerId = fc
  .oneof(
    fc.string({ minLength: 1, maxLength: 64 }),
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 16 }),
  )
  .filter((value) => Buffer.byteLength(value) <= 64);
const payload = fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes));
const headers = fc.dictionary(text, text, { maxKeys: 5 }).map((entries) => {
  const out: Record<string, string> = Object.create(null);
  for (const [key, value] of Object.entries(entries)) out[key] = value;
  return out;
});
const code = fc.constantFrom(...errorCodes);

// One arbitrary per frame kind; `allKinds` checks that none is missing.
const frameOfKind: { readonly [K in FrameKind]: fc.Arbitrary<Extract<Frame, { kind: K }>> } = {
  Hello: fc.record({
    kind: fc.constant("Hello"),
    agent: text,
    frameMaxBytes: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    payloadMaxBytes: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  }),
  Ping: fc.record({ kind: fc.constant("Ping"), id }),
  Pong: fc.record({ kind: fc.constant("Pong"), id }),
  Publish: fc.record({
    kind: fc.constant("Publish"),
    requestId: id,
    topic: text,
    payload,
    headers,
    producerId,
    sequence: id,
    ackedSequence: id,
  }),
  Subscribe: fc.record({
    kind: fc.constant("Subscribe"),
    requestId: id,
    subscriptionId: id,
    topic: text,
    fromOffset: id,
  }),
  Unsubscribe: fc.record({ kind: fc.constant("Unsubscribe"), requestId: id, subscriptionId: id }),
  Ack: fc.record({ kind: fc.constant("Ack"), throughRequestId: id }),
  Refusal: fc.record({ kind: fc.constant("Refusal"), requestId: id, code, message: text }),
  Message: fc.record({
    kind: fc.constant("Message"),
    subscriptionId: id,
    topic: text,
    payload,
    headers,
    offset: id,
  }),
  Goodbye: fc.record({ kind: fc.constant("Goodbye"), code, message: text }),
  Sync: fc.record({ kind: fc.constant("Sync"), requestId: id, payload }),
  SyncReply: fc.record({ kind: fc.constant("SyncReply"), requestId: id, payload }),
  RaftBatch: fc.record({ kind: fc.constant("RaftBatch"), payload }),
  DeclareTopic: fc.record({
    kind: fc.constant("DeclareTopic"),
    requestId: id,
    topic: unicode,
    topicKind: fc.constantFrom("persistent", "ephemeral"),
  }),
  Drain: fc.record({ kind: fc.constant("Drain"), requestId: id, router: unicode }),
  Subscribed: fc.record({ kind: fc.constant("Subscribed"), subscriptionId: id, offset: id }),
  Leader: fc.record({
    kind: fc.constant("Leader"),
    partition: fc.integer({ min: 0, max: 65_535 }),
    router: unicode,
    address: unicode,
  }),
  // Groups 0..65535 are partitions and 65536 the controller (partitions/controller-state.ts).
  Forward: fc.record({
    kind: fc.constant("Forward"),
    requestId: id,
    group: fc.integer({ min: 0, max: 65_536 }),
    command: payload,
  }),
  ForwardResult: fc.record({
    kind: fc.constant("ForwardResult"),
    requestId: id,
    ok: fc.boolean(),
    code,
    message: unicode,
    leader: fc.oneof(fc.constant(""), unicode),
    offset: id,
  }),
  Deliver: fc.record({
    kind: fc.constant("Deliver"),
    partition: fc.integer({ min: 0, max: 65_535 }),
    offset: id,
    previous: id,
    replay: id,
    topic: unicode,
    payload,
    headers,
  }),
};
const allKinds = Object.keys(frameTypes) as FrameKind[];
const frame: fc.Arbitrary<Frame> = fc.oneof(
  ...allKinds.map((kind) => frameOfKind[kind] as fc.Arbitrary<Frame>),
);

/** avsc's encoding of a frame (the reference), with the same 6-byte header. */
function avscBytes(f: Frame): Buffer {
  const { number, type } = frameTypes[f.kind];
  return withHeader(type.toBuffer(f), number);
}

/** A whole frame: the length prefix, the version and kind bytes, then `body`. */
function withHeader(body: Uint8Array, kindNumber: number, version = wireVersion): Buffer {
  const header = Buffer.alloc(frameHeaderBytes);
  header.writeUInt32BE(body.length + 2, 0);
  header[4] = version;
  header[5] = kindNumber;
  return Buffer.concat([header, body]);
}

/** The Avro long `n`: a zig-zag varint, written out here independently of hot-frames.ts. */
function zigzagVarint(n: number): Buffer {
  const bytes: number[] = [];
  let zigzag = n >= 0 ? n * 2 : -n * 2 - 1;
  while (zigzag >= 128) {
    bytes.push((zigzag % 128) | 0x80);
    zigzag = Math.floor(zigzag / 128);
  }
  bytes.push(zigzag);
  return Buffer.from(bytes);
}

const samplePublish: Publish = {
  kind: "Publish",
  requestId: 1,
  topic: "orders",
  payload: Buffer.from("hello"),
  headers: { trace: "7" },
  producerId: "producer-ä",
  sequence: 300,
  ackedSequence: 299,
};
const sampleMessage: Message = {
  kind: "Message",
  subscriptionId: 1,
  topic: "orders",
  payload: Buffer.from("hello"),
  headers: { trace: "7" },
  offset: 300,
};

/** `bytes` less its last `count` bytes, with the length prefix fixed to match. */
function cut(bytes: Buffer, count: number): Buffer {
  const out = Buffer.from(bytes.subarray(0, bytes.length - count));
  out.writeUInt32BE(out.length - 4, 0);
  return out;
}

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
    // Every kind in the schema has an arbitrary (a kind added later fails here, not silently).
    expect(Object.keys(frameOfKind).sort()).toEqual([...allKinds].sort());
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
      producerId: "p",
      sequence: 1,
      ackedSequence: 0,
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
      producerId: "p",
      sequence: 1,
      ackedSequence: 0,
    });
    expect(decodeFrame(cut(publish, 5))).toMatchObject({
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
      offset: 0,
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
      fc.property(fc.integer({ min: 1, max: 20 }), fc.uint8Array({ maxLength: 100 }), (kind, body) => {
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
  const hotFrame: fc.Arbitrary<Frame> = fc.oneof(
    ...hotKinds.map((kind) => frameOfKind[kind] as fc.Arbitrary<Frame>),
  );

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
    for (const field of [
      "requestId",
      "subscriptionId",
      "throughRequestId",
      "id",
      "sequence",
      "ackedSequence",
      "offset",
    ]) {
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
        id,
        unicode,
        fc.dictionary(unicode, unicode, { maxKeys: 5 }),
        producerId,
        id,
        id,
        (kind, id, topic, headers, producer, last, acked) => {
          const f: Frame =
            kind === "Publish"
              ? {
                  kind,
                  requestId: id,
                  topic,
                  payload: Buffer.from(topic),
                  headers,
                  producerId: producer,
                  sequence: last,
                  ackedSequence: acked,
                }
              : { kind, subscriptionId: id, topic, payload: Buffer.from(topic), headers, offset: last };
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
        offset: index,
      });
    }
    const { frames, errors } = decodeChunked(encoder.take()!, [5, 1000]);
    expect(errors).toEqual([]);
    expect(frames.map((f) => (f.kind === "Message" ? f.topic : ""))).toEqual(topics);
  });

  it("a Publish's producer id and topic never stand in for each other, even at one length", () => {
    // The decoder reads both through the reader's one-entry topic cache (hot-frames.ts), which
    // must compare bytes, not only lengths.
    const sent: [topic: string, producerId: string][] = [
      ["ab", "ac"],
      ["ab", "ab"],
      ["ac", "ab"],
      ["ab", "ac"],
      ["é", "ü"],
      ["é", "xy"],
      ["orders", "x".repeat(64)],
      ["x".repeat(64), "orders"],
    ];
    const encoder = new FrameEncoder(1 << 20);
    for (const [index, [topic, producer]] of sent.entries()) {
      const f: Frame = {
        kind: "Publish",
        requestId: index,
        topic,
        payload: Buffer.alloc(0),
        headers: {},
        producerId: producer,
        sequence: index + 1,
        ackedSequence: index,
      };
      expect(encoder.encode(f).ok).toBe(true);
    }
    const { frames, errors } = decodeChunked(encoder.take()!, [3, 1000]);
    expect(errors).toEqual([]);
    expect(frames.map((f) => (f.kind === "Publish" ? [f.topic, f.producerId] : []))).toEqual(sent);
  });

  it("refuses a long past 2^53 - 2, as avsc does, though 2^53 - 1 is a safe integer", () => {
    const ack = (id: number) => decodeFrame(withHeader(zigzagVarint(id), 7));
    expect(ack(2 ** 53 - 2)).toMatchObject({
      ok: true,
      frame: { kind: "Ack", throughRequestId: 2 ** 53 - 2 },
    });
    expect(ack(2 ** 53 - 1)).toMatchObject({ ok: false, error: { tag: "MalformedFrame" } });
  });

  it("the same bound holds for a Publish's sequences and a Message's offset (their trailing longs)", () => {
    // avsc's body with its trailing longs 0 (one byte each), those bytes replaced by `longs`.
    const withTrailing = (f: Frame, longs: number[]) => {
      const body = frameTypes[f.kind].type.toBuffer(f);
      const number = frameTypes[f.kind].number;
      const kept = body.subarray(0, body.length - longs.length);
      return decodeFrame(withHeader(Buffer.concat([kept, ...longs.map(zigzagVarint)]), number));
    };
    const publish: Frame = { ...samplePublish, sequence: 0, ackedSequence: 0 };
    const message: Frame = { ...sampleMessage, offset: 0 };
    expect(withTrailing(publish, [longMax, 0])).toMatchObject({
      ok: true,
      frame: { sequence: longMax, ackedSequence: 0 },
    });
    expect(withTrailing(publish, [0, longMax])).toMatchObject({
      ok: true,
      frame: { sequence: 0, ackedSequence: longMax },
    });
    expect(withTrailing(publish, [longMax, longMax])).toMatchObject({
      ok: true,
      frame: { sequence: longMax, ackedSequence: longMax },
    });
    expect(withTrailing(message, [longMax])).toMatchObject({ ok: true, frame: { offset: longMax } });
    const tooBig: [Frame, number[]][] = [
      [publish, [2 ** 53 - 1, 0]],
      [publish, [0, 2 ** 53 - 1]],
      [message, [2 ** 53 - 1]],
    ];
    for (const [f, longs] of tooBig) {
      expect(withTrailing(f, longs)).toMatchObject({
        ok: false,
        error: { tag: "MalformedFrame", message: expect.stringMatching(/out of range/) },
      });
    }
  });

  it("refuses to encode what avsc refuses", () => {
    const bad: Frame[] = [
      { kind: "Ack", throughRequestId: 2 ** 53 },
      { kind: "Ping", id: 1.5 },
      { ...samplePublish, headers: { a: 1 as unknown as string } },
      { ...sampleMessage, subscriptionId: -(2 ** 53) },
      { ...samplePublish, sequence: 2 ** 53 },
      { ...samplePublish, sequence: 0.5 },
      { ...samplePublish, sequence: -(2 ** 53) },
      { ...samplePublish, ackedSequence: 2 ** 53 },
      { ...samplePublish, ackedSequence: 0.5 },
      { ...samplePublish, ackedSequence: -(2 ** 53) },
      { ...samplePublish, ackedSequence: "1" as unknown as number },
      { ...samplePublish, producerId: 7 as unknown as string },
      // A caller still building version 1 frames, without the new fields.
      { ...samplePublish, producerId: undefined as unknown as string },
      { ...samplePublish, sequence: undefined as unknown as number },
      // A caller that knows the producer id and sequence but not the acknowledged sequence.
      { ...samplePublish, ackedSequence: undefined as unknown as number },
      { ...sampleMessage, offset: 1.5 },
      { ...sampleMessage, offset: undefined as unknown as number },
      { ...sampleMessage, offset: -(2 ** 53) },
    ];
    for (const f of bad) {
      expect(() => frameTypes[f.kind].type.toBuffer(f)).toThrow();
      expect(new FrameEncoder(1 << 20).encode(f)).toMatchObject({
        ok: false,
        error: { tag: "MalformedFrame" },
      });
    }
  });

  it("refuses a Publish whose producer id is null, as avsc does", () => {
    // encodeCarrier (codec.ts) tells a Message by its null producer id; a Publish with one must
    // not be written as a Message-shaped body its peer would refuse as truncated.
    const f: Frame = { ...samplePublish, producerId: null as unknown as string };
    expect(() => frameTypes.Publish.type.toBuffer(f)).toThrow();
    expect(new FrameEncoder(1 << 20).encode(f)).toMatchObject({
      ok: false,
      error: { tag: "MalformedFrame" },
    });
  });

  it("refuses to encode a negative sequence, acked sequence or offset, which avsc would write", () => {
    // Neuron's range rule, not Avro's: a peer would refuse the frame (checkFields), so the
    // encoder refuses it here, where the caller can see which frame was wrong.
    const bad: Frame[] = [
      { ...samplePublish, sequence: -1 },
      { ...samplePublish, sequence: -(2 ** 52) },
      { ...samplePublish, ackedSequence: -1 },
      { ...samplePublish, ackedSequence: -(2 ** 52) },
      { ...samplePublish, sequence: -1, ackedSequence: -1 },
      { ...sampleMessage, offset: -1 },
      { ...sampleMessage, offset: -(2 ** 52) },
    ];
    for (const f of bad) {
      expect(() => frameTypes[f.kind].type.toBuffer(f)).not.toThrow();
      const encoder = new FrameEncoder(1 << 20);
      expect(encoder.encode(f)).toMatchObject({ ok: false, error: { tag: "MalformedFrame" } });
      expect(encoder.pendingBytes).toBe(0);
      expect(() => encodeFrame(f)).toThrow(/malformed frame/);
    }
    // Zero is in range for all three.
    const zero: Frame[] = [
      { ...samplePublish, sequence: 0, ackedSequence: 0 },
      { ...sampleMessage, offset: 0 },
    ];
    for (const f of zero) expect(encodeFrame(f)).toEqual(avscBytes(f));
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

describe("wire versions 2 and 3: the frames and fields they added", () => {
  const malformedWith = (pattern: RegExp) => ({
    ok: false,
    error: { tag: "MalformedFrame", message: expect.stringMatching(pattern) },
  });
  const sampleSubscribe: Frame = {
    kind: "Subscribe",
    requestId: 1,
    subscriptionId: 2,
    topic: "orders",
    fromOffset: 300,
  };
  const sampleForwardResult: Frame = {
    kind: "ForwardResult",
    requestId: 1,
    ok: false,
    code: "NotLeader",
    message: "ask r2",
    leader: "r2",
    offset: 300,
  };
  const sampleDeliver: Frame = {
    kind: "Deliver",
    partition: 65_535,
    offset: 300,
    previous: 299,
    replay: 7,
    topic: "orders",
    payload: Buffer.from("hello"),
    headers: { trace: "7" },
  };

  it("keeps the kind numbers of the new frames", () => {
    const samples: [Frame, number][] = [
      [{ kind: "DeclareTopic", requestId: 1, topic: "orders", topicKind: "persistent" }, 14],
      [{ kind: "Forward", requestId: 1, group: 65_536, command: Buffer.from([1, 2]) }, 15],
      [sampleForwardResult, 16],
      [sampleDeliver, 17],
      [{ kind: "Leader", partition: 7, router: "r2", address: "127.0.0.1:7412" }, 20],
    ];
    for (const [f, number] of samples) {
      const bytes = encodeFrame(f);
      expect([bytes[4], bytes[5]]).toEqual([wireVersion, number]);
      expect(decodeFrame(bytes)).toMatchObject({ ok: true, frame: f });
    }
  });

  it("appends error codes: version 1's codes keep their Avro enum indexes", () => {
    const version1 = [
      "Internal",
      "MalformedFrame",
      "UnsupportedVersion",
      "FrameTooLarge",
      "PayloadTooLarge",
      "InvalidTopic",
      "UnknownSubscription",
      "DuplicateSubscription",
      "TooManySubscriptions",
      "TooManyHeaders",
      "ShuttingDown",
      "NotAuthorized",
      "ProtocolViolation",
      "SlowConsumer",
      "TooManyClients",
    ];
    expect(errorCodes.slice(0, version1.length)).toEqual(version1);
    const goodbye = encodeFrame({ kind: "Goodbye", code: "LimitReached", message: "" });
    expect(goodbye[frameHeaderBytes]).toBe(errorCodes.indexOf("LimitReached") * 2);
  });

  it("refuses a version 1 frame as UnsupportedVersion instead of misreading its Publish", () => {
    // Version 1's Publish: version 2's less the producer id, the sequence and the acked sequence.
    const body = frameTypes.Publish.type.toBuffer(samplePublish);
    const trailing =
      1 +
      Buffer.byteLength(samplePublish.producerId) +
      zigzagVarint(samplePublish.sequence).length +
      zigzagVarint(samplePublish.ackedSequence).length;
    const version1Body = body.subarray(0, body.length - trailing);
    // The cut lands right after the headers (an empty map block ends in 0).
    const version1 = avro.Type.forSchema({
      type: "record",
      name: "PublishVersion1",
      fields: [
        { name: "requestId", type: "long" },
        { name: "topic", type: "string" },
        { name: "payload", type: "bytes" },
        { name: "headers", type: { type: "map", values: "string" } },
      ],
    });
    expect(version1Body).toEqual(version1.toBuffer(samplePublish));
    expect(decodeFrame(withHeader(version1Body, 4, 1))).toEqual({
      ok: false,
      error: {
        tag: "UnsupportedVersion",
        version: 1,
        message: `wire version 1 is not supported; this peer speaks version ${wireVersion}`,
      },
    });
    // The same body labelled version 2 lacks the new fields.
    expect(decodeFrame(withHeader(version1Body, 4))).toEqual(
      malformedWith(/^malformed frame: Publish body is truncated$/),
    );
  });

  it("refuses every frame kind labelled with another version, and the stream goes on", () => {
    fc.assert(
      fc.property(frame, fc.constantFrom(0, 1, 2, 4, 255), (f, version) => {
        const bytes = Buffer.from(encodeFrame(f));
        bytes[4] = version;
        expect(decodeFrame(bytes)).toMatchObject({
          ok: false,
          error: { tag: "UnsupportedVersion", version },
        });
        const { frames, errors } = decodeChunked(Buffer.concat([bytes, encodeFrame(f)]), [5, 9]);
        expect(errors).toMatchObject([{ error: { tag: "UnsupportedVersion", version }, fatal: false }]);
        expect(plain(frames)).toEqual([plain(f)]);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses a negative sequence, acked sequence or offset as malformed, naming the field", () => {
    // avsc writes negative longs; the range is Neuron's rule (codec.ts checkFields). Trap: past
    // -2^52 a long's zig-zag form is over 2^53 and rounds (in avsc as in hot-frames.ts), so
    // -(2^53 - 2) is written as +(2^53 - 2); no negative beyond -2^52 reaches a decoder as one.
    // Subscribe's fromOffset, ForwardResult's offset and Deliver's previous and replay share
    // the offset rule. Those frames take avsc's path, whose encoder does not check the range:
    // only the decoder refuses them.
    const sequences = "sequence and acked sequence must be non-negative safe integers";
    const offset = "offset must be a non-negative safe integer";
    const cases: [Frame, string][] = [
      [{ ...samplePublish, sequence: -1 }, sequences],
      [{ ...samplePublish, sequence: -(2 ** 52) }, sequences],
      [{ ...samplePublish, ackedSequence: -1 }, sequences],
      [{ ...samplePublish, ackedSequence: -(2 ** 52) }, sequences],
      [{ ...samplePublish, sequence: -1, ackedSequence: -1 }, sequences],
      [{ ...samplePublish, sequence: 0, ackedSequence: -1 }, sequences],
      [{ ...sampleMessage, offset: -1 }, offset],
      [{ ...sampleMessage, offset: -(2 ** 52) }, offset],
      [{ ...sampleDeliver, offset: -1 } as Frame, offset],
      [{ ...sampleDeliver, previous: -1 } as Frame, offset],
      [{ ...sampleDeliver, previous: -(2 ** 52) } as Frame, offset],
      [{ ...sampleDeliver, replay: -1 } as Frame, offset],
      [{ ...sampleDeliver, replay: -(2 ** 52) } as Frame, offset],
      [{ ...sampleSubscribe, fromOffset: -1 } as Frame, offset],
      [{ ...sampleSubscribe, fromOffset: -(2 ** 52) } as Frame, offset],
      [{ ...sampleForwardResult, offset: -1 } as Frame, offset],
      [{ ...sampleForwardResult, offset: -(2 ** 52) } as Frame, offset],
    ];
    for (const [f, problem] of cases) {
      const expected = {
        ok: false,
        error: { tag: "MalformedFrame", message: `malformed frame: ${problem}` },
      };
      const bytes = avscBytes(f);
      expect(decodeFrame(bytes)).toEqual(expected);
      const { frames, errors } = decodeChunked(bytes, [3]);
      expect(frames).toEqual([]);
      expect(errors).toEqual([{ error: expected.error, fatal: false }]);
    }
    const valid: Frame[] = [
      samplePublish,
      { ...samplePublish, sequence: 0, ackedSequence: 0 },
      sampleMessage,
      { ...sampleMessage, offset: 0 },
      sampleDeliver,
      { ...sampleDeliver, offset: 0, previous: 0, replay: 0 } as Frame,
      { ...sampleDeliver, offset: longMax, previous: longMax, replay: longMax } as Frame,
      sampleSubscribe,
      { ...sampleSubscribe, fromOffset: 0 } as Frame,
      { ...sampleSubscribe, fromOffset: longMax } as Frame,
      sampleForwardResult,
      { ...sampleForwardResult, offset: 0 } as Frame,
      { ...sampleForwardResult, offset: longMax } as Frame,
    ];
    for (const f of valid) {
      const result = decodeFrame(avscBytes(f));
      expect(result.ok).toBe(true);
      if (result.ok) expect(plain(result.frame)).toEqual(plain(f));
    }
  });

  it("refuses a Deliver or Leader whose partition is outside 0..65535", () => {
    const sampleLeader: Frame = { kind: "Leader", partition: 7, router: "r2", address: "127.0.0.1:7412" };
    for (const sample of [sampleDeliver, sampleLeader]) {
      for (const partition of [-1, 65_536, 2 ** 31 - 1, -(2 ** 31)]) {
        expect(decodeFrame(avscBytes({ ...sample, partition } as Frame))).toEqual({
          ok: false,
          error: { tag: "MalformedFrame", message: "malformed frame: partition must be in 0..65535" },
        });
      }
      for (const partition of [0, 65_535]) {
        expect(decodeFrame(avscBytes({ ...sample, partition } as Frame))).toMatchObject({
          ok: true,
          frame: { kind: sample.kind, partition },
        });
      }
    }
  });

  it("refuses a Publish or Message cut anywhere in its new trailing fields as truncated", () => {
    const publish = encodeFrame(samplePublish);
    // "producer-ä" is 11 bytes (a length byte before it); the sequence 300 and the acked
    // sequence 299 are two-byte varints, so some cuts land inside a long.
    const publishTrailing = 1 + 11 + 2 + 2;
    expect(Buffer.byteLength(samplePublish.producerId)).toBe(11);
    expect(zigzagVarint(samplePublish.sequence).length).toBe(2);
    expect(zigzagVarint(samplePublish.ackedSequence).length).toBe(2);
    expect(publish.subarray(-4)).toEqual(Buffer.from([0xd8, 0x04, 0xd6, 0x04]));
    for (let count = 1; count <= publishTrailing; count++) {
      expect(decodeFrame(cut(publish, count))).toEqual(
        malformedWith(/^malformed frame: Publish body is truncated$/),
      );
    }
    const message = encodeFrame(sampleMessage);
    for (let count = 1; count <= 2; count++) {
      expect(decodeFrame(cut(message, count))).toEqual(
        malformedWith(/^malformed frame: Message body is truncated$/),
      );
    }
  });

  it("refuses every strict prefix of any frame's body as truncated", () => {
    // Avro is prefix-free: decoding a prefix reads what the whole body would, then runs out.
    fc.assert(
      fc.property(frame, fc.nat(), (f, n) => {
        const bytes = encodeFrame(f);
        const bodyBytes = bytes.length - frameHeaderBytes;
        fc.pre(bodyBytes > 0);
        const result = decodeFrame(cut(bytes, 1 + (n % bodyBytes)));
        expect(result).toMatchObject(
          malformedWith(new RegExp(`^malformed frame: ${f.kind} body is truncated$`)),
        );
      }),
      { numRuns: 2000 },
    );
  });
});
