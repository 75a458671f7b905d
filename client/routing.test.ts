// The client's routing, one rule a test: requests go through the home router until a router
// names a partition's leader (a Leader frame), then straight to that leader; a broken leader
// link sends what waited on it back through the home router with the same producer sequence;
// a broken home link hands the subscriptions to another linked router at once; publishes wait
// for a pending subscribe on the home router; a partition's requests change links only once
// the old link's are answered; a failed dial is tried again when a router names the leader
// after leaderRedialMs; links nothing needs make room; a link closed as it opens is not used;
// bounds and bad hints change nothing.
//
// The routers are fakes on the memory transport (real FramedLinks and certificate checks over
// simulated pipes), each answering what it receives with an Ack unless told to hold. Time is a
// SimClock driven by hand; nothing sleeps.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Address,
  createCertificateAuthority,
  formatAddress,
  issueCertificate,
  type Link,
  type Transport,
  type Validity,
} from "../src/axon/index.ts";
import { partitionOf } from "../src/partitions/index.ts";
import {
  driveThrough,
  driveUntil,
  memoryTransport,
  SeededRandom,
  SimClock,
  SimNetwork,
  settleMicrotasks,
} from "../src/sim/index.ts";
import type { Frame, Hello } from "../src/wire/index.ts";
import type { ClientEvent, ConnectOptions } from "./api.ts";
import { type Client, connect } from "./client.ts";
import type { NeuronError } from "./errors.ts";

const validity: Validity = {
  notBefore: new Date(Date.UTC(2029, 0, 1)),
  notAfter: new Date(Date.UTC(2031, 0, 1)),
};
const wallStartMs = Date.UTC(2030, 0, 1);
const hello: Hello = {
  kind: "Hello",
  agent: "fake-router",
  frameMaxBytes: 1 << 20,
  payloadMaxBytes: 1 << 16,
};

let ca: { cert: string; key: string };
const routerPems = new Map<string, { cert: string; key: string }>();
let clientPem: { cert: string; key: string };

beforeAll(async () => {
  // Key generation needs real webcrypto: done once, outside the simulated world.
  ca = await createCertificateAuthority("Routing test CA", validity);
  for (const id of ["r1", "r2", "r3"])
    routerPems.set(id, await issueCertificate(ca, { role: "router", id }, validity));
  clientPem = await issueCertificate(ca, { role: "client", id: "app" }, validity);
});

interface Received {
  readonly frame: Frame & { requestId: number };
  readonly link: Link;
}

/** A router that records every request and answers it with an Ack, unless `hold` is set. */
class FakeRouter {
  readonly id: string;
  readonly address: Address;
  readonly received: Received[] = [];
  readonly links: Link[] = [];
  hold = false;
  /** Refuse every client (TooManyClients) as soon as its link opens. */
  refuse = false;
  /** Request ids must increase on each link, as a real router's session checks. */
  private readonly lastRequestId = new Map<Link, number>();

  constructor(id: string, address: Address) {
    this.id = id;
    this.address = address;
  }

  accept(link: Link): void {
    this.links.push(link);
    if (this.refuse) {
      link.close("TooManyClients", "this router serves no more clients");
      return;
    }
    link.start({
      frame: (frame) => {
        if (!("requestId" in frame)) return;
        const last = this.lastRequestId.get(link) ?? 0;
        expect(frame.requestId, `${this.id}: request ids increase on a link`).toBeGreaterThan(last);
        this.lastRequestId.set(link, frame.requestId);
        this.received.push({ frame, link });
        if (!this.hold) link.send({ kind: "Ack", throughRequestId: frame.requestId });
      },
      closed: () => {},
    });
  }

