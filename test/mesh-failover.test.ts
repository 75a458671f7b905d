// Failures and planned moves under a steady persistent publish load (issue 5, item 8), with
// real router processes (harness/): a partition leader killed with kill -9 (3 and 5 routers;
// then restarted, it rejoins), a router added, a router drained. Afterwards: no publish failed
// (a planned move or a failover shows the clients no error); every acknowledged message is in
// the stream exactly once, in publish order (a subscriber replaying the topic from offset 1
// sees it); the live subscriber got every one of them once, in order. An ephemeral topic keeps
// flowing through the same events (at most once: never repeated, never out of order). The
// publisher sends straight to the partition's leader before the event and again after it (it
// follows the leader by itself).
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { type Client, connect, type ReceivedMessage } from "../client/index.ts";
import { Cluster, type RouterStatus } from "../harness/index.ts";
import { partitionOf } from "../src/partitions/index.ts";

interface GroupView {
  readonly group: number;
  readonly role: string;
  readonly leader: string | null;
  readonly voters: readonly string[];
}

const groupsOf = (status: RouterStatus) =>
  (status as unknown as { mesh: { groups: readonly GroupView[] } }).mesh.groups;

const topic = "orders.failover";
/** Ephemeral: no persistent prefix matches it. */
const chatTopic = "chat.failover";
const partition = partitionOf(topic);

/** Publishes `m0`, `m1`, ... keeping `window` in flight until stopped; records what happened. */
function publishLoop(client: Client, window: number) {
  const acked: number[] = [];
  const failed: { index: number; error: string }[] = [];
  let next = 0;
  let running = true;
  let inFlight = 0;
  let wake: (() => void) | undefined;
  const done = (async () => {
    while (running) {
      if (inFlight >= window) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        continue;
      }
      const index = next++;
      inFlight += 1;
      client
        .publish(topic, `m${index}`)
        .then(
          () => acked.push(index),
          (error: Error) => failed.push({ index, error: error.message }),
        )
        .finally(() => {
          inFlight -= 1;
          wake?.();
        });
      if (index % window === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    while (inFlight > 0)
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
  })();
  return {
    acked,
    failed,
    get sent() {
      return next;
    },
    stop: () => {
      running = false;
      wake?.();
      return done;
    },
  };
}

/**
 * Waits until the controller group has three voters. It grows one voter at a time from its
 * founder: until then, losing one router can cost it its quorum (as for any Raft group).
 */
function controllerWhole(cluster: Cluster) {
  return cluster.waitUntil(
    cluster.views().pipe(
      Effect.map((views) => {
        for (const status of views.values()) {
          const group = groupsOf(status).find((candidate) => candidate.group === 65_536);
          if (group?.role === "leader" && group.voters.length === 3) return true;
        }
        return "the controller has fewer than three voters";
      }),
    ),
    { timeoutMs: 20_000, what: "the controller's three voters" },
  );
}

/** The partition's leader, once the partition has `voters` voters. */
function replicatedLeader(cluster: Cluster, voters: number) {
  return Effect.gen(function* () {
    let leader: string | null = null;
    yield* cluster.waitUntil(
      cluster.views().pipe(
        Effect.map((views) => {
          const seen: string[] = [];
          for (const status of views.values()) {
            const group = groupsOf(status).find((candidate) => candidate.group === partition);
            if (group?.role === "leader" && group.voters.length === voters) {
              leader = status.id as string;
              return true;
            }
            seen.push(
              `${status.id}: ${group === undefined ? "no replica" : `${group.role}, voters ${group.voters.join(",")}`}`,
            );
          }
          return `no leader with ${voters} voters yet (${seen.join("; ")})`;
        }),
      ),
      { timeoutMs: 20_000, what: `the partition replicated on ${voters} routers` },
    );
    return leader as unknown as string;
  });
}

/**
 * Waits until `client` sends the topic's requests straight to the partition's leader of the
 * moment (a router named it after passing a publish on; see client/partition-map.ts).
 */
function routedToLeader(cluster: Cluster, client: Client) {
  return cluster.waitUntil(
    cluster.views().pipe(
      Effect.map((views) => {
        let leader: string | undefined;
        for (const status of views.values()) {
          const group = groupsOf(status).find((candidate) => candidate.group === partition);
          if (group?.role === "leader") leader = status.id as string;
        }
        const route = client.routeOf(topic);
        return (leader !== undefined && route === leader) || `leader ${leader}, client sends to ${route}`;
      }),
    ),
    { timeoutMs: 20_000, what: "the publisher sending straight to the partition's leader" },
  );
}

/** Every acknowledged message, once, in publish order: live, and replayed from offset 1. */
function checkStream(
  cluster: Cluster,
  options: Parameters<typeof connect>[0],
  acked: readonly number[],
  live: readonly ReceivedMessage[],
) {
  return Effect.gen(function* () {
    const expected = acked.map((index) => `m${index}`);
    yield* cluster.waitUntil(
      Effect.sync(() => live.length >= acked.length || `${live.length} of ${acked.length} delivered`),
      { timeoutMs: 20_000, what: "the live subscriber got every acknowledged message" },
    );
    expect(live.map((message) => message.payload.toString())).toEqual(expected);
    const replayed: ReceivedMessage[] = [];
    const reader = yield* Effect.promise(() => connect(options));
    yield* Effect.promise(() => reader.subscribe(topic, (message) => replayed.push(message), { from: 1 }));
    yield* cluster.waitUntil(
      Effect.sync(() => replayed.length >= acked.length || `${replayed.length} of ${acked.length} replayed`),
      { timeoutMs: 20_000, what: "the whole stream replayed" },
    );
    expect(replayed.map((message) => message.payload.toString())).toEqual(expected);
    const offsets = replayed.map((message) => message.offset);
    expect(new Set(offsets).size).toBe(offsets.length);
    yield* Effect.promise(() => reader.close());
  });
}

/** Ephemeral messages `e0`, `e1`, ... every few ms; the subscriber checks order and no repeats. */
function ephemeralFlow(publisher: Client, subscriber: Client) {
  const received: number[] = [];
  const failed: string[] = [];
  let next = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      await publisher.publish(chatTopic, `e${next++}`).catch((error: Error) => failed.push(error.message));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    received,
    failed,
    subscribe: () =>
      subscriber.subscribe(chatTopic, (message) =>
        received.push(Number(message.payload.toString().slice(1))),
      ),
    stop: () => {
      running = false;
      return done;
    },
  };
}

