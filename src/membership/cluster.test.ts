// Several MembershipCores exchanging packets through an in-memory network stepped by hand:
// one seeded Random draws every delay, so a run replays exactly from its seed. Datagrams take
// 1-3 ms; push-pulls are answered at once by the target core (a crashed target refuses the
// connection; a paused one never answers, so the requester times out). A paused node's
// datagrams wait in its socket buffer (up to 512) and are read when it resumes, as with
// SIGSTOP. The big simulations (100-10,000 members, loss, partitions) run on src/sim.
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../sim/index.ts";
import { defaultLanConfig } from "./config.ts";
import { MembershipCore } from "./core.ts";
import { memberId } from "./member-info.ts";
import type { MemberState, ViewEvent } from "./types.ts";

const config = defaultLanConfig;
const address = (name: string) => `${name}.test:7400`;

type Delivery =
  | { readonly kind: "packet"; readonly from: string; readonly to: string; readonly bytes: Uint8Array }
  | { readonly kind: "pushPull"; readonly from: string; readonly to: string; readonly bytes: Uint8Array }
  | { readonly kind: "reply"; readonly from: string; readonly to: string; readonly bytes: Uint8Array }
  | { readonly kind: "refused"; readonly from: string; readonly to: string };

interface Node {
  readonly name: string;
  readonly core: MembershipCore;
  status: "up" | "paused" | "crashed";
  /** Datagrams that arrived while paused. Invariant: length <= 512. */
  readonly inbox: { from: string; bytes: Uint8Array }[];
  readonly events: { atMs: number; event: ViewEvent }[];
}

class Cluster {
  now = 0;
  readonly nodes = new Map<string, Node>();
  private readonly byAddress = new Map<string, Node>();
  /** Deliveries in (atMs, order) order. */
  private queue: { atMs: number; order: number; delivery: Delivery }[] = [];
  private order = 0;
  private readonly random: SeededRandom;
  private readonly network: SeededRandom;

  constructor(seed: number) {
    this.random = new SeededRandom(seed);
    this.network = this.random.fork("network");
  }

  add(name: string): Node {
    const core = new MembershipCore({
      config,
      self: {
        id: memberId(name),
        region: "eu-west",
        gossipAddress: address(name),
        addresses: {},
        metadata: {},
        version: 0,
      },
      random: this.random.fork(name),
      nowMs: this.now,
    });
    const node: Node = { name, core, status: "up", inbox: [], events: [] };
    this.nodes.set(name, node);
    this.byAddress.set(address(name), node);
    this.drain(node);
    return node;
  }

  node(name: string): Node {
    return this.nodes.get(name)!;
  }

  /** Runs the network and every node's timers up to `untilMs`. */
  run(untilMs: number): void {
    for (let steps = 0; steps < 10_000_000; steps++) {
      let next = this.queue[0]?.atMs ?? Number.POSITIVE_INFINITY;
      for (const node of this.nodes.values()) {
        if (node.status === "up") next = Math.min(next, node.core.nextDeadlineMs());
      }
      if (next > untilMs) break;
      this.now = Math.max(this.now, next);
      while (this.queue.length > 0 && this.queue[0]!.atMs <= this.now)
        this.deliver(this.queue.shift()!.delivery);
      for (const node of this.nodes.values()) {
        if (node.status === "up" && node.core.nextDeadlineMs() <= this.now) {
          node.core.tick(this.now);
          this.drain(node);
        }
      }
    }
    this.now = Math.max(this.now, untilMs);
  }

  pause(name: string): void {
    this.node(name).status = "paused";
  }

  resume(name: string): void {
    const node = this.node(name);
    node.status = "up";
    for (const { from, bytes } of node.inbox.splice(0)) {
      node.core.receivePacket(from, bytes, this.now);
      this.drain(node);
    }
  }

  crash(name: string): void {
    this.node(name).status = "crashed";
  }

  /** What `observer` believes about each member, by name. */
  view(observer: string): Record<string, MemberState> {
    return Object.fromEntries(
      this.node(observer)
        .core.members()
        .map((member) => [member.id, member.state]),
    );
  }

  private send(delivery: Delivery): void {
    const atMs = this.now + 1 + this.network.nextInt(3);
    const entry = { atMs, order: this.order++, delivery };
    let index = this.queue.length;
    while (index > 0 && this.queue[index - 1]!.atMs > atMs) index--;
    this.queue.splice(index, 0, entry);
  }

  private drain(node: Node): void {
    const output = node.core.takeOutput();
    for (const event of output.events) node.events.push({ atMs: this.now, event });
    const from = address(node.name);
    for (const packet of output.packets)
      this.send({ kind: "packet", from, to: packet.to, bytes: packet.bytes });
    for (const request of output.pushPulls)
      this.send({ kind: "pushPull", from, to: request.to, bytes: request.bytes });
  }

