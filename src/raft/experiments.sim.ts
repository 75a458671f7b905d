// Experiments on the simulated cluster that give the README its Raft figures (bench/raft.ts
// prints them; simulation tests check their shape): failover time after a leader's router
// crashes, and the cost of idle groups (coalescing and quiescence).
// Production MultiRaft over the SimNetwork's datagrams and MemoryStores; time is simulated,
// CPU is this process's real CPU while the simulated cluster runs.
import { SeededRandom, SimClock, SimNetwork } from "../sim/index.ts";
import { type Configuration, type GroupId, MemoryStore, type NodeId } from "../storage/index.ts";
import { decodeRaftBatch, encodeRaftBatch } from "./batch-codec.ts";
import { defaultRaftConfig, type RaftConfig } from "./config.ts";
import { MultiRaft } from "./multi-raft.ts";

interface Cluster {
  readonly clock: SimClock;
  readonly network: SimNetwork;
  readonly routers: Map<NodeId, MultiRaft>;
  readonly bytesSent: Map<NodeId, number>;
  crash(id: NodeId): void;
}

function startCluster(seed: number, routerCount: number, groups: number, config: RaftConfig): Cluster {
  const root = new SeededRandom(seed);
  const clock = new SimClock({ timersMax: 10_000_000 });
  const network = new SimNetwork({
    clock,
    random: root.fork("network"),
    config: { datagramsInFlightMax: 10_000_000 },
  });
  const ids = Array.from({ length: routerCount }, (_, index) => `r${index + 1}`);
  const configuration: Configuration = { voters: ids.slice(0, 3), learners: [] };
  const routers = new Map<NodeId, MultiRaft>();
  const bytesSent = new Map<NodeId, number>();
  for (const id of ids) {
    bytesSent.set(id, 0);
    const socketHolder: { send?: (to: string, bytes: Uint8Array) => void } = {};
    const multi = new MultiRaft({
      id,
      store: new MemoryStore(),
      clock,
      random: root.fork(id),
      config,
      configurationOf: () => configuration,
      transport: {
        send: (batch) => {
          const bytes = encodeRaftBatch(batch);
          bytesSent.set(id, bytesSent.get(id)! + bytes.length);
          // Experiments keep batches whole: the datagram limit is lifted, not split around.
          socketHolder.send?.(`${batch.to}:7000`, bytes);
        },
      },
      stateMachine: { apply: () => {}, restore: () => {}, leadershipChanged: () => {} },
    });
    const socket = network.bindDatagram(`${id}:7000`, (payload) => {
      const decoded = decodeRaftBatch(payload);
      if (decoded.ok) multi.receive(decoded.batch);
    });
    socketHolder.send = (to, bytes) => socket.send(to, bytes);
    routers.set(id, multi);
  }
  network.configure({ datagramBytesMax: 1 << 30 });
  for (const multi of routers.values()) {
    for (let group = 0; group < groups; group++) multi.group(group);
    multi.start();
  }
  return {
    clock,
    network,
    routers,
    bytesSent,
    crash(id) {
      routers.get(id)!.stop();
      network.crash(id);
    },
  };
}

async function runFor(clock: SimClock, ms: number): Promise<void> {
  const until = clock.nowMs() + ms;
  while (clock.nowMs() < until) {
    for (let turn = 0; turn < 8; turn++) await Promise.resolve();
    if (!clock.step()) break;
  }
  for (let turn = 0; turn < 64; turn++) await Promise.resolve();
}

function leaderOf(cluster: Cluster, group: GroupId): NodeId | null {
  for (const [id, multi] of cluster.routers) if (multi.group(group)?.role === "leader") return id;
  return null;
}

export interface FailoverResult {
  /** Per group once led by the crashed router: ms from the crash until another router leads it. */
  readonly electionMs: readonly number[];
  readonly quiescedBeforeCrash: number;
}

/**
 * Three routers, `groups` groups; once every group has a leader and has gone idle, the router
 * leading the most groups is killed; returns how long each of its groups took to elect anew.
 */