type Event = (
  cluster: Cluster,
  leader: string,
  options: Parameters<typeof connect>[0],
) => Effect.Effect<void, unknown>;

/**
 * `routers` routers; a persistent load with a live subscriber and an ephemeral flow; `event`
 * once the topic's partition has its three voters; then 500 more acknowledged publishes, and
 * the checks of the file's header.
 */
function underLoad(routers: number, event: Event) {
  return Effect.scoped(
    Effect.gen(function* () {
      const cluster = yield* Cluster.make({
        routers,
        extraConfig: '[streams]\npersistent_prefixes = ["orders"]\n',
      });
      const options = yield* cluster.clientOptions();
      const clientOptions = { ...options, requestTimeoutMs: 20_000 };
      const live: ReceivedMessage[] = [];
      const subscriber = yield* Effect.promise(() => connect(clientOptions));
      yield* Effect.promise(() => subscriber.subscribe(topic, (message) => live.push(message)));
      const chatSubscriber = yield* Effect.promise(() => connect(clientOptions));
      const chatPublisher = yield* Effect.promise(() => connect(clientOptions));
      const chat = ephemeralFlow(chatPublisher, chatSubscriber);
      yield* Effect.promise(() => chat.subscribe());
      const publisher = yield* Effect.promise(() => connect(clientOptions));
      const load = publishLoop(publisher, 32);
      // The partition may be activated before every router joined the roster: its leader adds
      // the others first.
      yield* controllerWhole(cluster);
      const leader = yield* replicatedLeader(cluster, 3);
      yield* routedToLeader(cluster, publisher);
      yield* event(cluster, leader, options);
      const ackedAfter = load.acked.length;
      const chatAfter = chat.received.length;
      yield* cluster.waitUntil(
        Effect.sync(() => load.acked.length >= ackedAfter + 500 || `${load.acked.length - ackedAfter} since`),
        { timeoutMs: 30_000, what: "500 more publishes acknowledged after the event" },
      );
      yield* routedToLeader(cluster, publisher);
      yield* cluster.waitUntil(
        Effect.sync(
          () => chat.received.length >= chatAfter + 20 || `${chat.received.length - chatAfter} since`,
        ),
        { timeoutMs: 20_000, what: "the ephemeral topic flowing after the event" },
      );
      yield* Effect.promise(() => Promise.all([load.stop(), chat.stop()]));
      expect(load.failed).toEqual([]);
      const acked = [...load.acked].sort((a, b) => a - b);
      expect(acked.length).toBe(load.sent);
      yield* checkStream(cluster, options, acked, live);
      expect(chat.failed).toEqual([]);
      expect(chat.received.every((value, index) => index === 0 || value > chat.received[index - 1]!)).toBe(
        true,
      );
      yield* Effect.promise(() =>
        Promise.all([subscriber.close(), publisher.close(), chatSubscriber.close(), chatPublisher.close()]),
      );
      return cluster;
    }),
  );
}

