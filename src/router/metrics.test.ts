// The router's Prometheus registry, read from a fixed status, and the rate sampler on a
// simulated clock: no routers, no sleeps.
import { register as globalRegistry } from "prom-client";
import { describe, expect, it } from "vitest";
import { controllerGroup } from "../partitions/index.ts";
import { SimClock } from "../sim/index.ts";
import { type MetricsSnapshot, metricsSnapshotOf, RouterMetrics } from "./metrics.ts";
import { RateSampler } from "./rates.ts";

/** What `Router.status()` answers for a router of three that leads the controller. */
const status = {
  id: "r1",
  region: "eu-west",
  version: "0.1.0",
  clients: 3,
  subscriptions: 5,
  counters: { published: 120, delivered: 340, refused: 2, slowConsumers: 1 },
  members: [
    { id: "r1", state: "alive" },
    { id: "r2", state: "alive" },
    { id: "r3", state: "suspect" },
    { id: "r4", state: "left" },
  ],
  mesh: {
    roster: ["r1", "r2", "r3"],
    draining: ["r3"],
    controllerLeader: "r1",
    activePartitions: 40,
    partitionsHeld: 30,
    partitionsLed: 11,
    groups: [
      { group: 7, role: "leader", term: 2, leader: "r1", commit: 90, lag: { r2: 4, r3: 17 } },
      { group: 9, role: "follower", term: 3, leader: "r2", commit: 80, lag: {} },
      { group: controllerGroup, role: "leader", term: 1, leader: "r1", commit: 12, lag: { r2: 0, r3: 2 } },
    ],
    counters: {
      storedMessages: 100,
      ephemeralMessages: 20,
      deliveredLocal: 60,
      deliversSent: 50,
      deliversDropped: 3,
      deliversReceived: 44,
    },
    requests: { requests: 130, forwards: 70, retries: 6, forwardedToUs: 65, deadlinesMissed: 1 },
    raft: {
      groups: 31,
      awake: 4,
      ticks: 1000,
      rounds: 900,
      syncs: 450,
      batchesSent: 800,
      batchesReceived: 790,
      beatsSent: 10,
      messagesSent: 2000,
      droppedUnknownGroup: 0,
    },
    links: { dials: 2, dialFailures: 1, droppedNoLink: 5, droppedBackpressure: 0, droppedOversized: 0 },
  },
};

