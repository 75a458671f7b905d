// Membership experiments on MembershipSimulation, shared by simulation.test.ts (CI sizes, many
// seeds, assertions) and bench/membership.ts (100 / 1,000 / 10,000 members, figures). Each
// experiment is one seeded run that returns raw samples; callers pool them over seeds and take
// quantiles (quantile() in event-log.sim.ts).
//
// Definitions (what the figures mean):
// - detection: a member crashes at t0; the sample is the time until every member still up has
//   marked it dead (the slowest observer, not the first).
// - dissemination: a new member joins through one random member at t0; the sample is the time
//   until every other member up has it as joined.
// - false positive: a member that was never crashed, paused or slowed (healthy) that some
//   member declared dead ("dead" event about it) during the fault window or after it, until
//   the longest suspicion timer started in the window has run out.
// Invariants: experiments draw their own choices (who crashes, who stalls) from a fork of the
// seed, so a run replays from (seed, options). Trap: every figure is virtual time; a caller
// that wants wall time measures it around the call.
import { SeededRandom, type SimNetworkConfig } from "../sim/index.ts";
import { defaultLanConfig, type MembershipConfig } from "./config.ts";
import { MembershipSimulation } from "./simulation.sim.ts";
import { suspicionTimeoutMs } from "./suspicion.ts";
import type { MemberId, ViewEventKind } from "./types.ts";

export interface ExperimentBase {
  readonly seed: number;
  readonly members: number;
  readonly config?: MembershipConfig;
  /** Virtual ms to run before any fault, so start-up gossip has settled. Default 3000. */
  readonly warmupMs?: number;
  /** Network delays and limits (MembershipSimulation's defaults: 1-5 ms one way, no loss). */
  readonly network?: Partial<SimNetworkConfig>;
}

function simulate(
  options: ExperimentBase,
  logKinds: readonly ViewEventKind[],
  config = options.config ?? defaultLanConfig,
): MembershipSimulation {
  return new MembershipSimulation({
    seed: options.seed,
    members: options.members,
    config,
    logKinds,
    ...(options.network === undefined ? {} : { network: options.network }),
  });
}

/** Distinct random picks of `count` indices in [0, n). */
function pick(random: SeededRandom, n: number, count: number): number[] {
  const chosen = new Set<number>();
  while (chosen.size < Math.min(count, n)) chosen.add(random.nextInt(n));
  return [...chosen];
}

export interface DetectionResult {
  /** ms from each crash until every member up marked it dead; undefined if some never did. */
  readonly detectMs: readonly (number | undefined)[];
  /** ms from each crash until the first member suspected it. */
  readonly firstSuspectMs: readonly (number | undefined)[];
  /** Members never crashed that some member declared dead (should be none without loss). */
  readonly falseDeaths: number;
}

interface Schedule {
  readonly count: number;
  readonly spacingMs: number;
  readonly limitMs: number;
}

/** Crashes `count` random members `spacingMs` apart, then waits for every member up to mark each dead. */
function crashAndWatch(sim: MembershipSimulation, random: SeededRandom, schedule: Schedule): DetectionResult {
  const startMs = sim.nowMs;
  const victims = pick(random, sim.members.length, schedule.count);
  const ids = victims.map((victim) => sim.members[victim]!.id);
  const crashedAt: number[] = [];
  for (const victim of victims) {
    sim.crash(victim);
    crashedAt.push(sim.nowMs);
    sim.run(schedule.spacingMs);
  }
  const seenAt = (k: number, observers: readonly number[]) =>
    sim.log.allSawAt(ids[k]!, "dead", observers, crashedAt[k]!);
  sim.runUntil(() => ids.every((_, k) => seenAt(k, sim.upIndices()) !== undefined), schedule.limitMs, 250);
  const observers = sim.upIndices();
  return {
    detectMs: ids.map((_, k) => {
      const atMs = seenAt(k, observers);
      return atMs === undefined ? undefined : atMs - crashedAt[k]!;
    }),
    firstSuspectMs: ids.map((id, k) => {
      const first = sim.log
        .about(id)
        .find((event) => event.kind === "suspect" && event.atMs >= crashedAt[k]!);
      return first === undefined ? undefined : first.atMs - crashedAt[k]!;
    }),
    falseDeaths: [...sim.log.subjectsWith("dead", startMs)].filter((id) => !ids.includes(id)).length,
  };
}

