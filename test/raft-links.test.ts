// Raft between routers over real links: three MultiRaft shells in this process, each with its
// own disk store (real files, fdatasync) and its own LinkRaftTransport on 127.0.0.1 port 0,
// mutually authenticated against one CA. Waits are conditions with deadlines.
import { afterEach, beforeAll, describe, expect, test } from "vitest";
import {
  type Address,
  type Credentials,
  quicTransport,
  type Transport,
  tlsTransport,
} from "../src/axon/index.ts";
import { systemClock, systemRandom } from "../src/ports/index.ts";
import { encodeRaftBatch, MultiRaft } from "../src/raft/index.ts";
import { LinkRaftTransport } from "../src/raft/link-transport.ts";
import { type DiskStore, type Entry, nodeFileSystem, openDiskStore } from "../src/storage/index.ts";
import type { Frame } from "../src/wire/index.ts";
import { makeTestPki, type TestPki } from "./support/certs.ts";
import { tempDir, waitFor } from "./support/processes.ts";

const hello = {
  kind: "Hello",
  agent: "neuron-test",
  frameMaxBytes: 16 << 20,
  payloadMaxBytes: 1 << 20,
} as const;
const ids = ["r1", "r2", "r3"];
const groups = 20;

interface TestRouter {
  readonly id: string;
  readonly multi: MultiRaft;
  readonly links: LinkRaftTransport;
  readonly store: DiskStore;
  readonly applied: Map<number, Entry[]>;
}

let pki: TestPki;
const credentials = new Map<string, Credentials>();
const running: TestRouter[] = [];

beforeAll(async () => {
  pki = await makeTestPki();
  for (const id of [...ids, "r4"]) credentials.set(id, await pki.credentials({ role: "router", id }));
});

afterEach(async () => {
  for (const router of running.splice(0)) await stop(router);
});

async function stop(router: TestRouter): Promise<void> {
  router.multi.stop();
  await router.links.close();
  await router.store.close().catch(() => {});
}

async function startCluster(transport: () => Transport): Promise<Map<string, TestRouter>> {
  const addresses = new Map<string, Address>();
  const routers = new Map<string, TestRouter>();
  for (const id of ids) {
    const { store } = await openDiskStore({ fs: nodeFileSystem, dir: await tempDir(`neuron-raft-${id}-`) });
    const applied = new Map<number, Entry[]>();
    const holder: { multi?: MultiRaft } = {};
    const links = await LinkRaftTransport.start({
      id,
      transport: transport(),
      credentials: credentials.get(id)!,
      hello,
      listen: { host: "127.0.0.1", port: 0 },
      addressOf: (peer) => addresses.get(peer) ?? null,
      clock: systemClock,
      receive: (batch) => holder.multi?.receive(batch),
    });
    addresses.set(id, links.address);
    const multi = new MultiRaft({
      id,
      store,
      transport: links,
      clock: systemClock,
      random: systemRandom,
      configurationOf: () => ({ voters: ids, learners: [] }),
      stateMachine: {
        apply: (group, entries) => applied.set(group, [...(applied.get(group) ?? []), ...entries]),
        restore: () => {},
        leadershipChanged: () => {},
      },
    });
    holder.multi = multi;
    const router = { id, multi, links, store, applied };
    routers.set(id, router);
    running.push(router);
  }
  for (const router of routers.values()) {
    for (let group = 0; group < groups; group++) router.multi.group(group);
    router.multi.start();
  }
  return routers;
}

function leaderOf(routers: Map<string, TestRouter>, group: number): TestRouter | undefined {
  return [...routers.values()].find((router) => router.multi.group(group)?.role === "leader");
}

const dataOf = (router: TestRouter, group: number) =>
  (router.applied.get(group) ?? [])
    .filter((entry) => entry.kind === "normal")
    .map((entry) => Buffer.from(entry.data).toString());

