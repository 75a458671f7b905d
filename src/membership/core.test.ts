// SWIM and Lifeguard rules, one test each, stepping one MembershipCore by hand: its peers are
// scripted (they ack, nack or stay silent as each test says), time moves only when the test
// says so. Named after the rule they check, like etcd's raft_paper_test.go.
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../sim/index.ts";
import { retransmitLimit } from "./broadcast-queue.ts";
import { decodePacket, encodeMessage, encodePacket, type Message } from "./codec.ts";
import { defaultLanConfig, type MembershipConfig } from "./config.ts";
import { MembershipCore, type MembershipOutput } from "./core.ts";
import { MembershipAssertionError } from "./errors.ts";
import { memberId } from "./member-info.ts";
import type { MemberId, MemberInfo } from "./types.ts";

const config = defaultLanConfig;
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
const packet = (...messages: Message[]) => encodePacket(messages.map(encodeMessage));
const alive = (name: string, incarnation = 0, change: Partial<MemberInfo> = {}): Message => ({
  kind: "Alive",
  incarnation,
  member: info(name, change),
});
const id = (name: string) => name as MemberId;

interface Sent {
  readonly atMs: number;
  readonly to: string;
  readonly messages: readonly Message[];
}

/**
 * A core and a scripted world around it. `silent` peers never answer; the others ack pings
 * at once, and as intermediaries ack for a live target or nack for a silent one.
 */
class World {
  readonly core: MembershipCore;
  readonly sent: Sent[] = [];
  readonly events: MembershipOutput["events"][number][] = [];
  readonly silent = new Set<string>();
  /** When false, nobody answers anything (a node cut off from everyone). */
  answering = true;
  now = 0;

  constructor(
    self = "a",
    peers = ["b", "c", "d", "e"],
    options: { config?: MembershipConfig; seed?: number } = {},
  ) {
    this.core = new MembershipCore({
      config: options.config ?? config,
      self: info(self),
      random: new SeededRandom(options.seed ?? 7),
      nowMs: 0,
    });
    for (let start = 0; start < peers.length; start += 10) {
      const batch = peers.slice(start, start + 10);
      this.receive(address(batch[0]!), ...batch.map((peer) => alive(peer)));
    }
    this.drain();
  }

  /** Delivers messages from `from` now, then lets the scripted peers answer. */
  receive(from: string, ...messages: Message[]): void {
    this.core.receivePacket(from, packet(...messages), this.now);
    this.drain();
  }

  /** Runs every timer up to and including `untilMs`. */
  stepUntil(untilMs: number): void {
    for (let steps = 0; steps < 100_000; steps++) {
      const next = this.core.nextDeadlineMs();
      if (next > untilMs) break;
      this.now = Math.max(this.now, next);
      this.core.tick(this.now);
      this.drain();
    }
    this.now = Math.max(this.now, untilMs);
  }

  /** Steps until the core pings `target` (or anyone), returning that ping. */
  stepUntilPing(target?: string): {
    readonly sequence: number;
    readonly targetId: MemberId;
    readonly atMs: number;
  } {
    const seen = this.sent.length;
    for (let steps = 0; steps < 10_000; steps++) {
      this.now = Math.max(this.now, this.core.nextDeadlineMs());
      this.core.tick(this.now);
      this.drain();
      for (const sent of this.sent.slice(seen)) {
        const ping = sent.messages.find((message) => message.kind === "Ping");
        if (ping?.kind === "Ping" && (target === undefined || ping.targetId === target)) {
          return { sequence: ping.sequence, targetId: ping.targetId, atMs: sent.atMs };
        }
      }
    }
    throw new Error("no ping");
  }

  /** Messages of `kind` sent since index `from`. */
  sentOf<K extends Message["kind"]>(
    kind: K,
    from = 0,
  ): (Extract<Message, { kind: K }> & { to: string; atMs: number })[] {
    return this.sent
      .slice(from)
      .flatMap((sent) =>
        sent.messages
          .filter((message): message is Extract<Message, { kind: K }> => message.kind === kind)
          .map((message) => ({ ...message, to: sent.to, atMs: sent.atMs })),
      );
  }