  private deliver(delivery: Delivery): void {
    const target = this.byAddress.get(delivery.to);
    if (delivery.kind === "packet") {
      if (target?.status === "up") {
        target.core.receivePacket(delivery.from, delivery.bytes, this.now);
        this.drain(target);
      } else if (target?.status === "paused" && target.inbox.length < 512) {
        target.inbox.push({ from: delivery.from, bytes: delivery.bytes });
      }
      return;
    }
    if (target === undefined || target.status !== "up") {
      if (delivery.kind === "pushPull" && target?.status !== "paused") {
        this.send({ kind: "refused", from: delivery.to, to: delivery.from });
      }
      return;
    }
    if (delivery.kind === "pushPull") {
      const answer = target.core.receivePushPull(delivery.from, delivery.bytes, this.now);
      this.drain(target);
      if (answer.ok) this.send({ kind: "reply", from: delivery.to, to: delivery.from, bytes: answer.reply });
      else this.send({ kind: "refused", from: delivery.to, to: delivery.from });
    } else if (delivery.kind === "reply") {
      target.core.receivePushPullReply(delivery.from, delivery.bytes, this.now);
      this.drain(target);
    } else {
      target.core.pushPullFailed(delivery.from, this.now);
      this.drain(target);
    }
  }
}

const names = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"];
const seeds = [1, 2, 3];

/** Eight nodes, n1-n7 joining through n0 10 ms apart, run until `untilMs`. */
function converged(seed: number, untilMs = 3000): Cluster {
  const cluster = new Cluster(seed);
  cluster.add("n0");
  for (const name of names.slice(1)) {
    cluster.run(cluster.now + 10);
    const node = cluster.add(name);
    expect(node.core.join([address("n0")], cluster.now)).toEqual({ ok: true, seeds: 1 });
  }
  cluster.run(untilMs);
  return cluster;
}

const allAlive = Object.fromEntries(names.map((name) => [name, "alive"]));

describe("a cluster of cores on an in-memory network", () => {
  it.each(seeds)("N nodes joining through one seed converge, with no false suspicion (seed %i)", (seed) => {
    const cluster = converged(seed);
    for (const name of names) {
      expect(cluster.view(name), `view of ${name}`).toEqual(allAlive);
      const kinds = cluster.node(name).events.map((entry) => entry.event.kind);
      expect(kinds.filter((kind) => kind === "joined")).toHaveLength(names.length);
      expect(kinds).not.toContain("suspect");
      expect(cluster.node(name).core.localHealth()).toBe(0);
    }
  });

  it.each(seeds)("a crashed node is declared dead by all, and nobody else is suspected (seed %i)", (seed) => {
    const cluster = converged(seed);
    const crashedAt = cluster.now;
    cluster.crash("n3");
    cluster.run(crashedAt + 12_000);
    for (const name of names.filter((name) => name !== "n3")) {
      expect(cluster.view(name), `view of ${name}`).toEqual({ ...allAlive, n3: "dead" });
      const events = cluster.node(name).events.filter((entry) => entry.atMs > crashedAt);
      const suspected = events
        .filter((entry) => entry.event.kind === "suspect")
        .map((entry) => entry.event.member.id);
      expect(new Set(suspected)).toEqual(new Set(["n3"]));
      // With confirmations the floor (1.2 s) applies: ~1.8 s in all, not 7.2 s + probing.
      const dead = events.find((entry) => entry.event.kind === "dead")!;
      expect(dead.atMs - crashedAt).toBeLessThan(4000);
    }
  });

  it.each(seeds)(
    "a paused node declared dead comes back and refutes; everyone sees it alive again (seed %i)",
    (seed) => {
      const cluster = converged(seed);
      const pausedAt = cluster.now;
      cluster.pause("n5");
      cluster.run(pausedAt + 10_000);
      for (const name of names.filter((name) => name !== "n5"))
        expect(cluster.view(name)).toEqual({ ...allAlive, n5: "dead" });
      const n5 = cluster.node("n5");
      expect(n5.core.self().incarnation).toBe(0);
      cluster.resume("n5");
      cluster.run(cluster.now + 5000);
      expect(n5.core.stats().refutations).toBeGreaterThanOrEqual(1);
      expect(n5.core.self().incarnation).toBeGreaterThanOrEqual(1);
      for (const name of names) expect(cluster.view(name), `view of ${name}`).toEqual(allAlive);
      for (const name of names.filter((name) => name !== "n5")) {
        const kinds = cluster
          .node(name)
          .events.filter((entry) => entry.event.member.id === "n5")
          .map((entry) => entry.event.kind);
        expect(kinds.slice(-2)).toEqual(["dead", "joined"]);
      }
    },
  );

  it("replays exactly from its seed", () => {
    const trace = (seed: number) => {
      const cluster = converged(seed, 2000);
      return [...cluster.nodes.values()].map((node) => JSON.stringify([node.core.stats(), node.events]));
    };
    expect(trace(9)).toEqual(trace(9));
    expect(trace(9)).not.toEqual(trace(10));
  });
});
