// The clients of the persistent scenarios (persistent.ts), each in its own worker thread (its
// own event loop and connection), for Neuron (client/index.ts: a persistent topic, every
// publish acknowledged after its Raft commit, fsynced on a quorum) or NATS (@nats-io/jetstream:
// `js.publish` to an R3 file stream, acknowledged once stored on a quorum, in the page cache).
// The same loops drive both:
//
// - `pub`: `warmupMsgs` publishes with `window` in flight (not measured), then (a) `window`
//   publishes in flight, each lane publishing its next message once its last one is acked, for
//   at most `msgs` messages or `secs` seconds: acks/s and the latency of each ack; then (b) one
//   publish at a time for at most `syncMsgs` or `syncSecs`: the latency of each ack.
// - `sub`: a subscriber on the same topic (Neuron `subscribe`, new messages; NATS an ordered
//   consumer, the pull kind in nats.js 3, read with a `consume()` callback, from the stream's
//   first message), started before the publisher's warm-up; it records when each measured
//   message (sequence >= warmupMsgs) arrived and its publish-to-delivery latency.
// - `failover`: paced publishes at `rate` msgs/s, at most `inflightMax` in flight (beyond that
//   the schedule slips, then catches up); a failed publish is tried again after 20, 40, 80,
//   100, 100 ... ms until it is acked (or 30 s pass). It records the time of every ack and
//   which message it acked, until the main thread sets `stop`; then it waits for what is in
//   flight. NATS publishes carry a msgID (`Nats-Msg-Id`) so a retry is stored once and time
//   out after `ackTimeoutMs`; a Neuron retry of a rejected publish is a new publish (the client
//   itself resends with the same producer sequence only after a broken connection).
//
// Payload: `size` bytes, a fresh Uint8Array per message; [0, 8) the publish time (u64 LE ns of
// `process.hrtime.bigint()`, the same clock in every thread), [8, 12) the sequence, u32 LE.
// Times are reported in ms since `baseNs` (a main-thread hrtime), so threads compare.
import { isMainThread, parentPort, workerData } from "node:worker_threads";

/** Indices in the shared Int32 control block. */
export const persistentControl = {
  go: 0,
  stop: 1,
  /** sub: measured messages delivered (first copies). */
  delivered: 2,
  /** failover: publishes acked so far. */
  acked: 3,
  /** failover: publishes in flight now. */
  inflight: 4,
  /** failover: the schedule is this many messages behind (the in-flight cap held it back). */
  behind: 5,
} as const;
export const persistentControlSlots = 8;

export interface PersistentJob {
  readonly system: "neuron" | "nats";
  readonly role: "pub" | "sub" | "failover";
  readonly control: SharedArrayBuffer;
  readonly baseNs: bigint;
  /** Neuron topic, NATS subject. */
  readonly topic: string;
  /** NATS stream name ("" for Neuron). */
  readonly stream: string;
  /** "host:port" of the servers, in the order to try. */
  readonly servers: readonly string[];
  readonly credentials?: { readonly ca: string; readonly cert: string; readonly key: string };
  readonly size: number;
  /** pub: warm-up publishes first; sub: sequences below this are not recorded. */
  readonly warmupMsgs: number;
  readonly window: number;
  /** (a) at most `msgs` messages or `secs` seconds. */
  readonly msgs: number;
  readonly secs: number;
  /** (b) at most `syncMsgs` messages or `syncSecs` seconds. */
  readonly syncMsgs: number;
  readonly syncSecs: number;
  /** failover */
  readonly rate: number;
  readonly inflightMax: number;
  readonly ackTimeoutMs: number;
}