  state(name: string) {
    return this.core.member(name)?.state;
  }

  /** Takes the core's output, records it, and delivers the scripted answers. */
  drain(): void {
    for (let rounds = 0; rounds < 100; rounds++) {
      const output = this.core.takeOutput();
      this.events.push(...output.events);
      if (output.packets.length === 0) return;
      const replies: [string, Message][] = [];
      for (const out of output.packets) {
        const decoded = decodePacket(out.bytes, config.packetBudgetBytes);
        if (!decoded.ok) throw new Error(decoded.error.message);
        expect(out.bytes.length).toBeLessThanOrEqual(config.packetBudgetBytes);
        this.sent.push({ atMs: this.now, to: out.to, messages: decoded.messages });
        const peer = out.to.replace(".test:7400", "");
        if (!this.answering || this.silent.has(peer)) continue;
        for (const message of decoded.messages) {
          if (message.kind === "Ping")
            replies.push([out.to, { kind: "Ack", sequence: message.sequence, memberId: id(peer) }]);
          if (message.kind === "IndirectPing") {
            const target = message.targetId;
            replies.push([
              out.to,
              this.silent.has(target)
                ? { kind: "Nack", sequence: message.sequence, senderId: id(peer), memberId: target }
                : { kind: "Ack", sequence: message.sequence, memberId: target },
            ]);
          }
        }
      }
      for (const [from, reply] of replies) this.core.receivePacket(from, packet(reply), this.now);
    }
  }
}

describe("SWIM §3.1 failure detection", () => {
  it("probe -> ack keeps the member alive, with no indirect probe", () => {
    const world = new World();
    const ping = world.stepUntilPing();
    expect(world.sentOf("Ping").at(-1)!.to).toBe(address(ping.targetId));
    world.stepUntil(ping.atMs + config.probeIntervalMs * 3);
    expect(world.sentOf("IndirectPing")).toEqual([]);
    expect(world.core.members().every((member) => member.state === "alive")).toBe(true);
    expect(world.core.localHealth()).toBe(0);
    expect(world.core.stats().probes).toBeGreaterThanOrEqual(3);
  });

  it("a missed ack sends a ping-req to k = indirectChecks other members at the probe timeout", () => {
    const world = new World();
    const first = world.stepUntilPing();
    world.silent.add(first.targetId);
    const ping = world.stepUntilPing(first.targetId);
    const before = world.sent.length;
    world.stepUntil(ping.atMs + config.probeTimeoutMs);
    const requests = world.sentOf("IndirectPing", before);
    expect(requests).toHaveLength(config.indirectChecks);
    expect(new Set(requests.map((request) => request.to)).size).toBe(config.indirectChecks);
    for (const request of requests) {
      expect(request.atMs).toBe(ping.atMs + config.probeTimeoutMs);
      expect(request.to).not.toBe(address(ping.targetId));
      expect(request).toMatchObject({
        sequence: ping.sequence,
        targetId: ping.targetId,
        targetAddress: address(ping.targetId),
        wantNack: true,
      });
    }
  });

  it("an intermediary pings the target for the requester, relays its ack, or nacks in time", () => {
    const world = new World("a", ["b", "c"]);
    world.answering = false;
    world.receive(address("c"), {
      kind: "IndirectPing",
      sequence: 41,
      senderId: id("c"),
      targetId: id("b"),
      targetAddress: address("b"),
      wantNack: true,
    });
    const [relayPing] = world.sentOf("Ping").filter((ping) => ping.to === address("b"));
    expect(relayPing).toMatchObject({ senderId: "a", targetId: "b" });
    world.receive(address("b"), { kind: "Ack", sequence: relayPing!.sequence, memberId: id("b") });
    expect(world.sentOf("Ack").filter((ack) => ack.to === address("c"))).toMatchObject([
      { sequence: 41, memberId: "b" },
    ]);
    expect(world.core.stats().acksRelayed).toBe(1);

    world.receive(address("c"), {
      kind: "IndirectPing",
      sequence: 42,
      senderId: id("c"),
      targetId: id("b"),
      targetAddress: address("b"),
      wantNack: true,
    });
    const asked = world.now;
    world.stepUntil(asked + config.probeTimeoutMs);
    expect(world.sentOf("Nack")).toMatchObject([
      { to: address("c"), sequence: 42, senderId: "a", memberId: "b", atMs: asked + config.probeTimeoutMs },
    ]);
  });
});

