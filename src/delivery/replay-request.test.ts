// The replay request codec: round trips, bytes that are not a request (random, mutated,
// truncated, padded, bad offsets, a bad topic) refused with a message and never a throw, and
// the marker that keeps it apart from every partition command.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isValidTopic } from "../partitions/index.ts";
import { encodePartitionCommand, type PartitionCommand } from "./partition-commands.ts";
import {
  decodeReplayRequest,
  encodeReplayRequest,
  isReplayRequest,
  type ReplayRequest,
  replayRequestMarker,
} from "./replay-request.ts";

// ---- building bytes by hand (Avro: zigzag varint longs, length-prefixed strings) ----------

function long(value: bigint): number[] {
  let zigzag = value >= 0n ? value * 2n : -value * 2n - 1n;
  const bytes: number[] = [];
  while (zigzag >= 0x80n) {
    bytes.push(Number(zigzag % 0x80n) | 0x80);
    zigzag /= 0x80n;
  }
  bytes.push(Number(zigzag));
  return bytes;
}
const text = (value: string): number[] => {
  const bytes = Buffer.from(value, "utf8");
  return [...long(BigInt(bytes.length)), ...bytes];
};

function raw(topic: string, after: bigint, through: bigint, replay: bigint): Uint8Array {
  return Uint8Array.from([
    replayRequestMarker,
    ...text(topic),
    ...long(after),
    ...long(through),
    ...long(replay),
    0, // probe: false (an Avro boolean is one byte)
  ]);
}

// ---- arbitraries ----------------------------------------------------------------------------

const segment = fc.oneof(fc.stringMatching(/^[a-z0-9_:=@+-]{1,8}$/), fc.constantFrom("é", "日本", "x"));
const topicArbitrary = fc
  .tuple(fc.array(segment, { minLength: 1, maxLength: 4 }), fc.constantFrom(".", "/"))
  .map(([segments, separator]) => segments.join(separator))
  .filter(isValidTopic);
// avsc writes a "long" only up to 2^53 - 2; log offsets are far below either bound.
const offset = fc.oneof(fc.nat({ max: 1000 }), fc.nat({ max: 2 ** 52 }));
const requestArbitrary: fc.Arbitrary<ReplayRequest> = fc
  .record({ topic: topicArbitrary, a: offset, b: offset, replay: offset, probe: fc.boolean() })
  .map(({ topic, a, b, replay, probe }) => ({
    topic,
    after: Math.min(a, b),
    through: Math.max(a, b),
    replay,
    probe,
  }));

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

/** Decodes, failing the test on a throw; a request that decodes must satisfy the rules. */
function decodeChecked(bytes: Uint8Array): boolean {
  const decoded = decodeReplayRequest(bytes);
  if (!decoded.ok) {
    expect(decoded.message.length).toBeGreaterThan(0);
    return false;
  }
  const { topic, after, through, replay } = decoded.request;
  expect(isValidTopic(topic)).toBe(true);
  expect([after, through, replay].every((value) => Number.isSafeInteger(value) && value >= 0)).toBe(true);
  expect(after).toBeLessThanOrEqual(through);
  return true;
}

// ---- tests ----------------------------------------------------------------------------------

describe("replay request codec", () => {
  it("round-trips every valid request", () => {
    fc.assert(
      fc.property(requestArbitrary, (request) => {
        const bytes = encodeReplayRequest(request);
        expect(isReplayRequest(bytes)).toBe(true);
        expect(decodeReplayRequest(bytes)).toEqual({ ok: true, request });
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips from a view into a larger buffer (byteOffset is honoured)", () => {
    const request = { topic: "orders.eu", after: 3, through: 9, replay: 2, probe: false };
    const encoded = encodeReplayRequest(request);
    const larger = new Uint8Array(encoded.length + 7).fill(0xee);
    larger.set(encoded, 4);
    expect(decodeReplayRequest(larger.subarray(4, 4 + encoded.length))).toEqual({ ok: true, request });
  });

  it("never throws on random bytes, with or without the marker", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (body, marked) => {
        decodeChecked(marked ? Uint8Array.from([replayRequestMarker, ...body]) : body);
      }),
      { numRuns: 2000 },
    );
  });

  it("never throws on mutated requests; what still decodes keeps the rules", () => {
    fc.assert(
      fc.property(
        requestArbitrary,
        fc.array(mutationArbitrary, { minLength: 1, maxLength: 4 }),
        (request, mutations) => {
          decodeChecked(mutate(encodeReplayRequest(request), mutations));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("refuses truncated bytes and trailing bytes", () => {
    const bytes = encodeReplayRequest({
      topic: "orders",
      after: 300,
      through: 70000,
      replay: 5,
      probe: false,
    });
    for (let length = 0; length < bytes.length; length++) {
      expect(decodeReplayRequest(bytes.subarray(0, length)).ok).toBe(false);
    }
    expect(decodeReplayRequest(Uint8Array.from([...bytes, 0]))).toEqual({
      ok: false,
      message: "replay request is truncated or too long",
    });
  });

  it("refuses offsets that break 0 <= after <= through, or a negative replay id", () => {
    const message = "replay request offsets must satisfy 0 <= after <= through";
    for (const [after, through, replay] of [
      [-1n, 5n, 0n], // after below 0
      [0n, -1n, 0n], // through below 0
      [6n, 5n, 0n], // through before after
      [0n, 5n, -1n], // replay id below 0
    ] as const) {
      expect(decodeReplayRequest(raw("orders", after, through, replay))).toEqual({ ok: false, message });
    }
    expect(decodeReplayRequest(raw("orders", 5n, 5n, 0n)).ok).toBe(true); // an empty range is fine
  });

  it("refuses offsets past 2^53 (they would lose precision) with a message, not a throw", () => {
    const huge = 2n ** 60n;
    for (const bytes of [
      raw("orders", 0n, huge, 0n),
      raw("orders", huge, huge, 0n),
      raw("orders", 0n, 1n, huge),
    ]) {
      const decoded = decodeReplayRequest(bytes);
      expect(decoded.ok).toBe(false);
    }
  });

  it("refuses a request that names an invalid topic", () => {
    for (const topic of ["", "orders..eu", "orders.*", "a b", "x".repeat(256)]) {
      expect(isValidTopic(topic)).toBe(false);
      expect(decodeReplayRequest(raw(topic, 0n, 1n, 0n))).toEqual({
        ok: false,
        message: "replay request names an invalid topic",
      });
    }
  });

  it("is told apart from every partition command by its first byte", () => {
    const commands: PartitionCommand[] = [
      {
        kind: "Publish",
        topic: "orders",
        payload: Uint8Array.from([replayRequestMarker, 1, 2]),
        headers: { a: "b" },
        producerId: "producer-1",
        sequence: 1,
        ackedSequence: 0,
      },
      { kind: "DeclareTopic", topic: "orders", topicKind: "persistent" },
      { kind: "Interest", router: "router-1", topic: "orders", on: true },
      { kind: "DropRouter", router: "router-1" },
    ];
    for (const command of commands) {
      const bytes = encodePartitionCommand(command);
      expect(isReplayRequest(bytes)).toBe(false);
      expect(decodeReplayRequest(bytes)).toEqual({ ok: false, message: "not a replay request" });
    }
    expect(isReplayRequest(new Uint8Array(0))).toBe(false);
  });
});
