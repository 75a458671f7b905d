// The persistent scenarios of `npm run bench`, with 3 replicas on each side: a Neuron region
// of three routers (a persistent topic, its partition replicated on all three) against a
// nats-server cluster of three (a JetStream R3 file stream). The clients run in worker threads
// (persistent-worker.ts has their loops); this file places them, kills and restarts servers,
// and turns the reports into figures.
//
// - `r3` (one run): a fresh topic and stream; the publisher connects to a follower of the
//   partition / stream leader and the subscriber to the other follower, on both sides. Figures:
//   (a) acks/s and ack latency with `window` in flight, with the subscriber's delivered msgs/s
//   and publish-to-delivery latency meanwhile, and the servers' CPU per acked message; (b) ack
//   latency with one publish at a time.
// - `failover` (one run): a fresh topic and stream; steady paced publishes from a client on a
//   follower; after `foWarmSecs` the leader is killed with SIGKILL by its PID; the run goes on
//   until the acks have kept pace for `foAfterSecs` after the kill (or `foMaxSecs` passed).
//   Figures: the longest gap between consecutive acks, when the first ack after the kill came,
//   when a survivor reported a new leader, acks, failed attempts; then the whole stream is read
//   back (Neuron: a subscriber from offset 1; NATS: an ordered consumer) and every acked message
//   must be there once (`lost_acked`, `dup_stored`). The killed node is then started again.
//
// Invariants: every run leaves its cluster with three nodes running (a failed run too, as far
// as it can); every worker is terminated when its run ends; timing is never asserted.
// Trap: a fresh Neuron topic is activated by its first publish (a probe, sequence 0xFFFFFFFF,
// which the checks skip); its partition may start with fewer voters while the roster fills, so
// the runs wait for three.
import { Worker } from "node:worker_threads";
import { connect as connectNeuron } from "../client/index.ts";
import { partitionOf } from "../src/partitions/index.ts";
import { type NatsCluster, type Region, type RegionStatus, waitFor } from "./clusters.ts";
import { clusterCpuMeter, percentile, round2 } from "./measure.ts";
import {
  type PersistentJob,
  type PersistentReport,
  payloadSequence,
  persistentControl,
  persistentControlSlots,
  persistentPayload,
} from "./persistent-worker.ts";
import { runningPids } from "./servers.ts";

export interface PersistentOptions {
  readonly size: number;
  readonly r3Window: number;
  readonly r3Msgs: number;
  readonly r3Secs: number;
  readonly r3SyncMsgs: number;
  readonly r3SyncSecs: number;
  readonly r3Warmup: number;
  readonly foRate: number;
  readonly foInflight: number;
  readonly foWarmSecs: number;
  readonly foAfterSecs: number;
  readonly foMaxSecs: number;
  readonly foAckTimeoutMs: number;
}

export type Run = Record<string, number | undefined>;

const probeSequence = 0xffff_ffff;
const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const nowNs = () => process.hrtime.bigint();
const tenth = (value: number | undefined) => (value === undefined ? undefined : Math.round(value * 10) / 10);
const runId = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

function summary(samples: Float64Array, prefix: string): Run {
  const sorted = Float64Array.from(samples).sort();
  return {
    [`${prefix}_n`]: sorted.length,
    [`${prefix}_p50_us`]: tenth(percentile(sorted, 50)),
    [`${prefix}_p99_us`]: tenth(percentile(sorted, 99)),
    [`${prefix}_max_us`]: tenth(sorted[sorted.length - 1]),
  };
}

// --- workers ---------------------------------------------------------------------------------

interface RunningWorker {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  done(timeoutMs: number): Promise<PersistentReport>;
}

