// `npm run bench:membership` (node bench/membership.ts): the membership core (SWIM + Lifeguard)
// in the deterministic simulator at 100 / 1,000 / 10,000 members, LAN defaults, 1-5 ms one way.
//
//   node bench/membership.ts                  # 100, 1,000 and 10,000 members (see the table's wall column)
//   node bench/membership.ts --sizes 100,1000 # the sizes with the fault scenarios
//   node bench/membership.ts --seed 7 --json  # another base seed; JSON lines instead of the table
//
// Per size: crash detection (every live member marks the crashed one dead) and join
// dissemination (every member has the newcomer) as p50 / p99 over all samples of all seeds;
// healthy members declared dead under 10% datagram loss, and with 5 members slow (their input
// 0.5-3 s late, their timers on time), Lifeguard on vs off; gossip packets and
// bytes each member sends per second in a quiet cluster (core stats), plus push-pull bytes;
// and the wall time. Definitions are in src/membership/experiments.sim.ts.
// Invariants: every figure is virtual time except `wall`; a run is a pure function of the
// seeds, so the figures (not the wall times) replay exactly.
// Traps: 10,000 cores with full tables need ~6 GB of heap: the bench re-runs itself with
// --max-old-space-size when the heap limit is smaller. The fault scenarios stop at 1,000
// members (planFor says why).
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { getHeapStatistics } from "node:v8";
import { defaultLanConfig } from "../src/membership/config.ts";
import { quantile } from "../src/membership/event-log.sim.ts";
import { measureCluster, measureFalsePositives } from "../src/membership/experiments.sim.ts";

