// The publisher and the subscriber of one benchmark run, each in its own worker thread (its
// own event loop and connection), for Neuron (the client library) or NATS (nats.js), with the
// same loop for both so the numbers compare:
//
// - Payload: `size` bytes, a fresh Uint8Array per message (both clients keep a reference until
//   they encode or flush it); [0, 8) the publish time as u64 LE ns of the monotonic clock
//   (`process.hrtime.bigint()`, the same in every thread), [8, 12) the sequence number, u32 LE.
// - Throughput: batches of `batch` publishes, a turn of the event loop between batches, and
//   an end-to-end window: the publisher waits while more than `window` messages are published
//   but not yet delivered (counters in shared memory). Without it nats-server cuts the
//   subscriber off as a slow consumer, and the router would too.
// - Latency: paced every 1 ms to `rate` msgs/s; each stamp is taken when its message is
//   published; the first `warmup` messages are not counted.
// - Each thread reports its GC pauses (count, total, longest) during the measured part.
//
// The work is not the same: a Neuron publish is acknowledged (the publisher also reads Acks
// and settles a promise per message), a NATS core publish is fire and forget. Neuron's
// failed publishes are counted by an unhandledRejection hook, not a `.catch` per promise.
// Trap: `lastNs` is the time the subscriber saw the last expected message; the publisher
// stores the final expectation (control.expect) when it stops, which may be below the
// planned count when the time cap cut the run short.
import { PerformanceObserver } from "node:perf_hooks";
import { isMainThread, parentPort, workerData } from "node:worker_threads";

/** Indices in the shared Int32 control block. */
export const control = {
  published: 0,
  delivered: 1,
  ready: 2,
  stop: 3,
  expect: 4,
  errors: 5,
  /** Set by the main thread once the connected publisher may start (the CPU meter runs). */
  go: 6,
} as const;
export const controlSlots = 8;

export interface WorkerJob {
  readonly system: "neuron" | "nats";
  readonly role: "pub" | "sub";
  readonly mode: "tput" | "lat";
  readonly control: SharedArrayBuffer;
  readonly topic: string;
  readonly size: number;
  /** Neuron: "host:port" of the router's listener; NATS: the server URL. */
  readonly address: string;
  readonly transport: "tls" | "quic";
  readonly credentials?: { readonly ca: string; readonly cert: string; readonly key: string };
  /** tput: messages at most, and the time cap. */
  readonly count: number;
  readonly maxSecs: number;
  readonly window: number;
  readonly batch: number;
  /** lat: messages per second for `secs` seconds; the first `warmup` are not counted. */
  readonly rate: number;
  readonly secs: number;
  readonly warmup: number;
}

export type WorkerReport =
  | { readonly type: "ready" }
  | { readonly type: "error"; readonly error: string }
  | {
      readonly type: "pub-done";
      readonly published: number;
      readonly t0Ns: bigint;
      readonly tEndNs: bigint;
      readonly gc: GcStats;
    }
  | {
      readonly type: "sub-done";
      readonly total: number;
      readonly firstNs: bigint;
      readonly lastNs: bigint;
      /** Latencies in microseconds, transferred. */
      readonly latencies: Float64Array | undefined;
      readonly gc: GcStats;
    };

/** Garbage collection in this thread's isolate while the run was measured. */
export interface GcStats {
  readonly count: number;
  readonly totalMs: number;
  readonly maxMs: number;
}

/** Starts counting GC pauses of this isolate; the result stops and reads. */
function watchGc(): () => GcStats {
  let count = 0;
  let totalMs = 0;
  let maxMs = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      count += 1;
      totalMs += entry.duration;
      maxMs = Math.max(maxMs, entry.duration);
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  return () => {
    for (const entry of observer.takeRecords()) {
      count += 1;
      totalMs += entry.duration;
      maxMs = Math.max(maxMs, entry.duration);
    }
    observer.disconnect();
    return { count, totalMs: Math.round(totalMs * 10) / 10, maxMs: Math.round(maxMs * 10) / 10 };
  };
}

/** The smallest surface both clients offer, so one loop drives either. */
interface BenchClient {
  publish(topic: string, payload: Uint8Array): void;
  subscribe(topic: string, handler: (payload: Uint8Array) => void): Promise<void>;
  /** Resolves when what was published so far has left (NATS flush) or been acknowledged (Neuron). */
  settle(): Promise<void>;
  close(): Promise<void>;
}

const now = () => process.hrtime.bigint();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const turn = () => new Promise((resolve) => setImmediate(resolve));

function payload(size: number, sequence: number, stamp: boolean): Uint8Array {
  const bytes = new Uint8Array(size);
  if (stamp) new DataView(bytes.buffer).setBigUint64(0, now(), true);
  bytes[8] = sequence;
  bytes[9] = sequence >>> 8;
  bytes[10] = sequence >>> 16;
  bytes[11] = sequence >>> 24;
  return bytes;
}

const readSequence = (data: Uint8Array) =>
  (data[8]! | (data[9]! << 8) | (data[10]! << 16) | (data[11]! << 24)) >>> 0;
const readStamp = (data: Uint8Array) => new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0, true);