function startWorker(
  job: PersistentJob,
  onProgress?: (type: "measuring" | "measured") => void,
): RunningWorker {
  const worker = new Worker(new URL("./persistent-worker.ts", import.meta.url), { workerData: job });
  const ready = Promise.withResolvers<void>();
  const done = Promise.withResolvers<PersistentReport>();
  ready.promise.catch(() => {});
  done.promise.catch(() => {});
  const what = `${job.system} ${job.role} worker`;
  const fail = (error: Error) => {
    ready.reject(error);
    done.reject(error);
  };
  worker.on("message", (report: PersistentReport) => {
    if (report.type === "ready") ready.resolve();
    else if (report.type === "error") fail(new Error(`${what}: ${report.error}`));
    else if (report.type === "measuring" || report.type === "measured") onProgress?.(report.type);
    else done.resolve(report);
  });
  worker.on("error", fail);
  worker.on("exit", (code) => fail(new Error(`${what} exited (${code})`)));
  return {
    worker,
    ready: within(ready.promise, 30_000, `${what} to connect`),
    done: (timeoutMs) => within(done.promise, timeoutMs, `${what} to finish`),
  };
}

function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function job(
  o: PersistentOptions,
  fields: Pick<
    PersistentJob,
    "system" | "role" | "control" | "baseNs" | "topic" | "stream" | "servers" | "credentials"
  >,
): PersistentJob {
  return {
    ...fields,
    size: o.size,
    warmupMsgs: o.r3Warmup,
    window: o.r3Window,
    msgs: o.r3Msgs,
    secs: o.r3Secs,
    syncMsgs: o.r3SyncMsgs,
    syncSecs: o.r3SyncSecs,
    rate: o.foRate,
    inflightMax: o.foInflight,
    ackTimeoutMs: o.foAckTimeoutMs,
  };
}

// --- the two systems behind one shape ----------------------------------------------------------

interface ReadBack {
  readonly sequences: number[];
  readonly complete: boolean;
  readonly detail: string;
}

/** One fresh topic (and stream) on one system, with its leader and the clients' servers. */
interface Placement {
  readonly system: "neuron" | "nats";
  readonly topic: string;
  readonly stream: string;
  readonly leader: string;
  /** The two followers, in the order the clients try them. */
  readonly followers: readonly [string, string];
  /** "host:port" for clients of node `id`. */
  clientsOf(id: string): string;
  readonly credentials?: NonNullable<PersistentJob["credentials"]>;
  /** The leader now (it may move), asked of the given nodes; undefined while there is none. */
  leaderNow(ask: readonly string[]): Promise<string | undefined>;
  /**
   * What the stream holds, read from its start: the sequence of each stored message, in order;
   * `complete` false if the read stopped at the deadline (then `detail` says how far it got).
   */
  readBack(acked: ReadonlySet<number>, timeoutMs: number): Promise<ReadBack>;
  /** Deletes the stream (NATS); closes connections. */
  close(): Promise<void>;
  readonly cluster: Region | NatsCluster;
}

const groupOf = (status: RegionStatus, partition: number) =>
  status.mesh?.groups.find((group) => group.group === partition);

