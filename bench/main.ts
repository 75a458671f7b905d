// `npm run bench`: Neuron against NATS in the same run, side by side.
//
//   node bench/main.ts                      # everything, 3 rounds (about 6 minutes)
//   node bench/main.ts --quick              # 1 short round (about 1.5 minutes)
//   node bench/main.ts --only tput --runs 5 # ids or parts of ids: tls, quic, nats, tput, lat, r3, failover
//   node bench/main.ts --out results.jsonl  # JSON lines into a file (the table goes to stdout)
//   node bench/main.ts --help
//
// Scenarios, 1 publisher -> 1 subscriber, 128-byte payloads, each client in its own worker
// thread (worker.ts has the method): `*-tput` the delivered msgs/s with an end-to-end window;
// `*-lat` latency percentiles at a fixed 20k msgs/s paced every 1 ms. Neuron runs through a
// real router process (`neuron router`) over TLS and QUIC; NATS through a nats-server the
// bench starts on a free port (if it is installed). Persistent scenarios, 3 replicas
// (persistent.ts has the method): `*-r3` acks/s and ack latency with 256 publishes in flight,
// a subscriber's delivered msgs/s meanwhile, ack latency one at a time; `*-failover` kill -9 of
// the leader under a steady 5k msgs/s: the longest gap between acks, and no acked message lost.
// Neuron runs a region of three routers (TLS clients), NATS a JetStream R3 cluster of three.
//
// Invariants: the servers start once and each system first gets an unrecorded 1 s warm-up
// run (a long-running router is JIT-compiled); scenarios of one kind run back to back, in an
// order that rotates each round, and a ratio is the median of the ratios within rounds, so
// NATS and Neuron are compared on the same machine at the same moment; every run first waits
// (bounded) for a quiet machine, and a run during which neighbours used more than
// --max-other-cores is repeated once (within --budget). Every process started is stopped by
// PID at the end, on error and on Ctrl-C.
// Output: progress and the table on stderr, one JSON line per scenario on stdout; with --out
// the JSON lines go to the file and the table to stdout.
// Trap: timing is never asserted anywhere; the numbers are only as good as the machine's quiet.
import { appendFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { type NatsCluster, type Region, startNatsCluster, startRegion } from "./clusters.ts";
import { cpuMeter, median, round2, summariseLatency, waitQuiet } from "./measure.ts";
import {
  type PersistentOptions,
  persistentRatioKeys,
  persistentRows,
  runFailover,
  runR3,
} from "./persistent.ts";
import {
  findNatsServer,
  type NatsProcess,
  type RouterProcess,
  runningPids,
  startNats,
  startRouter,
  stopAll,
  stopAllNow,
} from "./servers.ts";
import { control, controlSlots, type WorkerJob, type WorkerReport } from "./worker.ts";

const help = `Usage: npm run bench -- [options]      (or: node bench/main.ts [options])

Neuron (router process, TLS and QUIC) against NATS core (nats-server), 1 pub -> 1 sub; and
Neuron (a region of 3 routers, persistent topic) against NATS JetStream (3 servers, R3 file stream).
Scenarios: tls-tput tls-lat quic-tput quic-lat nats-tput nats-lat
           tls-r3 nats-r3 tls-failover nats-failover

Options (defaults in brackets):
  --quick              one short round: 300k msgs, 3 s latency runs, short persistent runs, short waits
  --only LIST          scenarios to run: ids or parts of ids, comma-separated (e.g. tput,nats-lat,r3)
  --runs N             rounds; each scenario's figures are the median over its runs [3]
  --out FILE           append the JSON lines to FILE instead of stdout
  --msgs N             throughput run: messages at most [1000000]
  --max-secs S         throughput run: time cap [5]
  --window N           throughput run: end-to-end window, messages [20000]
  --rate N             latency run: msgs/s [20000]
  --lat-secs S         latency run: duration [6]
  --warmup N           latency run: first messages not counted [2000]
  --size N             payload bytes [128]
  --r3-window N        r3: publishes in flight [256]
  --r3-msgs N          r3: messages at most in the windowed part [200000]
  --r3-secs S          r3: time cap of the windowed part [3; quick 1.5]
  --r3-sync-msgs N     r3: one-at-a-time publishes at most [2000; quick 500]
  --r3-sync-secs S     r3: time cap of the one-at-a-time part [1.5; quick 1]
  --r3-warmup N        r3: unmeasured publishes first [2000]
  --fo-rate N          failover: publishes per second [5000]
  --fo-inflight N      failover: publishes in flight at most [2000]
  --fo-warm-secs S     failover: load before the kill [2; quick 1]
  --fo-after-secs S    failover: acks keeping pace this long ends the run [1.5; quick 1]
  --fo-max-secs S      failover: the run ends at most this long after the kill [25; quick 20]
  --quiet-wait S       before each run, wait at most S s for a quiet machine [5]
  --budget S           past S s of running, no more waiting or repeating noisy runs
                       [100; +60 each with r3 or failover; quick 30, +20]
  --max-other-cores C  discard a run whose neighbours used more than C cores [0.25]
  --router-flags=".."  Node flags for the router process (e.g. --router-flags="--cpu-prof --trace-gc")
  --router-log FILE    append the router's output (its log, --trace-gc lines) to FILE
`;

interface Options {
  readonly runs: number;
  readonly only: readonly string[] | undefined;
  readonly out: string | undefined;
  readonly msgs: number;
  readonly maxSecs: number;
  readonly window: number;
  readonly rate: number;
  readonly latSecs: number;
  readonly warmup: number;
  readonly size: number;
  readonly quietWaitS: number;
  /** undefined: the default, which depends on the scenarios chosen (see the help). */
  readonly budgetS: number | undefined;
  readonly quick: boolean;
  readonly maxOtherCores: number;
  readonly routerFlags: readonly string[];
  readonly routerLog: string | undefined;
  readonly warmupSecs: number;
  readonly persistent: PersistentOptions;
}

class UsageError extends Error {}

const optionSpec = {
  help: { type: "boolean", short: "h" },
  quick: { type: "boolean" },
  only: { type: "string" },
  runs: { type: "string" },
  out: { type: "string" },
  msgs: { type: "string" },
  "max-secs": { type: "string" },
  window: { type: "string" },
  rate: { type: "string" },
  "lat-secs": { type: "string" },
  warmup: { type: "string" },
  size: { type: "string" },
  "quiet-wait": { type: "string" },
  budget: { type: "string" },
  "max-other-cores": { type: "string" },
  "router-flags": { type: "string" },
  "router-log": { type: "string" },
  "r3-window": { type: "string" },
  "r3-msgs": { type: "string" },
  "r3-secs": { type: "string" },
  "r3-sync-msgs": { type: "string" },
  "r3-sync-secs": { type: "string" },
  "r3-warmup": { type: "string" },
  "fo-rate": { type: "string" },
  "fo-inflight": { type: "string" },
  "fo-warm-secs": { type: "string" },
  "fo-after-secs": { type: "string" },
  "fo-max-secs": { type: "string" },
} as const;

function options(argv: readonly string[]): Options | undefined {
  let values: ReturnType<typeof parseArgs<{ options: typeof optionSpec }>>["values"];
  try {
    values = parseArgs({ args: [...argv], strict: true, options: optionSpec }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help === true) return undefined;
  const quick = values.quick === true;
  const number = (name: keyof typeof values, fallback: number, min: number, max: number): number => {
    const text = values[name];
    if (text === undefined) return fallback;
    const value = Number(text);
    if (typeof text !== "string" || !Number.isFinite(value) || value < min || value > max) {
      throw new UsageError(`--${name} must be a number from ${min} to ${max}, got ${JSON.stringify(text)}`);
    }
    return value;
  };
  const size = number("size", 128, 12, 1024 * 1024);
  return {
    quick,
    runs: number("runs", quick ? 1 : 3, 1, 50),
    only: values.only
      ?.split(",")
      .map((part) => part.trim())
      .filter((part) => part !== ""),
    out: values.out,
    msgs: number("msgs", quick ? 300_000 : 1_000_000, 1000, 100_000_000),
    maxSecs: number("max-secs", quick ? 3 : 5, 0.5, 600),
    window: number("window", 20_000, 1, 10_000_000),
    rate: number("rate", 20_000, 1, 10_000_000),
    latSecs: number("lat-secs", quick ? 3 : 6, 0.5, 600),
    warmup: number("warmup", 2000, 0, 10_000_000),
    size,
    quietWaitS: number("quiet-wait", quick ? 3 : 5, 0, 600),
    budgetS: values.budget === undefined ? undefined : number("budget", 0, 0, 86_400),
    maxOtherCores: number("max-other-cores", 0.25, 0, 64),
    routerFlags: (values["router-flags"] ?? "").split(/\s+/).filter((flag) => flag !== ""),
    routerLog: values["router-log"],
    warmupSecs: quick ? 0.5 : 1,
    persistent: {
      size,
      r3Window: number("r3-window", 256, 1, 100_000),
      r3Msgs: number("r3-msgs", 200_000, 100, 10_000_000),
      r3Secs: number("r3-secs", quick ? 1.5 : 3, 0.2, 600),
      r3SyncMsgs: number("r3-sync-msgs", quick ? 500 : 2000, 1, 1_000_000),
      r3SyncSecs: number("r3-sync-secs", quick ? 1 : 1.5, 0.1, 600),
      r3Warmup: number("r3-warmup", 2000, 0, 1_000_000),
      foRate: number("fo-rate", 5000, 1, 1_000_000),
      foInflight: number("fo-inflight", 2000, 1, 1_000_000),
      foWarmSecs: number("fo-warm-secs", quick ? 1 : 2, 0.1, 600),
      foAfterSecs: number("fo-after-secs", quick ? 1 : 1.5, 0.1, 600),
      foMaxSecs: number("fo-max-secs", quick ? 20 : 25, 1, 600),
      foAckTimeoutMs: 1000,
    },
  };
}

type System = "nats" | "tls" | "quic";
type Mode = "tput" | "lat" | "r3" | "failover";
const modes: readonly Mode[] = ["tput", "lat", "r3", "failover"];
/** Persistent modes run on the 3-node clusters, Neuron over TLS only. */
const isPersistent = (mode: Mode) => mode === "r3" || mode === "failover";
const systemsOf = (mode: Mode): readonly System[] =>
  isPersistent(mode) ? ["nats", "tls"] : ["nats", "tls", "quic"];
const describe: Record<Mode, string> = {
  tput: "1 pub -> 1 sub, max delivered msgs/s, end-to-end window",
  lat: "1 pub -> 1 sub, latency at a fixed rate, paced every 1 ms",
  r3: "persistent, 3 replicas: acks/s and ack latency with a window in flight, a subscriber meanwhile; ack latency one at a time",
  failover:
    "persistent, 3 replicas: kill -9 of the leader under a steady paced load; longest ack gap, acked msgs lost",
};

type Run = Record<string, number | undefined>;

const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Targets {
  readonly router: RouterProcess | undefined;
  readonly nats: NatsProcess | undefined;
  readonly region: Region | undefined;
  readonly natsCluster: NatsCluster | undefined;
}

/** One run of any scenario. */
function runScenario(system: System, mode: Mode, o: Options, targets: Targets): Promise<Run> {
  if (mode === "tput" || mode === "lat") return runOnce(system, mode, o, targets);
  const cluster = system === "nats" ? targets.natsCluster! : targets.region!;
  const run = mode === "r3" ? runR3 : runFailover;
  return run(system === "nats" ? "nats" : "neuron", cluster, o.persistent);
}

/** Starts a worker for `job`; `ready` and `done` reject on the worker's error or exit. */
function startWorker(job: WorkerJob) {
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { workerData: job });
  const ready = Promise.withResolvers<void>();
  const done = Promise.withResolvers<WorkerReport>();
  ready.promise.catch(() => {});
  done.promise.catch(() => {});
  const fail = (error: Error) => {
    ready.reject(error);
    done.reject(error);
  };
  worker.on("message", (report: WorkerReport) => {
    if (report.type === "ready") ready.resolve();
    else if (report.type === "error") fail(new Error(`${job.system} ${job.role} worker: ${report.error}`));
    else done.resolve(report);
  });
  worker.on("error", fail);
  worker.on("exit", (code) => fail(new Error(`${job.system} ${job.role} worker exited (${code})`)));
  return {
    worker,
    ready: within(ready.promise, 30_000, `${job.system} ${job.role} worker to connect`),
    done: (timeoutMs: number) =>
      within(done.promise, timeoutMs, `${job.system} ${job.role} worker to finish`),
  };
}

/** `promise`, or a rejection after `timeoutMs`: a stuck client must not hang the bench. */
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

/** One run of one scenario: a subscriber, then a publisher, then the figures. */
async function runOnce(
  system: System,
  mode: "tput" | "lat",
  o: Options,
  targets: Targets,
  overrides: { count?: number; maxSecs?: number } = {},
): Promise<Run> {
  const shared = new SharedArrayBuffer(controlSlots * 4);
  const counters = new Int32Array(shared);
  const planned = mode === "lat" ? Math.round(o.rate * o.latSecs) : (overrides.count ?? o.msgs);
  Atomics.store(counters, control.expect, planned);
  const serverPid = system === "nats" ? targets.nats!.pid : targets.router!.pid;
  const otherServers = [targets.router?.pid, targets.nats?.pid].filter(
    (pid): pid is number => pid !== undefined && pid !== serverPid,
  );
  const base: Omit<WorkerJob, "role"> = {
    system: system === "nats" ? "nats" : "neuron",
    mode,
    control: shared,
    topic: `bench.${system}.${mode}.${Date.now().toString(36)}`,
    size: o.size,
    address:
      system === "nats"
        ? targets.nats!.url
        : system === "quic"
          ? targets.router!.clientsQuic!
          : targets.router!.clients,
    transport: system === "quic" ? "quic" : "tls",
    ...(system === "nats" ? {} : { credentials: targets.router!.clientCredentials }),
    count: planned,
    maxSecs: overrides.maxSecs ?? o.maxSecs,
    window: o.window,
    batch: 1000,
    rate: o.rate,
    secs: o.latSecs,
    warmup: o.warmup,
  };
  const sub = startWorker({ ...base, role: "sub" });
  let pub: ReturnType<typeof startWorker> | undefined;
  try {
    await sub.ready;
    pub = startWorker({ ...base, role: "pub" });
    await pub.ready;
    // Measured from here: both clients are loaded and connected.
    const meter = cpuMeter(serverPid, otherServers);
    Atomics.store(counters, control.go, 1);
    const runSecs = mode === "lat" ? o.latSecs : (overrides.maxSecs ?? o.maxSecs);
    const published = (await pub.done(runSecs * 1000 + 60_000)) as Extract<
      WorkerReport,
      { type: "pub-done" }
    >;
    const graceEnd = performance.now() + 5000;
    while (Atomics.load(counters, control.delivered) < published.published && performance.now() < graceEnd) {
      await sleep(5);
    }
    Atomics.store(counters, control.stop, 1);
    const received = (await sub.done(30_000)) as Extract<WorkerReport, { type: "sub-done" }>;
    const cpu = meter();
    const secs = Number(received.lastNs - published.t0Ns) / 1e9;
    const delivered = received.total;
    const run: Run = {
      published: published.published,
      delivered,
      lost: published.published - delivered,
      errors: Atomics.load(counters, control.errors),
      delivered_msgs_per_s: Math.round(delivered / secs),
      pub_msgs_per_s: Math.round(published.published / (Number(published.tEndNs - published.t0Ns) / 1e9)),
      secs: round2(secs),
      ...cpu,
      server_us_per_msg: delivered > 0 ? round2((cpu.server_cpu_s * 1e6) / delivered) : undefined,
      client_us_per_msg: delivered > 0 ? round2((cpu.client_cpu_s * 1e6) / delivered) : undefined,
      pub_gc_count: published.gc.count,
      pub_gc_ms: published.gc.totalMs,
      pub_gc_max_ms: published.gc.maxMs,
      sub_gc_count: received.gc.count,
      sub_gc_ms: received.gc.totalMs,
      sub_gc_max_ms: received.gc.maxMs,
    };
    if (received.latencies !== undefined) {
      const summary = summariseLatency(received.latencies);
      Object.assign(run, summary, { target_rate: o.rate });
      if (summary.lat_p50_us !== undefined && summary.lat_p999_us !== undefined) {
        run.p999_over_p50 = round2(summary.lat_p999_us / summary.lat_p50_us);
      }
    }
    return run;
  } finally {
    Atomics.store(counters, control.stop, 1);
    await Promise.all([sub.worker.terminate(), pub?.worker.terminate()]);
  }
}

interface ScenarioResult {
  readonly id: string;
  readonly system: System;
  readonly mode: Mode;
  readonly runs: Run[];
  readonly discarded: Run[];
  readonly failures: string[];
}

function summarise(result: ScenarioResult, targets: Targets): Record<string, unknown> {
  const medians: Record<string, number | undefined> = {};
  const keys = new Set(result.runs.flatMap((run) => Object.keys(run)));
  keys.delete("round");
  for (const key of keys) {
    const values = result.runs.map((run) => run[key]).filter((value): value is number => value !== undefined);
    const value = median(values);
    medians[key] = value === undefined ? undefined : Math.round(value * 1000) / 1000;
  }
  return {
    scenario: result.id,
    system: result.system === "nats" ? "nats" : "neuron",
    transport: result.system === "nats" ? "tcp" : result.system,
    desc: describe[result.mode],
    runs: result.runs.length,
    ...medians,
    per_run: result.runs,
    ...(result.discarded.length > 0 ? { discarded_noisy_runs: result.discarded } : {}),
    ...(result.failures.length > 0 ? { failures: result.failures } : {}),
    server: isPersistent(result.mode)
      ? result.system === "nats"
        ? `nats-server ${targets.natsCluster?.version} x3, JetStream R3 file stream`
        : "neuron router x3, persistent topic (3 replicas)"
      : result.system === "nats"
        ? `nats-server ${targets.nats?.version}`
        : "neuron router",
    node: process.version,
    when: new Date().toISOString(),
    loadavg1: round2(os.loadavg()[0]!),
  };
}

function selected(o: Options): { system: System; mode: Mode; id: string }[] {
  const all = (["nats", "tls", "quic"] as const).flatMap((system) =>
    modes
      .filter((mode) => systemsOf(mode).includes(system))
      .map((mode) => ({ system, mode, id: `${system}-${mode}` })),
  );
  if (o.only === undefined) return all;
  for (const part of o.only) {
    if (!all.some(({ id }) => id === part || id.split("-").includes(part))) {
      throw new UsageError(
        `--only ${part}: no such scenario; scenarios: ${all.map(({ id }) => id).join(" ")}`,
      );
    }
  }
  return all.filter(({ id }) => o.only!.some((part) => id === part || id.split("-").includes(part)));
}

// --- the table ------------------------------------------------------------------------------

const format = (value: unknown, unit = ""): string => {
  if (typeof value !== "number") return "-";
  const text = value >= 100 ? Math.round(value).toLocaleString("en-US") : String(round2(value));
  return `${text}${unit}`;
};

/**
 * Neuron / NATS for one figure: the median of the ratios of runs in the same round (the two
 * ran back to back, on the same machine), or of the medians when no round has both.
 */
function ratio(
  results: Map<string, Record<string, unknown>>,
  system: System,
  mode: Mode,
  key: string,
): number | undefined {
  const runs = (id: string) => (results.get(id)?.per_run ?? []) as Run[];
  const nats = new Map(runs(`nats-${mode}`).map((run) => [run.round, run[key]]));
  const paired = runs(`${system}-${mode}`).flatMap((run) => {
    const base = nats.get(run.round);
    const value = run[key];
    return base !== undefined && value !== undefined && base > 0 ? [value / base] : [];
  });
  if (paired.length > 0) return median(paired);
  const value = results.get(`${system}-${mode}`)?.[key];
  const base = results.get(`nats-${mode}`)?.[key];
  return typeof value === "number" && typeof base === "number" && base > 0 ? value / base : undefined;
}

const ratioKeys: Record<Mode, readonly string[]> = {
  tput: ["delivered_msgs_per_s", "server_us_per_msg", "client_us_per_msg"],
  lat: ["lat_p50_us", "lat_p99_us", "lat_p999_us", "lat_max_us"],
  ...persistentRatioKeys,
};
const roundRatio = (value: number | undefined) =>
  value === undefined ? undefined : Math.round(value * 1000) / 1000;

interface Row {
  readonly label: string;
  readonly mode: Mode;
  readonly key: string;
  readonly unit: string;
  /** Whether a higher figure is better (for "ok"); undefined: no ratio. */
  readonly higherIsBetter: boolean | undefined;
}

/** The tables of the modes that ran: core (NATS, TLS, QUIC) and persistent (NATS, TLS). */
function table(results: Map<string, Record<string, unknown>>, o: Options): string {
  const ran = (mode: Mode) =>
    [...results.values()].some(
      (line) =>
        line.scenario === `nats-${mode}` ||
        line.scenario === `tls-${mode}` ||
        line.scenario === `quic-${mode}`,
    );
  const coreRows: Row[] = [
    {
      label: "1->1 delivered msgs/s",
      mode: "tput",
      key: "delivered_msgs_per_s",
      unit: "",
      higherIsBetter: true,
    },
    { label: "  server CPU us/msg", mode: "tput", key: "server_us_per_msg", unit: "", higherIsBetter: false },
    { label: "  client CPU us/msg", mode: "tput", key: "client_us_per_msg", unit: "", higherIsBetter: false },
    {
      label: `latency p50 @${format(o.rate)}/s`,
      mode: "lat",
      key: "lat_p50_us",
      unit: " us",
      higherIsBetter: false,
    },
    { label: "latency p99", mode: "lat", key: "lat_p99_us", unit: " us", higherIsBetter: false },
    { label: "latency p99.9", mode: "lat", key: "lat_p999_us", unit: " us", higherIsBetter: false },
    { label: "latency max", mode: "lat", key: "lat_max_us", unit: " us", higherIsBetter: false },
    {
      label: "p99.9 / p50 (flat: <= 5)",
      mode: "lat",
      key: "p999_over_p50",
      unit: "",
      higherIsBetter: undefined,
    },
  ];
  const tables: string[] = [];
  if (ran("tput") || ran("lat")) {
    const header = ["", "NATS", "Neuron TLS", "TLS/NATS", "Neuron QUIC", "QUIC/NATS"];
    tables.push(
      renderTable(
        results,
        header,
        ["tls", "quic"],
        coreRows.filter((row) => ran(row.mode)),
      ),
    );
  }
  if (ran("r3") || ran("failover")) {
    const header = ["persistent, 3 replicas", "NATS JS R3", "Neuron R3", "Neuron/NATS"];
    tables.push(
      renderTable(
        results,
        header,
        ["tls"],
        persistentRows.filter((row) => ran(row.mode)),
      ),
    );
  }
  const runsNote = [...results.values()].map((line) => `${line.scenario} ${line.runs}`).join(", ");
  return [
    ...tables,
    `Medians over runs (${runsNote}). Ratio = Neuron / NATS, the median of the ratios of runs in the same round;`,
    `"ok" marks the goal met (throughput >= 1x, latency <= 1x).`,
  ].join("\n");
}

function renderTable(
  results: Map<string, Record<string, unknown>>,
  header: readonly string[],
  neuron: readonly System[],
  rows: readonly Row[],
): string {
  const get = (system: System, mode: Mode, key: string): number | undefined => {
    const value = results.get(`${system}-${mode}`)?.[key];
    return typeof value === "number" ? value : undefined;
  };
  const lines: string[][] = [[...header]];
  for (const row of rows) {
    const cells = [row.label, format(get("nats", row.mode, row.key), row.unit)];
    for (const system of neuron) {
      cells.push(format(get(system, row.mode, row.key), row.unit));
      const times = row.higherIsBetter === undefined ? undefined : ratio(results, system, row.mode, row.key);
      const meets = times === undefined ? "" : (row.higherIsBetter ? times >= 1 : times <= 1) ? " ok" : "";
      cells.push(times === undefined ? "-" : `${times.toFixed(2)}x${meets}`);
    }
    lines.push(cells);
  }
  const widths = header.map((_, column) => Math.max(...lines.map((line) => line[column]!.length)));
  const render = (line: string[]) =>
    `| ${line.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join(" | ")} |`;
  const rule = `|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`;
  return [render(lines[0]!), rule, ...lines.slice(1).map(render), ""].join("\n");
}

/** One run's figures in a progress line. */
function progress(mode: Mode, run: Run): string {
  switch (mode) {
    case "tput":
      return `${format(run.delivered_msgs_per_s)} msgs/s, server ${format(run.server_us_per_msg)} us/msg`;
    case "lat":
      return `p50 ${format(run.lat_p50_us)} p99 ${format(run.lat_p99_us)} p99.9 ${format(run.lat_p999_us)} us, server ${format(run.server_us_per_msg)} us/msg`;
    case "r3":
      return `${format(run.acked_msgs_per_s)} acks/s (p50 ${format(run.ack_lat_p50_us)} p99 ${format(run.ack_lat_p99_us)} us), 1 in flight p50 ${format(run.sync_ack_lat_p50_us)} p99 ${format(run.sync_ack_lat_p99_us)} us, sub ${format(run.sub_delivered_msgs_per_s)} msgs/s, servers ${format(run.server_us_per_msg)} us/msg`;
    case "failover":
      return `longest ack gap ${format(run.max_ack_gap_ms)} ms, acks resumed ${format(run.acks_resumed_after_kill_ms)} ms after the kill, ${format(run.acked)} acked, ${format(run.lost_acked)} lost, ${format(run.dup_stored)} stored twice`;
  }
}

// --- main -----------------------------------------------------------------------------------

async function main(): Promise<number> {
  const startedMs = performance.now();
  const o = options(process.argv.slice(2));
  if (o === undefined) {
    process.stdout.write(help);
    return 0;
  }
  let plan = selected(o);
  const natsPath = plan.some(({ system }) => system === "nats") ? findNatsServer() : undefined;
  if (plan.some(({ system }) => system === "nats") && natsPath === undefined) {
    log("nats-server is not installed, so NATS is left out. To compare, install it:");
    log("  apt-get install -y nats-server     (Debian/Ubuntu; or see https://docs.nats.io)");
    plan = plan.filter(({ system }) => system !== "nats");
  }
  if (plan.length === 0) throw new Error("nothing to run");
  if (o.out !== undefined) writeFileSync(o.out, "", { flag: "a" });

  const wantQuic = plan.some(({ system }) => system === "quic");
  const wantRouter = plan.some(({ system, mode }) => system !== "nats" && !isPersistent(mode));
  const wantNats = plan.some(({ system, mode }) => system === "nats" && !isPersistent(mode));
  const wantRegion = plan.some(({ system, mode }) => system !== "nats" && isPersistent(mode));
  const wantNatsCluster = plan.some(({ system, mode }) => system === "nats" && isPersistent(mode));
  let router: RouterProcess | undefined;
  if (wantRouter) {
    try {
      router = await startRouter({ quic: wantQuic, nodeFlags: o.routerFlags, logPath: o.routerLog });
    } catch (error) {
      if (!wantQuic) throw error;
      log(`router with QUIC did not start, QUIC is left out: ${(error as Error).message}`);
      plan = plan.filter(({ system }) => system !== "quic");
      router = await startRouter({ quic: false, nodeFlags: o.routerFlags, logPath: o.routerLog });
    }
    log(
      `# neuron router pid ${router.pid}: tls ${router.clients}${router.clientsQuic ? ` quic ${router.clientsQuic}` : ""}`,
    );
  }
  const nats = wantNats && natsPath !== undefined ? await startNats(natsPath) : undefined;
  if (nats !== undefined) log(`# nats-server ${nats.version} pid ${nats.pid}: ${nats.url}`);
  const region = wantRegion
    ? await startRegion({ nodeFlags: o.routerFlags, logPath: o.routerLog })
    : undefined;
  if (region !== undefined)
    log(
      `# neuron region: ${region.nodes.map((node) => `${node.id} pid ${node.process?.pid} tls ${node.clients}`).join(", ")}`,
    );
  const natsCluster =
    wantNatsCluster && natsPath !== undefined ? await startNatsCluster(natsPath) : undefined;
  if (natsCluster !== undefined)
    log(
      `# nats-server ${natsCluster.version} cluster: ${natsCluster.nodes.map((node) => `${node.id} pid ${node.process?.pid} ${node.clients}`).join(", ")}`,
    );
  const targets: Targets = { router, nats, region, natsCluster };

  // A short unrecorded run per system first: the router's JIT warms up as a long-running
  // server's would, and nats-server gets the same treatment; the clusters get a short r3 run.
  for (const system of new Set(plan.filter(({ mode }) => !isPersistent(mode)).map(({ system }) => system))) {
    await runOnce(system, "tput", o, targets, { count: 10_000_000, maxSecs: o.warmupSecs });
  }
  for (const system of new Set(plan.filter(({ mode }) => isPersistent(mode)).map(({ system }) => system))) {
    const short = { ...o.persistent, r3Secs: o.warmupSecs, r3SyncMsgs: 50, r3SyncSecs: 0.5 };
    await runR3(system === "nats" ? "nats" : "neuron", system === "nats" ? natsCluster! : region!, short);
  }

  // Waiting for quiet and repeating noisy runs stop once the budget is spent, so a busy
  // machine cannot stretch a run past a few minutes.
  const persistentModes = new Set(plan.filter(({ mode }) => isPersistent(mode)).map(({ mode }) => mode)).size;
  const budgetS = o.budgetS ?? (o.quick ? 30 + 20 * persistentModes : 100 + 60 * persistentModes);
  const budgetEnd = startedMs + budgetS * 1000;
  const results = new Map<string, ScenarioResult>();
  for (const { id, system, mode } of plan)
    results.set(id, { id, system, mode, runs: [], discarded: [], failures: [] });
  for (let round = 0; round < o.runs; round++) {
    for (const mode of modes) {
      const group = plan.filter((item) => item.mode === mode);
      // Rotate the order each round so no system always runs first (or right after another).
      const ordered = group.map((_, index) => group[(index + round) % group.length]!);
      for (const { id, system } of ordered) {
        const result = results.get(id)!;
        for (let attempt = 1; ; attempt++) {
          const spare = performance.now() < budgetEnd;
          const quiet =
            o.quietWaitS > 0 && spare ? await waitQuiet(0.3, o.quietWaitS, runningPids()) : undefined;
          let run: Run;
          try {
            run = { round: round + 1, ...(await runScenario(system, mode, o, targets)), ...quiet };
          } catch (error) {
            const message = (error as Error).message;
            const where = (error as Error).stack?.split("\n").slice(1, 4).join(" <");
            log(
              `# ${id} round ${round + 1}: FAILED: ${message}${where === undefined ? "" : ` (at ${where.trim()})`}`,
            );
            result.failures.push(message);
            break;
          }
          const otherCores = (run.other_cpu_s ?? 0) / Math.max(0.001, run.wall_s ?? 1);
          const noisy = otherCores > o.maxOtherCores;
          log(
            `# ${id} round ${round + 1}${attempt > 1 ? ` attempt ${attempt}` : ""}: ${progress(mode, run)}, neighbours ${otherCores.toFixed(2)} cores${noisy ? " (noisy)" : ""}`,
          );
          if (noisy && attempt < 2 && spare) {
            result.discarded.push(run);
            continue;
          }
          result.runs.push(run);
          break;
        }
      }
    }
  }

  const lines = new Map<string, Record<string, unknown>>();
  for (const result of results.values()) {
    if (result.runs.length > 0) lines.set(result.id, summarise(result, targets));
  }
  for (const result of results.values()) {
    const line = lines.get(result.id);
    if (line === undefined) continue;
    if (result.system !== "nats" && lines.has(`nats-${result.mode}`)) {
      const keys = ratioKeys[result.mode];
      line.ratio_to_nats = Object.fromEntries(
        keys.map((key) => [key, roundRatio(ratio(lines, result.system, result.mode, key))]),
      );
    }
    const text = `${JSON.stringify(line)}\n`;
    if (o.out === undefined) process.stdout.write(text);
    else appendFileSync(o.out, text);
  }
  const rendered = `\n${table(lines, o)}\n`;
  if (o.out === undefined) process.stderr.write(rendered);
  else process.stdout.write(rendered);
  const failed = [...results.values()].some((result) => result.failures.length > 0);
  return failed ? 1 : 0;
}

const interrupted = (signal: NodeJS.Signals, code: number) =>
  process.once(signal, () => {
    log(`\n${signal}: stopping the servers`);
    stopAllNow();
    process.exit(code);
  });
interrupted("SIGINT", 130);
interrupted("SIGTERM", 143);
process.once("exit", stopAllNow);

main().then(
  async (code) => {
    await stopAll();
    process.exitCode = code;
  },
  async (error: unknown) => {
    if (error instanceof UsageError) log(`bench: ${error.message} (see --help)`);
    else log(`bench: ${(error as Error)?.stack ?? String(error)}`);
    await stopAll();
    process.exitCode = error instanceof UsageError ? 2 : 1;
  },
);
