// The partition command codec: round trips, the checks paired on write and read, and bad bytes
// (truncated, wrong version, forged counts, random mutations) that must give a typed error,
// never an exception.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isValidTopic } from "../partitions/index.ts";
import { BoundExceeded, headersMax } from "../wire/index.ts";
import {
  avscPublish,
  decodePartitionCommand,
  encodePartitionCommand,
  isValidProducerId,
  isValidRouterId,
  type PartitionCommand,
  producerIdMaxBytes,
  sequenceMax,
} from "./partition-commands.ts";

// ---- building bytes by hand (Avro: zigzag varint longs, length-prefixed strings) ----------

function long(value: number): number[] {
  let zigzag = value >= 0 ? value * 2 : -value * 2 - 1;
  const bytes: number[] = [];
  while (zigzag >= 0x80) {
    bytes.push((zigzag % 0x80) | 0x80);
    zigzag = Math.floor(zigzag / 0x80);
  }
  bytes.push(zigzag);
  return bytes;
}
const text = (value: string): number[] => {
  const bytes = Buffer.from(value, "utf8");
  return [...long(bytes.length), ...bytes];
};

/** A Publish entry with raw fields: `headers` are the map's raw bytes (default: empty map). */
function rawPublish(fields: {
  topic?: string;
  producerId?: string;
  sequence?: number;
  ackedSequence?: number;
  headers?: number[];
}): Uint8Array {
  return Uint8Array.from([
    1,
    1,
    ...text(fields.topic ?? "orders"),
    ...long(0),
    ...(fields.headers ?? [0]),
    ...text(fields.producerId ?? "producer-1"),
    ...long(fields.sequence ?? 1),
    ...long(fields.ackedSequence ?? 0),
  ]);
}

// ---- arbitraries ----------------------------------------------------------------------------

const segment = fc.oneof(
  fc.stringMatching(/^[a-z0-9_:=@+-]{1,8}$/),
  fc.constantFrom("é", "日本", "straße", "Ω1", "x"),
);
const topicArbitrary = fc
  .tuple(fc.array(segment, { minLength: 1, maxLength: 4 }), fc.constantFrom(".", "/"))
  .map(([segments, separator]) => segments.join(separator))
  .filter(isValidTopic);
const producerIdArbitrary = fc
  .string({ unit: "binary", minLength: 1, maxLength: 16 })
  .filter(isValidProducerId);
const routerArbitrary = fc.string({ unit: "binary", minLength: 1, maxLength: 24 }).filter(isValidRouterId);
const headersArbitrary = fc.dictionary(
  fc.string({ maxLength: 10 }),
  fc.string({ unit: "binary", maxLength: 10 }),
  { maxKeys: 8 },
);
const sequenceArbitrary = fc.oneof(
  fc.integer({ min: 1, max: 1000 }),
  fc.integer({ min: 1, max: sequenceMax }),
);
/** A sequence and an acked sequence below it: 0, just below, or anywhere in 0..sequence - 1. */
const sequencesArbitrary = sequenceArbitrary.chain((sequence) =>
  fc
    .oneof(fc.constant(0), fc.constant(sequence - 1), fc.integer({ min: 0, max: sequence - 1 }))
    .map((ackedSequence) => ({ sequence, ackedSequence })),
);

const commandArbitrary: fc.Arbitrary<PartitionCommand> = fc.oneof(
  fc
    .record({
      topic: topicArbitrary,
      payload: fc.uint8Array({ maxLength: 64 }),
      headers: headersArbitrary,
      producerId: producerIdArbitrary,
      sequences: sequencesArbitrary,
    })
    .map(({ sequences, ...fields }) => ({ kind: "Publish" as const, ...fields, ...sequences })),
  fc.record({
    kind: fc.constant("DeclareTopic" as const),
    topic: topicArbitrary,
    topicKind: fc.constantFrom("persistent" as const, "ephemeral" as const),
  }),
  fc.record({
    kind: fc.constant("Interest" as const),
    router: routerArbitrary,
    topic: topicArbitrary,
    on: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("DropRouter" as const), router: routerArbitrary }),
);

/** A command with plain arrays for bytes and header entries, for deep comparison. */
function plain(command: PartitionCommand): unknown {
  if (command.kind !== "Publish") return { ...command };
  return { ...command, payload: Array.from(command.payload), headers: Object.entries(command.headers) };
}