async function neuronPlacement(region: Region, kind: string): Promise<Placement> {
  const topic = `bench.${kind}.${runId()}`;
  const partition = partitionOf(topic);
  const credentials = region.clientCredentials;
  const seeds = region.nodes.map((node) => node.clients);
  // The first publish activates the partition through the controller.
  const probe = await connectNeuron({ seeds, ...credentials });
  try {
    await probe.publish(topic, persistentPayload(16, probeSequence));
  } finally {
    await probe.close();
  }
  // Its leader then hands the leadership to the target assignment's choice (reconciler.ts,
  // every 200 ms): wait until one leader with 3 voters has held for a second.
  let leader = "";
  let sinceMs = 0;
  await waitFor(`the partition of ${topic} led by one router with 3 voters for 1 s`, 30_000, async () => {
    let now = "";
    for (const node of region.nodes) {
      const group = groupOf(await region.status(node.id), partition);
      if (group?.role === "leader" && group.voters.length === 3) now = node.id;
    }
    if (now === "") {
      leader = "";
      return "no leader with 3 voters yet";
    }
    if (now !== leader) {
      leader = now;
      sinceMs = performance.now();
    }
    return performance.now() - sinceMs >= 1000
      ? true
      : `${leader} leads since ${Math.round(performance.now() - sinceMs)} ms`;
  });
  const followers = region.nodes.map((node) => node.id).filter((id) => id !== leader) as [string, string];
  const leaderOf = async (ask: readonly string[]) => {
    for (const id of ask) {
      const status = await region.status(id, 250).catch(() => undefined);
      const group = status === undefined ? undefined : groupOf(status, partition);
      if (group?.role === "leader") return id;
    }
    return undefined;
  };
  return {
    system: "neuron",
    topic,
    stream: "",
    leader,
    followers,
    clientsOf: (id) => region.node(id).clients,
    credentials,
    cluster: region,
    leaderNow: leaderOf,
    readBack: async (acked, timeoutMs) => {
      // Through the publisher's router first (a survivor, most often a follower now): the
      // replay then crosses a link, as a subscriber's usually does.
      const live = region.nodes.filter((node) => node.process !== undefined);
      const seeds = live.sort((a, b) => Number(b.id === followers[0]) - Number(a.id === followers[0]));
      const reader = await connectNeuron({ seeds: seeds.map((node) => node.clients), ...credentials });
      const sequences: number[] = [];
      const seen = new Set<number>();
      let missing = acked.size;
      const startMs = performance.now();
      let lastMs = startMs;
      let complete = false;
      try {
        await reader.subscribe(
          topic,
          (message) => {
            const sequence = payloadSequence(message.payload);
            sequences.push(sequence);
            if (acked.has(sequence) && !seen.has(sequence)) {
              seen.add(sequence);
              missing -= 1;
            }
            lastMs = performance.now();
          },
          { from: 1 },
        );
        // The reader cannot know where the stream ends: wait until every acked message came,
        // then for a quiet moment (anything stored but not acked comes in the same burst).
        await waitFor(`the acked messages read back from ${topic}`, timeoutMs, async () =>
          missing === 0 && performance.now() - lastMs > 300 ? true : `${missing} not read yet`,
        );
        complete = true;
      } catch {
        // reported below
      } finally {
        await reader.close();
      }
      const detail = `${sequences.length} read in ${Math.round(lastMs - startMs)} ms, ${missing} acked not among them, the last ${Math.round(performance.now() - lastMs)} ms ago`;
      return { sequences, complete, detail };
    },
    close: async () => {},
  };
}

