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
import {
  defaultRaftConfig,
  emptyMessage,
  encodeRaftBatch,
  type Message,
  MultiRaft,
  type RaftBatch,
  type RaftConfig,
} from "../src/raft/index.ts";
import { type LinkRaftOversized, LinkRaftTransport } from "../src/raft/link-transport.ts";
import { type DiskStore, type Entry, nodeFileSystem, openDiskStore } from "../src/storage/index.ts";
import type { Frame, Hello } from "../src/wire/index.ts";
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
const bare: LinkRaftTransport[] = [];

beforeAll(async () => {
  pki = await makeTestPki();
  for (const id of [...ids, "r4"]) credentials.set(id, await pki.credentials({ role: "router", id }));
});

afterEach(async () => {
  for (const router of running.splice(0)) await stop(router);
  for (const links of bare.splice(0)) await links.close();
});

async function stop(router: TestRouter): Promise<void> {
  router.multi.stop();
  await router.links.close();
  await router.store.close().catch(() => {});
}

async function startCluster(
  transport: () => Transport,
  options: { readonly hello?: Hello; readonly config?: RaftConfig } = {},
): Promise<Map<string, TestRouter>> {
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
      hello: options.hello ?? hello,
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
      ...(options.config === undefined ? {} : { config: options.config }),
      configurationOf: () => ({ voters: ids, learners: [] }),
      stateMachine: {
        apply: (group, entries) => {
          applied.set(group, [...(applied.get(group) ?? []), ...entries]);
        },
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

/** A LinkRaftTransport alone (no Raft above it), for checking what it does with frames and links. */
async function startBare(
  id: string,
  addresses: Map<string, Address>,
  options: {
    readonly hello?: Hello;
    readonly receive?: (batch: RaftBatch) => void;
    readonly oversized?: (drop: LinkRaftOversized) => void;
    readonly bufferedBytesMax?: number;
  } = {},
): Promise<LinkRaftTransport> {
  const links = await LinkRaftTransport.start({
    id,
    transport: tlsTransport(),
    credentials: credentials.get(id)!,
    hello: options.hello ?? hello,
    listen: { host: "127.0.0.1", port: 0 },
    addressOf: (peer) => addresses.get(peer) ?? null,
    clock: systemClock,
    receive: options.receive ?? (() => {}),
    ...(options.oversized === undefined ? {} : { oversized: options.oversized }),
    ...(options.bufferedBytesMax === undefined ? {} : { bufferedBytesMax: options.bufferedBytesMax }),
  });
  addresses.set(id, links.address);
  bare.push(links);
  return links;
}

const emptyBatch = (from: string, to: string): RaftBatch => ({
  from,
  to,
  beats: [],
  beatResponses: [],
  messages: [],
});

/** An append of one entry of `bytes` bytes, each byte `group % 256`. */
const append = (group: number, bytes: number): Message => ({
  ...emptyMessage,
  type: "append",
  group,
  from: "r1",
  to: "r2",
  term: 1,
  entries: [{ index: 1, term: 1, kind: "normal", data: Buffer.alloc(bytes, group % 256) }],
});

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
  test("TLS: a round's batch bigger than the peers' frame limit is split across frames; entries commit on all three", async () => {
    // 64 KiB frames, one 20 KiB entry per append: a leader's round to one peer carries several
    // groups' appends, far over one frame.
    const routers = await startCluster(() => tlsTransport(), {
      hello: { ...hello, frameMaxBytes: 64 << 10 },
      config: { ...defaultRaftConfig, maxMessageBytes: 1 },
    });
    await waitFor(
      () => Array.from({ length: groups }, (_, g) => leaderOf(routers, g)).every(Boolean),
      "a leader in every group",
    );
    const perGroup = 3;
    const proposals: Promise<unknown>[] = [];
    for (let i = 0; i < groups * perGroup; i++) {
      const group = i % groups;
      const data = Buffer.alloc(20 << 10, 32 + (i % 64));
      data.write(`m${i}:`);
      proposals.push(leaderOf(routers, group)!.multi.propose(group, data));
    }
    await Promise.all(proposals);
    for (const router of routers.values()) {
      await waitFor(
        () => Array.from({ length: groups }, (_, g) => dataOf(router, g).length).every((n) => n === perGroup),
        `${router.id} applies all ${groups * perGroup} entries`,
      );
      expect(dataOf(router, 7)).toEqual(dataOf(routers.get("r1")!, 7));
    }
    const split = [...routers.values()].reduce((sum, router) => sum + router.links.stats.batchesSplit, 0);
    expect(split).toBeGreaterThan(0);
    for (const router of routers.values()) {
      expect(router.links.stats.droppedOversized).toBe(0);
      expect(router.links.stats.linksRefused).toBe(0);
    }
  });

  test("a batch over the peer's (smaller) frame limit arrives split, heartbeats first; a message too big for any frame is dropped as oversized and nothing else breaks", async () => {
    const addresses = new Map<string, Address>();
    const received: RaftBatch[] = [];
    const reports: LinkRaftOversized[] = [];
    // r1 accepts 1 MiB frames, r2 only 16 KiB: r1 must size its frames to r2's limit, or r2
    // refuses the frame and closes the link.
    const r1 = await startBare("r1", addresses, {
      hello: { ...hello, frameMaxBytes: 1 << 20 },
      oversized: (drop) => reports.push(drop),
    });
    const r2 = await startBare("r2", addresses, {
      hello: { ...hello, frameMaxBytes: 16 << 10 },
      receive: (batch) => received.push(batch),
    });
    r1.send(emptyBatch("r1", "r2"));
    await waitFor(() => r1.linksTo("r2").open === 1, "r1's link to r2");
    expect(r1.stats.droppedNoLink).toBe(1);

    const messages = Array.from({ length: 40 }, (_, group) => append(group, 1000));
    const batch: RaftBatch = {
      from: "r1",
      to: "r2",
      beats: [0, 1, 2].map((group) => ({ group, term: 1, commit: 0, context: 0, quiesce: false })),
      beatResponses: [{ group: 3, term: 1, context: 0 }],
      messages: [...messages.slice(0, 20), append(99, 20_000), ...messages.slice(20)],
    };
    r1.send(batch);
    const arrived = () => received.flatMap((b) => b.messages);
    await waitFor(() => arrived().length === 40, "the 40 appends that fit");

    expect(received[0]!.beats.map((beat) => beat.group)).toEqual([0, 1, 2]);
    expect(received[0]!.beatResponses.map((response) => response.group)).toEqual([3]);
    expect(received[0]!.messages).toEqual([]);
    const data = received.slice(1);
    expect(data.length).toBeGreaterThanOrEqual(3); // 40 KB over frames of < 16 KiB
    for (const frame of data) expect(frame.beats.length + frame.beatResponses.length).toBe(0);
    expect(arrived().map((message) => message.group)).toEqual(messages.map((message) => message.group));
    expect(arrived().every((m) => Buffer.from(m.entries[0]!.data).equals(Buffer.alloc(1000, m.group)))).toBe(
      true,
    );

    expect(r1.stats.droppedOversized).toBe(1);
    expect(r1.stats.batchesSplit).toBe(1);
    expect(r1.stats.droppedBackpressure).toBe(0);
    expect(r1.stats.batchesSent).toBe(received.length);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ peer: "r2", group: 99, type: "append" });
    expect(reports[0]!.bytes).toBeGreaterThan(reports[0]!.limitBytes);
    expect(reports[0]!.message).toContain("dropped raft append for group 99 to r2");
    expect(reports[0]!.message).toContain("r2 accepts 16384");

    // The link is still up and carries the next batch.
    r1.send({ ...emptyBatch("r1", "r2"), messages: [append(5, 10)] });
    await waitFor(() => arrived().length === 41, "the next batch");
    expect(r2.stats.linksRefused).toBe(0);
    expect(r1.linksTo("r2").open).toBe(1);
    expect(r1.stats.dials).toBe(1);
  });

  test("under backpressure only data frames are dropped: heartbeats still go, in frames of their own even when many", async () => {
    const addresses = new Map<string, Address>();
    const received: RaftBatch[] = [];
    // A queue limit of 0 bytes: a link with anything queued is over it.
    const r1 = await startBare("r1", addresses, { bufferedBytesMax: 0 });
    await startBare("r2", addresses, {
      hello: { ...hello, frameMaxBytes: 16 << 10 },
      receive: (batch) => received.push(batch),
    });
    r1.send(emptyBatch("r1", "r2"));
    await waitFor(() => r1.linksTo("r2").open === 1, "r1's link to r2");
    const beat = (group: number) => ({ group, term: 1, commit: 0, context: 0, quiesce: false });
    const beatGroups = Array.from({ length: 3000 }, (_, group) => group); // > 16 KiB of beats
    // In one turn: a batch of data, queued (or dropped if a ping is queued), then a batch of
    // heartbeats and data behind it, over the limit.
    r1.send({ ...emptyBatch("r1", "r2"), messages: [append(7, 100)] });
    r1.send({
      from: "r1",
      to: "r2",
      beats: beatGroups.map(beat),
      beatResponses: [{ group: 5, term: 1, context: 0 }],
      messages: [append(1, 100), append(2, 100)],
    });
    // Heartbeats only, so never dropped: once it is in, everything sent before it is too.
    r1.send({ ...emptyBatch("r1", "r2"), beats: [beat(9999)] });
    const beats = () => received.flatMap((batch) => batch.beats.map((b) => b.group));
    await waitFor(() => beats().includes(9999), "the last heartbeat");
    expect(beats()).toEqual([...beatGroups, 9999]);
    expect(received.flatMap((batch) => batch.beatResponses.map((response) => response.group))).toEqual([5]);
    const dataGroups = received.flatMap((batch) => batch.messages.map((message) => message.group));
    expect(dataGroups.filter((group) => group !== 7)).toEqual([]);
    expect(r1.stats.droppedBackpressure).toBe(2 - dataGroups.length);
    expect(r1.stats.batchesSplit).toBe(1);
    expect(r1.stats.droppedOversized).toBe(0);
  });

  test("two routers dialling each other at once end with one link, the one the smaller id dialled, used both ways", async () => {
    const addresses = new Map<string, Address>();
    const toR1: RaftBatch[] = [];
    const toR2: RaftBatch[] = [];
    const r1 = await startBare("r1", addresses, { receive: (batch) => toR1.push(batch) });
    const r2 = await startBare("r2", addresses, { receive: (batch) => toR2.push(batch) });
    // Both dial in the same turn, before either link exists.
    r1.send(emptyBatch("r1", "r2"));
    r2.send(emptyBatch("r2", "r1"));
    expect([r1.stats.dials, r2.stats.dials]).toEqual([1, 1]);
    const settled = () =>
      r1.linksTo("r2").open === 1 &&
      r2.linksTo("r1").open === 1 &&
      r1.linksTo("r2").dialledBy === "r1" &&
      r2.linksTo("r1").dialledBy === "r1" &&
      r1.stats.linksDuplicate + r2.stats.linksDuplicate >= 1;
    await waitFor(settled, "one link between r1 and r2, dialled by r1");

    r1.send({ ...emptyBatch("r1", "r2"), messages: [append(1, 10)] });
    r2.send({ ...emptyBatch("r2", "r1"), messages: [{ ...append(2, 10), from: "r2", to: "r1" }] });
    await waitFor(() => toR1.length === 1 && toR2.length === 1, "a batch each way");
    expect(settled()).toBe(true);
    expect([r1.stats.dials, r2.stats.dials]).toEqual([1, 1]);
    expect([r1.stats.dialFailures, r2.stats.dialFailures]).toEqual([0, 0]);
    expect([r1.stats.linksRefused, r2.stats.linksRefused]).toEqual([0, 0]);
  });
});