/**
 * Adds `count` members `spacingMs` apart, each joining through one random member up; returns,
 * for each, the ms until every member up that was there before had it as joined (a later
 * joiner learns it from its own join's push-pull), or undefined if not within the limit.
 */
function joinAndWatch(
  sim: MembershipSimulation,
  random: SeededRandom,
  schedule: Schedule,
): (number | undefined)[] {
  const joiners: number[] = [];
  const joinedAt: number[] = [];
  for (let k = 0; k < schedule.count; k++) {
    const up = sim.upIndices();
    const seed = up[random.nextInt(up.length)]!;
    const joiner = sim.add();
    joiners.push(joiner);
    joinedAt.push(sim.nowMs);
    sim.join(joiner, [seed]);
    sim.run(schedule.spacingMs);
  }
  const reachedAt = (k: number) =>
    sim.log.allSawAt(
      sim.members[joiners[k]!]!.id,
      "joined",
      sim.upIndices().filter((index) => index < joiners[k]!),
      joinedAt[k]!,
    );
  sim.runUntil(() => joiners.every((_, k) => reachedAt(k) !== undefined), schedule.limitMs, 100);
  return joiners.map((_, k) => {
    const atMs = reachedAt(k);
    return atMs === undefined ? undefined : atMs - joinedAt[k]!;
  });
}

type ScheduleOptions = { readonly spacingMs?: number; readonly limitMs?: number };
const scheduleOf = (count: number | undefined, options: ScheduleOptions): Schedule => ({
  count: count ?? 4,
  spacingMs: options.spacingMs ?? 1000,
  limitMs: options.limitMs ?? 60_000,
});

/**
 * Crashes `crashes` random members `spacingMs` apart (default 4, 1000 ms) and waits at most
 * `limitMs` (default 60 s) for every member up to mark each one dead.
 */
export function measureDetection(
  options: ExperimentBase & ScheduleOptions & { readonly crashes?: number },
): DetectionResult {
  const sim = simulate(options, ["dead", "suspect"]);
  sim.run(options.warmupMs ?? 3000);
  return crashAndWatch(
    sim,
    new SeededRandom(options.seed).fork("detection"),
    scheduleOf(options.crashes, options),
  );
}

export interface JoinResult {
  /** ms from each join until every member up that was there before had it as joined; undefined if not in time. */
  readonly disseminateMs: readonly (number | undefined)[];
}

/** Adds `joins` members (default 4) `spacingMs` apart (default 1000), each through one random member. */
export function measureJoin(
  options: ExperimentBase & ScheduleOptions & { readonly joins?: number },
): JoinResult {
  const sim = simulate(options, ["joined"]);
  sim.run(options.warmupMs ?? 3000);
  return {
    disseminateMs: joinAndWatch(
      sim,
      new SeededRandom(options.seed).fork("join"),
      scheduleOf(options.joins, options),
    ),
  };
}

export interface FalsePositiveOptions extends ExperimentBase {
  readonly lifeguard: boolean;
  /** Chance each datagram is lost during the window. */
  readonly loss: number;
  /** Members that stall (pause) over and over during the window (default 0). */
  readonly stalling?: number;
  /** Members slow all through the window: input reaches them `slowDelayMs` late (default 0). */
  readonly slow?: number;
  /** Default 200-1000 ms: past the probe timeout, often past the probe period. */
  readonly slowDelayMs?: readonly [number, number];
  /** Each stall lasts uniformly in this range, ms (default 500-2000: well past the probe timeout). */
  readonly stallMs?: readonly [number, number];
  /** Between stalls a stalling member runs for this long, ms (default 20-400). */
  readonly runMs?: readonly [number, number];
  /** Length of the fault window, ms (default 60 s). */
  readonly windowMs?: number;
  /** Keep suspicions in the log to count them (default true; too many at 10,000 members). */
  readonly logSuspicions?: boolean;
  /** How long to wait for one view again after the window, ms (default 60 s; 0 skips the check). */
  readonly recoveryLimitMs?: number;
}

export interface FalsePositiveResult {
  /** Healthy members that some member declared dead during the window. */
  readonly healthyDeclaredDead: number;
  /** "dead" events about healthy members (one per observer and declaration). */
  readonly deadEvents: number;
  /** "suspect" events about healthy members (undefined unless logSuspicions). */
  readonly suspectEvents: number | undefined;
  /** Stalling or slow members that were declared dead (expected: they were unresponsive). */
  readonly stallingDeclaredDead: number;
  /** Whether every member saw every member alive again after that (undefined: not checked). */
  readonly recovered: boolean | undefined;
  readonly healthy: number;
}