async function natsPlacement(cluster: NatsCluster, kind: string): Promise<Placement> {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstreamManager, jetstream, StorageType, DeliverPolicy } = await import("@nats-io/jetstream");
  const urls = cluster.nodes.map((node) => node.clients);
  // A fresh name each run too: a nats-server 2.9.10 restarted after a kill -9 sometimes never
  // became current again once the stream it missed was deleted and created again by name.
  const id = runId();
  const stream = `BENCH_${kind.toUpperCase()}_${id}`;
  const topic = `bench.${kind}.${id}`;
  let admin = await connect({ servers: urls, noAsyncTraces: true, name: "bench-admin" });
  let jsm = await jetstreamManager(admin, { timeout: 5000 });
  await jsm.streams.delete(stream).catch(() => false);
  await waitFor(
    `stream ${stream} created (R3, file)`,
    30_000,
    async () => {
      await jsm.streams.add({ name: stream, subjects: [topic], storage: StorageType.File, num_replicas: 3 });
      return true;
    },
    250,
  );
  let leader = "";
  await waitFor(`stream ${stream} to have a leader and 2 current replicas`, 15_000, async () => {
    const info = await jsm.streams.info(stream);
    const replicas = info.cluster?.replicas ?? [];
    if (!info.cluster?.leader || replicas.length !== 2 || !replicas.every((replica) => replica.current))
      return `leader ${info.cluster?.leader}, replicas ${JSON.stringify(replicas)}`;
    leader = info.cluster.leader;
    return true;
  });
  const followers = cluster.nodes.map((node) => node.id).filter((id) => id !== leader) as [string, string];
  // The admin connection must outlive a kill of the leader: pin it to the followers.
  await admin.close();
  admin = await connect({
    servers: [cluster.node(followers[1]).clients, cluster.node(followers[0]).clients],
    noRandomize: true,
    noAsyncTraces: true,
    name: "bench-admin",
  });
  jsm = await jetstreamManager(admin, { timeout: 1000 });
  const info = async (timeoutMs: number) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        jsm.streams.info(stream),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("stream info timed out")), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    system: "nats",
    topic,
    stream,
    leader,
    followers,
    clientsOf: (id) => cluster.node(id).clients,
    cluster,
    leaderNow: async () => (await info(250).catch(() => undefined))?.cluster?.leader || undefined,
    readBack: async (_acked, timeoutMs) => {
      let lastSeq = 0;
      const startMs = performance.now();
      await waitFor(`stream ${stream} readable`, timeoutMs, async () => {
        const state = await info(1000);
        if (!state.cluster?.leader) return "no stream leader";
        lastSeq = state.state.last_seq;
        return true;
      });
      if (lastSeq === 0) return { sequences: [], complete: true, detail: "the stream is empty" };
      // Creating the consumer can time out while the cluster settles after the kill (the meta
      // leader may have been the killed node too): try again until the deadline.
      const reader = jetstream(admin, { timeout: 5000 });
      const deadline = startMs + timeoutMs;
      let sequences: number[] = [];
      let complete = false;
      let failure = "";
      while (!complete && performance.now() < deadline) {
        sequences = [];
        const finished = Promise.withResolvers<void>();
        try {
          const consumer = await reader.consumers.get(stream, { deliver_policy: DeliverPolicy.All });
          const messages = await consumer.consume({
            max_messages: 5000,
            callback: (message) => {
              sequences.push(payloadSequence(message.data));
              if (message.seq >= lastSeq) finished.resolve();
            },
          });
          try {
            const leftMs = Math.max(1, deadline - performance.now());
            await within(finished.promise, leftMs, `stream ${stream} read back to ${lastSeq}`);
            complete = true;
          } finally {
            await messages.close();
          }
        } catch (error) {
          failure = ` (last error: ${(error as Error).message})`;
          await sleep(250);
        }
      }
      const detail = `${sequences.length} of ${lastSeq} read in ${Math.round(performance.now() - startMs)} ms${failure}`;
      return { sequences, complete, detail };
    },
    close: async () => {
      await jsm.streams.delete(stream).catch(() => false);
      await admin.close();
    },
  };
}

const place = (system: "neuron" | "nats", cluster: Region | NatsCluster, kind: string) =>
  system === "neuron"
    ? neuronPlacement(cluster as Region, kind)
    : natsPlacement(cluster as NatsCluster, kind);

/** Makes sure all three nodes run and see each other; starts any that is down. */
async function ensureHealthy(cluster: Region | NatsCluster): Promise<void> {
  for (const node of cluster.nodes) if (node.process === undefined) await cluster.restart(node.id);
  await cluster.waitHealthy(60_000);
}

/** A healthy cluster and a fresh topic placed on it; logs how long each took. */
async function prepare(
  system: "neuron" | "nats",
  cluster: Region | NatsCluster,
  kind: "r3" | "failover",
): Promise<Placement> {
  const startMs = performance.now();
  await ensureHealthy(cluster);
  const healthyMs = performance.now();
  const placement = await place(system, cluster, kind).catch(async (error: Error) => {
    if (system !== "nats") throw error;
    // Seen with nats-server 2.9.10: a node restarted after a kill -9 that never takes its
    // place in new streams again. Go on with a fresh cluster rather than fail every later run.
    log(`#   nats ${kind}: ${error.message}; starting a fresh cluster`);
    await (cluster as NatsCluster).reset();
    return place(system, cluster, kind);
  });
  log(
    `#   ${system} ${kind}: cluster healthy after ${Math.round(healthyMs - startMs)} ms, leader ${placement.leader} (followers ${placement.followers.join(", ")}) after ${Math.round(performance.now() - healthyMs)} ms`,
  );
  return placement;
}