describe("SWIM §4.3 round-robin probe targets", () => {
  it("probes every member exactly once per round, in a fresh random order each round", () => {
    const peers = Array.from({ length: 10 }, (_, index) => `p${index}`);
    const world = new World("a", peers);
    const targets: string[] = [];
    for (let probe = 0; probe < 20; probe++) targets.push(world.stepUntilPing().targetId);
    expect([...targets.slice(0, 10)].sort()).toEqual([...peers].sort());
    expect([...targets.slice(10)].sort()).toEqual([...peers].sort());
    expect(targets.slice(10)).not.toEqual(targets.slice(0, 10));
  });

  it("in a large cluster, asks k distinct live members other than the target", () => {
    const peers = Array.from({ length: 150 }, (_, index) => `p${index}`);
    const world = new World("a", peers);
    const first = world.stepUntilPing();
    world.silent.add(first.targetId);
    world.receive(address("p0"), {
      kind: "Dead",
      incarnation: 0,
      memberId: id(peers[1] === first.targetId ? "p2" : "p1"),
      fromId: id("p0"),
    });
    const ping = world.stepUntilPing(first.targetId);
    const before = world.sent.length;
    world.stepUntil(ping.atMs + config.probeTimeoutMs);
    const asked = world.sentOf("IndirectPing", before).map((request) => request.to.replace(".test:7400", ""));
    expect(new Set(asked).size).toBe(config.indirectChecks);
    for (const name of asked) expect(world.state(name)).toBe("alive");
    expect(asked).not.toContain(first.targetId);
  });
});