async function commitEverywhere(routers: Map<string, TestRouter>, count: number): Promise<void> {
  await waitFor(
    () => Array.from({ length: groups }, (_, g) => leaderOf(routers, g)).every(Boolean),
    "a leader in every group",
  );
  const proposals: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const group = i % groups;
    proposals.push(leaderOf(routers, group)!.multi.propose(group, Buffer.from(`m${i}`)));
  }
  await Promise.all(proposals);
  for (const router of routers.values()) {
    await waitFor(
      () =>
        Array.from({ length: groups }, (_, g) => dataOf(router, g).length).reduce((a, b) => a + b, 0) ===
        count,
      `${router.id} applies all ${count} entries`,
    );
  }
}

describe("Raft over real links", () => {
  test("TLS: 20 groups share one link per router pair; entries commit on all three; a dead leader's groups move", async () => {
    const routers = await startCluster(() => tlsTransport());
    await commitEverywhere(routers, 200);
    for (const router of routers.values()) {
      expect(dataOf(router, 3)).toEqual(dataOf(routers.get("r1")!, 3));
      // Coalescing: far fewer batches than messages; every batch to a peer rides one link.
      const stats = router.multi.stats();
      expect(stats.batchesSent).toBeLessThan(stats.messagesSent);
      expect(router.links.stats.dials).toBeLessThanOrEqual(4);
    }
    const victim = leaderOf(routers, 0)!;
    await stop(victim);
    running.splice(running.indexOf(victim), 1);
    routers.delete(victim.id);
    await waitFor(() => leaderOf(routers, 0) !== undefined, "a new leader for group 0", 10_000);
    const { index } = await leaderOf(routers, 0)!.multi.propose(0, Buffer.from("after"));
    for (const router of routers.values()) {
      await waitFor(
        () => (router.applied.get(0) ?? []).some((entry) => entry.index === index),
        `${router.id} applies ${index}`,
      );
    }
  });

  test("QUIC: entries commit on all three", async () => {
    const routers = await startCluster(() => quicTransport());
    await commitEverywhere(routers, 60);
  });

  test("a router cannot speak for another: a batch whose from is not the certificate's id closes the link, changing nothing", async () => {
    const routers = await startCluster(() => tlsTransport());
    await waitFor(() => leaderOf(routers, 0) !== undefined, "a leader for group 0");
    const target = routers.get("r1")!;
    const termBefore = target.multi.group(0)!.term;
    const closed: Frame[] = [];
    const link = await tlsTransport().connect({
      address: target.links.address,
      credentials: credentials.get("r4")!,
      hello,
      expectRole: "router",
      expectId: "r1",
    });
    let reason = "";
    link.start({ frame: (frame) => closed.push(frame), closed: (error) => (reason = error.message) });
    const forged = encodeRaftBatch({
      from: "r2",
      to: "r1",
      beats: [{ group: 0, term: termBefore + 5, commit: 0, context: 0, quiesce: false }],
      beatResponses: [],
      messages: [],
    });
    link.send({ kind: "RaftBatch", payload: forged });
    await waitFor(() => link.closed, "the forged batch's link is closed");
    expect(reason).toContain("batch from r2 to r1 on the link of r4");
    expect(target.links.stats.linksRefused).toBe(1);
    expect(target.multi.group(0)!.term).toBe(termBefore);

    const garbage = await tlsTransport().connect({
      address: target.links.address,
      credentials: credentials.get("r4")!,
      hello,
      expectRole: "router",
      expectId: "r1",
    });
    let garbageReason = "";
    garbage.start({ frame: () => {}, closed: (error) => (garbageReason = error.message) });
    garbage.send({ kind: "RaftBatch", payload: Buffer.from([1, 2, 3]) });
    await waitFor(() => garbage.closed, "the malformed batch's link is closed");
    expect(garbageReason).toContain("bad raft batch");
    expect(target.multi.group(0)!.term).toBe(termBefore);
  });
});
