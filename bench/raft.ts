// `npm run bench:raft` (node bench/raft.ts): the Raft figures of the README.
//
// 1. Commits per second with fsync: three MultiRaft routers in this process, each on its own
//    disk store (real files, real fdatasync, group commit) in a temp dir, batches encoded and
//    decoded as on the wire and handed over on the next macrotask (no sockets: this measures
//    consensus and storage, not the links). A closed loop keeps `--inflight` proposals of
//    `--bytes` each outstanding, on one group, then spread over 1,000 groups.
// 2. Failover in the simulator: the router leading the most of 100 idle (quiesced) groups is
//    killed; time until each of its groups has a new leader, with the default timers.
// 3. 65,536 idle groups on 3 routers in the simulator: batches, bytes and CPU per second.
// 4. The disk store alone: entries/s with group commit, and the time to reopen (recover) it.
//
//   node bench/raft.ts                 # all three
//   node bench/raft.ts --seconds 5 --inflight 512 --bytes 256 --skip-idle
// Traps: the three routers share this machine's 2 cores and one disk, so commits/s is a floor
// for three separate machines. The idle experiment needs ~2 GB of heap and ~20 s to set up.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { systemClock, systemRandom } from "../src/ports/index.ts";
import { measureFailover, measureIdle } from "../src/raft/experiments.sim.ts";
import { decodeRaftBatch, defaultRaftConfig, encodeRaftBatch, MultiRaft } from "../src/raft/index.ts";
import { type DiskStore, nodeFileSystem, openDiskStore } from "../src/storage/index.ts";

const usage = "usage: node bench/raft.ts [--seconds N] [--inflight N] [--bytes N] [--skip-idle]";
const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    inflight: { type: "string", default: "1024" },
    bytes: { type: "string", default: "128" },
    "skip-idle": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const seconds = Number(values.seconds);
