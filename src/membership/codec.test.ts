// The membership codec: round trips, size bounds that config.ts relies on, and every way a
// packet or push-pull payload can be refused (never by throwing).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  aliveMessageBytesMax,
  decodePacket,
  decodePushPull,
  encodeMessage,
  encodePacket,
  encodePushPull,
  type MemberRecord,
  type Message,
  membershipProtocolVersion,
  messageHeaderBytes,
  messagesPerPacketMax,
  packetHeaderBytes,
  probeMessageBytesMax,
} from "./codec.ts";
import { defaultLanConfig, packetBudgetBytesMin } from "./config.ts";
import { memberId, plainRecord } from "./member-info.ts";
import type { MemberId, MemberInfo } from "./types.ts";

const budget = defaultLanConfig.packetBudgetBytes;
const count = fc.integer({ min: 0, max: 2 ** 53 - 2 });
const id = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/).map((text) => text as MemberId);
const address = fc
  .tuple(fc.nat({ max: 255 }), fc.nat({ max: 255 }), fc.integer({ min: 1, max: 65_535 }))
  .map(([a, b, port]) => `10.${a}.${b}.1:${port}`);
const info: fc.Arbitrary<MemberInfo> = fc.record({
  id,
  region: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/),
  gossipAddress: address,
  addresses: fc
    .dictionary(fc.stringMatching(/^[a-z][a-z0-9_-]{0,15}$/), address, { maxKeys: 4 })
    .map(plainRecord),
  metadata: fc
    .dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 16 }), { maxKeys: 16 })
    .map(plainRecord),
  version: count,
});

const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ kind: fc.constant("Ping" as const), sequence: count, senderId: id, targetId: id }),
  fc.record({
    kind: fc.constant("IndirectPing" as const),
    sequence: count,
    senderId: id,
    targetId: id,
    targetAddress: address,
    wantNack: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("Ack" as const), sequence: count, memberId: id }),
  fc.record({ kind: fc.constant("Nack" as const), sequence: count, senderId: id, memberId: id }),
  fc.record({ kind: fc.constant("Alive" as const), incarnation: count, member: info }),
  fc.record({ kind: fc.constant("Suspect" as const), incarnation: count, memberId: id, fromId: id }),
  fc.record({ kind: fc.constant("Dead" as const), incarnation: count, memberId: id, fromId: id }),
  fc.record({ kind: fc.constant("Left" as const), incarnation: count, memberId: id }),
);

/** The largest member the limits allow: every string at its longest, every map full. */
function largestMember(): MemberInfo {
  const addresses: Record<string, string> = {};
  for (let index = 0; index < 4; index++)
    addresses[`name-${index}`.padEnd(16, "x")] = `${"h".repeat(58)}:65535`;
  const metadata: Record<string, string> = {};
  // 16 entries of 32 bytes: 32 strings, each with a length prefix.
  for (let index = 0; index < 16; index++) metadata[`k${index}`.padEnd(16, "k")] = "v".repeat(16);
  return {
    id: memberId("a".repeat(64)),
    region: "r".repeat(32),
    gossipAddress: `${"g".repeat(58)}:65535`,
    addresses,
    metadata,
    version: 2 ** 53 - 2,
  };
}