export type PersistentReport =
  | { readonly type: "ready" }
  | { readonly type: "error"; readonly error: string }
  /** pub: the warm-up is done, (a) starts now; then (a) is done. */
  | { readonly type: "measuring" }
  | { readonly type: "measured" }
  | {
      readonly type: "pub-done";
      readonly acked: number;
      readonly errors: number;
      readonly startMs: number;
      readonly endMs: number;
      /** (a): ack latencies, microseconds, in completion order. */
      readonly latencies: Float64Array;
      readonly syncAcked: number;
      readonly syncErrors: number;
      readonly syncLatencies: Float64Array;
      readonly firstError: string | undefined;
      /** Neuron: the router the client sent the last publishes to (it links to the leader the routers name); NATS: "". */
      readonly sentTo: string;
    }
  | {
      readonly type: "sub-done";
      /** By sequence - warmupMsgs: arrival, ms since baseNs (0: never); latency in microseconds. */
      readonly arrivals: Float64Array;
      readonly latencies: Float64Array;
      readonly total: number;
      readonly duplicates: number;
    }
  | {
      readonly type: "failover-done";
      readonly attempted: number;
      /** The sequence of each acked message and when its ack came (ms since baseNs), in ack order. */
      readonly ackedSequences: Uint32Array;
      readonly ackMs: Float64Array;
      readonly failedAttempts: number;
      readonly retriedMsgs: number;
      readonly gaveUp: number;
      readonly duplicateAcks: number;
      readonly errorKinds: Record<string, number>;
      readonly firstError: string | undefined;
    };

/** What both systems offer the loops. */
interface PersistentClient {
  /** Resolves once the server acked the message (for NATS failover runs: with a msgID). */
  publish(payload: Uint8Array, sequence: number): Promise<{ duplicate: boolean }>;
  subscribe(handler: (payload: Uint8Array) => void): Promise<void>;
  /** Where the next publish goes (Neuron: `routeOf`), or "" if the client does not choose. */
  sentTo(): string;
  close(): Promise<void>;
}

const now = () => process.hrtime.bigint();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function persistentPayload(size: number, sequence: number): Uint8Array {
  const bytes = new Uint8Array(size);
  new DataView(bytes.buffer).setBigUint64(0, now(), true);
  bytes[8] = sequence;
  bytes[9] = sequence >>> 8;
  bytes[10] = sequence >>> 16;
  bytes[11] = sequence >>> 24;
  return bytes;
}

export const payloadSequence = (data: Uint8Array) =>
  (data[8]! | (data[9]! << 8) | (data[10]! << 16) | (data[11]! << 24)) >>> 0;
const payloadStamp = (data: Uint8Array) =>
  new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0, true);

/** The name of an error, for counting: Neuron's code, nats.js's class (a 503 relabelled). */
export function errorKind(error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === "string" && (error as Error).name === "NeuronError") return code;
  const name = (error as Error)?.name ?? (error as object)?.constructor?.name ?? "Error";
  // nats.js 3 reports JetStream's 503 "no responders" (no stream leader listening) this way.
  if (name === "JetStreamNotEnabled") return "no_responders_503";
  if (name === "TimeoutError") return "timeout";
  return name;
}

async function neuronClient(job: PersistentJob): Promise<PersistentClient> {
  const { connect } = await import("../client/index.ts");
  const client = await connect({
    seeds: [...job.servers],
    ca: job.credentials!.ca,
    cert: job.credentials!.cert,
    key: job.credentials!.key,
  });
  const acked = { duplicate: false };
  return {
    publish: (payload) => client.publish(job.topic, payload).then(() => acked),
    async subscribe(handler) {
      await client.subscribe(job.topic, (message) => handler(message.payload));
    },
    sentTo: () => client.routeOf(job.topic) ?? "",
    close: () => client.close(),
  };
}

