// The region mesh with real router processes (harness/): a partition activated through the
// controller and replicated on three routers; persistent publishes through one router reach a
// subscriber on another, in order, with increasing offsets, and the publisher then sends to
// the partition's leader directly. (Failures under load: mesh-failover.test.ts.)
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { connect, type ReceivedMessage } from "../client/index.ts";
import { Cluster, type RouterStatus } from "../harness/index.ts";
import { partitionOf } from "../src/partitions/index.ts";

interface MeshStatus {
  readonly roster: readonly string[];
  readonly controllerLeader: string | null;
  readonly groups: readonly { group: number; role: string; leader: string | null; term: number }[];
}

const mesh = (status: RouterStatus) => (status as unknown as { mesh: MeshStatus }).mesh;

const streams = '[streams]\npersistent_prefixes = ["orders"]\n';

/** A topic outside the persistent prefix whose partition is `partition` (about 65,536 tries). */
function topicInPartition(partition: number): string {
  for (let index = 0; ; index++) if (partitionOf(`ledger.${index}`) === partition) return `ledger.${index}`;
}

describe("region mesh (real processes)", () => {
  it("three routers: a persistent topic is replicated on all three and delivered across routers", async ({
    signal,
  }) => {
    const program = Effect.scoped(
      Effect.gen(function* () {
        const cluster = yield* Cluster.make({ routers: 3, extraConfig: streams });
        yield* cluster.waitUntil(
          cluster.views().pipe(
            Effect.map((views) => {
              const problems: string[] = [];
              for (const [id, status] of views) {
                const view = mesh(status);
                if (view.roster.length !== 3) problems.push(`${id} roster ${view.roster.join(",")}`);
                if (view.controllerLeader === null) problems.push(`${id} knows no controller leader`);
              }
              return problems.length === 0 ? true : problems.join("; ");
            }),
          ),
          { timeoutMs: 20_000, what: "every router's roster lists all three" },
        );
        const options = yield* cluster.clientOptions();
        const subscriber = yield* Effect.promise(() =>
          connect({ ...options, seeds: [cluster.router("r2").clients!] }),
        );
        const publisher = yield* Effect.promise(() =>
          connect({ ...options, seeds: [cluster.router("r3").clients!] }),
        );
        const received: ReceivedMessage[] = [];
        yield* Effect.promise(() => subscriber.subscribe("orders.eu", (message) => received.push(message)));
        const count = 200;
        yield* Effect.promise(() =>
          Promise.all(
            Array.from({ length: count }, (_, index) => publisher.publish("orders.eu", `m${index}`)),
          ),
        );
        yield* cluster.waitUntil(
          Effect.sync(() => received.length >= count || `${received.length} of ${count} delivered`),
          { timeoutMs: 10_000, what: "every message delivered" },
        );
        expect(received.map((message) => message.payload.toString())).toEqual(
          Array.from({ length: count }, (_, index) => `m${index}`),
        );
        const offsets = received.map((message) => message.offset);
        expect(offsets.every((offset, index) => index === 0 || offset > offsets[index - 1]!)).toBe(true);
        // r3 passes publishes on to the leader and names it: the publisher links to it. (The
        // leadership may move once, to the target's first replica: the client learns that
        // leader from its next publish, so each check publishes one.)
        const probes: string[] = [];
        yield* cluster.waitUntil(
          Effect.promise(() => {
            probes.push(`probe${probes.length}`);
            return publisher.publish("orders.eu", probes.at(-1)!);
          }).pipe(
            Effect.andThen(cluster.views()),
            Effect.map((views) => {
              const partition = partitionOf("orders.eu");
              const leader = [...views].find(([, status]) =>
                mesh(status).groups.some((group) => group.group === partition && group.role === "leader"),
              )?.[0];
              const route = publisher.routeOf("orders.eu");
              return (
                (leader !== undefined && route === leader) || `leader ${leader}, publisher sends to ${route}`
              );
            }),
          ),
          { timeoutMs: 10_000, what: "the publisher sending to the partition's leader" },
        );
        yield* Effect.promise(() => publisher.publish("orders.eu", "direct"));
        yield* cluster.waitUntil(
          Effect.sync(
            () => received.length > count + probes.length || "the direct publish not delivered yet",
          ),
          { timeoutMs: 10_000, what: "the publish sent straight to the leader delivered" },
        );
        expect(received.slice(count).map((message) => message.payload.toString())).toEqual([
          ...probes,
          "direct",
        ]);
        // A topic of the same partition, declared persistent and published to at once: the
        // declaration goes through r3 and the publishes follow it there (not straight to the
        // leader, where they could arrive first and be taken as ephemeral).
        const sibling = topicInPartition(partitionOf("orders.eu"));
        const declared = publisher.declareTopic(sibling, "persistent");
        const published = Array.from({ length: 20 }, (_, index) => publisher.publish(sibling, `s${index}`));
        yield* Effect.promise(() => Promise.all([declared, ...published]));
        const replayed: string[] = [];
        yield* Effect.promise(() =>
          subscriber.subscribe(sibling, (message) => replayed.push(message.payload.toString()), { from: 1 }),
        );
        yield* cluster.waitUntil(
          Effect.sync(() => replayed.length >= 20 || `${replayed.length} of 20 replayed`),
          { timeoutMs: 10_000, what: "the sibling topic's messages stored" },
        );
        expect(replayed).toEqual(Array.from({ length: 20 }, (_, index) => `s${index}`));
        yield* Effect.promise(() => Promise.all([subscriber.close(), publisher.close()]));
      }),
    );
    await Effect.runPromise(program, { signal });
  }, 60_000);
});
