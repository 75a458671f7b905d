// The Raft simulator: routers running the production MultiRaft shell over a SimNetwork
// (datagrams: loss, duplication, reordering by delay, symmetric and one-way partitions,
// crashes) and a simulated store, on one SimClock, from one seed (STYLE.md, simulation;
// TigerBeetle's VOPR is the model). A fault schedule drawn from the seed runs for
// `faultMs`, then everything heals and the checkers run:
// - at most one leader per term per group;
// - every router applies each group's entries in index order, and any two routers agree on
//   the entry at every index (a committed entry is never lost or changed);
// - every acknowledged proposal is in that agreed log, with its data;
// - liveness: once healed, every group elects a leader and commits a new proposal within
//   `livenessBoundMs`, and all its live replicas apply it.
// A failure names the seed; `runRaftSimulation({ seed })` replays it exactly.
import { createHash } from "node:crypto";
import type { Clock, Timer } from "../ports/index.ts";
import { type DatagramSocket, SeededRandom, SimClock, SimNetwork } from "../sim/index.ts";
import type { Configuration, Entry, GroupId, LogStore, NodeId } from "../storage/index.ts";
import type { RaftBatch } from "./batch.ts";
import { decodeRaftBatch, encodeRaftBatch } from "./batch-codec.ts";
import { defaultRaftConfig, type RaftConfig } from "./config.ts";
import { MultiRaft, RaftRequestError } from "./multi-raft.ts";
import type { SimStorage } from "./sim-storage.sim.ts";

export { diskSimStorage, memorySimStorage, type SimStorage } from "./sim-storage.sim.ts";

export interface FaultOptions {
  readonly crashes: boolean;
  readonly partitions: boolean;
  readonly loss: boolean;
  readonly duplicates: boolean;
  readonly corruption: boolean;
  readonly clockSkew: boolean;
}

export const allFaults: FaultOptions = {
  crashes: true,
  partitions: true,
  loss: true,
  duplicates: true,
  corruption: true,
  clockSkew: true,
};

export interface RaftSimulationOptions {
  readonly seed: number;
  readonly routers?: number;
  readonly replicas?: number;
  readonly groups?: number;
  readonly faultMs?: number;
  readonly livenessBoundMs?: number;
  readonly faults?: FaultOptions;
  readonly storage: (random: SeededRandom, clock: SimClock) => SimStorage;
  readonly config?: Partial<RaftConfig>;
  /** Proposals per simulated second while faults run. */
  readonly proposalsPerSecond?: number;
  /** Move replicas between routers during the run (needs more routers than replicas). */
  readonly membershipChanges?: boolean;
}

export interface RaftSimulationReport {
  readonly seed: number;
  readonly violations: readonly string[];
  readonly acknowledged: number;
  /** Linearizable reads served (each checked against the writes acknowledged before it). */
  readonly reads: number;
  /** Replica moves completed (learner added, promoted, old voter removed). */
  readonly moves: number;
  readonly applied: number;
  readonly leaderTerms: number;
  readonly faults: readonly string[];
  readonly simulatedMs: number;
}

interface SimRouter {
  readonly id: NodeId;
  readonly host: string;
  multi: MultiRaft | null;
  socket: DatagramSocket | null;
  /** Incremented at each crash: a restart still recovering when it changes gives up. */
  generation: number;
  /** Per group: index of the last entry applied in this process lifetime. */
  applied: Map<GroupId, number>;
  rate: number;
}

interface Agreed {
  readonly term: number;
  readonly digest: string;
}

const port = 7000;
const datagramBytesMax = 60_000;

/** A Clock whose timers run `rate` times slower (rate > 1) or faster than the shared one. */
function skewedClock(base: SimClock, rate: number): Clock {
  return {
    nowMs: () => base.nowMs() / rate,
    wallMs: () => base.wallMs(),
    schedule: (delayMs: number, callback: () => void): Timer => base.schedule(delayMs * rate, callback),
  };
}

function digestOf(entry: Entry): string {
  return `${entry.kind}:${createHash("sha1").update(entry.data).digest("hex").slice(0, 16)}`;
}