/** The sample lines of one scrape, by "name{labels}". */
function samples(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

describe("the router's metrics", () => {
  it("render every neuron_ metric from one status snapshot, with the status's values", async () => {
    const metrics = new RouterMetrics(() => metricsSnapshotOf(status), { processMetrics: false });
    const text = await metrics.render();
    expect(Object.fromEntries(samples(text))).toEqual({
      'neuron_router_info{id="r1",region="eu-west",version="0.1.0"}': 1,
      neuron_messages_published_total: 120,
      neuron_messages_delivered_total: 340,
      neuron_requests_refused_total: 2,
      neuron_slow_consumers_total: 1,
      neuron_clients: 3,
      neuron_subscriptions: 5,
      neuron_messages_stored_total: 100,
      neuron_messages_ephemeral_total: 20,
      neuron_deliveries_local_total: 60,
      neuron_deliveries_sent_total: 50,
      neuron_deliveries_dropped_total: 3,
      neuron_deliveries_received_total: 44,
      neuron_requests_total: 130,
      neuron_requests_forwarded_total: 70,
      neuron_requests_forwarded_to_us_total: 65,
      neuron_request_retries_total: 6,
      neuron_request_deadlines_missed_total: 1,
      'neuron_members{state="alive"}': 2,
      'neuron_members{state="suspect"}': 1,
      'neuron_members{state="dead"}': 0,
      'neuron_members{state="left"}': 1,
      neuron_roster_routers: 3,
      neuron_roster_draining_routers: 1,
      neuron_partitions_active: 40,
      neuron_partitions_held: 30,
      neuron_partitions_led: 11,
      neuron_controller_leader: 1,
      neuron_raft_groups: 31,
      neuron_raft_groups_awake: 4,
      neuron_raft_replica_lag_max_entries: 17,
      neuron_raft_rounds_total: 900,
      neuron_raft_syncs_total: 450,
      neuron_raft_batches_sent_total: 800,
      neuron_raft_batches_received_total: 790,
      neuron_raft_messages_sent_total: 2000,
      neuron_link_dials_total: 2,
      neuron_link_dial_failures_total: 1,
      'neuron_link_drops_total{reason="no_link"}': 5,
      'neuron_link_drops_total{reason="backpressure"}': 0,
      'neuron_link_drops_total{reason="oversized"}': 0,
    });
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it("give every metric a help text and a type, and counters a _total name", async () => {
    const metrics = new RouterMetrics(() => metricsSnapshotOf(status), { processMetrics: false });
    const text = await metrics.render();
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(
      (match) => [match[1]!, match[2]!] as const,
    );
    const helps = new Map([...text.matchAll(/^# HELP (\S+) (.*)$/gm)].map((match) => [match[1]!, match[2]!]));
    expect(types.length).toBe(36); // 41 samples: neuron_members has 4, neuron_link_drops_total 3
    for (const [name, type] of types) {
      expect(name).toMatch(/^neuron_[a-z_]+$/);
      expect(name.endsWith("_total")).toBe(type === "counter");
      expect(helps.get(name)?.length ?? 0).toBeGreaterThan(20);
    }
  });

  it("take one snapshot per scrape, and a new one for the next", async () => {
    let published = 0;
    let snapshots = 0;
    const metrics = new RouterMetrics(
      () => {
        snapshots += 1;
        return metricsSnapshotOf({ ...status, counters: { ...status.counters, published } });
      },
      { processMetrics: false },
    );
    published = 7;
    expect(samples(await metrics.render()).get("neuron_messages_published_total")).toBe(7);
    expect(snapshots).toBe(1);
    published = 9;
    expect(samples(await metrics.render()).get("neuron_messages_published_total")).toBe(9);
    expect(snapshots).toBe(2);
  });

  it("live in the router's own registry: two routers never mix, the global registry stays empty", async () => {
    const first = new RouterMetrics(() => metricsSnapshotOf(status), { processMetrics: false });
    const second = new RouterMetrics(() => metricsSnapshotOf({ ...status, id: "r2", clients: 8 }), {
      processMetrics: false,
    });
    expect(samples(await first.render()).get("neuron_clients")).toBe(3);
    expect(samples(await second.render()).get("neuron_clients")).toBe(8);
    expect(await globalRegistry.metrics()).not.toMatch(/neuron_/);
  });

  it("include the process metrics under the neuron_ prefix when asked", async () => {
    const metrics = new RouterMetrics(() => metricsSnapshotOf(status), { processMetrics: true });
    const names = [...(await metrics.render()).matchAll(/^# TYPE (\S+)/gm)].map((match) => match[1]!);
    expect(names).toContain("neuron_process_cpu_seconds_total");
    expect(names).toContain("neuron_nodejs_heap_size_used_bytes");
    expect(names.every((name) => name.startsWith("neuron_"))).toBe(true);
  });
});

describe("metricsSnapshotOf", () => {
  it("takes the replica lag of led groups only, and the controller role from the controller's group", () => {
    const snapshot = metricsSnapshotOf({
      mesh: {
        groups: [
          { group: 3, role: "follower", lag: { r2: 500 } },
          { group: 4, role: "leader", lag: { r2: 9, r3: 1 } },
          { group: controllerGroup, role: "follower", learner: true, lag: {} },
        ],
      },
    });
    expect(snapshot.mesh.replicaLagMaxEntries).toBe(9);
    expect(snapshot.mesh.controllerRole).toBe("follower");
    expect(snapshot.mesh.controllerLearner).toBe(true);
  });

  it("reads anything else as nothing counted, never throwing", () => {
    const empty: MetricsSnapshot = metricsSnapshotOf(null);
    expect(empty.clients).toBe(0);
    expect(empty.members).toEqual({ alive: 0, suspect: 0, dead: 0, left: 0 });
    expect(empty.mesh.controllerRole).toBeNull();
    const odd = metricsSnapshotOf({
      clients: "three",
      counters: { published: -4 },
      members: [7, null],
      mesh: [],
    });
    expect(odd.clients).toBe(0);
    expect(odd.session.published).toBe(0);
    expect(odd.mesh.rosterSize).toBe(0);
  });
});

describe("the rate sampler", () => {
  const setup = (config = {}) => {
    const clock = new SimClock();
    const totals = { published: 0, delivered: 0 };
    const sampler = new RateSampler(() => totals, clock, config);
    return { clock, totals, sampler };
  };

  it("reports no rate until it has two samples", () => {
    const { sampler } = setup();
    expect(sampler.rates()).toEqual({ windowSeconds: 0, publishedPerSecond: null, deliveredPerSecond: null });
    sampler.start();
    expect(sampler.rates()).toEqual({ windowSeconds: 0, publishedPerSecond: null, deliveredPerSecond: null });
  });

  it("reports messages per second between the first and last sample while the window fills", () => {
    const { clock, totals, sampler } = setup();
    sampler.start();
    totals.published = 30;
    totals.delivered = 90;
    clock.advance(1_000);
    expect(sampler.rates()).toEqual({ windowSeconds: 1, publishedPerSecond: 30, deliveredPerSecond: 90 });
    totals.published = 40;
    clock.advance(1_000);
    expect(sampler.rates()).toEqual({ windowSeconds: 2, publishedPerSecond: 20, deliveredPerSecond: 45 });
  });

  it("forgets samples older than the window: a burst stops counting ten seconds later", () => {
    const { clock, totals, sampler } = setup();
    sampler.start();
    totals.published = 1_000; // a burst in the first second, then nothing
    for (let second = 1; second <= 10; second++) clock.advance(1_000);
    expect(sampler.rates()).toEqual({ windowSeconds: 10, publishedPerSecond: 100, deliveredPerSecond: 0 });
    clock.advance(1_000); // the sample from before the burst leaves the window
    expect(sampler.rates()).toEqual({ windowSeconds: 10, publishedPerSecond: 0, deliveredPerSecond: 0 });
    for (let second = 0; second < 30; second++) {
      totals.delivered += 7;
      clock.advance(1_000);
    }
    expect(sampler.rates()).toEqual({ windowSeconds: 10, publishedPerSecond: 0, deliveredPerSecond: 7 });
  });

  it("rounds to hundredths and honours another interval and window", () => {
    const { clock, totals, sampler } = setup({ intervalMs: 250, windowMs: 750 });
    sampler.start();
    for (let tick = 0; tick < 8; tick++) {
      totals.published += 1;
      clock.advance(250);
    }
    // The last four samples span 750 ms and three publishes: 4 per second.
    expect(sampler.rates()).toEqual({ windowSeconds: 0.75, publishedPerSecond: 4, deliveredPerSecond: 0 });
    totals.published += 2;
    clock.advance(750); // two publishes in the window's 750 ms: 2.666... per second
    expect(sampler.rates().publishedPerSecond).toBe(2.67);
  });

  it("counts totals that went down as no messages, not a negative rate", () => {
    const { clock, totals, sampler } = setup();
    totals.published = 50;
    sampler.start();
    totals.published = 0;
    clock.advance(1_000);
    expect(sampler.rates().publishedPerSecond).toBe(0);
  });

  it("stops: its timer is cancelled and no sample is taken afterwards", () => {
    const { clock, totals, sampler } = setup();
    sampler.start();
    clock.advance(1_000);
    sampler.stop();
    expect(clock.pendingTimers).toBe(0);
    totals.published = 100;
    clock.advance(5_000);
    expect(sampler.rates()).toEqual({ windowSeconds: 1, publishedPerSecond: 0, deliveredPerSecond: 0 });
  });

  it("refuses a window shorter than its interval", () => {
    expect(() => setup({ intervalMs: 1_000, windowMs: 500 })).toThrow(/windowMs >= intervalMs/);
  });
});