describe("SWIM §4.2 suspicion", () => {
  /** A world where `victim` went silent and has just been suspected; returns when. */
  function suspectOne(world: World): { victim: MemberId; suspectedMs: number } {
    const first = world.stepUntilPing();
    world.silent.add(first.targetId);
    const ping = world.stepUntilPing(first.targetId);
    world.stepUntil(ping.atMs + config.probeIntervalMs);
    return { victim: first.targetId, suspectedMs: ping.atMs + config.probeIntervalMs };
  }

  it("no ack, direct or indirect, by the end of the probe period -> suspect", () => {
    const world = new World();
    const { victim } = suspectOne(world);
    expect(world.state(victim)).toBe("suspect");
    expect(world.events.filter((event) => event.kind === "suspect").map((event) => event.member.id)).toEqual([
      victim,
    ]);
    expect(world.core.stats().probesFailed).toBe(1);
    // The suspicion is gossiped: it rides on the next packets.
    world.stepUntil(world.now + config.probeIntervalMs);
    expect(
      world.sentOf("Suspect").some((message) => message.memberId === victim && message.fromId === "a"),
    ).toBe(true);
  });

  it("the suspicion timeout declares it dead: max(1, log10 N) * mult * interval * maxMult without confirmations", () => {
    const world = new World();
    const { victim, suspectedMs } = suspectOne(world);
    // N = 5: floor 4 * 1 * 300 = 1200 ms; k = 2; no confirmation -> 6 * 1200 = 7200 ms.
    expect(world.core.suspicion(victim)).toEqual({ confirmations: 0, deadlineMs: suspectedMs + 7200 });
    world.stepUntil(suspectedMs + 7199);
    expect(world.state(victim)).toBe("suspect");
    world.stepUntil(suspectedMs + 7200);
    expect(world.state(victim)).toBe("dead");
    expect(world.events.at(-1)).toMatchObject({ kind: "dead", member: { id: victim } });
    expect(world.core.stats().deathsDeclared).toBe(1);
    world.stepUntil(world.now + config.gossipIntervalMs * 2);
    expect(world.sentOf("Dead").some((message) => message.memberId === victim)).toBe(true);
    // Dead members are no longer probed.
    const before = world.sent.length;
    world.stepUntil(world.now + config.probeIntervalMs * 10);
    expect(world.sentOf("Ping", before).filter((ping) => ping.targetId === victim)).toEqual([]);
  });

  it("Lifeguard §IV-B: independent confirmations shrink the timeout to the floor, and are re-gossiped", () => {
    const world = new World();
    const { victim, suspectedMs } = suspectOne(world);
    const others = ["b", "c", "d", "e"].filter((name) => name !== victim);
    const confirm = (from: string) =>
      world.receive(address(from), { kind: "Suspect", incarnation: 0, memberId: victim, fromId: id(from) });
    confirm(others[0]!);
    // max - (max - min) * log(2) / log(3) = 7200 - 6000 * 0.6309 = 3414 ms.
    expect(world.core.suspicion(victim)).toEqual({ confirmations: 1, deadlineMs: suspectedMs + 3414 });
    confirm(others[0]!); // the same member again: not independent
    confirm("a"); // our own suspicion gossiped back
    expect(world.core.suspicion(victim)!.confirmations).toBe(1);
    const before = world.sent.length;
    confirm(others[1]!);
    expect(world.core.suspicion(victim)).toEqual({ confirmations: 2, deadlineMs: suspectedMs + 1200 });
    world.stepUntil(suspectedMs + 1200);
    expect(world.state(victim)).toBe("dead");
    expect(world.sentOf("Suspect", before).some((message) => message.fromId === others[1])).toBe(true);
  });

  it("a suspect refutes with a higher incarnation, and the refutation makes it alive again", () => {
    const world = new World();
    world.receive(address("c"), { kind: "Suspect", incarnation: 0, memberId: id("b"), fromId: id("c") });
    expect(world.state("b")).toBe("suspect");
    world.receive(address("b"), alive("b", 1));
    expect(world.state("b")).toBe("alive");
    expect(world.core.member("b")!.incarnation).toBe(1);
    expect(world.core.suspicion("b")).toBeUndefined();
    expect(world.events.slice(-2).map((event) => event.kind)).toEqual(["suspect", "alive"]);
    // A stale suspicion (older incarnation) changes nothing now.
    world.receive(address("c"), { kind: "Suspect", incarnation: 0, memberId: id("b"), fromId: id("c") });
    expect(world.state("b")).toBe("alive");
  });

  it("accused itself, a member raises its incarnation above the accusation and gossips Alive", () => {
    const world = new World();
    world.receive(address("b"), { kind: "Suspect", incarnation: 0, memberId: id("a"), fromId: id("b") });
    expect(world.core.self()).toMatchObject({ state: "alive", incarnation: 1 });
    world.receive(address("b"), { kind: "Dead", incarnation: 5, memberId: id("a"), fromId: id("b") });
    expect(world.core.self().incarnation).toBe(6);
    world.receive(address("b"), { kind: "Left", incarnation: 6, memberId: id("a") });
    expect(world.core.self()).toMatchObject({ state: "alive", incarnation: 7 });
    // Older accusations are ignored.
    world.receive(address("b"), { kind: "Suspect", incarnation: 3, memberId: id("a"), fromId: id("b") });
    expect(world.core.self().incarnation).toBe(7);
    expect(world.core.stats().refutations).toBe(3);
    world.stepUntil(world.now + config.gossipIntervalMs * 2);
    expect(
      world.sentOf("Alive").some((message) => message.member.id === "a" && message.incarnation === 7),
    ).toBe(true);
  });

  it("a restarted member outbids the incarnation and version the cluster remembers", () => {
    const world = new World();
    world.receive(address("b"), alive("a", 9, { version: 4, metadata: { old: "life" } }));
    expect(world.core.self()).toMatchObject({ incarnation: 10, version: 5, metadata: {} });
    // Same info as ours at a higher incarnation: only the incarnation moves.
    const same = new World();
    same.receive(address("b"), alive("a", 3));
    expect(same.core.self()).toMatchObject({ incarnation: 4, version: 0 });
    // Other info at our version: the version moves too, so ours is not taken for a conflict.
    const other = new World();
    other.receive(address("b"), alive("a", 3, { metadata: { old: "life" } }));
    expect(other.core.self()).toMatchObject({ incarnation: 4, version: 1 });
    expect(other.events.at(-1)).toMatchObject({ kind: "updated", member: { id: "a", version: 1 } });
  });

  it("a leaving member refutes nothing about itself", () => {
    const world = new World();
    world.core.leave(world.now);
    world.receive(address("b"), { kind: "Dead", incarnation: 0, memberId: id("a"), fromId: id("b") });
    world.receive(address("b"), alive("a", 4));
    expect(world.core.self()).toMatchObject({ state: "left", incarnation: 0 });
    expect(world.core.stats().refutations).toBe(0);
  });

  it("a member declared dead that then says goodbye is left", () => {
    const world = new World();
    world.receive(address("c"), { kind: "Dead", incarnation: 0, memberId: id("b"), fromId: id("c") });
    expect(world.state("b")).toBe("dead");
    world.receive(address("b"), { kind: "Left", incarnation: 0, memberId: id("b") });
    expect(world.state("b")).toBe("left");
    expect(world.events.slice(-2).map((event) => event.kind)).toEqual(["dead", "left"]);
  });
});

