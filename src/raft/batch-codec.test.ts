// The Raft batch codec: coalescing and encoding change no message, and bad bytes from the
// network are a typed error, never a throw (STYLE.md, bad input).
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import type { Entry } from "../storage/index.ts";
import { fromBatch, toBatches } from "./batch.ts";
import { decodeRaftBatch, encodeRaftBatch, raftBatchVersion } from "./batch-codec.ts";
import { emptyMessage, type Message, messageTypes } from "./types.ts";

const count = fc.integer({ min: 0, max: 2 ** 40 });
const entriesAfter = (index: number, length: number, term: number): Entry[] =>
  Array.from({ length }, (_, i) => ({
    index: index + 1 + i,
    term,
    kind: i % 3 === 0 ? "normal" : i % 3 === 1 ? "config" : "empty",
    data: Buffer.from(`entry-${i}`),
  }));

const messageArbitrary: fc.Arbitrary<Message> = fc
  .record({
    type: fc.constantFrom(...messageTypes),
    group: fc.integer({ min: 0, max: 65_535 }),
    to: fc.constantFrom("r2", "r3"),
    term: count,
    logTerm: count,
    index: fc.integer({ min: 0, max: 2 ** 40 }),
    entryCount: fc.integer({ min: 0, max: 4 }),
    commit: count,
    reject: fc.boolean(),
    rejectHint: count,
    lastIndex: count,
    context: count,
    quiesce: fc.boolean(),
    snapshot: fc.boolean(),
  })
  .map((value) => ({
    ...emptyMessage,
    type: value.type,
    group: value.group,
    from: "r1",
    to: value.to,
    term: value.term,
    logTerm: value.logTerm,
    index: value.index,
    entries:
      value.type === "heartbeat" || value.type === "heartbeatResponse"
        ? []
        : entriesAfter(value.index, value.entryCount, value.term),
    commit: value.commit,
    reject: value.type === "heartbeat" || value.type === "heartbeatResponse" ? false : value.reject,
    rejectHint: value.type === "heartbeat" || value.type === "heartbeatResponse" ? 0 : value.rejectHint,
    lastIndex: value.type === "heartbeat" || value.type === "heartbeatResponse" ? 0 : value.lastIndex,
    context: value.context,
    quiesce: value.type === "heartbeat" ? value.quiesce : false,
    snapshot:
      value.snapshot && value.type === "snapshot"
        ? {
            meta: {
              index: value.index,
              term: value.term,
              configuration: { voters: ["r1", "r2"], learners: ["r3"] },
            },
            data: Buffer.from("state"),
          }
        : null,
  }))
  .map((message): Message => {
    if (message.type === "heartbeatResponse") return { ...message, logTerm: 0, index: 0, commit: 0 };
    if (message.type === "heartbeat") return { ...message, logTerm: 0, index: 0 };
    return message;
  });

/** What survives coalescing: heartbeats keep only their coalesced fields. */
function normalise(messages: readonly Message[]): Message[] {
  const order = (message: Message) =>
    message.type === "heartbeat" ? 0 : message.type === "heartbeatResponse" ? 1 : 2;
  return [...messages]
    .map((message, position) => ({ message, position }))
    .sort((a, b) => order(a.message) - order(b.message) || a.position - b.position)
    .map(({ message }) => ({
      ...message,
      entries: message.entries.map((entry) => ({ ...entry, data: Buffer.from(entry.data) })),
      snapshot:
        message.snapshot === null ? null : { ...message.snapshot, data: Buffer.from(message.snapshot.data) },
    }));
}

describe("Raft batches", () => {
  test("coalescing, encoding and decoding give back the same messages, per destination", () => {
    fc.assert(
      fc.property(fc.array(messageArbitrary, { maxLength: 30 }), (messages) => {
        for (const [to, batch] of toBatches("r1", messages)) {
          const decoded = decodeRaftBatch(encodeRaftBatch(batch));
          expect(decoded.ok).toBe(true);
          if (!decoded.ok) return;
          const sent = messages.filter((message) => message.to === to);
          expect(normalise(fromBatch(decoded.batch))).toEqual(normalise(sent));
        }
      }),
      { numRuns: 300 },
    );
  });

  test("heartbeats to one router are coalesced: one entry of a few numbers per group, not a message each", () => {
    const beats = Array.from({ length: 1000 }, (_, group) => ({
      ...emptyMessage,
      type: "heartbeat" as const,
      group,
      from: "r1",
      to: "r2",
      term: 5,
      commit: 1000 + group,
    }));
    const batch = toBatches("r1", beats).get("r2")!;
    expect(batch.beats).toHaveLength(1000);
    expect(batch.messages).toHaveLength(0);
    expect(encodeRaftBatch(batch).length).toBeLessThan(1000 * 10);
  });

  test("random bytes and mutated batches decode to a typed error or a valid batch, never a throw", () => {
    const valid = encodeRaftBatch(
      toBatches("r1", fc.sample(messageArbitrary, { numRuns: 20, seed: 7 }))
        .values()
        .next().value!,
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc
            .uint8Array({ maxLength: 200 })
            .map((bytes) => Buffer.concat([Buffer.from([raftBatchVersion]), bytes])),
          fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })).map(([at, value]) => {
            const copy = Buffer.from(valid);
            copy[at] = value;
            return copy;
          }),
          fc.nat(valid.length).map((length) => valid.subarray(0, length)),
        ),
        (bytes) => {
          const decoded = decodeRaftBatch(bytes);
          if (!decoded.ok)
            expect(["UnsupportedVersion", "Truncated", "OverLimit", "Malformed"]).toContain(
              decoded.error.tag,
            );
        },
      ),
      { numRuns: 3000 },
    );
  });

  test("each kind of bad batch gets its own error", () => {
    const batch = toBatches("r1", [
      { ...emptyMessage, type: "append", from: "r1", to: "r2", index: 4, entries: entriesAfter(4, 2, 1) },
    ]).get("r2")!;
    const bytes = encodeRaftBatch(batch);
    expect(decodeRaftBatch(new Uint8Array(0))).toMatchObject({ ok: false, error: { tag: "Truncated" } });
    const wrongVersion = Buffer.from(bytes);
    wrongVersion[0] = 9;
    expect(decodeRaftBatch(wrongVersion)).toMatchObject({
      ok: false,
      error: { tag: "UnsupportedVersion", version: 9 },
    });
    expect(decodeRaftBatch(bytes.subarray(0, bytes.length - 3))).toMatchObject({
      ok: false,
      error: { tag: "Truncated" },
    });
    expect(decodeRaftBatch(Buffer.concat([bytes, Buffer.from([0])]))).toMatchObject({
      ok: false,
      error: { tag: "Malformed" },
    });
    const gap = toBatches("r1", [
      {
        ...emptyMessage,
        type: "append",
        from: "r1",
        to: "r2",
        index: 4,
        entries: [...entriesAfter(4, 1, 1), ...entriesAfter(6, 1, 1)],
      },
    ]).get("r2")!;
    expect(decodeRaftBatch(encodeRaftBatch(gap))).toMatchObject({ ok: false, error: { tag: "Malformed" } });
    // A forged array count far beyond the bytes present: refused before any loop runs.
    const forged = Buffer.concat([
      Buffer.from([raftBatchVersion]),
      Buffer.from([4, 0x72, 0x31, 4, 0x72, 0x32]),
      Buffer.from([0xfe, 0xff, 0xff, 0xff, 0x0f]),
    ]);
    const result = decodeRaftBatch(forged);
    expect(result.ok).toBe(false);
  });
});
