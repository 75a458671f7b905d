// Bad input from the network: every way a packet can be bad is dropped, counted under its
// reason, and changes nothing (DESIGN.md: "a bad frame ... nothing else changes"). One test
// per drop reason, then property tests over random bytes and mutated valid packets.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../sim/index.ts";
import {
  decodePacket,
  encodeMessage,
  encodePacket,
  type Message,
  membershipProtocolVersion,
} from "./codec.ts";
import { defaultLanConfig, type MembershipConfig } from "./config.ts";
import { MembershipCore, outputPacketsMax } from "./core.ts";
import type { DropReason } from "./errors.ts";
import { checkMemberInfo, memberId } from "./member-info.ts";
import type { MemberId, MemberInfo } from "./types.ts";

const address = (name: string) => `${name}.test:7400`;
const info = (name: string, change: Partial<MemberInfo> = {}): MemberInfo => ({
  id: memberId(name),
  region: "eu-west",
  gossipAddress: address(name),
  addresses: {},
  metadata: {},
  version: 0,
  ...change,
});
const id = (name: string) => name as MemberId;
const packet = (...messages: Message[]) => encodePacket(messages.map(encodeMessage));
const alive = (name: string, incarnation = 0, change: Partial<MemberInfo> = {}): Message => ({
  kind: "Alive",
  incarnation,
  member: info(name, change),
});

/** Core "a" knowing b (incarnation 2, version 3), c and d, with its output drained. */
function setup(config: MembershipConfig = defaultLanConfig): MembershipCore {
  const core = new MembershipCore({ config, self: info("a"), random: new SeededRandom(3), nowMs: 0 });
  core.receivePacket(address("b"), packet(alive("b", 2, { version: 3 }), alive("c"), alive("d")), 0);
  core.takeOutput();
  return core;
}

/** Everything a packet could change, except the counters of packets received and dropped. */
function snapshot(core: MembershipCore) {
  const { packetsIn: _in, bytesIn: _bytes, dropped: _dropped, ...stats } = core.stats();
  return JSON.stringify({
    members: core.members(),
    health: core.localHealth(),
    deadline: core.nextDeadlineMs(),
    stats,
  });
}

/** Feeds `bytes` to `core` and checks it was dropped as `reason` with no effect at all. */
function expectDropped(core: MembershipCore, bytes: Uint8Array, reason: DropReason): void {
  const before = snapshot(core);
  const droppedBefore = core.stats().dropped;
  core.receivePacket(address("b"), bytes, 10);
  const dropped = core.stats().dropped;
  expect(dropped[reason]).toBe(droppedBefore[reason] + 1);
  const total = (counts: Readonly<Record<string, number>>) =>
    Object.values(counts).reduce((a, b) => a + b, 0);
  expect(total(dropped)).toBe(total(droppedBefore) + 1);
  expect(snapshot(core)).toBe(before);
  expect(core.takeOutput()).toEqual({ packets: [], pushPulls: [], events: [] });
}

const ackBytes = () => packet({ kind: "Ack", sequence: 1, memberId: id("b") });