describe("Lifeguard §IV-C buddy system", () => {
  it("a ping to a suspect carries the suspicion", () => {
    const world = new World();
    world.receive(address("c"), { kind: "Suspect", incarnation: 0, memberId: id("b"), fromId: id("c") });
    world.silent.add("b");
    world.stepUntilPing("b");
    const toSuspect = world.sent.filter((sent) => sent.to === address("b")).at(-1)!;
    expect(toSuspect.messages.slice(0, 2)).toMatchObject([
      { kind: "Ping", targetId: "b" },
      { kind: "Suspect", memberId: "b", fromId: "a" },
    ]);
  });

  it("the suspect's ack carries its refutation", () => {
    const world = new World("b", ["a", "c"]);
    world.answering = false;
    world.receive(
      address("a"),
      { kind: "Ping", sequence: 3, senderId: id("a"), targetId: id("b") },
      { kind: "Suspect", incarnation: 0, memberId: id("b"), fromId: id("a") },
    );
    const reply = world.sent.filter((sent) => sent.to === address("a")).at(-1)!;
    expect(reply.messages[0]).toEqual({ kind: "Ack", sequence: 3, memberId: "b" });
    expect(reply.messages.slice(1)).toContainEqual(
      expect.objectContaining({ kind: "Alive", incarnation: 1 }),
    );
  });
});

describe("Lifeguard §IV-A local health", () => {
  it("rises by the nacks that did not come, and stretches the probe timeout and interval", () => {
    const world = new World();
    world.answering = false;
    const ping = world.stepUntilPing();
    world.stepUntil(ping.atMs + config.probeIntervalMs);
    // Three intermediaries asked, no nack from any: +3, so timers are now 4x.
    expect(world.core.localHealth()).toBe(3);
    const next = world.sentOf("Ping").at(-1)!;
    expect(next.atMs).toBe(ping.atMs + config.probeIntervalMs);
    const before = world.sent.length;
    world.stepUntil(next.atMs + 4 * config.probeTimeoutMs);
    // Two members are left to ask: the first target is suspect now, and only alive members relay.
    expect(world.sentOf("IndirectPing", before).map((request) => request.atMs)).toEqual(
      Array(2).fill(next.atMs + 4 * config.probeTimeoutMs),
    );
    const third = world.stepUntilPing();
    expect(third.atMs).toBe(next.atMs + 4 * config.probeIntervalMs);
  });

  it("stays put when the intermediaries nack: the target is down, not us", () => {
    const world = new World();
    const first = world.stepUntilPing();
    world.silent.add(first.targetId);
    const ping = world.stepUntilPing(first.targetId);
    world.stepUntil(ping.atMs + config.probeIntervalMs);
    expect(world.state(first.targetId)).toBe("suspect");
    expect(world.sentOf("IndirectPing").length).toBe(config.indirectChecks);
    expect(world.core.localHealth()).toBe(0);
  });

  it("falls by one on each answered probe", () => {
    const world = new World();
    world.answering = false;
    const ping = world.stepUntilPing();
    world.stepUntil(ping.atMs + config.probeIntervalMs - 1);
    world.answering = true;
    // At the end of the period the unanswered probe fails (+3), and the next one, started in
    // the same step, is acked at once (-1).
    world.stepUntil(ping.atMs + config.probeIntervalMs);
    expect(world.core.stats()).toMatchObject({ probes: 2, probesFailed: 1 });
    expect(world.core.localHealth()).toBe(2);
  });

  it("a refutation of ourselves counts against our health", () => {
    const world = new World();
    world.receive(address("b"), { kind: "Suspect", incarnation: 0, memberId: id("a"), fromId: id("b") });
    expect(world.core.localHealth()).toBe(1);
  });
});

