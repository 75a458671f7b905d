// The membership core in the deterministic simulator (issue 3, item 4): clusters of 100 and
// 1,000 cores on one SimClock and SimNetwork, many seeds per run, assertions on distributions
// (p50/p99 over every sample of every seed), not single runs. LAN defaults, 1-5 ms one way.
//
// Seeds: each test runs seeds base, base + 1, ... with base = NEURON_SIM_SEED (default 1). A
// failure names the seeds; `NEURON_SIM_SEED=<seed> npx vitest run src/membership/simulation.test.ts`
// replays from that one. Each test prints its figures (the README's membership figures come
// from bench/membership.ts, which runs the same experiments at 100 / 1,000 / 10,000).
// Budget: the whole file runs in well under 3 minutes on 2 cores; no real timers anywhere.
import { describe, expect, it } from "vitest";
import { quantile } from "./event-log.sim.ts";
import {
  type FalsePositiveOptions,
  type FalsePositiveResult,
  measureDetection,
  measureFalsePositives,
  measureJoin,
  measureSplit,
} from "./experiments.sim.ts";
import { MembershipSimulation } from "./simulation.sim.ts";

const baseSeed = Number(process.env.NEURON_SIM_SEED ?? 1);
const seedsFrom = (count: number) => Array.from({ length: count }, (_, k) => baseSeed + k);