/** Splits a batch that would not fit a datagram (a router with thousands of groups). */
function encodeForDatagrams(batch: RaftBatch): Buffer[] {
  const bytes = encodeRaftBatch(batch);
  if (bytes.length <= datagramBytesMax) return [bytes];
  const parts = batch.beats.length + batch.beatResponses.length + batch.messages.length;
  if (parts <= 1) return []; // one message too big for a datagram: lost, as on a real network
  const half = <T>(items: readonly T[], first: boolean) =>
    first ? items.slice(0, Math.ceil(items.length / 2)) : items.slice(Math.ceil(items.length / 2));
  return [true, false].flatMap((first) =>
    encodeForDatagrams({
      from: batch.from,
      to: batch.to,
      beats: half(batch.beats, first),
      beatResponses: half(batch.beatResponses, first),
      messages: half(batch.messages, first),
    }),
  );
}

export async function runRaftSimulation(options: RaftSimulationOptions): Promise<RaftSimulationReport> {
  const seed = options.seed;
  const root = new SeededRandom(seed);
  const random = root.fork("schedule");
  const clock = new SimClock();
  const network = new SimNetwork({ clock, random: root.fork("network") });
  const storage = options.storage(root.fork("storage"), clock);
  const faults = options.faults ?? allFaults;
  const routerCount = options.routers ?? 3;
  const replicas = Math.min(options.replicas ?? 3, routerCount);
  const groupCount = options.groups ?? 8;
  const faultMs = options.faultMs ?? 10_000;
  const livenessBoundMs = options.livenessBoundMs ?? 20_000;
  const config: RaftConfig = { ...defaultRaftConfig, maxMessageBytes: 16 * 1024, ...options.config };
  const violations: string[] = [];
  const faultLog: string[] = [];
  const violation = (text: string) => {
    if (violations.length < 20) violations.push(`seed ${seed} at ${clock.nowMs().toFixed(0)} ms: ${text}`);
  };

  const ids = Array.from({ length: routerCount }, (_, index) => `r${index + 1}`);
  const configurationOf = (group: GroupId): Configuration => ({
    voters: Array.from({ length: replicas }, (_, k) => ids[(group + k) % routerCount]!).sort(),
    learners: [],
  });
  const routers = new Map<NodeId, SimRouter>();
  const agreed = new Map<GroupId, Map<number, Agreed>>();
  const leaders = new Map<GroupId, Map<number, NodeId>>();
  const acknowledged: { group: GroupId; index: number; term: number; digest: string }[] = [];
  const randomFor = new Map<NodeId, number>();
  let appliedCount = 0;

  const recordLeader = (router: SimRouter, group: GroupId) => {
    const node = router.multi?.group(group);
    if (node === undefined || node.role !== "leader") return;
    let terms = leaders.get(group);
    if (terms === undefined) {
      terms = new Map();
      leaders.set(group, terms);
    }
    const existing = terms.get(node.term);
    if (existing !== undefined && existing !== router.id) {
      violation(`group ${group} term ${node.term} has two leaders: ${existing} and ${router.id}`);
    }
    terms.set(node.term, router.id);
  };

  const onApply = (router: SimRouter, group: GroupId, entries: readonly Entry[]) => {
    let log = agreed.get(group);
    if (log === undefined) {
      log = new Map();
      agreed.set(group, log);
    }
    for (const entry of entries) {
      const previous = router.applied.get(group) ?? 0;
      if (entry.index !== previous + 1) {
        violation(`${router.id} applied group ${group} index ${entry.index} after ${previous}`);
      }
      router.applied.set(group, entry.index);
      appliedCount += 1;
      const digest = digestOf(entry);
      const known = log.get(entry.index);
      if (known === undefined) log.set(entry.index, { term: entry.term, digest });
      else if (known.term !== entry.term || known.digest !== digest) {
        violation(
          `group ${group} index ${entry.index}: ${router.id} applied term ${entry.term} ${digest}, others term ${known.term} ${known.digest}`,
        );
      }
    }
  };

  const start = async (router: SimRouter) => {
    const generation = router.generation;
    let store: LogStore;
    try {
      store = await storage.open(router.id);
    } catch (error) {
      // Crashed again while recovering: its own restart comes later.
      if (router.generation !== generation) return;
      throw error;
    }
    if (router.generation !== generation) return; // crashed while recovering
    const count = (randomFor.get(router.id) ?? 0) + 1;
    randomFor.set(router.id, count);
    router.applied = new Map();
    const multi = new MultiRaft({
      id: router.id,
      store,
      clock: skewedClock(clock, router.rate),
      random: root.fork(`${router.id}#${count}`),
      config,
      configurationOf,
      transport: {
        send: (batch) => {
          for (const bytes of encodeForDatagrams(batch)) router.socket?.send(`${batch.to}:${port}`, bytes);
        },
      },
      onFatal: (error) => violation(`${router.id} stopped on a broken invariant: ${error.stack}`),
      onFailure: (error) => {
        // The store of a router crashed mid-sync fails its interrupted fsync: that one is expected.
        if (router.multi === multi) violation(`${router.id} store failed: ${error.message}`);
      },
      stateMachine: {
        apply: (group, entries) => {
          onApply(router, group, entries);
          return undefined;
        },
        restore: (group, snapshot) => router.applied.set(group, snapshot.meta.index),
        leadershipChanged: (group) => recordLeader(router, group),
      },
    });
    router.socket = network.bindDatagram(`${router.host}:${port}`, (payload) => {
      const decoded = decodeRaftBatch(payload);
      if (!decoded.ok) {
        violation(`${router.id} could not decode a batch: ${decoded.error.tag}`);
        return;
      }
      multi.receive(decoded.batch);
    });
    router.multi = multi;
    for (let group = 0; group < groupCount; group++) {
      // A restarted router resumes applying after its snapshot (the application's state).
      const node = multi.group(group);
      if (node !== undefined) router.applied.set(group, node.log.applied);
    }
    multi.start();
  };

  const crash = (router: SimRouter) => {
    router.generation += 1;
    router.multi?.stop();
    router.multi = null;
    router.socket = null;
    network.crash(router.host);
    storage.crash(router.id);
  };

  const restart = async (router: SimRouter) => {
    network.restart(router.host);
    await start(router);
  };

  for (const id of ids) {
    const router: SimRouter = {
      id,
      host: id,
      multi: null,
      socket: null,
      generation: 0,
      applied: new Map(),
      rate: 1,
    };
    if (faults.clockSkew) router.rate = random.between(0.9, 1.1);
    routers.set(id, router);
    await start(router);
  }

  // ---- workload ----
  let sequence = 0;
  let inFlight = 0;
  const propose = (group: GroupId, onDone?: (ok: boolean) => void) => {
    const candidates = [...routers.values()].filter((router) => router.multi !== null);
    if (candidates.length === 0) return;
    const leader =
      candidates.find((router) => router.multi!.group(group)?.role === "leader") ?? random.pick(candidates);
    const data = Buffer.from(`g${group}#${++sequence}`);
    inFlight += 1;
    leader.multi!.propose(group, data).then(
      ({ index, term }) => {
        inFlight -= 1;
        acknowledged.push({ group, index, term, digest: digestOf({ index, term, kind: "normal", data }) });
        ackedHighWater.set(group, Math.max(ackedHighWater.get(group) ?? 0, index));
        onDone?.(true);
      },
      (error: unknown) => {
        inFlight -= 1;
        if (
          !(error instanceof RaftRequestError) &&
          !(error instanceof Error && error.message === "multi-raft stopped")
        ) {
          violation(`proposal failed unexpectedly: ${(error as Error).message}`);
        }
        onDone?.(false);
      },
    );
  };

  /** Per group, the highest index acknowledged so far: a read started later must see it. */
  const ackedHighWater = new Map<GroupId, number>();
  let readsServed = 0;
  // Linearizable reads (§6.4): the index a read is served at covers every write acknowledged
  // before the read began.
  const read = (group: GroupId) => {
    const leader = [...routers.values()].find((router) => router.multi?.group(group)?.role === "leader");
    if (leader === undefined) return;
    const mustSee = ackedHighWater.get(group) ?? 0;
    inFlight += 1;
    leader.multi!.readIndex(group).then(
      (index) => {
        inFlight -= 1;
        readsServed += 1;
        if (index < mustSee)
          violation(`read of group ${group} served at ${index}, before acknowledged ${mustSee}`);
      },
      (error: unknown) => {
        inFlight -= 1;
        if (
          !(error instanceof RaftRequestError) &&
          !(error instanceof Error && error.message === "multi-raft stopped")
        ) {
          violation(`read failed unexpectedly: ${(error as Error).message}`);
        }
      },
    );
  };
  const leaderOf = (group: GroupId) =>
    [...routers.values()].find((router) => router.multi?.group(group)?.role === "leader");
  const transfer = (group: GroupId) => {
    const leader = leaderOf(group);
    if (leader === undefined) return;
    const others = leader.multi!.group(group)!.configuration.voters.filter((id) => id !== leader.id);
    if (others.length > 0) leader.multi!.transferLeadership(group, random.pick(others));
  };
  // Membership changes (Raft thesis §4.1), one server at a time: a replica moves to a router
  // outside the group (added as a learner, promoted, then an old voter removed, maybe the
  // leader itself). The newcomer starts empty and learns the group from its leader.
  const moving = new Set<GroupId>();
  let moves = 0;
  const move = (group: GroupId) => {
    const leader = leaderOf(group);
    if (leader === undefined || moving.has(group)) return;
    const { voters, learners } = leader.multi!.group(group)!.configuration;
    const outsiders = ids.filter((id) => !voters.includes(id) && !learners.includes(id));
    if (outsiders.length === 0 || learners.length > 0) return;
    const newcomer = random.pick(outsiders);
    const leaving = random.pick(voters);
    const change = async (type: "addLearner" | "addVoter" | "remove", node: NodeId) => {
      const current = leaderOf(group);
      if (current === undefined) throw new RaftRequestError(group, { tag: "NotLeader", leader: null });
      await current.multi!.proposeConfigChange(group, { type, node });
    };
    moving.add(group);
    inFlight += 1;
    (async () => {
      await change("addLearner", newcomer);
      // Promote once the learner has caught up (the leader refuses before: NotCaughtUp).
      for (let attempt = 1; ; attempt++) {
        try {
          await change("addVoter", newcomer);
          break;
        } catch (error) {
          const notYet = error instanceof RaftRequestError && error.error.tag === "NotCaughtUp";
          if (!notYet || attempt >= 30) throw error;
          await new Promise<void>((resolve) => clock.schedule(100, resolve));
        }
      }
      await change("remove", leaving);
    })()
      .then(
        () => {
          moves += 1;
        },
        (error: unknown) => {
          if (
            !(error instanceof RaftRequestError) &&
            !(error instanceof Error && error.message === "multi-raft stopped")
          ) {
            violation(`membership change failed unexpectedly: ${(error as Error).message}`);
          }
        },
      )
      .finally(() => {
        inFlight -= 1;
        moving.delete(group);
      });
  };

  // ---- fault schedule ----
  const down = new Set<NodeId>();
  const partitions: ReturnType<SimNetwork["partition"]>[] = [];
  const scheduleFaults = (untilMs: number) => {
    const step = () => {
      if (clock.nowMs() >= untilMs) return;
      const choice = random.nextInt(6);
      const live = ids.filter((id) => !down.has(id));
      if (choice === 0 && faults.crashes && live.length > 0) {
        // Crashes hit routers in the middle of an fsync more often than chance would (that is
        // where persist-before-send mistakes lose data), and 40% of the time a second router
        // goes down with the first, often a leader (a power cut: Raft keeps every acknowledged entry through
        // any number of crashes; only availability waits for the restarts).
        const syncing = live.filter((id) => storage.syncing(id));
        const first = syncing.length > 0 && random.chance(0.8) ? random.pick(syncing) : random.pick(live);
        const victims = [first];
        const rest = live.filter((id) => id !== first);
        const leads = (id: NodeId) => {
          let count = 0;
          for (let group = 0; group < groupCount; group++) {
            if (routers.get(id)!.multi?.group(group)?.role === "leader") count += 1;
          }
          return count;
        };
        if (rest.length > 0 && random.chance(0.4)) {
          // Often the router leading the most groups: the one whose followers' acknowledgements count.
          const ranked = [...rest].sort((a, b) => leads(b) - leads(a));
          victims.push(random.chance(0.5) ? ranked[0]! : random.pick(rest));
        }
        for (const id of victims) {
          down.add(id);
          crash(routers.get(id)!);
          faultLog.push(`${clock.nowMs().toFixed(0)} crash ${id}`);
          if (faults.corruption && random.chance(0.3)) {
            const what = storage.corrupt(id, random);
            if (what !== null) faultLog.push(`${clock.nowMs().toFixed(0)} corrupt ${id}: ${what}`);
          }
          clock.schedule(random.between(100, 3000), () => {
            down.delete(id);
            faultLog.push(`${clock.nowMs().toFixed(0)} restart ${id}`);
            restart(routers.get(id)!).catch((error: unknown) =>
              violation(`restart failed: ${(error as Error).message}`),
            );
          });
        }
      } else if (choice === 1 && faults.partitions) {
        const shuffled = [...ids].sort(() => random.nextFloat() - 0.5);
        const cut = 1 + random.nextInt(routerCount - 1);
        const a = shuffled.slice(0, cut);
        const b = shuffled.slice(cut);
        const oneWay = random.chance(0.3);
        partitions.push(oneWay ? network.partitionOneWay(a, b) : network.partition(a, b));
        faultLog.push(
          `${clock.nowMs().toFixed(0)} partition ${oneWay ? "one-way " : ""}${a.join(",")} | ${b.join(",")}`,
        );
        clock.schedule(random.between(200, 4000), () => {
          const id = partitions.shift();
          if (id !== undefined) network.heal(id);
        });
      } else if (choice === 2 && faults.loss) {
        network.configure({ dropProbability: random.chance(0.5) ? 0 : random.between(0.01, 0.2) });
      } else if (choice === 3 && faults.duplicates) {
        network.configure({ duplicateProbability: random.chance(0.5) ? 0 : random.between(0.01, 0.1) });
      } else if (choice === 4) {
        network.configure({ datagramDelayMinMs: 1, datagramDelayMaxMs: random.between(2, 60) });
      } else if (choice === 5 && faults.corruption && live.length > 0 && random.chance(0.3)) {
        // A bit flip under a running router: found (if at all) when it reads that record,
        // which turns a leader into a follower under repair in the middle of its work.
        const id = random.pick(live);
        const what = storage.corrupt(id, random);
        if (what !== null) faultLog.push(`${clock.nowMs().toFixed(0)} corrupt live ${id}: ${what}`);
      }
      clock.schedule(random.between(50, 1000), step);
    };
    clock.schedule(random.between(0, 500), step);
  };

  // One leader per term: every node's role is sampled often, so a leader deposed before its
  // first Ready was applied is still seen.
  const pollMs = groupCount <= 100 ? 5 : 50;
  const pollLeaders = () => {
    for (const router of routers.values()) {
      if (router.multi === null) continue;
      for (let group = 0; group < groupCount; group++) recordLeader(router, group);
    }
    clock.schedule(pollMs, pollLeaders);
  };
  clock.schedule(pollMs, pollLeaders);

  const workloadUntil = faultMs;
  const interval = 1000 / (options.proposalsPerSecond ?? 100);
  const workload = () => {
    if (clock.nowMs() >= workloadUntil) return;
    if (inFlight < 200) {
      const roll = random.nextInt(100);
      if (roll < 10) read(random.nextInt(groupCount));
      else if (roll < 11) transfer(random.nextInt(groupCount));
      else if (roll < 12 && options.membershipChanges === true) move(random.nextInt(groupCount));
      else propose(random.nextInt(groupCount));
    }
    clock.schedule(interval, workload);
  };
  clock.schedule(interval, workload);
  // Log compaction (Raft §7): routers snapshot groups now and then, so lagging or restarted
  // replicas catch up by install-snapshot.
  const compaction = () => {
    if (clock.nowMs() >= workloadUntil) return;
    const live = [...routers.values()].filter((router) => router.multi !== null);
    if (live.length > 0) {
      const router = random.pick(live);
      const group = random.nextInt(groupCount);
      router.multi!.compact(group, Buffer.from(`state of ${group} at ${router.applied.get(group) ?? 0}`));
    }
    clock.schedule(random.between(50, 500), compaction);
  };
  clock.schedule(500, compaction);
  scheduleFaults(faultMs);

  const settle = async (untilMs: number) => {
    while (clock.nowMs() < untilMs) {
      for (let turn = 0; turn < 8; turn++) await Promise.resolve();
      if (!clock.step()) break;
    }
    for (let turn = 0; turn < 64; turn++) await Promise.resolve();
  };
  await settle(faultMs);

  // ---- heal everything, then check liveness ----
  network.healAll();
  partitions.length = 0;
  network.configure({
    dropProbability: 0,
    duplicateProbability: 0,
    datagramDelayMinMs: 1,
    datagramDelayMaxMs: 10,
  });
  await settle(clock.nowMs() + 3_500); // pending restarts happen
  const healedAt = clock.nowMs();
  const finals = new Map<GroupId, boolean>();
  const tryFinal = (group: GroupId) => {
    if (finals.get(group) === true || clock.nowMs() > healedAt + livenessBoundMs) return;
    propose(group, (ok) => {
      if (ok) finals.set(group, true);
      else clock.schedule(100, () => tryFinal(group));
    });
  };
  for (let group = 0; group < groupCount; group++) tryFinal(group);
  while (clock.nowMs() < healedAt + livenessBoundMs && finals.size < groupCount)
    await settle(clock.nowMs() + 100);
  for (let group = 0; group < groupCount; group++) {
    if (finals.get(group) !== true)
      violation(`group ${group} committed nothing within ${livenessBoundMs} ms of healing`);
  }
  await settle(clock.nowMs() + 2_000); // followers apply the last commits
  if (inFlight !== 0) violation(`${inFlight} proposals or reads never settled`);

  // ---- checkers ----
  for (const ack of acknowledged) {
    const entry = agreed.get(ack.group)?.get(ack.index);
    if (entry === undefined) {
      // Acknowledged means applied on the leader, so the agreed log has it.
      violation(`acknowledged group ${ack.group} index ${ack.index} was never applied`);
    } else if (entry.term !== ack.term || entry.digest !== ack.digest) {
      violation(
        `acknowledged group ${ack.group} index ${ack.index} term ${ack.term} was replaced by term ${entry.term}`,
      );
    }
  }
  for (let group = 0; group < groupCount; group++) {
    const last = Math.max(0, ...(agreed.get(group)?.keys() ?? []));
    const leader = leaderOf(group);
    if (leader === undefined) {
      violation(`group ${group} has no leader at the end`);
      continue;
    }
    const members = leader.multi!.group(group)!.configuration;
    for (const id of [...members.voters, ...members.learners]) {
      const router = routers.get(id)!;
      const node = router.multi?.group(group);
      if (node === undefined) continue;
      if (node.log.applied < last)
        violation(`${id} applied group ${group} only up to ${node.log.applied} of ${last}`);
    }
  }
  for (const router of routers.values()) router.multi?.stop();
  let terms = 0;
  for (const perGroup of leaders.values()) terms += perGroup.size;
  return {
    seed,
    violations,
    acknowledged: acknowledged.length,
    reads: readsServed,
    moves,
    applied: appliedCount,
    leaderTerms: terms,
    faults: faultLog,
    simulatedMs: clock.nowMs(),
  };
}