describe("SWIM §4.1 piggybacked dissemination", () => {
  it("fills packets up to the byte budget and sends each broadcast retransmitMult * ceil(log10(N + 1)) times", () => {
    const names = Array.from({ length: 30 }, (_, index) => `m${index}`);
    const world = new World("a", []);
    const metadata = { blob: "x".repeat(400) };
    for (const name of names) world.receive(address(name), alive(name, 0, { metadata }));
    world.stepUntil(30_000);
    const limit = retransmitLimit(config.retransmitMult, 31);
    expect(limit).toBe(8);
    const sends = new Map<string, number>();
    for (const message of world.sentOf("Alive"))
      sends.set(message.member.id, (sends.get(message.member.id) ?? 0) + 1);
    for (const name of names) expect(sends.get(name)).toBe(limit);
    expect(sends.get("a")).toBe(limit);
    // Packets are filled: at ~430 bytes a member's Alive, three fit under the budget, not four.
    const carried = world.sent.map(
      (sent) =>
        sent.messages.filter((message) => message.kind === "Alive" && message.member.id !== "a").length,
    );
    expect(Math.max(...carried)).toBe(3);
  });
});

describe("construction", () => {
  it("asserts a config and identity the router should have checked first", () => {
    const make =
      (change: Partial<MembershipConfig>, self = info("a")) =>
      () =>
        new MembershipCore({ config: { ...config, ...change }, self, random: new SeededRandom(1), nowMs: 0 });
    expect(make({ probeTimeoutMs: 1000 })).toThrow(MembershipAssertionError);
    expect(make({}, info("a", { gossipAddress: "nowhere" }))).toThrow(/gossip address/);
    expect(make({})).not.toThrow();
  });
});