describe("bad packets are dropped, counted by reason, and change nothing", () => {
  it("oversized: longer than the packet budget", () => {
    expectDropped(setup(), new Uint8Array(defaultLanConfig.packetBudgetBytes + 1), "oversized");
  });

  it("truncated: cut anywhere", () => {
    const bytes = packet(alive("e"), { kind: "Ping", sequence: 1, senderId: id("b"), targetId: id("a") });
    const core = setup();
    for (let length = 0; length < bytes.length; length++)
      expectDropped(core, bytes.subarray(0, length), "truncated");
  });

  it("unsupportedVersion: from another protocol version", () => {
    const bytes = packet(alive("e"));
    bytes[0] = membershipProtocolVersion + 1;
    expectDropped(setup(), bytes, "unsupportedVersion");
  });

  it("unknownKind: a message kind this version does not know", () => {
    const bytes = ackBytes();
    bytes[2] = 200;
    expectDropped(setup(), bytes, "unknownKind");
  });

  it("overLimit: more messages than a packet may hold", () => {
    const bytes = ackBytes();
    bytes[1] = 65;
    expectDropped(setup(), bytes, "overLimit");
  });

  it("malformed: trailing bytes, bad ids, empty packets", () => {
    const core = setup();
    expectDropped(core, Buffer.concat([ackBytes(), Buffer.from([0])]), "malformed");
    expectDropped(core, packet({ kind: "Ack", sequence: 1, memberId: "bad id" as MemberId }), "malformed");
    expectDropped(core, Buffer.from([membershipProtocolVersion, 0]), "malformed");
    // One bad message condemns its whole packet: the good Alive in front is not applied.
    expectDropped(
      core,
      packet(alive("e"), { kind: "Left", incarnation: 0, memberId: ".x" as MemberId }),
      "malformed",
    );
  });

  it("impersonation: a ping, ack, nack or ping-req claiming to come from us, with all the gossip it carries", () => {
    const core = setup();
    expectDropped(
      core,
      packet(alive("e"), { kind: "Ping", sequence: 1, senderId: id("a"), targetId: id("a") }),
      "impersonation",
    );
    expectDropped(core, packet({ kind: "Ack", sequence: 1, memberId: id("a") }), "impersonation");
    expectDropped(
      core,
      packet({ kind: "Nack", sequence: 1, senderId: id("a"), memberId: id("b") }),
      "impersonation",
    );
    expectDropped(
      core,
      packet({
        kind: "IndirectPing",
        sequence: 1,
        senderId: id("a"),
        targetId: id("b"),
        targetAddress: address("b"),
        wantNack: true,
      }),
      "impersonation",
    );
  });

  it("misdirected: a ping for another member, a ping-req to probe ourselves", () => {
    const core = setup();
    expectDropped(
      core,
      packet({ kind: "Ping", sequence: 1, senderId: id("b"), targetId: id("c") }),
      "misdirected",
    );
    expectDropped(
      core,
      packet({
        kind: "IndirectPing",
        sequence: 1,
        senderId: id("b"),
        targetId: id("a"),
        targetAddress: address("a"),
        wantNack: true,
      }),
      "misdirected",
    );
  });

  it("unsolicited: an ack or nack for a probe we never sent", () => {
    const core = setup();
    expectDropped(core, packet({ kind: "Ack", sequence: 99, memberId: id("b") }), "unsolicited");
    expectDropped(
      core,
      packet({ kind: "Nack", sequence: 99, senderId: id("c"), memberId: id("b") }),
      "unsolicited",
    );
  });

  it("selfAccusation: a member suspected or declared dead by itself", () => {
    const core = setup();
    expectDropped(
      core,
      packet({ kind: "Suspect", incarnation: 2, memberId: id("b"), fromId: id("b") }),
      "selfAccusation",
    );
    expectDropped(
      core,
      packet({ kind: "Dead", incarnation: 9, memberId: id("b"), fromId: id("b") }),
      "selfAccusation",
    );
    expectDropped(
      core,
      packet({ kind: "Dead", incarnation: 9, memberId: id("a"), fromId: id("a") }),
      "selfAccusation",
    );
  });

  it("addressConflict: a live member, or we ourselves, announced at another address", () => {
    const core = setup();
    expectDropped(
      core,
      packet(alive("b", 5, { version: 3, gossipAddress: "elsewhere:1" })),
      "addressConflict",
    );
    expectDropped(core, packet(alive("a", 5, { gossipAddress: "impostor:1" })), "addressConflict");
    expectDropped(core, packet(alive("e", 0, { gossipAddress: address("a") })), "addressConflict");
  });

  it("conflictingAlive: two different announcements at one incarnation", () => {
    expectDropped(
      setup(),
      packet(alive("b", 2, { version: 3, metadata: { other: "story" } })),
      "conflictingAlive",
    );
  });

  it("versionRegression: a higher incarnation with an older version", () => {
    expectDropped(setup(), packet(alive("b", 3, { version: 2 })), "versionRegression");
  });

  it("membersFull: a new member when the table is at membersMax", () => {
    expectDropped(setup({ ...defaultLanConfig, membersMax: 4 }), packet(alive("e")), "membersFull");
  });

  it("indirectBusy: more ping-reqs than indirectProbesPendingMax at once", () => {
    const core = setup({ ...defaultLanConfig, indirectProbesPendingMax: 1 });
    const request = (sequence: number) =>
      packet({
        kind: "IndirectPing",
        sequence,
        senderId: id("c"),
        targetId: id("b"),
        targetAddress: address("b"),
        wantNack: true,
      });
    core.receivePacket(address("c"), request(1), 0);
    core.takeOutput();
    expectDropped(core, request(2), "indirectBusy");
  });

  it("outputFull: a shell that stops draining loses packets like a full socket, not memory", () => {
    const core = setup();
    const ping = packet({ kind: "Ping", sequence: 1, senderId: id("b"), targetId: id("a") });
    for (let index = 0; index < outputPacketsMax; index++) core.receivePacket(address("b"), ping, 0);
    core.receivePacket(address("b"), ping, 0);
    expect(core.stats().dropped.outputFull).toBe(1);
    expect(core.takeOutput().packets).toHaveLength(outputPacketsMax);
  });

  it("bad push-pull payloads are refused, counted, and change nothing", () => {
    const core = setup();
    const before = snapshot(core);
    expect(
      core.receivePushPull(address("b"), Buffer.from([membershipProtocolVersion, 1, 0xff]), 0),
    ).toMatchObject({
      ok: false,
    });
    expect(core.receivePushPull(address("b"), Buffer.from([9, 1]), 0)).toMatchObject({
      ok: false,
      error: { tag: "UnsupportedVersion" },
    });
    expect(
      core.receivePushPullReply(address("z"), Buffer.from([membershipProtocolVersion, 2]), 0),
    ).toMatchObject({
      ok: false,
      error: { tag: "UnexpectedReply" },
    });
    expect(core.stats().dropped).toMatchObject({ unsupportedVersion: 1, unexpectedReply: 1 });
    expect(snapshot(core)).toBe(before);
  });
});