describe("membership codec", () => {
  it("round-trips every message kind, in packets of several messages", () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 3 }), (messages) => {
        const bytes = encodePacket(messages.map(encodeMessage));
        const decoded = decodePacket(bytes, 1 << 16);
        expect(decoded).toEqual({ ok: true, messages });
      }),
    );
  });

  it("puts a version byte and a message count in front of every packet", () => {
    const bytes = encodePacket([encodeMessage({ kind: "Ack", sequence: 7, memberId: memberId("b") })]);
    expect(bytes[0]).toBe(membershipProtocolVersion);
    expect(bytes[1]).toBe(1);
  });

  it("bounds the largest Alive and probe messages, and the default budget holds both", () => {
    const alive = encodeMessage({ kind: "Alive", incarnation: 2 ** 53 - 2, member: largestMember() });
    expect(alive.length).toBeLessThanOrEqual(aliveMessageBytesMax);
    expect(alive.length).toBeGreaterThan(aliveMessageBytesMax - 100); // the bound is not slack
    const indirect = encodeMessage({
      kind: "IndirectPing",
      sequence: 2 ** 53 - 2,
      senderId: memberId("s".repeat(64)),
      targetId: memberId("t".repeat(64)),
      targetAddress: `${"h".repeat(58)}:65535`,
      wantNack: true,
    });
    expect(indirect.length).toBeLessThanOrEqual(probeMessageBytesMax);
    expect(packetBudgetBytesMin).toBeLessThanOrEqual(budget);
    expect(encodePacket([alive, indirect]).length).toBeLessThanOrEqual(budget);
  });

  it("refuses a packet over the budget before reading it", () => {
    const decoded = decodePacket(new Uint8Array(budget + 1), budget);
    expect(decoded.ok || decoded.error.tag).toBe("Oversized");
  });

  it("refuses every truncation of a valid packet as Truncated", () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 3 }), (messages) => {
        const bytes = encodePacket(messages.map(encodeMessage));
        for (let length = 0; length < bytes.length; length++) {
          const decoded = decodePacket(bytes.subarray(0, length), 1 << 16);
          expect(decoded.ok || decoded.error.tag).toBe("Truncated");
        }
      }),
      { numRuns: 50 },
    );
  });

  it("refuses another protocol version, an unknown kind, trailing bytes and too many messages", () => {
    const good = encodePacket([encodeMessage({ kind: "Ack", sequence: 1, memberId: memberId("b") })]);
    const otherVersion = Buffer.from(good);
    otherVersion[0] = 2;
    expect(decodePacket(otherVersion, budget)).toMatchObject({
      ok: false,
      error: { tag: "UnsupportedVersion" },
    });
    const unknownKind = Buffer.from(good);
    unknownKind[packetHeaderBytes] = 99;
    expect(decodePacket(unknownKind, budget)).toMatchObject({
      ok: false,
      error: { tag: "UnknownKind", kind: 99 },
    });
    const trailing = Buffer.concat([good, Buffer.from([0])]);
    expect(decodePacket(trailing, budget)).toMatchObject({ ok: false, error: { tag: "Malformed" } });
    const tooMany = Buffer.from(good);
    tooMany[1] = messagesPerPacketMax + 1;
    expect(decodePacket(tooMany, budget)).toMatchObject({ ok: false, error: { tag: "OverLimit" } });
    const empty = Buffer.from([membershipProtocolVersion, 0]);
    expect(decodePacket(empty, budget)).toMatchObject({ ok: false, error: { tag: "Malformed" } });
  });

  it("refuses values Avro accepts but the rules do not (bad ids, addresses, metadata)", () => {
    const badId = encodeMessage({ kind: "Ack", sequence: 1, memberId: "has space" as MemberId });
    expect(decodePacket(encodePacket([badId]), budget)).toMatchObject({
      ok: false,
      error: { tag: "Malformed" },
    });
    const badAddress = encodeMessage({
      kind: "IndirectPing",
      sequence: 1,
      senderId: memberId("a"),
      targetId: memberId("b"),
      targetAddress: "no-port",
      wantNack: true,
    });
    expect(decodePacket(encodePacket([badAddress]), budget)).toMatchObject({ ok: false });
    const bigMetadata = encodeMessage({
      kind: "Alive",
      incarnation: 1,
      member: { ...largestMember(), metadata: { key: "v".repeat(600) } },
    });
    expect(decodePacket(encodePacket([bigMetadata]), 1 << 16)).toMatchObject({
      ok: false,
      error: { tag: "Malformed" },
    });
  });

  it("refuses a forged map count at once, without looping over it", () => {
    // An Alive whose addresses map claims 2^39 entries in a few bytes.
    const gossip = Buffer.from("h:1");
    const parts = [
      Buffer.from([2]),
      Buffer.from([2, 0x62]),
      Buffer.from([2, 0x72]),
      Buffer.from([gossip.length * 2, ...gossip]),
      Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x20]), // zigzag varint: 2^39 entries
    ];
    const alive = Buffer.concat(parts);
    const framed = Buffer.concat([Buffer.from([membershipProtocolVersion, 1, 5, 0, alive.length]), alive]);
    const started = performance.now();
    const decoded = decodePacket(framed, budget);
    expect(performance.now() - started).toBeLessThan(50);
    expect(decoded).toMatchObject({ ok: false, error: { tag: "OverLimit" } });
    // A count within the limit but larger than the bytes left is a truncation.
    parts[4] = Buffer.from([6]); // 3 entries, no bytes for them
    const short = Buffer.concat(parts);
    const shortFramed = Buffer.concat([
      Buffer.from([membershipProtocolVersion, 1, 5, 0, short.length]),
      short,
    ]);
    expect(decodePacket(shortFramed, budget)).toMatchObject({ ok: false, error: { tag: "Truncated" } });
  });

  it("never throws on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), (bytes) => {
        const decoded = decodePacket(bytes, budget);
        expect(typeof decoded.ok).toBe("boolean");
        const withHeader = Buffer.concat([Buffer.from([membershipProtocolVersion, 1]), bytes]);
        expect(typeof decodePacket(withHeader, 1 << 16).ok).toBe("boolean");
        expect(typeof decodePushPull(bytes, "Reply", 1 << 20, 100).ok).toBe("boolean");
      }),
    );
  });
});

