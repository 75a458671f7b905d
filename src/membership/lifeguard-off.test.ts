// `lifeguard: false`: plain SWIM, the baseline the simulations compare Lifeguard with. One core
// stepped by hand among scripted peers (as in core.test.ts): each test checks that one of
// Lifeguard's mechanisms is off, and the matching test in core.test.ts shows it on.
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../sim/index.ts";
import { decodePacket, encodeMessage, encodePacket, type Message } from "./codec.ts";
import { checkMembershipConfig, defaultLanConfig, defaultWanConfig } from "./config.ts";
import { MembershipCore } from "./core.ts";
import { memberId } from "./member-info.ts";
import type { MemberId } from "./types.ts";

const config = { ...defaultLanConfig, lifeguard: false };
const address = (name: string) => `${name}.test:7400`;
const id = (name: string) => name as MemberId;
const alive = (name: string): Message => ({
  kind: "Alive",
  incarnation: 0,
  member: {
    id: memberId(name),
    region: "eu-west",
    gossipAddress: address(name),
    addresses: {},
    metadata: {},
    version: 0,
  },
});

/** Core "a" with peers b-e. Peers ack pings unless silent; as intermediaries they relay acks and nack for silent targets. */
class World {
  readonly core = new MembershipCore({
    config,
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
  });
  readonly sent: { atMs: number; to: string; messages: readonly Message[] }[] = [];
  readonly silent = new Set<string>();
  answering = true;
  now = 0;

  constructor() {
    this.receive(address("b"), ...["b", "c", "d", "e"].map(alive));
  }

  receive(from: string, ...messages: Message[]): void {
    this.core.receivePacket(from, encodePacket(messages.map(encodeMessage)), this.now);
    this.drain();
  }

  stepUntil(untilMs: number): void {
    for (let steps = 0; steps < 100_000 && this.core.nextDeadlineMs() <= untilMs; steps++) {
      this.now = Math.max(this.now, this.core.nextDeadlineMs());
      this.core.tick(this.now);
      this.drain();
    }
    this.now = Math.max(this.now, untilMs);
  }

  /** Steps until a ping goes to `target` (or anyone); returns it. */
  stepUntilPing(target?: string): { readonly targetId: MemberId; readonly atMs: number } {
    for (let steps = 0; steps < 10_000; steps++) {
      const seen = this.sent.length;
      this.stepUntil(this.core.nextDeadlineMs());
      for (const sent of this.sent.slice(seen)) {
        const ping = sent.messages.find((message) => message.kind === "Ping");
        if (ping?.kind === "Ping" && (target === undefined || ping.targetId === target))
          return { targetId: ping.targetId, atMs: sent.atMs };
      }
    }
    throw new Error("no ping");
  }

  sentOf<K extends Message["kind"]>(
    kind: K,
  ): (Extract<Message, { kind: K }> & { atMs: number; to: string })[] {
    return this.sent.flatMap((sent) =>
      sent.messages
        .filter((message): message is Extract<Message, { kind: K }> => message.kind === kind)
        .map((message) => ({ ...message, atMs: sent.atMs, to: sent.to })),
    );
  }

  private drain(): void {
    for (let rounds = 0; rounds < 100; rounds++) {
      const output = this.core.takeOutput();
      if (output.packets.length === 0) return;
      const replies: [string, Message][] = [];
      for (const out of output.packets) {
        const decoded = decodePacket(out.bytes, config.packetBudgetBytes);
        if (!decoded.ok) throw new Error(decoded.error.message);
        this.sent.push({ atMs: this.now, to: out.to, messages: decoded.messages });
        const peer = out.to.replace(".test:7400", "");
        if (!this.answering || this.silent.has(peer)) continue;
        for (const message of decoded.messages) {
          if (message.kind === "Ping")
            replies.push([out.to, { kind: "Ack", sequence: message.sequence, memberId: id(peer) }]);
          if (message.kind === "IndirectPing" && !this.silent.has(message.targetId))
            replies.push([out.to, { kind: "Ack", sequence: message.sequence, memberId: message.targetId }]);
        }
      }
      for (const [from, reply] of replies)
        this.core.receivePacket(from, encodePacket([encodeMessage(reply)]), this.now);
    }
  }
}