// --- r3: throughput, ack latency, a subscriber ------------------------------------------------

export async function runR3(
  system: "neuron" | "nats",
  cluster: Region | NatsCluster,
  o: PersistentOptions,
): Promise<Run> {
  const placement = await prepare(system, cluster, "r3");
  const shared = new SharedArrayBuffer(persistentControlSlots * 4);
  const counters = new Int32Array(shared);
  const base = {
    system,
    control: shared,
    // One time base for both threads: arrivals and the publisher's times compare.
    baseNs: nowNs(),
    topic: placement.topic,
    stream: placement.stream,
    ...(placement.credentials === undefined ? {} : { credentials: placement.credentials }),
  };
  const sub = startWorker(
    job(o, { ...base, role: "sub", servers: [placement.clientsOf(placement.followers[1])] }),
  );
  let pub: RunningWorker | undefined;
  let meter: ReturnType<typeof clusterCpuMeter> | undefined;
  let cpu: ReturnType<ReturnType<typeof clusterCpuMeter>["read"]> | undefined;
  const others = () => runningPids().filter((pid) => !cluster.pids().includes(pid));
  try {
    await sub.ready;
    pub = startWorker(
      job(o, { ...base, role: "pub", servers: [placement.clientsOf(placement.followers[0])] }),
      (progress) => {
        if (progress === "measuring") meter = clusterCpuMeter(() => cluster.pids(), others);
        else cpu = meter?.read();
      },
    );
    await pub.ready;
    Atomics.store(counters, persistentControl.go, 1);
    const timeS = o.r3Secs + o.r3SyncSecs + 120;
    const published = (await pub.done(timeS * 1000)) as Extract<PersistentReport, { type: "pub-done" }>;
    const expected = published.acked + published.syncAcked;
    const graceEnd = performance.now() + 10_000;
    while (Atomics.load(counters, persistentControl.delivered) < expected && performance.now() < graceEnd) {
      await sleep(5);
    }
    Atomics.store(counters, persistentControl.stop, 1);
    const received = (await sub.done(30_000)) as Extract<PersistentReport, { type: "sub-done" }>;
    // (a)'s messages are the first `acked + errors` sequences after the warm-up.
    const measured = published.acked + published.errors;
    let delivered = 0;
    let lastArrivalMs = 0;
    const deliveryLatencies: number[] = [];
    for (let index = 0; index < measured; index++) {
      const at = received.arrivals[index]!;
      if (at === 0) continue;
      delivered += 1;
      lastArrivalMs = Math.max(lastArrivalMs, at);
      deliveryLatencies.push(received.latencies[index]!);
    }
    if (published.firstError !== undefined)
      log(`#   ${system} r3: first publish error: ${published.firstError}`);
    if (published.sentTo !== "")
      log(
        `#   ${system} r3: the publisher, connected to ${placement.followers[0]}, sent to ${published.sentTo}`,
      );
    const secs = (published.endMs - published.startMs) / 1000;
    const subSecs = (lastArrivalMs - published.startMs) / 1000;
    return {
      acked: published.acked,
      errors: published.errors + published.syncErrors,
      acked_msgs_per_s: Math.round(published.acked / secs),
      secs: round2(secs),
      window: o.r3Window,
      ...summary(published.latencies, "ack_lat"),
      ...summary(published.syncLatencies, "sync_ack_lat"),
      sub_delivered: delivered,
      sub_missing: measured - delivered,
      sub_duplicates: received.duplicates,
      sub_delivered_msgs_per_s: delivered > 0 ? Math.round(delivered / subSecs) : 0,
      sub_behind_at_end_ms: Math.round(lastArrivalMs - published.endMs),
      ...summary(Float64Array.from(deliveryLatencies), "sub_lat"),
      ...cpu,
      server_us_per_msg:
        cpu !== undefined && published.acked > 0
          ? round2((cpu.server_cpu_s * 1e6) / published.acked)
          : undefined,
    };
  } finally {
    Atomics.store(counters, persistentControl.stop, 1);
    await Promise.all([sub.worker.terminate(), pub?.worker.terminate()]);
    const leaderNow = await placement.leaderNow(cluster.nodes.map((node) => node.id));
    if (leaderNow !== placement.leader)
      log(`#   ${system} r3: the leader moved to ${leaderNow ?? "none"} during the run`);
    await placement.close().catch(() => {});
  }
}