const mutationArbitrary = fc.oneof(
  fc.record({ type: fc.constant("set" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ type: fc.constant("insert" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ type: fc.constant("remove" as const), at: fc.nat() }),
  fc.record({ type: fc.constant("truncate" as const), at: fc.nat() }),
);
type Mutation = typeof mutationArbitrary extends fc.Arbitrary<infer T> ? T : never;

function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  const result = Array.from(bytes);
  for (const mutation of mutations) {
    const at = result.length === 0 ? 0 : mutation.at % result.length;
    if (mutation.type === "set") result[at] = mutation.value;
    else if (mutation.type === "insert") result.splice(at, 0, mutation.value);
    else if (mutation.type === "remove") result.splice(at, 1);
    else result.length = at;
  }
  return Uint8Array.from(result);
}

// ---- tests ----------------------------------------------------------------------------------

describe("partition command codec", () => {
  it("round-trips each kind of command", () => {
    const commands: PartitionCommand[] = [
      {
        kind: "Publish",
        topic: "orders.eu",
        payload: Uint8Array.from([1, 2, 3]),
        headers: { "content-type": "json", __proto__: "ordinary key" },
        producerId: "producer-1",
        sequence: 7,
        ackedSequence: 5,
      },
      { kind: "DeclareTopic", topic: "sensors/eu-west/temp", topicKind: "ephemeral" },
      { kind: "DeclareTopic", topic: "orders", topicKind: "persistent" },
      { kind: "Interest", router: "r1", topic: "orders", on: true },
      { kind: "Interest", router: "r2", topic: "orders", on: false },
      { kind: "DropRouter", router: "r3" },
    ];
    for (const command of commands) {
      const bytes = encodePartitionCommand(command);
      expect(bytes[0]).toBe(1);
      const decoded = decodePartitionCommand(bytes);
      expect(decoded.ok).toBe(true);
      if (decoded.ok) expect(plain(decoded.command)).toEqual(plain(command));
    }
  });

  it("round-trips every valid command (property)", () => {
    fc.assert(
      fc.property(commandArbitrary, (command) => {
        const decoded = decodePartitionCommand(encodePartitionCommand(command));
        expect(decoded.ok).toBe(true);
        if (decoded.ok) expect(plain(decoded.command)).toEqual(plain(command));
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips the limits: a 255-byte topic, a 64-byte producer id, headersMax headers, the largest sequences", () => {
    const headers: Record<string, string> = {};
    for (let index = 0; index < headersMax; index++) headers[`h${index}`] = `${index}`;
    const command: PartitionCommand = {
      kind: "Publish",
      topic: "t".repeat(255),
      payload: new Uint8Array(0),
      headers,
      producerId: "p".repeat(producerIdMaxBytes),
      sequence: sequenceMax,
      ackedSequence: sequenceMax - 1,
    };
    const decoded = decodePartitionCommand(encodePartitionCommand(command));
    expect(decoded.ok && plain(decoded.command)).toEqual(plain(command));
  });

  it("ackedSequence is stored after sequence as an Avro long: 0 for none, anything below the sequence", () => {
    for (const [sequence, ackedSequence] of [
      [1, 0],
      [2, 1],
      [300, 7],
      [300, 299],
    ] as const) {
      const bytes = rawPublish({ sequence, ackedSequence });
      const decoded = decodePartitionCommand(bytes);
      expect(decoded.ok && decoded.command).toMatchObject({ sequence, ackedSequence });
      if (decoded.ok) expect(Array.from(encodePartitionCommand(decoded.command))).toEqual(Array.from(bytes));
    }
  });

  it("asserts on encoding a command that breaks the rules (a programmer error)", () => {
    const publish: PartitionCommand = {
      kind: "Publish",
      topic: "orders",
      payload: new Uint8Array(0),
      headers: {},
      producerId: "p",
      sequence: 2,
      ackedSequence: 1,
    };
    const headers: Record<string, string> = {};
    for (let index = 0; index <= headersMax; index++) headers[`h${index}`] = "";
    const broken: PartitionCommand[] = [
      { ...publish, topic: "a..b" },
      { ...publish, topic: "" },
      { ...publish, producerId: "" },
      { ...publish, producerId: "p".repeat(producerIdMaxBytes + 1) },
      { ...publish, producerId: "\ud800" },
      { ...publish, sequence: 0 },
      { ...publish, sequence: 1.5 },
      { ...publish, sequence: sequenceMax + 1 },
      { ...publish, ackedSequence: -1 },
      { ...publish, ackedSequence: 2 }, // = sequence
      { ...publish, ackedSequence: 3 }, // > sequence
      { ...publish, ackedSequence: 0.5 },
      { ...publish, ackedSequence: Number.NaN },
      { ...publish, ackedSequence: undefined as unknown as number },
      { ...publish, sequence: 1, ackedSequence: 1 },
      { ...publish, headers },
      { kind: "DeclareTopic", topic: "orders", topicKind: "durable" as "persistent" },
      { kind: "Interest", router: "", topic: "orders", on: true },
      { kind: "DropRouter", router: "r".repeat(256) },
    ];
    for (const command of broken) expect(() => encodePartitionCommand(command)).toThrow(/assertion/);
    expect(() => encodePartitionCommand(publish)).not.toThrow();
  });
});

describe("decoding bad bytes gives a typed error", () => {
  const valid = encodePartitionCommand({
    kind: "Publish",
    topic: "orders",
    payload: Uint8Array.from([9, 9]),
    headers: { a: "b" },
    producerId: "producer-1",
    sequence: 3,
    ackedSequence: 2,
  });

  it("the hand-built bytes match the encoder's (the layout this file forges is the real one)", () => {
    const bytes = encodePartitionCommand({
      kind: "Publish",
      topic: "orders",
      payload: new Uint8Array(0),
      headers: {},
      producerId: "producer-1",
      sequence: 1,
      ackedSequence: 0,
    });
    expect(Array.from(bytes)).toEqual(Array.from(rawPublish({})));
  });

  it("empty bytes, a missing kind and an unknown kind are Malformed", () => {
    expect(decodePartitionCommand(new Uint8Array(0))).toMatchObject({
      ok: false,
      error: { tag: "Malformed" },
    });
    expect(decodePartitionCommand(Uint8Array.from([1]))).toMatchObject({
      ok: false,
      error: { tag: "Malformed" },
    });
    for (const kind of [0, 5, 255]) {
      expect(decodePartitionCommand(Uint8Array.from([1, kind, 0]))).toMatchObject({
        ok: false,
        error: { tag: "Malformed" },
      });
    }
  });

  it("another format version is UnsupportedVersion", () => {
    for (const version of [0, 2, 255]) {
      const bytes = Uint8Array.from(valid);
      bytes[0] = version;
      expect(decodePartitionCommand(bytes)).toMatchObject({
        ok: false,
        error: { tag: "UnsupportedVersion" },
      });
    }
  });

  it("every truncation of a valid command is refused", () => {
    for (let length = 0; length < valid.length; length++) {
      const decoded = decodePartitionCommand(valid.subarray(0, length));
      expect(decoded.ok, `truncated to ${length} bytes`).toBe(false);
    }
  });

  it("trailing bytes are Malformed", () => {
    const bytes = Uint8Array.from([...valid, 0]);
    expect(decodePartitionCommand(bytes)).toMatchObject({ ok: false, error: { tag: "Malformed" } });
  });

  it("an invalid topic, producer id, sequence or acked sequence in the bytes is Malformed", () => {
    const cases = [
      rawPublish({ topic: "a..b" }),
      rawPublish({ topic: "" }),
      rawPublish({ topic: "has space" }),
      rawPublish({ topic: "t".repeat(256) }),
      rawPublish({ producerId: "" }),
      rawPublish({ producerId: "p".repeat(producerIdMaxBytes + 1) }),
      rawPublish({ sequence: 0 }),
      rawPublish({ sequence: -1 }),
      rawPublish({ sequence: sequenceMax + 1 }),
      rawPublish({ sequence: 2 ** 60 }),
      rawPublish({ sequence: 5, ackedSequence: 5 }),
      rawPublish({ sequence: 5, ackedSequence: 6 }),
      rawPublish({ sequence: 1, ackedSequence: 1 }),
      rawPublish({ sequence: 5, ackedSequence: -1 }),
      rawPublish({ sequence: 5, ackedSequence: 2 ** 60 }),
      rawPublish({ sequence: sequenceMax, ackedSequence: sequenceMax + 1 }),
      Uint8Array.from([1, 2, ...text("orders"), 4]), // topic kind enum index 2 of 2
      Uint8Array.from([1, 3, ...text(""), ...text("orders"), 1]), // empty router
      Uint8Array.from([1, 4, ...text("r".repeat(256))]),
    ];
    for (const bytes of cases) {
      expect(decodePartitionCommand(bytes)).toMatchObject({ ok: false, error: { tag: "Malformed" } });
    }
  });

  it("a forged header count is refused at once: TooLarge past headersMax, Malformed past the bytes", () => {
    const started = performance.now();
    const huge = decodePartitionCommand(rawPublish({ headers: [...long(2 ** 40), 0] }));
    expect(huge).toMatchObject({ ok: false, error: { tag: "TooLarge" } });
    const negative = decodePartitionCommand(rawPublish({ headers: [...long(-(2 ** 40)), ...long(4), 0] }));
    expect(negative).toMatchObject({ ok: false, error: { tag: "TooLarge" } });
    const overMax = decodePartitionCommand(rawPublish({ headers: [...long(headersMax + 1), 0] }));
    expect(overMax).toMatchObject({ ok: false, error: { tag: "TooLarge" } });
    const pastBytes = decodePartitionCommand(rawPublish({ headers: [...long(headersMax), 0] }));
    expect(pastBytes).toMatchObject({ ok: false, error: { tag: "Malformed" } });
    // Block by block, the total still counts against headersMax.
    const entry = [...text("k"), ...text("v")];
    const blocks: number[] = [];
    for (let block = 0; block < headersMax + 1; block++) blocks.push(...long(1), ...entry);
    const split = decodePartitionCommand(rawPublish({ headers: [...blocks, 0] }));
    expect(split).toMatchObject({ ok: false, error: { tag: "TooLarge" } });
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it("never throws on mutated encodings, and what it accepts is a valid command (property)", () => {
    fc.assert(
      fc.property(
        commandArbitrary,
        fc.array(mutationArbitrary, { minLength: 1, maxLength: 4 }),
        (command, mutations) => {
          const bytes = mutate(encodePartitionCommand(command), mutations);
          const decoded = decodePartitionCommand(bytes);
          if (!decoded.ok) {
            expect(["Malformed", "UnsupportedVersion", "TooLarge"]).toContain(decoded.error.tag);
            return;
          }
          // Accepted: it passes encode's checks and survives a round trip.
          const again = decodePartitionCommand(encodePartitionCommand(decoded.command));
          expect(again.ok && plain(again.command)).toEqual(plain(decoded.command));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("never throws on random bytes behind a valid version and kind (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.uint8Array({ maxLength: 64 }), (kind, body) => {
        const decoded = decodePartitionCommand(Uint8Array.from([1, kind, ...body]));
        if (decoded.ok) expect(() => encodePartitionCommand(decoded.command)).not.toThrow();
      }),
      { numRuns: 2000 },
    );
  });
});

// Publish is encoded and decoded by hand; avsc's generic path is the reference it is held to.
describe("Publish by hand agrees with avsc", () => {
  const publishArbitrary = commandArbitrary.filter((command) => command.kind === "Publish");

  /** What the generic path made of a Publish's bytes: the command, or why not. */
  function reference(
    bytes: Uint8Array,
  ): { ok: true; command: PartitionCommand } | { ok: false; tag: string } {
    if (bytes.length < 2 || bytes[0] !== 1 || bytes[1] !== 1) return { ok: false, tag: "Other" };
    const body = Buffer.from(bytes.subarray(2));
    let decoded: { value: unknown; offset: number };
    try {
      decoded = avscPublish.decode(body, 0);
    } catch (error) {
      return { ok: false, tag: error instanceof BoundExceeded ? "TooLarge" : "Malformed" };
    }
    if (decoded.offset !== body.length) return { ok: false, tag: "Malformed" };
    const value = decoded.value as Record<string, unknown>;
    const command = {
      kind: "Publish",
      topic: value.topic,
      payload: value.payload,
      headers: value.headers,
      producerId: value.producerId,
      sequence: value.sequence,
      ackedSequence: value.ackedSequence,
    } as PartitionCommand;
    try {
      encodePartitionCommand(command);
    } catch {
      return { ok: false, tag: "Malformed" };
    }
    return { ok: true, command };
  }

  function agrees(bytes: Uint8Array): void {
    const expected = reference(bytes);
    const decoded = decodePartitionCommand(bytes);
    if (expected.ok) {
      expect(decoded.ok && plain(decoded.command)).toEqual(plain(expected.command));
    } else if (expected.tag !== "Other") {
      // Both refuse. The tag may differ where avsc reads past the end (a header count cut
      // short reads as NaN there, too large; here it is truncated).
      expect(decoded.ok).toBe(false);
      if (!decoded.ok) expect(["Malformed", "TooLarge"]).toContain(decoded.error.tag);
    }
  }

  it("writes avsc's bytes for every valid Publish (property)", () => {
    fc.assert(
      fc.property(publishArbitrary, (command) => {
        const publish = command as Extract<PartitionCommand, { kind: "Publish" }>;
        const expected = avscPublish.toBuffer({ ...publish, payload: Buffer.from(publish.payload) });
        expect(Buffer.from(encodePartitionCommand(command).subarray(2))).toEqual(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it("reads what avsc reads, and refuses what it refuses, on mutated and random bytes (property)", () => {
    fc.assert(
      fc.property(
        publishArbitrary,
        fc.array(mutationArbitrary, { minLength: 1, maxLength: 4 }),
        (command, mutations) => agrees(mutate(encodePartitionCommand(command), mutations)),
      ),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (body) => agrees(Uint8Array.from([1, 1, ...body]))),
      { numRuns: 3000 },
    );
  });
});