  publishes(topic?: string): { topic: string; sequence: number; producerId: string; requestId: number }[] {
    const out: { topic: string; sequence: number; producerId: string; requestId: number }[] = [];
    for (const { frame } of this.received) {
      if (frame.kind === "Publish" && (topic === undefined || frame.topic === topic))
        out.push({
          topic: frame.topic,
          sequence: frame.sequence,
          producerId: frame.producerId,
          requestId: frame.requestId,
        });
    }
    return out;
  }

  kinds(): string[] {
    return this.received.map(({ frame }) => frame.kind);
  }

  /** The last link a client opened here. */
  get link(): Link {
    const link = this.links[this.links.length - 1];
    expect(link, `${this.id} has a client link`).toBeDefined();
    return link!;
  }

  /** Names `router` (at `address`) to the client as the leader of `topic`'s partition. */
  nameLeader(topic: string, router: FakeRouter, address = router.address): void {
    this.link.send({
      kind: "Leader",
      partition: partitionOf(topic),
      router: router.id,
      address: formatAddress(address),
    });
  }
}

interface World {
  readonly clock: SimClock;
  readonly network: SimNetwork;
  readonly routers: Map<string, FakeRouter>;
  readonly client: Client;
  readonly events: ClientEvent[];
}

let world: World | undefined;

afterEach(async () => {
  await world?.client.close();
  world = undefined;
});

async function start(
  options: Partial<ConnectOptions> = {},
  prepare: (router: FakeRouter) => void = () => {},
): Promise<World> {
  const clock = new SimClock({ wallStartMs });
  const network = new SimNetwork({ clock, random: new SeededRandom(1) });
  const routers = new Map<string, FakeRouter>();
  for (const [index, id] of ["r1", "r2", "r3"].entries()) {
    const host = `10.0.0.${index + 1}`;
    const pem = routerPems.get(id)!;
    const router = new FakeRouter(id, { host, port: 7402 });
    prepare(router);
    await driveThrough(
      clock,
      memoryTransport({ network, host }).listen({
        address: router.address,
        credentials: { ca: ca.cert, ...pem },
        hello,
        acceptRoles: ["client"],
        accept: (link) => router.accept(link),
      }),
    );
    routers.set(id, router);
  }
  const events: ClientEvent[] = [];
  const client = await driveThrough(
    clock,
    connect({
      seeds: [routers.get("r1")!.address, routers.get("r2")!.address],
      ca: ca.cert,
      ...clientPem,
      clock,
      random: new SeededRandom(2),
      transportImplementation: memoryTransport({ network, host: "10.0.0.9" }),
      onEvent: (event) => events.push(event),
      ...options,
    }),
  );
  world = { clock, network, routers, client, events };
  return world;
}

/** Starts `publish` calls without awaiting them; records how each settled. */
function publishAll(client: Client, topic: string, count: number) {
  const outcomes: ("ok" | NeuronError)[] = [];
  for (let index = 0; index < count; index++) {
    client.publish(topic, `m${index}`).then(
      () => outcomes.push("ok"),
      (error: NeuronError) => outcomes.push(error),
    );
  }
  return outcomes;
}

/** Fires `count` timers (or all there are), settling microtasks before each. */
async function runTimers(w: World, count: number): Promise<void> {
  for (let fired = 0; fired < count; fired++) {
    await settleMicrotasks();
    if (!w.clock.step()) return;
  }
  await settleMicrotasks();
}

/** One publish through `home`, which then names `leader`; waits until the client sends there. */
async function linkLeader(w: World, topic: string, home: FakeRouter, leader: FakeRouter): Promise<void> {
  await publishOne(w, topic);
  home.nameLeader(topic, leader);
  await driveUntil(w.clock, () => w.client.routeOf(topic) === leader.id);
}

async function publishOne(w: World, topic: string): Promise<void> {
  await driveThrough(w.clock, w.client.publish(topic, "x"));
}

const topic = "orders";
// A topic of another partition.
const otherTopic = "sensors/eu-west/temp";

