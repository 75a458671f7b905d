// Failures and planned moves under a steady persistent publish load (issue 5, item 8), with
// real router processes (harness/): a partition leader killed with kill -9; a router drained.
// Afterwards: every acknowledged message is in the stream exactly once, in publish order (a
// subscriber replaying the topic from offset 1 sees it); the live subscriber got every one of
// them once, in order; every publish either succeeded or was reported failed to the publisher.
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

/** The partition's leader, once the partition has `voters` voters. */
function replicatedLeader(cluster: Cluster, voters: number) {
  return Effect.gen(function* () {
    let leader: string | null = null;
    yield* cluster.waitUntil(
      cluster.views().pipe(
        Effect.map((views) => {
          for (const status of views.values()) {
            const group = groupsOf(status).find((candidate) => candidate.group === partition);
            if (group?.role === "leader" && group.voters.length === voters) {
              leader = status.id as string;
              return true;
            }
          }
          return `no leader with ${voters} voters yet`;
        }),
      ),
      { timeoutMs: 20_000, what: `the partition replicated on ${voters} routers` },
    );
    return leader as unknown as string;
  });
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

describe("region mesh failover (real processes)", () => {
  it("kill -9 of a partition leader under load: nothing acknowledged is lost, duplicated or reordered", async ({
    signal,
  }) => {
    const program = Effect.scoped(
      Effect.gen(function* () {
        const cluster = yield* Cluster.make({
          routers: 3,
          extraConfig: '[streams]\npersistent_prefixes = ["orders"]\n',
        });
        const options = yield* cluster.clientOptions();
        const live: ReceivedMessage[] = [];
        const subscriber = yield* Effect.promise(() => connect({ ...options, requestTimeoutMs: 20_000 }));
        yield* Effect.promise(() => subscriber.subscribe(topic, (message) => live.push(message)));
        const publisher = yield* Effect.promise(() => connect({ ...options, requestTimeoutMs: 20_000 }));
        const load = publishLoop(publisher, 32);
        yield* cluster.waitUntil(
          Effect.sync(() => load.acked.length >= 500 || `${load.acked.length} acknowledged`),
          { timeoutMs: 20_000, what: "500 publishes acknowledged before the kill" },
        );
        // The partition may have been activated before every router joined the roster: its
        // leader adds the others first.
        const leader = yield* replicatedLeader(cluster, 3);
        yield* cluster.kill(leader);
        const ackedAtKill = load.acked.length;
        yield* cluster.waitUntil(
          Effect.sync(
            () =>
              load.acked.length >= ackedAtKill + 1_000 || `${load.acked.length - ackedAtKill} since the kill`,
          ),
          { timeoutMs: 30_000, what: "1,000 more publishes acknowledged after the kill" },
        );
        yield* Effect.promise(() => load.stop());
        const acked = [...load.acked].sort((a, b) => a - b);
        expect(load.failed).toEqual([]);
        expect(acked.length).toBe(load.sent);

        yield* checkStream(cluster, options, acked, live);
        yield* Effect.promise(() => Promise.all([subscriber.close(), publisher.close()]));
      }),
    );
    await Effect.runPromise(program, { signal });
  }, 120_000);

  it("a drained router hands over and stops by itself; publishers and subscribers see no error", async ({
    signal,
  }) => {
    const program = Effect.scoped(
      Effect.gen(function* () {
        const cluster = yield* Cluster.make({
          routers: 3,
          extraConfig: '[streams]\npersistent_prefixes = ["orders"]\n',
        });
        const options = yield* cluster.clientOptions();
        const live: ReceivedMessage[] = [];
        const subscriber = yield* Effect.promise(() => connect({ ...options, requestTimeoutMs: 20_000 }));
        yield* Effect.promise(() => subscriber.subscribe(topic, (message) => live.push(message)));
        const publisher = yield* Effect.promise(() => connect({ ...options, requestTimeoutMs: 20_000 }));
        const load = publishLoop(publisher, 32);
        const leader = yield* replicatedLeader(cluster, 3);
        // Drain the partition's leader (the hardest case: leadership moves first).
        const admin = yield* Effect.promise(() => connect(options));
        yield* Effect.promise(() => admin.drain(leader));
        yield* Effect.promise(() => admin.close());
        yield* cluster.waitUntil(
          Effect.sync(() => {
            const info = cluster.router(leader);
            return (!info.alive && info.exit?.code === 0) || `${leader} still running`;
          }),
          { timeoutMs: 30_000, what: `${leader} stopped by itself after the drain` },
        );
        const ackedAtStop = load.acked.length;
        yield* cluster.waitUntil(
          Effect.sync(
            () => load.acked.length >= ackedAtStop + 500 || `${load.acked.length - ackedAtStop} since`,
          ),
          { timeoutMs: 20_000, what: "500 more publishes acknowledged after the drained router stopped" },
        );
        yield* Effect.promise(() => load.stop());
        expect(load.failed).toEqual([]);
        const acked = [...load.acked].sort((a, b) => a - b);
        expect(acked.length).toBe(load.sent);
        yield* replicatedLeader(cluster, 2);
        yield* checkStream(cluster, options, acked, live);
        yield* Effect.promise(() => Promise.all([subscriber.close(), publisher.close()]));
      }),
    );
    await Effect.runPromise(program, { signal });
  }, 120_000);
});