/** Healthy members declared dead under `loss` and `stalling` members, Lifeguard on or off. */
export function measureFalsePositives(options: FalsePositiveOptions): FalsePositiveResult {
  const config = { ...(options.config ?? defaultLanConfig), lifeguard: options.lifeguard };
  const logSuspicions = options.logSuspicions ?? true;
  const sim = simulate(options, logSuspicions ? ["dead", "suspect"] : ["dead"], config);
  const random = new SeededRandom(options.seed).fork("false-positives");
  sim.run(options.warmupMs ?? 3000);
  const startMs = sim.nowMs;
  const endMs = startMs + (options.windowMs ?? 60_000);
  const faulty = pick(random, options.members, (options.stalling ?? 0) + (options.slow ?? 0));
  const stalling = faulty.slice(0, options.stalling ?? 0);
  for (const index of faulty.slice(stalling.length))
    sim.slow(index, endMs - startMs, options.slowDelayMs ?? [200, 1000]);
  const [stallMin, stallMax] = options.stallMs ?? [500, 2000];
  const [runMin, runMax] = options.runMs ?? [20, 400];
  for (const index of stalling) {
    const stallAgain = () => {
      if (sim.nowMs >= endMs) return;
      const stallMs = Math.round(random.between(stallMin, stallMax));
      sim.pause(index, stallMs);
      sim.clock.schedule(stallMs + Math.round(random.between(runMin, runMax)), stallAgain);
    };
    sim.clock.schedule(random.between(0, runMax), stallAgain);
  }
  sim.setLoss(options.loss);
  sim.run(endMs - sim.nowMs);
  sim.setLoss(0);
  // A suspicion raised in the window may still end in a death after it: count until the
  // longest suspicion timer (Lifeguard's, unconfirmed) has run out, the same for both modes.
  const longestSuspicionMs =
    config.suspicionMaxTimeoutMult *
    suspicionTimeoutMs(config.suspicionMult, options.members, config.probeIntervalMs);
  sim.run(longestSuspicionMs + 1000);
  const settledMs = sim.nowMs;
  const stallingIds = new Set<MemberId>(faulty.map((index) => sim.members[index]!.id));
  let deadEvents = 0;
  let suspectEvents = 0;
  const healthyDead = new Set<MemberId>();
  let stallingDead = 0;
  for (const member of sim.members) {
    const events = sim.log
      .about(member.id)
      .filter((e) => e.atMs >= startMs && e.atMs < settledMs && e.observer !== member.index);
    const dead = events.filter((e) => e.kind === "dead").length;
    if (stallingIds.has(member.id)) {
      if (dead > 0) stallingDead++;
      continue;
    }
    deadEvents += dead;
    suspectEvents += events.filter((e) => e.kind === "suspect").length;
    if (dead > 0) healthyDead.add(member.id);
  }
  const everyone = sim.members.map((member) => member.index);
  const allAlive = new Map(everyone.map((index) => [index, "alive" as const]));
  const recoveryLimitMs = options.recoveryLimitMs ?? 60_000;
  const recovered =
    recoveryLimitMs === 0
      ? undefined
      : sim.runUntil(() => sim.agrees(everyone, allAlive), recoveryLimitMs, 1000);
  return {
    healthyDeclaredDead: healthyDead.size,
    deadEvents,
    suspectEvents: logSuspicions ? suspectEvents : undefined,
    stallingDeclaredDead: stallingDead,
    recovered,
    healthy: options.members - faulty.length,
  };
}

export interface SplitResult {
  /** ms from the split until each side saw itself alive and the other side dead; undefined if not in time. */
  readonly splitViewMs: number | undefined;
  /** ms from the heal until every member saw every member alive; undefined if not in time. */
  readonly healMs: number | undefined;
  /** Members that refuted at least once (raised their incarnation) to come back. */
  readonly refuted: number;
}