describe("client routing", () => {
  it("sends through the home router until it names the partition's leader, then straight to the leader", async () => {
    const w = await start();
    const [r1, r2] = [w.routers.get("r1")!, w.routers.get("r2")!];
    expect(w.client.router).toBe("r1");
    await publishOne(w, topic);
    expect(r1.publishes(topic)).toHaveLength(1);
    r1.nameLeader(topic, r2);
    await driveUntil(w.clock, () => w.client.routeOf(topic) === "r2");
    expect(w.events).toContainEqual({ kind: "leaderLinked", router: "r2", address: "10.0.0.2:7402" });
    await publishOne(w, topic);
    await publishOne(w, otherTopic);
    expect(r2.publishes(topic).map(({ sequence }) => sequence)).toEqual([2]);
    expect(r1.publishes().map(({ topic, sequence }) => [topic, sequence])).toEqual([
      [topic, 1],
      [otherTopic, 1],
    ]);
    expect(w.client.linkedRouters).toEqual(["r1", "r2"]);
  });

  it("directToLeaders: false keeps every request on the home router", async () => {
    const w = await start({ directToLeaders: false });
    const [r1, r2] = [w.routers.get("r1")!, w.routers.get("r2")!];
    await publishOne(w, topic);
    r1.nameLeader(topic, r2);
    await publishOne(w, topic);
    expect(r1.publishes(topic)).toHaveLength(2);
    expect(r2.links).toHaveLength(0);
    expect(w.client.routeOf(topic)).toBe("r1");
  });

  it("a broken leader link sends what waited on it back through the home router, with the same producer sequences", async () => {
    const w = await start();
    const [r1, r2] = [w.routers.get("r1")!, w.routers.get("r2")!];
    await linkLeader(w, topic, r1, r2);
    r2.hold = true;
    const outcomes = publishAll(w.client, topic, 3);
    await driveUntil(w.clock, () => r2.publishes(topic).length === 3);
    r2.link.close("ShuttingDown", "router stopping");
    await driveUntil(w.clock, () => outcomes.length === 3);
    expect(outcomes).toEqual(["ok", "ok", "ok"]);
    const sent = r2.publishes(topic);
    const resent = r1.publishes(topic).slice(1);
    expect(resent.map(({ sequence, producerId }) => [sequence, producerId])).toEqual(
      sent.map(({ sequence, producerId }) => [sequence, producerId]),
    );
    expect(w.client.routeOf(topic)).toBe("r1");
    expect(w.events.some((event) => event.kind === "leaderUnlinked" && event.router === "r2")).toBe(true);
  });

  it("a Refusal on a leader link settles the request it names there, whatever its number on the home link", async () => {
    const w = await start();
    const [r1, r2] = [w.routers.get("r1")!, w.routers.get("r2")!];
    // Request ids 1..4 on the home link, so the leader link's ids differ from the client's.
    for (let index = 0; index < 4; index++) await publishOne(w, otherTopic);
    await linkLeader(w, topic, r1, r2);
    r2.hold = true;
    const outcomes = publishAll(w.client, topic, 3);
    await driveUntil(w.clock, () => r2.publishes(topic).length === 3);
    const [first, second, third] = r2.publishes(topic);
    expect([first!.requestId, second!.requestId, third!.requestId]).toEqual([1, 2, 3]);
    r2.link.send({
      kind: "Refusal",
      requestId: second!.requestId,
      code: "UnknownTopic",
      message: "no such topic",
    });
    r2.link.send({ kind: "Ack", throughRequestId: third!.requestId });
    await driveUntil(w.clock, () => outcomes.length === 3);
    expect(outcomes.filter((outcome) => outcome === "ok")).toHaveLength(2);
    expect(outcomes.find((outcome) => outcome !== "ok")).toMatchObject({ code: "UnknownTopic" });
  });

  it("a broken home link makes a linked leader the home router at once, and the subscriptions move there", async () => {
    const w = await start();
    const [r1, r2] = [w.routers.get("r1")!, w.routers.get("r2")!];
    await driveThrough(
      w.clock,
      w.client.subscribe(otherTopic, () => {}),
    );
    await linkLeader(w, topic, r1, r2);
    r1.link.close("ShuttingDown", "router stopping");
    await driveUntil(w.clock, () => r2.kinds().includes("Subscribe"));
    expect(w.client.router).toBe("r2");
    expect(w.events.filter((event) => event.kind === "reconnecting")).toEqual([]);
    const subscribe = r2.received.find(({ frame }) => frame.kind === "Subscribe")!.frame;
    expect(subscribe).toMatchObject({ kind: "Subscribe", topic: otherTopic });
  });

  it("while a subscribe waits for its answer, publishes go through the home router", async () => {
    const w = await start();
    const [r1, r2] = [w.routers.get("r1")!, w.routers.get("r2")!];
    await linkLeader(w, topic, r1, r2);
    r1.hold = true;
    let subscribed = false;
    void w.client
      .subscribe(otherTopic, () => {})
      .then(() => {
        subscribed = true;
      });
    const outcomes = publishAll(w.client, topic, 1);
    await driveUntil(w.clock, () => r1.publishes(topic).length === 2);
    expect(r2.publishes(topic)).toEqual([]);
    r1.hold = false;
    r1.link.send({ kind: "Ack", throughRequestId: r1.received[r1.received.length - 1]!.frame.requestId });
    await driveUntil(w.clock, () => subscribed && outcomes.length === 1);
    await publishOne(w, topic);
    expect(r2.publishes(topic)).toHaveLength(1);
  });

  it("a leader hint whose address reaches another router is not used", async () => {
    const w = await start();
    const [r1, r2, r3] = [w.routers.get("r1")!, w.routers.get("r2")!, w.routers.get("r3")!];
    await publishOne(w, topic);
    r1.nameLeader(topic, r2, r3.address);
    await driveUntil(w.clock, () => w.events.some((event) => event.kind === "leaderUnlinked"));
    expect(w.events).toContainEqual({ kind: "leaderUnlinked", router: "r2", reason: "reached r3, not r2" });
    expect(w.client.routeOf(topic)).toBe("r1");
    await publishOne(w, topic);
    expect(r1.publishes(topic)).toHaveLength(2);
    expect(w.client.linkedRouters).toEqual(["r1"]);
  });

  it("a leader hint with a malformed address changes nothing", async () => {
    const w = await start();
    const [r1, r2] = [w.routers.get("r1")!, w.routers.get("r2")!];
    await publishOne(w, topic);
    r1.link.send({ kind: "Leader", partition: partitionOf(topic), router: r2.id, address: "not an address" });
    await publishOne(w, topic);
    expect(r1.publishes(topic)).toHaveLength(2);
    expect(w.client.linkedRouters).toEqual(["r1"]);
  });

  it("routerLinksMax bounds the links: a leader past it is reached through the home router", async () => {
    const w = await start({ routerLinksMax: 2 });
    const [r1, r2, r3] = [w.routers.get("r1")!, w.routers.get("r2")!, w.routers.get("r3")!];
    await publishOne(w, topic);
    await publishOne(w, otherTopic);
    r1.nameLeader(topic, r2);
    r1.nameLeader(otherTopic, r3);
    await driveUntil(w.clock, () => w.client.routeOf(topic) === "r2");
    await publishOne(w, otherTopic);
    expect(r3.links).toHaveLength(0);
    expect(r1.publishes(otherTopic)).toHaveLength(2);
    expect(w.client.linkedRouters).toEqual(["r1", "r2"]);
  });

  it("a partition's requests move to its leader's link only once those sent through the home router are answered", async () => {
    const w = await start();
    const [r1, r2] = [w.routers.get("r1")!, w.routers.get("r2")!];
    await publishOne(w, topic);
    r1.hold = true;
    const early = publishAll(w.client, topic, 3);
    await driveUntil(w.clock, () => r1.publishes(topic).length === 4);
    r1.nameLeader(topic, r2);
    await driveUntil(w.clock, () => w.events.some((event) => event.kind === "leaderLinked"));
    const late = publishAll(w.client, topic, 2);
    // Nothing overtakes the three still unanswered on the home link.
    await runTimers(w, 50);
    expect(r2.publishes(topic)).toEqual([]);
    expect(w.client.routeOf(topic)).toBe("r2");
    r1.link.send({ kind: "Ack", throughRequestId: r1.received.at(-1)!.frame.requestId });
    await driveUntil(w.clock, () => early.length === 3 && late.length === 2);
    expect([...early, ...late]).toEqual(["ok", "ok", "ok", "ok", "ok"]);
    expect(r2.publishes(topic).map(({ sequence }) => sequence)).toEqual([5, 6]);
  });

  it("a partition's held requests keep their order when its route flips back to the busy link", async () => {
    const w = await start();
    const [r1, r2] = [w.routers.get("r1")!, w.routers.get("r2")!];
    await linkLeader(w, topic, r1, r2);
    r2.hold = true;
    const first = publishAll(w.client, topic, 1); // sequence 2, on r2
    await driveUntil(w.clock, () => r2.publishes(topic).length === 1);
    // A subscribe pending on the home router routes the partition there: sequence 3 waits.
    r1.hold = true;
    void w.client.subscribe(otherTopic, () => {});
    const held = publishAll(w.client, topic, 1);
    await driveUntil(w.clock, () => r1.kinds().includes("Subscribe"));
    r1.link.send({ kind: "Ack", throughRequestId: r1.received.at(-1)!.frame.requestId });
    r1.hold = false;
    await runTimers(w, 20);
    // The route is r2 again, but sequence 4 must not overtake the held sequence 3.
    const late = publishAll(w.client, topic, 1);
    await runTimers(w, 20);
    expect(r2.publishes(topic).map(({ sequence }) => sequence)).toEqual([2]);
    expect(r1.publishes(topic).map(({ sequence }) => sequence)).toEqual([1]);
    r2.hold = false;
    r2.link.send({ kind: "Ack", throughRequestId: r2.received.at(-1)!.frame.requestId });
    await driveUntil(w.clock, () => first.length + held.length + late.length === 3);
    expect([...first, ...held, ...late]).toEqual(["ok", "ok", "ok"]);
    expect(r2.publishes(topic).map(({ sequence }) => sequence)).toEqual([2, 3, 4]);
  });

  it("a re-registration lost with a second home router is made again on the third", async () => {
    const w = await start({ retriesMax: 0 });
    const [r1, r2, r3] = [w.routers.get("r1")!, w.routers.get("r2")!, w.routers.get("r3")!];
    await driveThrough(
      w.clock,
      w.client.subscribe(otherTopic, () => {}),
    );
    await linkLeader(w, topic, r1, r2);
    await publishOne(w, otherTopic);
    r1.nameLeader(otherTopic, r3);
    await driveUntil(w.clock, () => w.client.routeOf(otherTopic) === "r3");
    r2.hold = true;
    r1.link.close("ShuttingDown", "router stopping");
    await driveUntil(w.clock, () => r2.kinds().includes("Subscribe"));
    r2.link.close("ShuttingDown", "router stopping");
    await driveUntil(w.clock, () => r3.kinds().includes("Subscribe"));
    expect(w.client.router).toBe("r3");
    expect(w.events.some((event) => event.kind === "resubscribeFailed")).toBe(true);
  });

  it("a leader whose dial failed is dialled again when a router names it after leaderRedialMs", async () => {
    const w = await start();
    const [r1, r2, r3] = [w.routers.get("r1")!, w.routers.get("r2")!, w.routers.get("r3")!];
    await publishOne(w, topic);
    r1.nameLeader(topic, r2, r3.address);
    await driveUntil(w.clock, () => w.events.some((event) => event.kind === "leaderUnlinked"));
    r1.nameLeader(topic, r2);
    await publishOne(w, topic);
    await runTimers(w, 100);
    expect(r2.links).toHaveLength(0);
    const atMs = w.clock.nowMs();
    await driveUntil(w.clock, () => w.clock.nowMs() >= atMs + 1_000);
    r1.nameLeader(topic, r2);
    await driveUntil(w.clock, () => w.client.routeOf(topic) === "r2");
    await publishOne(w, topic);
    expect(r2.publishes(topic)).toHaveLength(1);
  });

  it("at routerLinksMax, a link to a router that leads nothing known any more makes room for a new leader", async () => {
    const w = await start({ routerLinksMax: 2 });
    const [r1, r2, r3] = [w.routers.get("r1")!, w.routers.get("r2")!, w.routers.get("r3")!];
    await linkLeader(w, topic, r1, r2);
    // The leadership moved to r3: r2 leads nothing this client knows of.
    r1.nameLeader(topic, r3);
    await driveUntil(w.clock, () => w.client.routeOf(topic) === "r3");
    expect(w.client.linkedRouters).toEqual(["r1", "r3"]);
    expect(w.events.some((event) => event.kind === "leaderUnlinked" && event.router === "r2")).toBe(true);
    await publishOne(w, topic);
    expect(r3.publishes(topic)).toHaveLength(1);
  });

  it("a seed that refuses the client as its link opens is not the home router: the next seed is", async () => {
    const w = await start({}, (router) => {
      router.refuse = router.id === "r1";
    });
    await driveUntil(w.clock, () => w.client.router === "r2");
    await publishOne(w, topic);
    expect(w.routers.get("r2")!.publishes(topic)).toHaveLength(1);
  });

  it("a link already closed when it starts (a Goodbye that came with the Hello) is not taken as the home router", async () => {
    // A stub transport: the first seed's link reports its close from inside start(), as a
    // FramedLink does for a Goodbye read with the Hello; the second's stays open.
    const sent: Frame[] = [];
    const stubLink = (id: string, closedAtStart: boolean): Link => {
      let closed = false;
      return {
        transport: "memory",
        peer: { role: "router", id },
        peerHello: hello,
        remoteAddress: "stub",
        bufferedBytes: 0,
        writable: true,
        rttMs: undefined,
        get closed() {
          return closed;
        },
        start(handler) {
          if (!closedAtStart) return;
          closed = true;
          handler.closed({ tag: "LinkClosed", message: `${id} closed the link: TooManyClients` });
        },
        send(frame) {
          sent.push(frame);
          return { ok: true, bytes: 0 };
        },
        flush() {},
        whenWritable: () => Promise.resolve(),
        close() {
          closed = true;
        },
      } as Link;
    };
    const transport = {
      kind: "memory" as const,
      listen: () => Promise.reject(new Error("not used")),
      connect: (options: { address: Address }) =>
        Promise.resolve(stubLink(options.address.port === 1 ? "r1" : "r2", options.address.port === 1)),
    };
    const client = await connect({
      seeds: ["127.0.0.1:1", "127.0.0.1:2"],
      ca: "",
      cert: "",
      key: "",
      transportImplementation: transport as unknown as Transport,
    });
    expect(client.router).toBe("r2");
    void client.publish(topic, "x").catch(() => {});
    expect(sent.map((frame) => frame.kind)).toEqual(["Publish"]);
    await client.close();
  });

  it("refuses a routerLinksMax below 1", async () => {
    await expect(
      connect({ seeds: ["127.0.0.1:1"], ca: "", cert: "", key: "", routerLinksMax: 0 }),
    ).rejects.toMatchObject({
      code: "InvalidArgument",
    });
  });
});