async function natsClient(job: PersistentJob): Promise<PersistentClient> {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstream, DeliverPolicy } = await import("@nats-io/jetstream");
  const connection = await connect({
    servers: [...job.servers],
    noRandomize: true,
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    name: `bench-${job.role}`,
  });
  const js = jetstream(connection, { timeout: 10_000 });
  const runId = Math.random().toString(36).slice(2, 8);
  return {
    publish: (payload, sequence) =>
      (job.role === "failover"
        ? js.publish(job.topic, payload, { msgID: `${runId}-${sequence}`, timeout: job.ackTimeoutMs })
        : js.publish(job.topic, payload)
      ).then((ack) => ({ duplicate: ack.duplicate === true })),
    async subscribe(handler) {
      const consumer = await js.consumers.get(job.stream, { deliver_policy: DeliverPolicy.All });
      await consumer.consume({ max_messages: 1000, callback: (message) => handler(message.data) });
    },
    sentTo: () => "",
    close: () => connection.close(),
  };
}

const connectClient = (job: PersistentJob) => (job.system === "neuron" ? neuronClient(job) : natsClient(job));

/** Publishes sequences [first, first + count) with `lanes` in flight, until the count or the deadline. */
async function publishWindow(
  client: PersistentClient,
  job: PersistentJob,
  first: number,
  count: number,
  lanes: number,
  secs: number,
  latencies: Float64Array | undefined,
) {
  let next = first;
  const end = first + count;
  let acked = 0;
  let errors = 0;
  let firstError: string | undefined;
  const deadline = performance.now() + secs * 1000;
  const lane = async () => {
    while (next < end && performance.now() < deadline) {
      const sequence = next++;
      const payload = persistentPayload(job.size, sequence);
      const startNs = now();
      try {
        await client.publish(payload, sequence);
        if (latencies !== undefined && acked < latencies.length) {
          latencies[acked] = Number(now() - startNs) / 1000;
        }
        acked += 1;
      } catch (error) {
        errors += 1;
        firstError ??= String((error as Error)?.message ?? error);
      }
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return { acked, errors, next, firstError };
}

const sinceBaseMs = (job: PersistentJob) => Number(now() - job.baseNs) / 1e6;

async function publisher(job: PersistentJob): Promise<void> {
  const shared = new Int32Array(job.control);
  const client = await connectClient(job);
  parentPort!.postMessage({ type: "ready" } satisfies PersistentReport);
  while (Atomics.load(shared, persistentControl.go) === 0) await sleep(1);
  const warm = await publishWindow(client, job, 0, job.warmupMsgs, job.window, 60, undefined);
  if (warm.errors > 0) throw new Error(`warm-up: ${warm.errors} publishes failed: ${warm.firstError}`);
  parentPort!.postMessage({ type: "measuring" } satisfies PersistentReport);
  const latencies = new Float64Array(job.msgs);
  const startMs = sinceBaseMs(job);
  const run = await publishWindow(client, job, warm.next, job.msgs, job.window, job.secs, latencies);
  const endMs = sinceBaseMs(job);
  parentPort!.postMessage({ type: "measured" } satisfies PersistentReport);
  const syncLatencies = new Float64Array(job.syncMsgs);
  const sync = await publishWindow(client, job, run.next, job.syncMsgs, 1, job.syncSecs, syncLatencies);
  const sentTo = client.sentTo();
  await client.close();
  const kept = latencies.slice(0, run.acked);
  const keptSync = syncLatencies.slice(0, sync.acked);
  parentPort!.postMessage(
    {
      type: "pub-done",
      acked: run.acked,
      errors: run.errors,
      startMs,
      endMs,
      latencies: kept,
      syncAcked: sync.acked,
      syncErrors: sync.errors,
      syncLatencies: keptSync,
      firstError: run.firstError ?? sync.firstError,
      sentTo,
    } satisfies PersistentReport,
    [kept.buffer, keptSync.buffer],
  );
}

async function subscriber(job: PersistentJob): Promise<void> {
  const shared = new Int32Array(job.control);
  const client = await connectClient(job);
  const capacity = job.msgs + job.syncMsgs;
  const arrivals = new Float64Array(capacity);
  const latencies = new Float64Array(capacity);
  let total = 0;
  let duplicates = 0;
  await client.subscribe((data) => {
    total += 1;
    const index = payloadSequence(data) - job.warmupMsgs;
    if (index < 0 || index >= capacity) return;
    if (arrivals[index] !== 0) {
      duplicates += 1;
      return;
    }
    const at = now();
    arrivals[index] = Number(at - job.baseNs) / 1e6;
    latencies[index] = Number(at - payloadStamp(data)) / 1000;
    Atomics.add(shared, persistentControl.delivered, 1);
  });
  parentPort!.postMessage({ type: "ready" } satisfies PersistentReport);
  while (Atomics.load(shared, persistentControl.stop) === 0) await sleep(5);
  await client.close();
  parentPort!.postMessage(
    { type: "sub-done", arrivals, latencies, total, duplicates } satisfies PersistentReport,
    [arrivals.buffer, latencies.buffer],
  );
}

async function failoverPublisher(job: PersistentJob): Promise<void> {
  const shared = new Int32Array(job.control);
  const client = await connectClient(job);
  parentPort!.postMessage({ type: "ready" } satisfies PersistentReport);
  while (Atomics.load(shared, persistentControl.go) === 0) await sleep(1);
  const ackedSequences: number[] = [];
  const ackMs: number[] = [];
  const errorKinds: Record<string, number> = {};
  let failedAttempts = 0;
  let retriedMsgs = 0;
  let gaveUp = 0;
  let duplicateAcks = 0;
  let inflight = 0;
  let firstError: string | undefined;
  const publishOne = async (sequence: number) => {
    const payload = persistentPayload(job.size, sequence);
    const giveUpAt = performance.now() + 30_000;
    for (let attempt = 0; ; attempt++) {
      try {
        const ack = await client.publish(payload, sequence);
        ackMs.push(sinceBaseMs(job));
        ackedSequences.push(sequence);
        if (ack.duplicate) duplicateAcks += 1;
        Atomics.add(shared, persistentControl.acked, 1);
        return;
      } catch (error) {
        failedAttempts += 1;
        if (attempt === 0) retriedMsgs += 1;
        const kind = errorKind(error);
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
        firstError ??= `${kind}: ${String((error as Error)?.message ?? error)}`;
        if (performance.now() > giveUpAt) {
          gaveUp += 1;
          return;
        }
        await sleep(Math.min(100, 20 * 2 ** attempt));
      }
    }
  };
  const pending = new Set<Promise<void>>();
  const start = performance.now();
  let sent = 0;
  while (Atomics.load(shared, persistentControl.stop) === 0) {
    const due = Math.floor(((performance.now() - start) * job.rate) / 1000) + 1;
    while (sent < due && inflight < job.inflightMax) {
      inflight += 1;
      const done = publishOne(sent).finally(() => {
        inflight -= 1;
        pending.delete(done);
      });
      pending.add(done);
      sent += 1;
    }
    Atomics.store(shared, persistentControl.inflight, inflight);
    Atomics.store(shared, persistentControl.behind, due - sent);
    await sleep(1);
  }
  await Promise.all([...pending]);
  await client.close();
  const sequences = Uint32Array.from(ackedSequences);
  const times = Float64Array.from(ackMs);
  parentPort!.postMessage(
    {
      type: "failover-done",
      attempted: sent,
      ackedSequences: sequences,
      ackMs: times,
      failedAttempts,
      retriedMsgs,
      gaveUp,
      duplicateAcks,
      errorKinds,
      firstError,
    } satisfies PersistentReport,
    [sequences.buffer, times.buffer],
  );
}

if (!isMainThread) {
  const job = workerData as PersistentJob;
  const role = job.role === "pub" ? publisher : job.role === "sub" ? subscriber : failoverPublisher;
  role(job).catch((error: unknown) => {
    parentPort!.postMessage({
      type: "error",
      error: String((error as Error)?.stack ?? error),
    } satisfies PersistentReport);
  });
}