async function neuronClient(job: WorkerJob, errors: () => void): Promise<BenchClient> {
  const { connect } = await import("../client/index.ts");
  const client = await connect({
    seeds: [job.address],
    ca: job.credentials!.ca,
    cert: job.credentials!.cert,
    key: job.credentials!.key,
    transport: job.transport,
  });
  // A failed publish is counted here rather than by a `.catch` on each promise, which would
  // cost a promise and a microtask per message that nats.js does not pay.
  process.on("unhandledRejection", errors);
  let last: Promise<void> = Promise.resolve();
  return {
    publish(topic, data) {
      last = client.publish(topic, data);
    },
    async subscribe(topic, handler) {
      await client.subscribe(topic, (message) => handler(message.payload));
    },
    // Acks are cumulative and in order: once the last publish settled, every one has.
    settle: () => last.catch(() => undefined),
    close: () => client.close(),
  };
}

async function natsClient(job: WorkerJob, errors: () => void): Promise<BenchClient> {
  const { connect } = await import("@nats-io/transport-node");
  const connection = await connect({ servers: job.address, noAsyncTraces: true, name: job.role });
  return {
    publish(topic, data) {
      connection.publish(topic, data);
    },
    async subscribe(topic, handler) {
      connection.subscribe(topic, {
        callback: (error, message) => {
          if (error !== null) return errors();
          handler(message.data);
        },
      });
      await connection.flush(); // the server has the interest before we report ready
    },
    settle: () => connection.flush(),
    close: () => connection.close(),
  };
}

async function subscriber(job: WorkerJob): Promise<void> {
  const shared = new Int32Array(job.control);
  const errors = () => void Atomics.add(shared, control.errors, 1);
  const client = job.system === "neuron" ? await neuronClient(job, errors) : await natsClient(job, errors);
  const latencies = job.mode === "lat" ? new Float64Array(Math.ceil(job.rate * job.secs) + 1) : undefined;
  let samples = 0;
  let total = 0;
  let firstNs = 0n;
  let lastNs = 0n;
  await client.subscribe(job.topic, (data) => {
    if (latencies !== undefined) {
      const at = now();
      if (readSequence(data) >= job.warmup && samples < latencies.length) {
        latencies[samples++] = Number(at - readStamp(data)) / 1000;
      }
    }
    if (total === 0) firstNs = now();
    total += 1;
    Atomics.add(shared, control.delivered, 1);
    if (total === Atomics.load(shared, control.expect)) lastNs = now();
  });
  Atomics.add(shared, control.ready, 1);
  const gc = watchGc();
  parentPort!.postMessage({ type: "ready" } satisfies WorkerReport);
  let seen = -1;
  let progressNs = now();
  while (Atomics.load(shared, control.stop) === 0) {
    await sleep(5);
    if (total !== seen) {
      seen = total;
      progressNs = now();
    }
  }
  if (lastNs === 0n) lastNs = total >= Atomics.load(shared, control.expect) ? now() : progressNs;
  await client.close();
  const kept = latencies?.slice(0, samples);
  const report: WorkerReport = { type: "sub-done", total, firstNs, lastNs, latencies: kept, gc: gc() };
  parentPort!.postMessage(report, kept === undefined ? [] : [kept.buffer]);
}

async function publisher(job: WorkerJob): Promise<void> {
  const shared = new Int32Array(job.control);
  const errors = () => void Atomics.add(shared, control.errors, 1);
  const client = job.system === "neuron" ? await neuronClient(job, errors) : await natsClient(job, errors);
  parentPort!.postMessage({ type: "ready" } satisfies WorkerReport);
  while (Atomics.load(shared, control.go) === 0) await sleep(1);
  const gc = watchGc();
  const t0Ns = now();
  let sent = 0;
  if (job.mode === "tput") {
    const deadline = performance.now() + job.maxSecs * 1000;
    while (sent < job.count) {
      const end = Math.min(sent + job.batch, job.count);
      for (; sent < end; sent++) client.publish(job.topic, payload(job.size, sent, false));
      Atomics.store(shared, control.published, sent);
      await turn();
      while (sent - Atomics.load(shared, control.delivered) > job.window) await sleep(1);
      if (performance.now() > deadline) break;
    }
  } else {
    const total = Math.round(job.rate * job.secs);
    const start = performance.now();
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - start) * job.rate) / 1000) + 1);
      for (; sent < due; sent++) client.publish(job.topic, payload(job.size, sent, true));
      Atomics.store(shared, control.published, sent);
      await sleep(1);
    }
  }
  Atomics.store(shared, control.expect, sent);
  await client.settle();
  const tEndNs = now();
  await client.close();
  parentPort!.postMessage({
    type: "pub-done",
    published: sent,
    t0Ns,
    tEndNs,
    gc: gc(),
  } satisfies WorkerReport);
}

if (!isMainThread) {
  const job = workerData as WorkerJob;
  (job.role === "sub" ? subscriber(job) : publisher(job)).catch((error: unknown) => {
    parentPort!.postMessage({
      type: "error",
      error: String((error as Error)?.stack ?? error),
    } satisfies WorkerReport);
  });
}