/** Valid packets about the members setup() knows, and some it does not. */
const name = fc.constantFrom("a", "b", "c", "d", "e", "f");
const small = fc.nat({ max: 6 });
const validMessage: fc.Arbitrary<Message> = fc.oneof(
  fc.record({
    kind: fc.constant("Ping" as const),
    sequence: small,
    senderId: name.map(id),
    targetId: name.map(id),
  }),
  fc.record({ kind: fc.constant("Ack" as const), sequence: small, memberId: name.map(id) }),
  fc.record({
    kind: fc.constant("Nack" as const),
    sequence: small,
    senderId: name.map(id),
    memberId: name.map(id),
  }),
  fc
    .tuple(name, small, small)
    .map(([member, incarnation, version]) => alive(member, incarnation, { version })),
  fc.record({
    kind: fc.constant("Suspect" as const),
    incarnation: small,
    memberId: name.map(id),
    fromId: name.map(id),
  }),
  fc.record({
    kind: fc.constant("Dead" as const),
    incarnation: small,
    memberId: name.map(id),
    fromId: name.map(id),
  }),
  fc.record({ kind: fc.constant("Left" as const), incarnation: small, memberId: name.map(id) }),
);
const validPacket = fc
  .array(validMessage, { minLength: 1, maxLength: 4 })
  .map((messages) => packet(...messages));

/** Mutations that always break a packet's structure. */
const brokenPacket = fc
  .tuple(validPacket, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 20 }), fc.nat({ max: 4 }))
  .map(([bytes, at, extra, how]) => {
    const copy = Buffer.from(bytes);
    switch (how) {
      case 0:
        return copy.subarray(0, at % copy.length); // truncated
      case 1:
        return Buffer.concat([copy, extra]); // trailing bytes
      case 2:
        copy[0] = 2 + (at % 250); // another version
        return copy;
      case 3:
        copy[1] = copy[1]! + 1 + (at % 10); // more messages than there are
        return copy;
      default:
        copy[2] = 9 + (at % 240); // an unknown first kind
        return copy;
    }
  });

describe("property: nothing from the network throws or changes the view unless it is valid", () => {
  it("random bytes never throw and never change anything", () => {
    const core = setup();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), (bytes) => {
        fc.pre(!decodePacket(bytes, defaultLanConfig.packetBudgetBytes).ok);
        const before = snapshot(core);
        core.receivePacket(address("b"), bytes, 10);
        expect(snapshot(core)).toBe(before);
        expect(core.takeOutput()).toEqual({ packets: [], pushPulls: [], events: [] });
      }),
      { numRuns: 500 },
    );
  });

  it("structurally broken valid packets are always dropped and change nothing", () => {
    fc.assert(
      fc.property(brokenPacket, (bytes) => {
        const core = setup();
        const before = snapshot(core);
        core.receivePacket(address("b"), bytes, 10);
        expect(snapshot(core)).toBe(before);
        expect(Object.values(core.stats().dropped).reduce((a, b) => a + b, 0)).toBe(1);
      }),
      { numRuns: 300 },
    );
  });

  it("bit flips in valid packets never throw: a packet is either refused whole or applied under the rules", () => {
    fc.assert(
      fc.property(validPacket, fc.array(fc.nat(), { minLength: 1, maxLength: 3 }), (bytes, flips) => {
        const core = setup();
        const mutated = Buffer.from(bytes);
        for (const flip of flips) mutated[(flip >> 3) % mutated.length]! ^= 1 << (flip & 7);
        const valid = decodePacket(mutated, defaultLanConfig.packetBudgetBytes).ok;
        const before = snapshot(core);
        core.receivePacket(address("b"), mutated, 10);
        if (!valid) expect(snapshot(core)).toBe(before);
        // Whatever got in obeys the rules.
        const members = core.members();
        expect(members.length).toBeLessThanOrEqual(defaultLanConfig.membersMax);
        for (const member of members) expect(checkMemberInfo(member)).toBeUndefined();
        expect(core.self()).toMatchObject({ id: "a", gossipAddress: address("a"), state: "alive" });
      }),
      { numRuns: 500 },
    );
  });
});