// --- failover: kill -9 of the leader under a steady load -------------------------------------

export async function runFailover(
  system: "neuron" | "nats",
  cluster: Region | NatsCluster,
  o: PersistentOptions,
): Promise<Run> {
  const placement = await prepare(system, cluster, "failover");
  const shared = new SharedArrayBuffer(persistentControlSlots * 4);
  const counters = new Int32Array(shared);
  const fullJob = job(o, {
    system,
    role: "failover",
    control: shared,
    baseNs: nowNs(),
    topic: placement.topic,
    stream: placement.stream,
    servers: placement.followers.map((id) => placement.clientsOf(id)),
    ...(placement.credentials === undefined ? {} : { credentials: placement.credentials }),
  });
  const publisher = startWorker(fullJob);
  let killed: string | undefined;
  try {
    await publisher.ready;
    const meter = clusterCpuMeter(
      () => cluster.pids(),
      () => runningPids().filter((pid) => !cluster.pids().includes(pid)),
    );
    Atomics.store(counters, persistentControl.go, 1);
    await sleep(o.foWarmSecs * 1000);
    // The leader may have moved since the placement (a Neuron leader moves toward the target
    // assignment): kill the one leading now.
    const everyone = cluster.nodes.map((node) => node.id);
    const leader = (await placement.leaderNow(everyone)) ?? placement.leader;
    const survivors = everyone.filter((id) => id !== leader);
    meter.sample();
    const killNs = nowNs();
    await cluster.kill(leader);
    killed = leader;
    const killMs = Number(killNs - fullJob.baseNs) / 1e6;
    log(
      `#   ${system} failover: killed leader ${leader} at ${(killMs / 1000).toFixed(2)} s, client on ${placement.followers[0]}${leader === placement.leader ? "" : " (the leader moved)"}`,
    );
    // Watch for a new leader on the survivors while the load goes on.
    let electedMs: number | undefined;
    let newLeader: string | undefined;
    const watchEnd = performance.now() + o.foMaxSecs * 1000;
    const watcher = (async () => {
      while (electedMs === undefined && performance.now() < watchEnd) {
        const now = await placement.leaderNow(survivors);
        if (now !== undefined && now !== leader) {
          electedMs = Number(nowNs() - fullJob.baseNs) / 1e6;
          newLeader = now;
          return;
        }
        await sleep(10);
      }
    })();
    // Go on until the acks have kept pace (at least 90 % of the rate, the schedule not held
    // back) over the last foAfterSecs, all of it after the kill; at most foMaxSecs.
    const afterMs = o.foAfterSecs * 1000;
    const samples: { atMs: number; acked: number }[] = [];
    for (;;) {
      await sleep(10);
      const nowMs = Number(nowNs() - fullJob.baseNs) / 1e6;
      const ackedNow = Atomics.load(counters, persistentControl.acked);
      samples.push({ atMs: nowMs, acked: ackedNow });
      if (nowMs - killMs >= o.foMaxSecs * 1000) break;
      if (nowMs - killMs < afterMs) continue;
      while (samples.length > 1 && samples[1]!.atMs <= nowMs - afterMs) samples.shift();
      const from = samples[0]!;
      // Over the whole window, and over its last third (not only a burst of late acks).
      const recent = samples.find((sample) => sample.atMs >= nowMs - afterMs / 3) ?? from;
      const pace = (since: { atMs: number; acked: number }) =>
        ackedNow - since.acked >= 0.9 * o.foRate * ((nowMs - since.atMs) / 1000);
      const kept = pace(from) && pace(recent);
      const onSchedule = Atomics.load(counters, persistentControl.behind) <= o.foRate / 20;
      if (from.atMs >= killMs && nowMs - from.atMs >= afterMs * 0.99 && kept && onSchedule) break;
    }
    Atomics.store(counters, persistentControl.stop, 1);
    const report = (await publisher.done(60_000)) as Extract<PersistentReport, { type: "failover-done" }>;
    const cpu = meter.read();
    await watcher;
    const ackTimes = Float64Array.from(report.ackMs).sort();
    let gapMs = 0;
    let gapStartMs = 0;
    for (let index = 1; index < ackTimes.length; index++) {
      const gap = ackTimes[index]! - ackTimes[index - 1]!;
      if (gap > gapMs) {
        gapMs = gap;
        gapStartMs = ackTimes[index - 1]!;
      }
    }
    const firstAfterKill = ackTimes.find((at) => at > killMs);
    // Read the stream back and check every acked message is there exactly once.
    const acked = new Set(report.ackedSequences);
    const readBack = await placement.readBack(acked, 30_000);
    const stored = readBack.sequences;
    if (!readBack.complete)
      log(`#   ${system} failover: the read back stopped at its deadline: ${readBack.detail}`);
    const copies = new Map<number, number>();
    for (const sequence of stored) {
      if (sequence === probeSequence) continue;
      copies.set(sequence, (copies.get(sequence) ?? 0) + 1);
    }
    let lostAcked = 0;
    for (const sequence of acked) if (!copies.has(sequence)) lostAcked += 1;
    let duplicated = 0;
    let storedNotAcked = 0;
    for (const [sequence, count] of copies) {
      duplicated += count - 1;
      if (!acked.has(sequence)) storedNotAcked += 1;
    }
    const errorKinds = Object.fromEntries(
      Object.entries(report.errorKinds).map(([kind, count]) => [`errors_${kind}`, count]),
    );
    if (report.firstError !== undefined)
      log(`#   ${system} failover: first publish error: ${report.firstError}`);
    const run: Run = {
      target_rate: o.foRate,
      client_on_killed: leader === placement.followers[0] ? 1 : 0,
      attempted: report.attempted,
      acked: acked.size,
      gave_up: report.gaveUp,
      max_ack_gap_ms: Math.round(gapMs),
      max_gap_starts_after_kill_ms: Math.round(gapStartMs - killMs),
      acks_resumed_after_kill_ms: Math.round(gapStartMs + gapMs - killMs),
      first_ack_after_kill_ms: firstAfterKill === undefined ? undefined : Math.round(firstAfterKill - killMs),
      leader_elected_after_ms: electedMs === undefined ? undefined : Math.round(electedMs - killMs),
      failed_attempts: report.failedAttempts,
      retried_msgs: report.retriedMsgs,
      duplicate_acks: report.duplicateAcks,
      ...errorKinds,
      stored: [...copies.values()].reduce((sum, count) => sum + count, 0),
      read_back_complete: readBack.complete ? 1 : 0,
      lost_acked: lostAcked,
      dup_stored: duplicated,
      stored_not_acked: storedNotAcked,
      exactly_once: lostAcked === 0 && duplicated === 0 ? 1 : 0,
      ...cpu,
    };
    log(
      `#   ${system} failover: new leader ${newLeader ?? "?"}; ${acked.size} acked, ${lostAcked} lost, ${duplicated} stored twice, ${storedNotAcked} stored but not acked`,
    );
    return run;
  } finally {
    Atomics.store(counters, persistentControl.stop, 1);
    await publisher.worker.terminate();
    // Start the killed node again and let it catch up before the stream is deleted (a
    // nats-server that missed the deletion while down stayed "not current with the meta leader").
    if (killed !== undefined) {
      const startMs = performance.now();
      await cluster
        .restart(killed)
        .then(() => cluster.waitHealthy(60_000))
        .then(
          () =>
            log(
              `#   ${system} failover: ${killed} restarted, cluster healthy after ${Math.round(performance.now() - startMs)} ms`,
            ),
          (error: Error) => log(`#   ${system} failover: after restarting ${killed}: ${error.message}`),
        );
    }
    await placement.close().catch(() => {});
  }
}

