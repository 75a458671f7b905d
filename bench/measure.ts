// Measuring helpers for the benchmark: latency percentiles, CPU seconds per process from
// /proc, the machine's busy time, and the wait for a quiet machine.
//
// The machine is shared (2 cores): a run is only comparable to another if the neighbours were
// quiet during both, so every run records `other_cpu_s` (CPU used by everything that is not
// the bench, the router or nats-server) and the runner discards runs that were noisy.
// Trap: /proc counts in clock ticks of 10 ms, so CPU figures for runs under a second are rough.
import { readFileSync } from "node:fs";

/** Nearest-rank percentile of an ascending array; undefined for an empty one. */
export function percentile(sorted: Float64Array, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

export interface LatencySummary {
  readonly lat_n: number;
  readonly lat_p50_us: number | undefined;
  readonly lat_p99_us: number | undefined;
  readonly lat_p999_us: number | undefined;
  readonly lat_max_us: number | undefined;
}

const tenth = (value: number | undefined) => (value === undefined ? undefined : Math.round(value * 10) / 10);

/** Sorts `samples` in place (microseconds) and summarises them. */
export function summariseLatency(samples: Float64Array): LatencySummary {
  samples.sort();
  return {
    lat_n: samples.length,
    lat_p50_us: tenth(percentile(samples, 50)),
    lat_p99_us: tenth(percentile(samples, 99)),
    lat_p999_us: tenth(percentile(samples, 99.9)),
    lat_max_us: tenth(samples[samples.length - 1]),
  };
}

export function median(values: readonly number[]): number | undefined {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** CPU seconds (user + system) a process used so far; 0 if it is gone. */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readText(`/proc/${pid}/stat`);
    // Fields after the command name, which may itself hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // CLK_TCK is 100 on Linux x86-64
  } catch {
    return 0;
  }
}

/** Busy CPU seconds of the whole machine, all cores (user nice system irq softirq steal). */
export function machineBusySeconds(): number {
  try {
    const fields = readText("/proc/stat").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    return (fields[0]! + fields[1]! + fields[2]! + fields[5]! + fields[6]! + fields[7]!) / 100;
  } catch {
    return 0;
  }
}

function readText(path: string): string {
  return readFileSync(path, "utf8");
}

const ownCpuSeconds = () => {
  const usage = process.cpuUsage(); // the whole process: every worker thread included
  return (usage.user + usage.system) / 1e6;
};

export interface CpuReading {
  /** CPU of the server process (router or nats-server). */
  readonly server_cpu_s: number;
  /** CPU of this process: the publisher and subscriber threads (and the idle main thread). */
  readonly client_cpu_s: number;
  /** CPU of everything else on the machine: noise. */
  readonly other_cpu_s: number;
  readonly wall_s: number;
}

/** Starts a meter; calling the result reads the CPU used since. `serverPids` are our servers. */
export function cpuMeter(serverPid: number, otherOwnPids: readonly number[]): () => CpuReading {
  const ours = () => otherOwnPids.reduce((sum, pid) => sum + processCpuSeconds(pid), 0);
  const server0 = processCpuSeconds(serverPid);
  const ours0 = ours();
  const own0 = ownCpuSeconds();
  const machine0 = machineBusySeconds();
  const wall0 = performance.now();
  return () => {
    const server = processCpuSeconds(serverPid) - server0;
    const own = ownCpuSeconds() - own0;
    const idleServers = ours() - ours0;
    const machine = machineBusySeconds() - machine0;
    return {
      server_cpu_s: round2(server),
      client_cpu_s: round2(own),
      other_cpu_s: round2(Math.max(0, machine - server - own - idleServers)),
      wall_s: round2((performance.now() - wall0) / 1000),
    };
  };
}

/**
 * A meter for a cluster whose processes come and go (a node killed, another life started):
 * the CPU of every PID `serverPids()` named at start, at a `sample()` or at the read. A PID's
 * last reading counts once it is gone, so sample just before killing one.
 */
export function clusterCpuMeter(
  serverPids: () => readonly number[],
  otherOwnPids: () => readonly number[],
): { sample(): void; read(): CpuReading } {
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  const sample = () => {
    for (const pid of serverPids()) {
      const seconds = processCpuSeconds(pid);
      if (seconds === 0) continue; // gone (or not started yet)
      if (!first.has(pid)) first.set(pid, seconds);
      last.set(pid, seconds);
    }
  };
  const others0 = new Map(otherOwnPids().map((pid) => [pid, processCpuSeconds(pid)]));
  sample();
  // A PID seen first after the start began during the run: all its CPU counts.
  const started = new Set(first.keys());
  const own0 = ownCpuSeconds();
  const machine0 = machineBusySeconds();
  const wall0 = performance.now();
  return {
    sample,
    read: () => {
      sample();
      let server = 0;
      for (const [pid, seconds] of last) server += seconds - (started.has(pid) ? first.get(pid)! : 0);
      let idleServers = 0;
      for (const [pid, seconds] of others0) idleServers += Math.max(0, processCpuSeconds(pid) - seconds);
      const own = ownCpuSeconds() - own0;
      const machine = machineBusySeconds() - machine0;
      return {
        server_cpu_s: round2(server),
        client_cpu_s: round2(own),
        other_cpu_s: round2(Math.max(0, machine - server - own - idleServers)),
        wall_s: round2((performance.now() - wall0) / 1000),
      };
    },
  };
}

export const round2 = (value: number) => Math.round(value * 100) / 100;

export interface QuietWait {
  readonly pre_other_cores: number;
  readonly quiet_wait_s: number;
}

/**
 * Waits until the neighbours use fewer than `quietCores` cores over one second, for at most
 * `maxWaitS` seconds. `ownPids` are our servers (not neighbours).
 */
export async function waitQuiet(
  quietCores: number,
  maxWaitS: number,
  ownPids: readonly number[],
): Promise<QuietWait> {
  const start = performance.now();
  const ours = () => ownPids.reduce((sum, pid) => sum + processCpuSeconds(pid), 0) + ownCpuSeconds();
  for (;;) {
    const machine0 = machineBusySeconds();
    const ours0 = ours();
    const wall0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const wall = (performance.now() - wall0) / 1000;
    const other = Math.max(0, (machineBusySeconds() - machine0 - (ours() - ours0)) / wall);
    const waited = (performance.now() - start) / 1000;
    if (other < quietCores || waited >= maxWaitS) {
      return { pre_other_cores: round2(other), quiet_wait_s: Math.round(waited * 10) / 10 };
    }
  }
}
