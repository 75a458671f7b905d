// Raft under the simulator: many seeds per run, each a cluster under a fault schedule, then
// the checkers (simulation.sim.ts). A failure prints the seed; replay it with
// `runRaftSimulation({ seed, ... })`. More seeds: `npm run sim:raft` (2,000), or RAFT_SIM_SEEDS=N npx vitest run src/raft/simulation.test.ts
import { describe, expect, test } from "vitest";
import {
  allFaults,
  diskSimStorage,
  memorySimStorage,
  type RaftSimulationOptions,
  runRaftSimulation,
} from "./simulation.sim.ts";

const seedCount = Number(process.env.RAFT_SIM_SEEDS ?? 100);
/** Room for the slowest seeds on a busy 2-core machine: ~0.2 s each, 2 s allowed. */
const timeoutMs = Math.max(600_000, seedCount * 2_000);

async function runSeeds(first: number, count: number, options: Omit<RaftSimulationOptions, "seed">) {
  const failures: string[] = [];
  let acknowledged = 0;
  for (let seed = first; seed < first + count; seed++) {
    try {
      const report = await runRaftSimulation({ ...options, seed });
      acknowledged += report.acknowledged;
      if (report.violations.length > 0)
        failures.push(...report.violations, `faults: ${report.faults.join("; ")}`);
    } catch (error) {
      failures.push(`seed ${seed} threw: ${(error as Error).stack}`);
    }
    if (failures.length > 0) break;
  }
  return { failures, acknowledged };
}

describe("Raft simulation", () => {
  test(
    `3 replicas, all faults, ${seedCount} seeds: one leader per term, no acknowledged entry lost, replicas agree, live after healing`,
    async () => {
      const { failures, acknowledged } = await runSeeds(1, seedCount, { storage: memorySimStorage });
      expect(failures).toEqual([]);
      expect(acknowledged).toBeGreaterThan(seedCount * 100);
    },
    timeoutMs,
  );

  test(
    `5 replicas, all faults, ${Math.ceil(seedCount / 2)} seeds`,
    async () => {
      const { failures } = await runSeeds(10_001, Math.ceil(seedCount / 2), {
        storage: memorySimStorage,
        routers: 5,
        replicas: 5,
      });
      expect(failures).toEqual([]);
    },
    timeoutMs,
  );

  test(
    "a router with 2,000 groups over 3 routers, crashes and partitions",
    async () => {
      const { failures, acknowledged } = await runSeeds(20_001, 2, {
        storage: memorySimStorage,
        groups: 2_000,
        proposalsPerSecond: 400,
        faults: { ...allFaults, loss: false, duplicates: false },
      });
      expect(failures).toEqual([]);
      expect(acknowledged).toBeGreaterThan(1_000);
    },
    timeoutMs,
  );

  test(
    `disk store on a simulated disk (torn writes, crashes mid-fsync, one corrupted replica), all faults, ${2 * seedCount} seeds`,
    async () => {
      // Twice the seeds: persist-before-send mistakes show only when a crash lands mid-fsync.
      const { failures, acknowledged } = await runSeeds(30_001, 2 * seedCount, { storage: diskSimStorage });
      expect(failures).toEqual([]);
      expect(acknowledged).toBeGreaterThan(seedCount * 100);
    },
    timeoutMs,
  );

  test(
    `replicas move between 5 routers (learner, promote, remove: thesis §4.1), all faults, ${seedCount} seeds on memory and disk stores`,
    async () => {
      const options = { routers: 5, replicas: 3, membershipChanges: true } as const;
      const memory = await runSeeds(40_001, seedCount / 2, { ...options, storage: memorySimStorage });
      expect(memory.failures).toEqual([]);
      const disk = await runSeeds(50_001, seedCount / 2, { ...options, storage: diskSimStorage });
      expect(disk.failures).toEqual([]);
    },
    timeoutMs,
  );

  test("the same seed replays the same run", async () => {
    const a = await runRaftSimulation({ seed: 42, storage: memorySimStorage });
    const b = await runRaftSimulation({ seed: 42, storage: memorySimStorage });
    expect(b).toEqual(a);
  });
});