// --- the table -------------------------------------------------------------------------------

export interface PersistentRow {
  readonly label: string;
  readonly mode: "r3" | "failover";
  readonly key: string;
  readonly unit: string;
  /** Whether a higher figure is better (for "ok"); undefined: no ratio. */
  readonly higherIsBetter: boolean | undefined;
}

export const persistentRows: readonly PersistentRow[] = [
  {
    label: "R3 acked msgs/s, 256 in flight",
    mode: "r3",
    key: "acked_msgs_per_s",
    unit: "",
    higherIsBetter: true,
  },
  { label: "  ack latency p50", mode: "r3", key: "ack_lat_p50_us", unit: " us", higherIsBetter: false },
  { label: "  ack latency p99", mode: "r3", key: "ack_lat_p99_us", unit: " us", higherIsBetter: false },
  {
    label: "  servers' CPU us/acked msg",
    mode: "r3",
    key: "server_us_per_msg",
    unit: "",
    higherIsBetter: false,
  },
  {
    label: "  subscriber delivered msgs/s",
    mode: "r3",
    key: "sub_delivered_msgs_per_s",
    unit: "",
    higherIsBetter: true,
  },
  { label: "  publish->delivery p50", mode: "r3", key: "sub_lat_p50_us", unit: " us", higherIsBetter: false },
  { label: "  publish->delivery p99", mode: "r3", key: "sub_lat_p99_us", unit: " us", higherIsBetter: false },
  {
    label: "R3 ack latency p50, 1 in flight",
    mode: "r3",
    key: "sync_ack_lat_p50_us",
    unit: " us",
    higherIsBetter: false,
  },
  {
    label: "  ack latency p99, 1 in flight",
    mode: "r3",
    key: "sync_ack_lat_p99_us",
    unit: " us",
    higherIsBetter: false,
  },
  {
    label: "failover: longest ack gap",
    mode: "failover",
    key: "max_ack_gap_ms",
    unit: " ms",
    higherIsBetter: false,
  },
  {
    label: "  acks resumed after the kill",
    mode: "failover",
    key: "acks_resumed_after_kill_ms",
    unit: " ms",
    higherIsBetter: false,
  },
  {
    label: "  new leader seen after",
    mode: "failover",
    key: "leader_elected_after_ms",
    unit: " ms",
    higherIsBetter: false,
  },
  { label: "  acked msgs", mode: "failover", key: "acked", unit: "", higherIsBetter: undefined },
  {
    label: "  failed publish attempts",
    mode: "failover",
    key: "failed_attempts",
    unit: "",
    higherIsBetter: undefined,
  },
  { label: "  acked msgs lost", mode: "failover", key: "lost_acked", unit: "", higherIsBetter: undefined },
  { label: "  msgs stored twice", mode: "failover", key: "dup_stored", unit: "", higherIsBetter: undefined },
];

export const persistentRatioKeys = {
  r3: persistentRows
    .filter((row) => row.mode === "r3" && row.higherIsBetter !== undefined)
    .map((row) => row.key),
  failover: persistentRows
    .filter((row) => row.mode === "failover" && row.higherIsBetter !== undefined)
    .map((row) => row.key),
};