/** Runs `run` for each seed; an exception names the seed that threw, for replay. */
function eachSeed<T>(seeds: readonly number[], run: (seed: number) => T): T[] {
  return seeds.map((seed) => {
    try {
      return run(seed);
    } catch (error) {
      throw new Error(`seed ${seed} (replay: NEURON_SIM_SEED=${seed}): ${(error as Error).message}`, {
        cause: error,
      });
    }
  });
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const defined = (values: readonly (number | undefined)[]) => values.filter((value) => value !== undefined);

describe("membership in the simulator: determinism and formation", () => {
  it("replays exactly from its seed, and another seed gives another run", () => {
    const fingerprint = (seed: number) => {
      const sim = new MembershipSimulation({ seed, members: 30 });
      sim.run(2000);
      sim.crash(3);
      sim.setLoss(0.05);
      sim.run(8000);
      const log = sim.members.flatMap((member) =>
        sim.log.about(member.id).map((event) => JSON.stringify(event)),
      );
      return { digest: sim.network.traceDigest, log: log.join("\n") };
    };
    const first = fingerprint(baseSeed);
    expect(fingerprint(baseSeed)).toEqual(first);
    expect(fingerprint(baseSeed + 1000).digest).not.toBe(first.digest);
  });

  it("100 members joining through one seed converge on one view, with no suspicion", () => {
    eachSeed(seedsFrom(3), (seed) => {
      const sim = new MembershipSimulation({ seed, members: 100, start: "join" });
      const everyone = sim.members.map((member) => member.index);
      const allAlive = new Map(everyone.map((index) => [index, "alive" as const]));
      expect(sim.runUntil(() => sim.agrees(everyone, allAlive), 30_000, 500)).toBe(true);
      expect(sim.log.total("suspect")).toBe(0);
    });
  });
});

describe("crash detection (every live member marks the crashed one dead)", () => {
  const cases = [
    { members: 100, seeds: 20, p50Ms: 4000, p99Ms: 6000 },
    { members: 1000, seeds: 3, p50Ms: 5500, p99Ms: 7500 },
  ];
  it.each(cases)("$members members x $seeds seeds: p50 < $p50Ms ms, p99 < $p99Ms ms", (c) => {
    const seeds = seedsFrom(c.seeds);
    const runs = eachSeed(seeds, (seed) => measureDetection({ seed, members: c.members }));
    const samples = runs.flatMap((run) => run.detectMs);
    const detected = defined(samples);
    const suspected = defined(runs.flatMap((run) => run.firstSuspectMs));
    console.log(
      `detection, ${c.members} members, ${detected.length} crashes over seeds ${seeds[0]}-${seeds.at(-1)}: ` +
        `p50 ${seconds(quantile(detected, 0.5))}, p99 ${seconds(quantile(detected, 0.99))}, ` +
        `max ${seconds(Math.max(...detected))}; first suspicion p50 ${seconds(quantile(suspected, 0.5))}`,
    );
    expect(detected.length, `crashes never detected by all (seeds ${seeds})`).toBe(samples.length);
    expect(quantile(detected, 0.5)).toBeLessThan(c.p50Ms);
    expect(quantile(detected, 0.99)).toBeLessThan(c.p99Ms);
    // With no loss and no stall, nobody healthy is ever declared dead.
    expect(runs.map((run) => run.falseDeaths)).toEqual(runs.map(() => 0));
  });
});

describe("join dissemination (every member learns a new member)", () => {
  const cases = [
    { members: 100, seeds: 20, p50Ms: 500, p99Ms: 1000 },
    { members: 1000, seeds: 3, p50Ms: 700, p99Ms: 1500 },
  ];
  it.each(cases)("$members members x $seeds seeds: p50 < $p50Ms ms, p99 < $p99Ms ms", (c) => {
    const seeds = seedsFrom(c.seeds);
    const samples = eachSeed(seeds, (seed) => measureJoin({ seed, members: c.members })).flatMap(
      (run) => run.disseminateMs,
    );
    const reached = defined(samples);
    console.log(
      `join, ${c.members} members, ${reached.length} joins over seeds ${seeds[0]}-${seeds.at(-1)}: ` +
        `p50 ${seconds(quantile(reached, 0.5))}, p99 ${seconds(quantile(reached, 0.99))}`,
    );
    expect(reached.length, `joins that never reached everyone (seeds ${seeds})`).toBe(samples.length);
    expect(quantile(reached, 0.5)).toBeLessThan(c.p50Ms);
    expect(quantile(reached, 0.99)).toBeLessThan(c.p99Ms);
  });
});

describe("false positives: healthy members declared dead, Lifeguard on vs off", () => {
  const members = 100;
  const seeds = seedsFrom(6);
  /** Runs `scenario` over the seeds with Lifeguard on and off; prints and returns the sums. */
  function compare(name: string, scenario: Omit<FalsePositiveOptions, "seed" | "members" | "lifeguard">) {
    const sum = (lifeguard: boolean) => {
      const runs = eachSeed(seeds, (seed) =>
        measureFalsePositives({ seed, members, lifeguard, ...scenario }),
      );
      const total = (key: keyof FalsePositiveResult) => runs.reduce((sum, run) => sum + Number(run[key]), 0);
      return {
        healthyDead: total("healthyDeclaredDead"),
        healthy: total("healthy"),
        deadEvents: total("deadEvents"),
        suspectEvents: total("suspectEvents"),
        recovered: runs.every((run) => run.recovered === true),
      };
    };
    const on = sum(true);
    const off = sum(false);
    const line = (label: string, r: typeof on) =>
      `${label}: ${r.healthyDead} of ${r.healthy} healthy declared dead (${r.deadEvents} dead events, ${r.suspectEvents} suspect events)`;
    console.log(
      `${name}, ${members} members, ${seeds.length} seeds x ${(scenario.windowMs ?? 60_000) / 1000} s: ` +
        `${line("Lifeguard on", on)}; ${line("off", off)}`,
    );
    // Whatever happened, the cluster heals once the faults stop: one view, everyone alive.
    expect(on.recovered && off.recovered, `not recovered (seeds ${seeds})`).toBe(true);
    return { on, off };
  }

  it("10% packet loss: almost nobody, either way", () => {
    const { on } = compare("10% loss", { loss: 0.1, windowMs: 30_000 });
    expect(on.healthyDead).toBeLessThanOrEqual(seeds.length);
  });

  it("a few members paused over and over, each pause 0.5-2 s (> the probe timeout): nobody healthy", () => {
    // On resume the overdue timer runs once (one step of the open probe: the indirect round),
    // then the member reads what queued up during the stall, the ack included: its probe ends
    // well, so a stall condemns nobody but the staller; with or without Lifeguard.
    const { on, off } = compare("5 members stalling", { loss: 0, stalling: 5, windowMs: 30_000 });
    expect(on.healthyDead).toBe(0);
    expect(off.healthyDead).toBeLessThanOrEqual(seeds.length);
  });

  it("a few slow members (input 0.5-3 s late, timers on time): Lifeguard declares 10x+ fewer healthy members dead", () => {
    const { on, off } = compare("5 slow members", {
      loss: 0,
      slow: 5,
      slowDelayMs: [500, 3000],
      windowMs: 30_000,
    });
    expect(
      off.healthyDead,
      `too few false positives without Lifeguard to compare (seeds ${seeds})`,
    ).toBeGreaterThanOrEqual(50);
    expect(off.healthyDead).toBeGreaterThanOrEqual(10 * Math.max(1, on.healthyDead));
  });
});

describe("faults: split, restart, pause", () => {
  it("a split into two halves: each side converges on its own view; after healing, one view again", () => {
    const seeds = seedsFrom(5);
    const runs = eachSeed(seeds, (seed) => measureSplit({ seed, members: 100, splitMs: 20_000 }));
    const split = defined(runs.map((run) => run.splitViewMs));
    const healed = defined(runs.map((run) => run.healMs));
    console.log(
      `split, 100 members, seeds ${seeds[0]}-${seeds.at(-1)}: sides converged in ${split.map(seconds).join(", ")}; ` +
        `healed in ${healed.map(seconds).join(", ")}; members that refuted: ${runs.map((run) => run.refuted).join(", ")}`,
    );
    expect(split.length, `a side never converged (seeds ${seeds})`).toBe(runs.length);
    expect(healed.length, `never one view again (seeds ${seeds})`).toBe(runs.length);
    expect(Math.max(...split)).toBeLessThan(20_000);
    expect(Math.max(...healed)).toBeLessThan(90_000);
    // Each side held the other dead at the same incarnation: coming back takes a refutation.
    for (const run of runs) expect(run.refuted).toBeGreaterThan(0);
  });

  it("a crashed member restarted at incarnation 0 outbids its death and is alive everywhere", () => {
    eachSeed(seedsFrom(3), (seed) => {
      const sim = new MembershipSimulation({ seed, members: 100 });
      sim.run(3000);
      sim.crash(42);
      const others = sim.upIndices();
      expect(
        sim.runUntil(() => others.every((index) => sim.stateOf(index, 42) === "dead"), 30_000, 250),
      ).toBe(true);
      sim.restart(42, [7]);
      const member = sim.members[42]!;
      expect(member.core.self().incarnation).toBe(0);
      const alive = new Map([[42, "alive" as const]]);
      expect(sim.runUntil(() => sim.agrees(others, alive), 30_000, 250)).toBe(true);
      expect(member.core.self().incarnation).toBeGreaterThan(0);
    });
  });

  it("a member paused past its suspicion timeout is declared dead, then refutes on resume", () => {
    eachSeed(seedsFrom(3), (seed) => {
      const sim = new MembershipSimulation({ seed, members: 100 });
      sim.run(3000);
      const pausedAt = sim.nowMs;
      sim.pause(5, 20_000);
      const others = sim.upIndices();
      expect(sim.runUntil(() => others.every((index) => sim.stateOf(index, 5) === "dead"), 20_000, 250)).toBe(
        true,
      );
      expect(sim.status(5)).toBe("paused");
      sim.run(pausedAt + 20_000 - sim.nowMs);
      expect(sim.status(5)).toBe("up");
      const everyone = sim.members.map((m) => m.index);
      const allAlive = new Map(everyone.map((index) => [index, "alive" as const]));
      expect(sim.runUntil(() => sim.agrees(everyone, allAlive), 30_000, 250)).toBe(true);
      expect(sim.members[5]!.core.stats().refutations).toBeGreaterThan(0);
    });
  });
});