const inflight = Number(values.inflight);
const payloadBytes = Number(values.bytes);
if (![seconds, inflight, payloadBytes].every((value) => Number.isFinite(value) && value > 0)) {
  console.error(usage);
  process.exit(2);
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface CommitResult {
  readonly commitsPerSecond: number;
  readonly latencyMsP50: number;
  readonly latencyMsP99: number;
  readonly fsyncsPerSecond: number;
  readonly cpuPercent: number;
  /** Groups whose term moved during the load: elections nobody asked for (heartbeats starved). */
  readonly electionsUnderLoad: number;
}

async function measureCommits(groups: number): Promise<CommitResult> {
  const dir = await mkdtemp(join(tmpdir(), "neuron-raft-bench-"));
  const ids = ["r1", "r2", "r3"];
  const routers = new Map<string, MultiRaft>();
  const stores: DiskStore[] = [];
  try {
    for (const id of ids) {
      const { store } = await openDiskStore({ fs: nodeFileSystem, dir: join(dir, id) });
      stores.push(store);
      routers.set(
        id,
        new MultiRaft({
          id,
          store,
          clock: systemClock,
          random: systemRandom,
          config: defaultRaftConfig,
          configurationOf: () => ({ voters: ids, learners: [] }),
          transport: {
            send: (batch) => {
              const bytes = encodeRaftBatch(batch);
              setImmediate(() => {
                const decoded = decodeRaftBatch(bytes);
                if (decoded.ok) routers.get(batch.to)?.receive(decoded.batch);
              });
            },
          },
          stateMachine: { apply: () => {}, restore: () => {}, leadershipChanged: () => {} },
        }),
      );
    }
    for (const multi of routers.values()) multi.start();
    // Elect r1 everywhere: transfer each group's leadership to it once elected.
    const leaderOf = (group: number) => ids.find((id) => routers.get(id)!.group(group)?.role === "leader");
    const deadline = Date.now() + 30_000;
    for (;;) {
      let ready = 0;
      for (let group = 0; group < groups; group++) {
        const leader = leaderOf(group);
        if (leader === "r1") ready += 1;
        else if (leader !== undefined) routers.get(leader)!.transferLeadership(group, "r1");
      }
      if (ready === groups) break;
      if (Date.now() > deadline) throw new Error(`only ${ready} of ${groups} groups led by r1 after 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const leader = routers.get("r1")!;
    const termsBefore = Array.from({ length: groups }, (_, group) => leader.group(group)!.term);
    const payload = Buffer.alloc(payloadBytes, 7);
    const latencies: number[] = [];
    let commits = 0;
    let running = true;
    let next = 0;
    const syncsBefore = stores.reduce((sum, store) => sum + store.stats.flushes, 0);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const worker = async () => {
      while (running) {
        const group = next++ % groups;
        const sent = performance.now();
        try {
          await leader.propose(group, payload);
          commits += 1;
          latencies.push(performance.now() - sent);
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
    };
    const workers = Array.from({ length: inflight }, worker);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    running = false;
    const elapsed = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const syncs = stores.reduce((sum, store) => sum + store.stats.flushes, 0) - syncsBefore;
    await Promise.allSettled(workers);
    latencies.sort((a, b) => a - b);
    return {
      commitsPerSecond: commits / elapsed,
      latencyMsP50: quantile(latencies, 0.5),
      latencyMsP99: quantile(latencies, 0.99),
      fsyncsPerSecond: syncs / elapsed,
      cpuPercent: ((cpu.user + cpu.system) / 1e6 / elapsed) * 100,
      electionsUnderLoad: termsBefore.filter((term, group) => leader.group(group)!.term !== term).length,
    };
  } finally {
    for (const multi of routers.values()) multi.stop();
    for (const store of stores) await store.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}

const format = (value: number, digits = 0) =>
  value.toLocaleString("en-US", { maximumFractionDigits: digits });

/** The store alone: appends across 1,000 groups, 5,000 entries per sync; then reopen it. */
async function measureStore(entryBytes: number, totalEntries: number) {
  const dir = await mkdtemp(join(tmpdir(), "neuron-store-bench-"));
  try {
    const { store } = await openDiskStore({ fs: nodeFileSystem, dir });
    const data = Buffer.alloc(entryBytes, 3);
    const last = new Map<number, number>();
    const perSync = 5_000;
    const started = performance.now();
    for (let written = 0; written < totalEntries; written += perSync) {
      for (let i = 0; i < perSync; i++) {
        const group = (written + i) % 1_000;
        const index = (last.get(group) ?? 0) + 1;
        last.set(group, index);
        store.append(group, [{ index, term: 1, kind: "normal", data }]);
      }
      await store.sync();
    }
    const appendSeconds = (performance.now() - started) / 1000;
    await store.close();
    const reopenStarted = performance.now();
    const reopened = await openDiskStore({ fs: nodeFileSystem, dir });
    const recoverySeconds = (performance.now() - reopenStarted) / 1000;
    const recovered = reopened.store.groups().length;
    await reopened.store.close();
    return { entriesPerSecond: totalEntries / appendSeconds, recoverySeconds, recovered };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

console.log(
  "Disk store alone: 1,000 groups, 5,000 entries per sync (one write + one fdatasync), then reopen",
);
for (const entryBytes of [100, 1024]) {
  const result = await measureStore(entryBytes, 500_000);
  console.log(
    `  ${format(entryBytes).padStart(5)}-byte entries: ${format(result.entriesPerSecond).padStart(9)} entries/s` +
      ` (${format((result.entriesPerSecond * entryBytes) / 1e6)} MB/s);` +
      ` reopen of 500,000 entries in ${format(result.recoverySeconds * 1000)} ms (${result.recovered} groups)`,
  );
}

console.log(
  `Raft commits with fsync: 3 routers in one process, ${payloadBytes}-byte entries, ${inflight} in flight, ${seconds} s`,
);
for (const groups of [1, 1000]) {
  const result = await measureCommits(groups);
  console.log(
    `  ${format(groups).padStart(5)} group${groups === 1 ? " " : "s"}: ${format(result.commitsPerSecond).padStart(8)} commits/s` +
      `  p50 ${format(result.latencyMsP50, 1)} ms  p99 ${format(result.latencyMsP99, 1)} ms` +
      `  ${format(result.fsyncsPerSecond)} fsyncs/s (3 stores)  CPU ${format(result.cpuPercent)}%` +
      `  elections under load: ${result.electionsUnderLoad}`,
  );
}

console.log("Failover (simulator, default timers): kill the router leading the most of 100 idle groups");
for (const quiesce of [true, false]) {
  const samples: number[] = [];
  for (let seed = 1; seed <= 5; seed++)
    samples.push(...(await measureFailover(seed, 100, quiesce)).electionMs);
  samples.sort((a, b) => a - b);
  console.log(
    `  ${quiesce ? "quiesced groups " : "ticking groups  "}: new leader after p50 ${format(quantile(samples, 0.5))} ms` +
      `  p99 ${format(quantile(samples, 0.99))} ms  max ${format(samples.at(-1)!)} ms  (${samples.length} groups, 5 seeds)`,
  );
}

if (!values["skip-idle"]) {
  const idle = await measureIdle(1, 65_536);
  console.log(
    `Idle (simulator): ${format(idle.groups)} groups on 3 routers, ${format(idle.quiesced)} quiesced`,
  );
  console.log(
    `  per router: ${format(idle.batchesPerSecond, 1)} batches/s, ${format(idle.bytesPerSecond)} bytes/s;` +
      ` CPU for all three: ${format(idle.cpuMsPerSecond, 2)} ms per second`,
  );
}