/** Waits until every live router's roster has `count` routers. */
function rosterOf(cluster: Cluster, count: number) {
  return cluster.waitUntil(
    cluster.views().pipe(
      Effect.map((views) => {
        const wrong = [...views].filter(
          ([, status]) => (status as unknown as { mesh: { roster: string[] } }).mesh.roster.length !== count,
        );
        return wrong.length === 0 || `${wrong.map(([id]) => id).join(", ")} not at ${count}`;
      }),
    ),
    { timeoutMs: 30_000, what: `every roster at ${count} routers` },
  );
}

const killLeader: Event = (cluster, leader) =>
  Effect.gen(function* () {
    yield* cluster.kill(leader);
  });

describe("region mesh under load (real processes)", () => {
  for (const routers of [3, 5]) {
    it(`${routers} routers, kill -9 of the partition leader: nothing acknowledged is lost, repeated or reordered`, async ({
      signal,
    }) => {
      await Effect.runPromise(underLoad(routers, killLeader), { signal });
    }, 120_000);
  }

  it("a killed router restarted rejoins: the roster and the partition's replicas are whole again", async ({
    signal,
  }) => {
    const program = Effect.gen(function* () {
      yield* Effect.scoped(
        Effect.gen(function* () {
          const cluster = yield* Cluster.make({
            routers: 3,
            extraConfig: '[streams]\npersistent_prefixes = ["orders"]\n',
          });
          const options = yield* cluster.clientOptions();
          const publisher = yield* Effect.promise(() => connect({ ...options, requestTimeoutMs: 20_000 }));
          yield* Effect.promise(() => publisher.publish(topic, "first"));
          yield* controllerWhole(cluster);
          const leader = yield* replicatedLeader(cluster, 3);
          yield* cluster.kill(leader);
          // Membership declares it dead (seconds): the roster and the partition shrink to two.
          yield* rosterOf(cluster, 2);
          yield* replicatedLeader(cluster, 2);
          yield* Effect.promise(() => publisher.publish(topic, "while it was away"));
          yield* cluster.restart(leader);
          yield* rosterOf(cluster, 3);
          yield* replicatedLeader(cluster, 3);
          const replayed: string[] = [];
          const reader = yield* Effect.promise(() => connect(options));
          yield* Effect.promise(() =>
            reader.subscribe(topic, (message) => replayed.push(message.payload.toString()), { from: 1 }),
          );
          yield* cluster.waitUntil(
            Effect.sync(() => replayed.length >= 2 || `${replayed.length} replayed`),
            {
              timeoutMs: 10_000,
              what: "both messages replayed",
            },
          );
          expect(replayed).toEqual(["first", "while it was away"]);
          yield* Effect.promise(() => Promise.all([publisher.close(), reader.close()]));
        }),
      );
    });
    await Effect.runPromise(program, { signal });
  }, 120_000);

  it("a router added under load joins the roster; nothing acknowledged is lost", async ({ signal }) => {
    const addRouter: Event = (cluster) =>
      Effect.gen(function* () {
        yield* cluster.add();
        yield* rosterOf(cluster, 4);
      });
    await Effect.runPromise(underLoad(3, addRouter), { signal });
  }, 120_000);

  it("a drained router hands over and stops by itself; publishers and subscribers see no error", async ({
    signal,
  }) => {
    const drainLeader: Event = (cluster, leader, options) =>
      Effect.gen(function* () {
        const admin = yield* Effect.promise(() => connect(options));
        yield* Effect.promise(() => admin.drain(leader));
        yield* Effect.promise(() => admin.close());
        // While it runs, each check says what it still holds (a failure then says why).
        yield* cluster.waitUntil(
          Effect.suspend(() => {
            const info = cluster.router(leader);
            if (!info.alive)
              return Effect.succeed(info.exit?.code === 0 || `${leader} exited with ${info.exit?.code}`);
            return cluster.views([leader]).pipe(
              Effect.map((views) => {
                const groups = [...views.values()].flatMap(groupsOf);
                const held = groups
                  .filter((group) => group.role === "leader" || group.voters.includes(leader))
                  .map((group) => `${group.group} (${group.role}, voters ${group.voters.join(",")})`);
                return `${leader} still running, holding ${held.join("; ") || "nothing"}`;
              }),
              Effect.catch(() => Effect.succeed(`${leader} still running (no status)`)),
            );
          }),
          { timeoutMs: 30_000, what: `${leader} stopped by itself after the drain` },
        );
      });
    await Effect.runPromise(underLoad(3, drainLeader), { signal });
  }, 120_000);
});