const usage = `usage: node bench/membership.ts [--sizes 100,1000,10000] [--seed N] [--json]`;
const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "100,1000,10000" },
    seed: { type: "string", default: "1" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const sizes = values.sizes.split(",").map(Number);
const baseSeed = Number(values.seed);
if (
  sizes.some((size) => !(Number.isInteger(size) && size >= 10 && size <= 20_000)) ||
  !Number.isSafeInteger(baseSeed)
) {
  console.error(usage);
  process.exit(2);
}

const heapNeededBytes = Math.max(...sizes) ** 2 * 80 + 2e9;
if (getHeapStatistics().heap_size_limit < heapNeededBytes && process.env.NEURON_BENCH_CHILD === undefined) {
  const heapMb = Math.ceil(heapNeededBytes / 2 ** 20);
  console.error(
    `re-running with --max-old-space-size=${heapMb} (the heap limit is too small for ${Math.max(...sizes)} members)`,
  );
  const child = spawnSync(
    process.execPath,
    [
      `--max-old-space-size=${heapMb}`,
      "--max-semi-space-size=64",
      import.meta.filename,
      ...process.argv.slice(2),
    ],
    { stdio: "inherit", env: { ...process.env, NEURON_BENCH_CHILD: "1" } },
  );
  process.exit(child.status ?? 1);
}

/** Slow members in the slow scenario, at every size: "a few". */
const slowMembers = 5;

interface Plan {
  readonly clusterSeeds: number;
  readonly crashes: number;
  readonly fpSeeds: number;
  readonly fpWindowMs: number;
  /** Whether to run the false-positive scenarios (loss, slow members), Lifeguard on and off. */
  readonly faults: boolean;
}
// Under 10% loss every member hears of every suspicion and refutation: the work grows as
// N^2 log N per simulated second. 1,000 members take ~3 s of wall time per simulated second;
// 10,000 took 7.5 minutes for 2 simulated seconds (24M gossip messages applied per simulated
// second), so the fault scenarios stop at 1,000.
const planFor = (members: number): Plan =>
  members <= 100
    ? { clusterSeeds: 10, crashes: 4, fpSeeds: 6, fpWindowMs: 30_000, faults: true }
    : members <= 1000
      ? { clusterSeeds: 3, crashes: 4, fpSeeds: 1, fpWindowMs: 30_000, faults: true }
      : { clusterSeeds: 1, crashes: 6, fpSeeds: 0, fpWindowMs: 0, faults: false };

const progress = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
const seconds = (ms: number) => (Number.isNaN(ms) ? "-" : `${(ms / 1000).toFixed(2)} s`);
const seedsOf = (count: number) => Array.from({ length: count }, (_, k) => baseSeed + k);

interface Row {
  readonly members: number;
  readonly detectP50Ms: number;
  readonly detectP99Ms: number;
  readonly detectSamples: number;
  readonly detectMissed: number;
  readonly joinP50Ms: number;
  readonly joinP99Ms: number;
  readonly joinSamples: number;
  readonly lossDead: readonly [number, number] | undefined;
  readonly slowDead: readonly [number, number] | undefined;
  readonly healthyRuns: number;
  readonly slowHealthyRuns: number;
  readonly packetsPerMemberPerSecond: number;
  readonly bytesPerMemberPerSecond: number;
  readonly pushPullBytesPerMemberPerSecond: number;
  readonly wallS: number;
  readonly seeds: string;
}

function measure(members: number): Row {
  const plan = planFor(members);
  const started = performance.now();
  const detect: number[] = [];
  const join: number[] = [];
  let missed = 0;
  const traffic = { packets: 0, bytes: 0, pushPull: 0 };
  const clusterSeeds = seedsOf(plan.clusterSeeds);
  for (const seed of clusterSeeds) {
    progress(`${members} members, seed ${seed}: traffic, ${plan.crashes} crashes, ${plan.crashes} joins`);
    const result = measureCluster({ seed, members, crashes: plan.crashes, joins: plan.crashes });
    if (result.falseDeaths > 0)
      throw new Error(`seed ${seed}: ${result.falseDeaths} healthy members declared dead without any fault`);
    for (const ms of result.detectMs)
      if (ms === undefined) missed++;
      else detect.push(ms);
    for (const ms of result.disseminateMs)
      if (ms === undefined) missed++;
      else join.push(ms);
    traffic.packets += result.packetsPerMemberPerSecond / clusterSeeds.length;
    traffic.bytes += result.bytesPerMemberPerSecond / clusterSeeds.length;
    traffic.pushPull += result.pushPullBytesPerMemberPerSecond / clusterSeeds.length;
  }
  const healthyDead = (scenario: "loss" | "slow", lifeguard: boolean) => {
    let total = 0;
    for (const seed of seedsOf(plan.fpSeeds)) {
      progress(
        `${members} members, seed ${seed}: ${scenario === "loss" ? "10% loss" : `${slowMembers} slow members`}, Lifeguard ${lifeguard ? "on" : "off"}`,
      );
      total += measureFalsePositives({
        seed,
        members,
        lifeguard,
        windowMs: plan.fpWindowMs,
        logSuspicions: false,
        recoveryLimitMs: 0,
        ...(scenario === "loss" ? { loss: 0.1 } : { loss: 0, slow: slowMembers, slowDelayMs: [500, 3000] }),
      }).healthyDeclaredDead;
    }
    return total;
  };
  const lossDead = plan.faults
    ? ([healthyDead("loss", true), healthyDead("loss", false)] as const)
    : undefined;
  const slowDead = plan.faults
    ? ([healthyDead("slow", true), healthyDead("slow", false)] as const)
    : undefined;
  return {
    members,
    detectP50Ms: quantile(detect, 0.5),
    detectP99Ms: quantile(detect, 0.99),
    detectSamples: detect.length,
    detectMissed: missed,
    joinP50Ms: quantile(join, 0.5),
    joinP99Ms: quantile(join, 0.99),
    joinSamples: join.length,
    lossDead,
    slowDead,
    healthyRuns: members * plan.fpSeeds,
    slowHealthyRuns: (members - slowMembers) * plan.fpSeeds,
    packetsPerMemberPerSecond: traffic.packets,
    bytesPerMemberPerSecond: traffic.bytes,
    pushPullBytesPerMemberPerSecond: traffic.pushPull,
    wallS: (performance.now() - started) / 1000,
    seeds:
      `cluster ${clusterSeeds[0]}-${clusterSeeds.at(-1)}` +
      (plan.faults
        ? `, faults ${baseSeed}-${baseSeed + plan.fpSeeds - 1} x ${plan.fpWindowMs / 1000} s`
        : ""),
  };
}

const rows: Row[] = [];
for (const members of sizes) {
  const row = measure(members);
  rows.push(row);
  if (values.json) console.log(JSON.stringify(row));
  progress(`${members} members done in ${row.wallS.toFixed(0)} s`);
}

if (!values.json) {
  const c = defaultLanConfig;
  console.log(
    `Membership in the simulator: LAN defaults (probe ${c.probeIntervalMs} ms, timeout ${c.probeTimeoutMs} ms, suspicion x${c.suspicionMult}, ` +
      `Lifeguard on unless said), datagrams 1-5 ms one way; p50 / p99 over every sample of every seed.\n`,
  );
  console.log(
    "| members | crash detection p50 / p99 | join dissemination p50 / p99 | healthy declared dead, 10% loss: Lifeguard on / off | healthy declared dead, 5 slow members: on / off | packets / member / s | bytes / member / s | push-pull bytes / member / s | wall |",
  );
  console.log("|---:|---|---|---|---|---:|---:|---:|---:|");
  for (const row of rows) {
    const slow =
      row.slowDead === undefined
        ? "not run"
        : `${row.slowDead[0]} / ${row.slowDead[1]} (of ${row.slowHealthyRuns})`;
    const missed = row.detectMissed > 0 ? `, ${row.detectMissed} missed` : "";
    console.log(
      `| ${row.members.toLocaleString("en")} | ${seconds(row.detectP50Ms)} / ${seconds(row.detectP99Ms)} (n=${row.detectSamples}${missed}) | ` +
        `${seconds(row.joinP50Ms)} / ${seconds(row.joinP99Ms)} (n=${row.joinSamples}) | ` +
        `${row.lossDead === undefined ? "not run" : `${row.lossDead[0]} / ${row.lossDead[1]} (of ${row.healthyRuns})`} | ${slow} | ` +
        `${row.packetsPerMemberPerSecond.toFixed(2)} | ${row.bytesPerMemberPerSecond.toFixed(0)} | ` +
        `${row.pushPullBytesPerMemberPerSecond.toFixed(0)} | ${row.wallS.toFixed(0)} s |`,
    );
  }
  console.log(`\nSeeds: ${rows.map((row) => `${row.members}: ${row.seeds}`).join("; ")}.`);
  if (rows.some((row) => row.lossDead === undefined)) {
    console.log(
      "Not run: the fault scenarios at 10,000 members (under 10% loss every member applies every " +
        "suspicion and refutation: ~24M gossip messages per simulated second, minutes of wall time each).",
    );
  }
}