describe("join and leave", () => {
  it("joins through a seed by push-pull: both learn each other and the seed's members", () => {
    const seed = new World("b", ["c", "d"]);
    const joiner = new World("a", []);
    expect(joiner.core.join([address("b")], 0)).toEqual({ ok: true, seeds: 1 });
    const [request] = joiner.core.takeOutput().pushPulls;
    expect(request).toMatchObject({ to: address("b"), join: true });
    const answer = seed.core.receivePushPull(address("a"), request!.bytes, 0);
    if (!answer.ok) throw new Error(answer.error.message);
    expect(joiner.core.receivePushPullReply(address("b"), answer.reply, 0)).toEqual({ ok: true });
    expect(joiner.core.members().map((member) => [member.id, member.state])).toEqual([
      ["a", "alive"],
      ["b", "alive"],
      ["c", "alive"],
      ["d", "alive"],
    ]);
    expect(seed.core.member("a")?.state).toBe("alive");
    expect(joiner.events.map((event) => `${event.kind} ${event.member.id}`)).toEqual(["joined a"]);
    expect(joiner.core.takeOutput().events.map((event) => `${event.kind} ${event.member.id}`)).toEqual([
      "joined b",
      "joined c",
      "joined d",
    ]);
  });

  it("push-pull only suspects what the peer says is dead, and cuts a big state to pushPullBytesMax", () => {
    const small = { ...config, pushPullBytesMax: 64 * 1024 };
    const peer = new World("p", ["a", "b", "c"], { config: small });
    const metadata = { blob: "x".repeat(480) };
    for (let index = 0; index < 150; index++) peer.receive(address("b"), alive(`m${index}`, 0, { metadata }));
    peer.receive(address("c"), { kind: "Dead", incarnation: 0, memberId: id("b"), fromId: id("c") });
    const world = new World("a", [], { config: small });
    world.core.join([address("p")], 0);
    const [request] = world.core.takeOutput().pushPulls;
    const answer = peer.core.receivePushPull(address("a"), request!.bytes, 0);
    if (!answer.ok) throw new Error(answer.error.message);
    expect(answer.reply.length).toBeLessThanOrEqual(64 * 1024);
    expect(peer.core.stats().pushPullsTruncated).toBe(1);
    expect(world.core.receivePushPullReply(address("p"), answer.reply, 0)).toEqual({ ok: true });
    // Live members went first: p and c made it; b (dead at p) comes last, and is only suspected.
    expect(world.state("p")).toBe("alive");
    expect(world.state("c")).toBe("alive");
    const members = world.core.members();
    expect(members.length).toBeGreaterThan(100);
    expect(members.length).toBeLessThan(154);
    if (world.core.member("b") !== undefined) expect(world.state("b")).not.toBe("dead");
  });

  it("refuses bad seeds, and replies nobody asked for", () => {
    const world = new World("a", []);
    expect(world.core.join([], 0)).toMatchObject({ ok: false, error: { tag: "NoSeeds" } });
    expect(world.core.join([address("a")], 0)).toMatchObject({ ok: false, error: { tag: "NoSeeds" } });
    expect(world.core.join(["b.test"], 0)).toMatchObject({
      ok: false,
      error: { tag: "InvalidSeed", seed: "b.test" },
    });
    const many = Array.from({ length: 65 }, (_, index) => address(`s${index}`));
    expect(world.core.join(many, 0)).toMatchObject({ ok: false, error: { tag: "TooManySeeds", limit: 64 } });
    expect(world.core.takeOutput().pushPulls).toEqual([]);
    expect(world.core.receivePushPullReply(address("b"), new Uint8Array(4), 0)).toMatchObject({
      ok: false,
      error: { tag: "UnexpectedReply" },
    });
    expect(world.core.stats().dropped.unexpectedReply).toBe(1);
    world.core.join([address("b")], 0);
    world.core.pushPullFailed(address("b"), 1);
    expect(world.core.stats()).toMatchObject({ pushPullsStarted: 1, pushPullsFailed: 1 });
  });

  it("graceful leave is seen as left, not dead, and the leaver is no longer probed", () => {
    const leaver = new World("b", ["a"]);
    const stayer = new World("a", ["b", "c"]);
    leaver.answering = false;
    leaver.core.leave(leaver.now);
    leaver.drain();
    expect(leaver.core.self().state).toBe("left");
    expect(leaver.events.at(-1)).toMatchObject({ kind: "left", member: { id: "b" } });
    leaver.stepUntil(leaver.now + config.gossipIntervalMs * 10);
    const lefts = leaver.sentOf("Left");
    expect(lefts.length).toBe(retransmitLimit(config.retransmitMult, 1));
    expect(leaver.core.leaveComplete()).toBe(true);
    expect(leaver.sentOf("Ping")).toEqual([]);
    stayer.receive(address("b"), lefts[0]!);
    expect(stayer.state("b")).toBe("left");
    expect(stayer.events.at(-1)).toMatchObject({ kind: "left", member: { id: "b" } });
    const before = stayer.sent.length;
    stayer.stepUntil(stayer.now + config.probeIntervalMs * 10);
    expect(stayer.sentOf("Ping", before).map((ping) => ping.targetId)).not.toContain("b");
  });

  it("updating our own info raises version and incarnation and is gossiped as updated", () => {
    const world = new World("a", ["b"]);
    expect(world.core.updateSelf({ metadata: { zone: "z1" } }, 0)).toEqual({ ok: true });
    expect(world.core.self()).toMatchObject({ version: 1, incarnation: 1, metadata: { zone: "z1" } });
    expect(world.core.updateSelf({ metadata: { "": "x" } }, 0)).toMatchObject({
      ok: false,
      error: { tag: "InvalidMemberInfo" },
    });
    const observer = new World("b", ["a"]);
    observer.receive(address("a"), alive("a", 1, { version: 1, metadata: { zone: "z1" } }));
    expect(observer.events.at(-1)).toMatchObject({ kind: "updated", member: { id: "a", version: 1 } });
  });
});
