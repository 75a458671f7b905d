// A partition leader killed with kill -9 under a steady persistent publish load (issue 5, 8a),
// with real router processes (harness/). Afterwards: every acknowledged message is in the
// stream exactly once, in publish order (a subscriber replaying the topic from offset 1 sees
// it); the live subscriber got every one of them once, in order; every publish either
// succeeded or was reported failed to the publisher.
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
        // The partition's leader, once the partition has its three voters (it may have been
        // activated before every router joined the roster: the leader adds the others).
        let leader: string | null = null;
        yield* cluster.waitUntil(
          cluster.views().pipe(
            Effect.map((views) => {
              for (const status of views.values()) {
                const group = groupsOf(status).find((candidate) => candidate.group === partition);
                if (group?.role === "leader" && group.voters.length === 3) {
                  leader = status.id as string;
                  return true;
                }
              }
              return "no leader with three voters yet";
            }),
          ),
          { timeoutMs: 20_000, what: "the partition replicated on all three routers" },
        );
        yield* cluster.kill(leader!);
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

        // The live subscriber got each acknowledged message once, in order.
        yield* cluster.waitUntil(
          Effect.sync(() => live.length >= acked.length || `${live.length} of ${acked.length} delivered`),
          { timeoutMs: 20_000, what: "the live subscriber got every acknowledged message" },
        );
        expect(live.map((message) => message.payload.toString())).toEqual(acked.map((index) => `m${index}`));

        // The stream itself: replayed from offset 1 by a new subscriber.
        const replayed: ReceivedMessage[] = [];
        const reader = yield* Effect.promise(() => connect(options));
        yield* Effect.promise(() =>
          reader.subscribe(topic, (message) => replayed.push(message), { from: 1 }),
        );
        yield* cluster.waitUntil(
          Effect.sync(
            () => replayed.length >= acked.length || `${replayed.length} of ${acked.length} replayed`,
          ),
          { timeoutMs: 20_000, what: "the whole stream replayed" },
        );
        expect(replayed.map((message) => message.payload.toString())).toEqual(
          acked.map((index) => `m${index}`),
        );
        const offsets = replayed.map((message) => message.offset);
        expect(new Set(offsets).size).toBe(offsets.length);
        yield* Effect.promise(() => Promise.all([subscriber.close(), publisher.close(), reader.close()]));
      }),
    );
    await Effect.runPromise(program, { signal });
  }, 120_000);
});
