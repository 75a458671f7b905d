// Two rules of MembershipCore that the simulations lean on, checked on one core by hand:
// starting from a known view (MembershipCoreOptions.members), and push-pull reaching dead
// members, which is how a healed split reconnects (simulation.test.ts shows it end to end).
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../sim/index.ts";
import { decodePacket, encodeMessage, encodePacket, type Message } from "./codec.ts";
import { defaultLanConfig } from "./config.ts";
import { MembershipCore, pushPullIntervalScaledMs } from "./core.ts";
import { MembershipAssertionError } from "./errors.ts";
import { memberId } from "./member-info.ts";
import type { Member, MemberId } from "./types.ts";

const config = defaultLanConfig;
const address = (name: string) => `${name}.test:7400`;
const known = (name: string, change: Partial<Member> = {}): Member =>
  Object.freeze({
    id: memberId(name),
    region: "eu-west",
    gossipAddress: address(name),
    addresses: Object.freeze({}),
    metadata: Object.freeze({}),
    version: 0,
    state: "alive" as const,
    incarnation: 0,
    stateChangedMs: 0,
    ...change,
  });
const start = (members: readonly Member[], seed = 7) =>
  new MembershipCore({
    config,
    self: {
      id: memberId("a"),
      region: "eu-west",
      gossipAddress: address("a"),
      addresses: {},
      metadata: {},
      version: 0,
    },
    random: new SeededRandom(seed),
    nowMs: 0,
    members,
  });

/** Runs `core` to `untilMs`: every ping and indirect ping is acked; returns every message sent. */
function run(core: MembershipCore, untilMs: number, pushPullsTo: string[] = []): Message[] {
  const sent: Message[] = [];
  for (let steps = 0; steps < 100_000 && core.nextDeadlineMs() <= untilMs; steps++) {
    const now = core.nextDeadlineMs();
    core.tick(now);
    for (let round = 0; round < 10; round++) {
      const output = core.takeOutput();
      pushPullsTo.push(...output.pushPulls.map((request) => request.to));
      const replies: [string, Message][] = [];
      for (const packet of output.packets) {
        const decoded = decodePacket(packet.bytes, config.packetBudgetBytes);
        if (!decoded.ok) throw new Error(decoded.error.message);
        sent.push(...decoded.messages);
        for (const message of decoded.messages) {
          if (message.kind === "Ping" || message.kind === "IndirectPing")
            replies.push([
              packet.to,
              { kind: "Ack", sequence: message.sequence, memberId: message.targetId },
            ]);
        }
      }
      for (const [from, reply] of replies)
        core.receivePacket(from, encodePacket([encodeMessage(reply)]), now);
      if (replies.length === 0) break;
    }
  }
  return sent;
}

describe("a core started with known members", () => {
  it("holds them alive as given (shared, not copied), reports them joined, and gossips only itself", () => {
    const others = ["b", "c", "d"].map((name) => known(name));
    const core = start(others);
    expect(core.member("b")).toBe(others[0]);
    expect(core.members().map((member) => [member.id, member.state])).toEqual([
      ["a", "alive"],
      ["b", "alive"],
      ["c", "alive"],
      ["d", "alive"],
    ]);
    expect(core.takeOutput().events.map((event) => [event.kind, event.member.id])).toEqual([
      ["joined", "a"],
      ["joined", "b"],
      ["joined", "c"],
      ["joined", "d"],
    ]);
    const alives = run(core, 2000).filter((message) => message.kind === "Alive");
    expect(alives.length).toBeGreaterThan(0);
    expect(alives.every((message) => message.kind === "Alive" && message.member.id === "a")).toBe(true);
  });

  it("asserts what only a programmer could get wrong: itself, twice, unfrozen or not alive", () => {
    expect(() => start([known("a", { gossipAddress: address("z") })])).toThrow(MembershipAssertionError);
    expect(() => start([known("z", { gossipAddress: address("a") })])).toThrow(MembershipAssertionError);
    expect(() => start([known("b"), known("b")])).toThrow(MembershipAssertionError);
    expect(() => start([{ ...known("b") }])).toThrow(MembershipAssertionError);
    expect(() => start([known("b", { state: "suspect" })])).toThrow(MembershipAssertionError);
  });

  it("spreads its first push-pull over the interval scaled for the members it starts with", () => {
    const others = Array.from({ length: 999 }, (_, index) => known(`m${index}`));
    const scaledMs = pushPullIntervalScaledMs(config.pushPullIntervalMs, 1000);
    expect(scaledMs).toBe(6 * config.pushPullIntervalMs);
    const firsts = [1, 2, 3, 4, 5, 6, 7, 8].map((seed) => {
      const core = start(others, seed);
      core.takeOutput();
      for (let steps = 0; steps < 100_000; steps++) {
        const now = core.nextDeadlineMs();
        core.tick(now);
        if (core.takeOutput().pushPulls.length > 0) return now;
      }
      throw new Error("no push-pull");
    });
    expect(Math.max(...firsts)).toBeLessThan(scaledMs);
    expect(Math.max(...firsts)).toBeGreaterThan(config.pushPullIntervalMs);
  });
});

describe("push-pull anti-entropy", () => {
  it("goes to dead members as well as alive ones (a healed split reconnects), never to left ones", () => {
    // Tombstones kept for an hour, so c stays a candidate through 40 push-pull periods.
    const core = new MembershipCore({
      config: { ...config, tombstoneRetentionMs: 3_600_000 },
      self: {
        id: memberId("a"),
        region: "eu-west",
        gossipAddress: address("a"),
        addresses: {},
        metadata: {},
        version: 0,
      },
      random: new SeededRandom(7),
      nowMs: 0,
      members: ["b", "c", "d", "e"].map((name) => known(name)),
    });
    const gossip = (...messages: Message[]) =>
      core.receivePacket(address("b"), encodePacket(messages.map(encodeMessage)), 0);
    gossip(
      { kind: "Dead", incarnation: 0, memberId: "c" as MemberId, fromId: "b" as MemberId },
      { kind: "Left", incarnation: 0, memberId: "d" as MemberId },
    );
    expect([core.member("c")?.state, core.member("d")?.state]).toEqual(["dead", "left"]);
    const targets: string[] = [];
    run(core, 40 * config.pushPullIntervalMs, targets);
    const count = (name: string) => targets.filter((to) => to === address(name)).length;
    expect(targets.length).toBeGreaterThanOrEqual(39);
    expect(count("c")).toBeGreaterThan(5);
    expect(count("d")).toBe(0);
    expect(count("b") + count("c") + count("e")).toBe(targets.length);
  });
});