describe("push-pull codec", () => {
  const record: fc.Arbitrary<MemberRecord> = fc.record({
    incarnation: count,
    state: fc.constantFrom("alive", "suspect", "dead", "left"),
    member: info,
  });

  it("round-trips a full state and checks its kind", () => {
    fc.assert(
      fc.property(
        id,
        fc.boolean(),
        fc.uniqueArray(record, { maxLength: 8, selector: (entry) => entry.member.id }),
        (senderId, join, members) => {
          const bytes = encodePushPull({ kind: "Request", senderId, join, members }, 100);
          expect(decodePushPull(bytes, "Request", 1 << 20, 100)).toEqual({
            ok: true,
            pushPull: { kind: "Request", senderId, join, members },
          });
          expect(decodePushPull(bytes, "Reply", 1 << 20, 100)).toMatchObject({
            ok: false,
            error: { tag: "UnknownKind" },
          });
        },
      ),
    );
  });

  it("refuses more members than the limit, a duplicate member, and an oversized payload", () => {
    const member = (name: string): MemberRecord => ({
      incarnation: 1,
      state: "alive",
      member: {
        id: memberId(name),
        region: "r",
        gossipAddress: "h:1",
        addresses: {},
        metadata: {},
        version: 0,
      },
    });
    const three = encodePushPull(
      {
        kind: "Reply",
        senderId: memberId("s"),
        join: false,
        members: [member("a"), member("b"), member("c")],
      },
      10,
    );
    expect(decodePushPull(three, "Reply", 1 << 20, 2)).toMatchObject({
      ok: false,
      error: { tag: "OverLimit" },
    });
    const twice = encodePushPull(
      { kind: "Reply", senderId: memberId("s"), join: false, members: [member("a"), member("a")] },
      10,
    );
    expect(decodePushPull(twice, "Reply", 1 << 20, 10)).toMatchObject({
      ok: false,
      error: { tag: "Malformed" },
    });
    expect(decodePushPull(three, "Reply", three.length - 1, 10)).toMatchObject({
      ok: false,
      error: { tag: "Oversized" },
    });
  });

  it("keeps message headers three bytes long", () => {
    const encoded = encodeMessage({ kind: "Left", incarnation: 0, memberId: memberId("a") });
    expect(encoded.readUInt16BE(1)).toBe(encoded.length - messageHeaderBytes);
  });
});