export async function measureFailover(seed: number, groups: number, quiesce = true): Promise<FailoverResult> {
  const cluster = startCluster(seed, 3, groups, { ...defaultRaftConfig, quiesce });
  await runFor(cluster.clock, 3_000);
  for (let group = 0; group < groups; group++) {
    const leader = leaderOf(cluster, group);
    if (leader !== null)
      cluster.routers
        .get(leader)!
        .propose(group, Buffer.from("warm"))
        .catch(() => {});
  }
  await runFor(cluster.clock, 3_000);
  const ledBy = new Map<NodeId, GroupId[]>();
  let quiesced = 0;
  for (let group = 0; group < groups; group++) {
    const leader = leaderOf(cluster, group);
    if (leader === null) throw new Error(`group ${group} has no leader before the crash`);
    if (cluster.routers.get(leader)!.group(group)!.quiesced) quiesced += 1;
    ledBy.set(leader, [...(ledBy.get(leader) ?? []), group]);
  }
  const [victim, victimGroups] = [...ledBy.entries()].sort((a, b) => b[1].length - a[1].length)[0]!;
  cluster.crash(victim);
  const crashedAt = cluster.clock.nowMs();
  const electedAt = new Map<GroupId, number>();
  const survivors = [...cluster.routers.entries()].filter(([id]) => id !== victim);
  const watch = () => {
    for (const group of victimGroups) {
      if (electedAt.has(group)) continue;
      if (survivors.some(([, multi]) => multi.group(group)?.role === "leader"))
        electedAt.set(group, cluster.clock.nowMs());
    }
    if (electedAt.size < victimGroups.length && cluster.clock.nowMs() - crashedAt < 30_000)
      cluster.clock.schedule(1, watch);
  };
  cluster.clock.schedule(1, watch);
  await runFor(cluster.clock, 30_000);
  for (const multi of cluster.routers.values()) multi.stop();
  if (electedAt.size < victimGroups.length)
    throw new Error(`only ${electedAt.size} of ${victimGroups.length} groups re-elected`);
  return {
    electionMs: victimGroups.map((group) => electedAt.get(group)! - crashedAt),
    quiescedBeforeCrash: quiesced,
  };
}

export interface IdleResult {
  readonly groups: number;
  readonly quiesced: number;
  /** Batches one router sends per simulated second, averaged over routers. */
  readonly batchesPerSecond: number;
  readonly bytesPerSecond: number;
  /** Real CPU milliseconds this process spent per simulated second for all routers together. */
  readonly cpuMsPerSecond: number;
}

/** Three routers sharing `groups` idle groups: after they elect and quiesce, what does idling cost? */
export async function measureIdle(seed: number, groups: number, measureMs = 10_000): Promise<IdleResult> {
  const cluster = startCluster(seed, 3, groups, defaultRaftConfig);
  await runFor(cluster.clock, 10_000);
  let quiesced = 0;
  for (let group = 0; group < groups; group++) {
    const leader = leaderOf(cluster, group);
    if (leader !== null && cluster.routers.get(leader)!.group(group)!.quiesced) quiesced += 1;
  }
  const before = [...cluster.routers.values()].map((multi) => multi.stats().batchesSent);
  const bytesBefore = [...cluster.bytesSent.values()].reduce((a, b) => a + b, 0);
  const cpuBefore = process.cpuUsage();
  await runFor(cluster.clock, measureMs);
  const cpu = process.cpuUsage(cpuBefore);
  const after = [...cluster.routers.values()].map((multi) => multi.stats().batchesSent);
  const bytesAfter = [...cluster.bytesSent.values()].reduce((a, b) => a + b, 0);
  for (const multi of cluster.routers.values()) multi.stop();
  const seconds = measureMs / 1000;
  const batches = after.reduce((sum, value, index) => sum + value - before[index]!, 0);
  return {
    groups,
    quiesced,
    batchesPerSecond: batches / cluster.routers.size / seconds,
    bytesPerSecond: (bytesAfter - bytesBefore) / cluster.routers.size / seconds,
    cpuMsPerSecond: (cpu.user + cpu.system) / 1000 / seconds,
  };
}