/** Silences the next probe target and runs until it is suspected. */
function suspectOne(world: World): { victim: MemberId; suspectedMs: number } {
  const first = world.stepUntilPing();
  world.silent.add(first.targetId);
  const ping = world.stepUntilPing(first.targetId);
  world.stepUntil(ping.atMs + config.probeIntervalMs);
  expect(world.core.member(first.targetId)?.state).toBe("suspect");
  return { victim: first.targetId, suspectedMs: ping.atMs + config.probeIntervalMs };
}

describe("lifeguard: false is plain SWIM", () => {
  it("is on by default, for LAN and WAN, and must be a boolean", () => {
    expect(defaultLanConfig.lifeguard).toBe(true);
    expect(defaultWanConfig.lifeguard).toBe(true);
    const bad = { ...defaultLanConfig, lifeguard: "no" as unknown as boolean };
    expect(checkMembershipConfig(bad).map((error) => error.field)).toEqual(["lifeguard"]);
  });

  it("no local health (§IV-A off): missed acks, missing nacks and refutations never stretch the timers", () => {
    const world = new World();
    world.answering = false;
    const ping = world.stepUntilPing();
    world.stepUntil(ping.atMs + config.probeIntervalMs);
    world.receive(address("b"), { kind: "Suspect", incarnation: 0, memberId: id("a"), fromId: id("b") });
    expect(world.core.stats().refutations).toBe(1);
    expect(world.core.localHealth()).toBe(0);
    // The next probe starts one plain period later and asks for help one plain timeout after.
    const next = world.sentOf("Ping").at(-1)!;
    expect(next.atMs).toBe(ping.atMs + config.probeIntervalMs);
    world.stepUntil(next.atMs + config.probeTimeoutMs);
    expect(world.sentOf("IndirectPing").at(-1)!.atMs).toBe(next.atMs + config.probeTimeoutMs);
  });

  it("no nacks (§IV-A off): indirect pings do not ask for one", () => {
    const world = new World();
    suspectOne(world);
    const requests = world.sentOf("IndirectPing");
    expect(requests.length).toBe(config.indirectChecks);
    for (const request of requests) expect(request.wantNack).toBe(false);
  });

  it("fixed suspicion timeout (§IV-B off): suspicionMult * max(1, log10 N) * interval, never moved by confirmations", () => {
    const world = new World();
    const { victim, suspectedMs } = suspectOne(world);
    // N = 5: 4 * 1 * 300 = 1200 ms (with Lifeguard: 6 * 1200 = 7200 ms without confirmations).
    expect(world.core.suspicion(victim)).toEqual({ confirmations: 0, deadlineMs: suspectedMs + 1200 });
    const before = world.sentOf("Suspect").length;
    for (const from of ["b", "c", "d", "e"].filter((name) => name !== victim))
      world.receive(address(from), { kind: "Suspect", incarnation: 0, memberId: victim, fromId: id(from) });
    expect(world.core.suspicion(victim)).toEqual({ confirmations: 0, deadlineMs: suspectedMs + 1200 });
    world.stepUntil(suspectedMs + 1199);
    expect(world.core.member(victim)?.state).toBe("suspect");
    // Confirmations are not re-gossiped either: only our own suspicion went out.
    expect(
      world
        .sentOf("Suspect")
        .slice(before)
        .every((message) => message.fromId === "a"),
    ).toBe(true);
    world.stepUntil(suspectedMs + 1200);
    expect(world.core.member(victim)?.state).toBe("dead");
  });

  it("no buddy system (§IV-C off): a ping to a suspect carries no suspicion", () => {
    const world = new World();
    world.receive(address("c"), { kind: "Suspect", incarnation: 0, memberId: id("b"), fromId: id("c") });
    world.silent.add("b");
    world.stepUntilPing("b");
    const toSuspect = world.sent.filter((sent) => sent.to === address("b")).at(-1)!;
    expect(toSuspect.messages[0]).toMatchObject({ kind: "Ping", targetId: "b" });
    expect(toSuspect.messages.some((message) => message.kind === "Suspect" && message.memberId === "b")).toBe(
      false,
    );
  });
});