/** Splits the members into two random halves for `splitMs`, then heals. */
export function measureSplit(
  options: ExperimentBase & { readonly splitMs?: number; readonly limitMs?: number },
): SplitResult {
  const sim = simulate(options, []);
  const random = new SeededRandom(options.seed).fork("split");
  sim.run(options.warmupMs ?? 3000);
  const everyone = sim.members.map((member) => member.index);
  const sideA = new Set(pick(random, options.members, Math.floor(options.members / 2)));
  const a = everyone.filter((index) => sideA.has(index));
  const b = everyone.filter((index) => !sideA.has(index));
  const split = sim.partition(a, b);
  const splitAtMs = sim.nowMs;
  const viewOf = (side: ReadonlySet<number>) =>
    new Map(everyone.map((index) => [index, side.has(index) ? ("alive" as const) : ("dead" as const)]));
  const viewA = viewOf(sideA);
  const viewB = viewOf(new Set(b));
  // Each side needs one "dead" event per pair across before the full check can pass.
  const deadsNeeded = sim.log.total("dead") + 2 * a.length * b.length;
  const sided = () => sim.log.total("dead") >= deadsNeeded && sim.agrees(a, viewA) && sim.agrees(b, viewB);
  const splitOk = sim.runUntil(sided, options.limitMs ?? 60_000, 250);
  const splitViewMs = splitOk ? sim.nowMs - splitAtMs : undefined;
  sim.run(Math.max(0, splitAtMs + (options.splitMs ?? 20_000) - sim.nowMs));
  const incarnations = sim.members.map((member) => member.core.self().incarnation);
  sim.heal(split);
  const healAtMs = sim.nowMs;
  const allAlive = new Map(everyone.map((index) => [index, "alive" as const]));
  const joinsNeeded = sim.log.total("joined") + 2 * a.length * b.length;
  const healed = () => sim.log.total("joined") >= joinsNeeded && sim.agrees(everyone, allAlive);
  const healOk = sim.runUntil(healed, options.limitMs ?? 120_000, 500);
  return {
    splitViewMs,
    healMs: healOk ? sim.nowMs - healAtMs : undefined,
    refuted: sim.members.filter((member, index) => member.core.self().incarnation > incarnations[index]!)
      .length,
  };
}

export interface TrafficResult {
  /** Gossip datagrams each member sent per second (pings, acks, indirect probes, gossip). */
  readonly packetsPerMemberPerSecond: number;
  readonly bytesPerMemberPerSecond: number;
  /** Push-pull bytes (requests and replies) each member sent per second. */
  readonly pushPullBytesPerMemberPerSecond: number;
}

/** Steady-state traffic of a quiet cluster over `windowMs` (default 20 s) after the warm-up. */
export function measureTraffic(options: ExperimentBase & { readonly windowMs?: number }): TrafficResult {
  const sim = simulate(options, []);
  sim.run(options.warmupMs ?? 3000);
  const before = sim.totals();
  const windowMs = options.windowMs ?? 20_000;
  sim.run(windowMs);
  const after = sim.totals();
  const per = (delta: number) => delta / options.members / (windowMs / 1000);
  return {
    packetsPerMemberPerSecond: per(after.packetsOut - before.packetsOut),
    bytesPerMemberPerSecond: per(after.bytesOut - before.bytesOut),
    pushPullBytesPerMemberPerSecond: per(after.pushPullBytesOut - before.pushPullBytesOut),
  };
}

export interface ClusterResult extends TrafficResult, DetectionResult {
  readonly disseminateMs: readonly (number | undefined)[];
}

/**
 * The bench's run: one cluster measured in turn for steady traffic (`windowMs`, default 10 s),
 * crash detection (`crashes`, 1 s apart) and join dissemination (`joins`, 1 s apart), so a
 * 10,000-member cluster is built once. Same definitions as the separate experiments.
 */
export function measureCluster(
  options: ExperimentBase & {
    readonly windowMs?: number;
    readonly crashes?: number;
    readonly joins?: number;
    readonly limitMs?: number;
  },
): ClusterResult {
  const sim = simulate(options, ["dead", "suspect", "joined"]);
  const random = new SeededRandom(options.seed).fork("cluster");
  sim.run(options.warmupMs ?? 3000);
  const before = sim.totals();
  const windowMs = options.windowMs ?? 10_000;
  sim.run(windowMs);
  const after = sim.totals();
  const per = (delta: number) => delta / options.members / (windowMs / 1000);
  const detection = crashAndWatch(sim, random, scheduleOf(options.crashes, options));
  return {
    packetsPerMemberPerSecond: per(after.packetsOut - before.packetsOut),
    bytesPerMemberPerSecond: per(after.bytesOut - before.bytesOut),
    pushPullBytesPerMemberPerSecond: per(after.pushPullBytesOut - before.pushPullBytesOut),
    ...detection,
    disseminateMs: joinAndWatch(sim, random, scheduleOf(options.joins, options)),
  };
}
