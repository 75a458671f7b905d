// The three-server clusters of the persistent scenarios (persistent.ts), as real processes:
// - a Neuron region of three `neuron router` processes (r1..r3): one CA with router and client
//   certificates, one gossip key, every listener on 127.0.0.1 port 0 (harness/router-config.ts
//   writes the TOML), `[streams] persistent_prefixes = ["bench"]`; r1 starts with `seeds = []`
//   and the others are seeded with its gossip address from its ready line;
// - a nats-server cluster of three (n1..n3) with routes and JetStream (file store), as
//   ../shared/bench/peers/nats-cluster.sh configures it, on free loopback ports.
// Both can kill -9 one node (by PID) and start it again on the same data dir.
//
// Invariant: every process goes through servers.ts `startChild`, so `stopAllNow` (exit, error,
// Ctrl-C) kills each by PID and removes the temp dirs.
// Traps: a restarted router binds new ports, so it is seeded with the gossip addresses of the
// routers alive at that moment; its peers accept its new address only once they have declared
// the old life dead (membership), so `waitHealthy` may take seconds after a restart. nats-server
// keeps its ports (they are in its config file), so a restart right after a kill can meet a
// port still held for a moment: the start is retried.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { routerConfigToml } from "../harness/router-config.ts";
import { type Credentials, createCertificateAuthority, issueCertificate } from "../src/axon/index.ts";
import { generateKey } from "../src/membership/keyring.ts";
import { freePort, type ServerProcess, startChild, temporaryDirectory } from "./servers.ts";

const cliPath = new URL("../src/cli/main.ts", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One node of a cluster: its current process (undefined while it is down). */
export interface ClusterNode {
  readonly id: string;
  process: ServerProcess | undefined;
  /** "host:port" for clients (a router's changes on every start). */
  clients: string;
  /** "host:port" of its HTTP monitoring (router /status, nats-server /jsz, /healthz). */
  monitor: string;
}

export interface ClusterControl {
  readonly nodes: readonly ClusterNode[];
  node(id: string): ClusterNode;
  /** PIDs of the nodes running now. */
  pids(): number[];
  /** kill -9 of node `id`; resolves once it has exited. */
  kill(id: string): Promise<void>;
  /** Starts node `id` again on its data dir; resolves when it is ready (not yet caught up). */
  restart(id: string): Promise<void>;
  /** Resolves once all three serve and see each other; rejects past `timeoutMs` saying what is missing. */
  waitHealthy(timeoutMs: number): Promise<void>;
}

/** Polls `check` (a string says what is missing) until it answers true, or rejects at the deadline. */
export async function waitFor(
  what: string,
  timeoutMs: number,
  check: () => Promise<true | string>,
  intervalMs = 50,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "no answer yet";
  for (;;) {
    try {
      const answer = await check();
      if (answer === true) return;
      last = answer;
    } catch (error) {
      last = (error as Error).message;
    }
    if (performance.now() >= deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${last}`);
    await sleep(intervalMs);
  }
}

/** GET http://address/path as JSON, with a short deadline (a loopback answer takes milliseconds). */
export async function getJson(address: string, path: string, timeoutMs = 1000): Promise<unknown> {
  const response = await fetch(`http://${address}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await response.text();
  if (!response.ok)
    throw new Error(`GET ${path} of ${address}: HTTP ${response.status} ${text.slice(0, 200)}`);
  return JSON.parse(text) as unknown;
}

// --- Neuron ----------------------------------------------------------------------------------

export interface RegionGroup {
  readonly group: number;
  readonly role: string;
  readonly voters: readonly string[];
  readonly leader: string | null;
  readonly commit: number;
  readonly lag: Readonly<Record<string, number>>;
}

/** The parts of a router's GET /status the bench reads. */
export interface RegionStatus {
  readonly id: string;
  readonly members: readonly { readonly id: string; readonly state: string }[];
  readonly mesh?: { readonly roster: readonly string[]; readonly groups: readonly RegionGroup[] };
}

export interface Region extends ClusterControl {
  readonly clientCredentials: Credentials;
  status(id: string, timeoutMs?: number): Promise<RegionStatus>;
}

/** Starts a region of three routers (r1 first, then r2 and r3 seeded with r1's gossip address). */
export async function startRegion(options: {
  readonly nodeFlags: readonly string[];
  readonly logPath?: string | undefined;
}): Promise<Region> {
  const dir = temporaryDirectory("neuron-bench-region-");
  const ca = await createCertificateAuthority("Neuron bench region CA");
  const client = await issueCertificate(ca, { role: "client", id: "bench" });
  writeFileSync(join(dir, "ca.pem"), ca.cert);
  const gossipKey = generateKey();
  const ids = ["r1", "r2", "r3"];
  for (const id of ids) {
    const credentials = await issueCertificate(ca, { role: "router", id });
    writeFileSync(join(dir, `${id}.pem`), credentials.cert);
    writeFileSync(join(dir, `${id}.key`), credentials.key, { mode: 0o600 });
  }
  const nodes: ClusterNode[] = ids.map((id) => ({ id, process: undefined, clients: "", monitor: "" }));
  const gossip = new Map<string, string>();

  const start = async (node: ClusterNode): Promise<void> => {
    const seeds = nodes.flatMap((other) =>
      other !== node && other.process !== undefined && gossip.has(other.id) ? [gossip.get(other.id)!] : [],
    );
    const configPath = join(dir, `${node.id}.toml`);
    writeFileSync(
      configPath,
      routerConfigToml({
        id: node.id,
        region: "bench",
        dataDir: join(dir, "data", node.id),
        seeds,
        gossipKey,
        tls: { ca: join(dir, "ca.pem"), cert: join(dir, `${node.id}.pem`), key: join(dir, `${node.id}.key`) },
        extra: '[streams]\npersistent_prefixes = ["bench"]\n',
      }),
    );
    const { server } = await startChild(
      `neuron router ${node.id}`,
      process.execPath,
      [...options.nodeFlags, cliPath, "router", "--config", configPath, "--log-level", "warn"],
      (output) => output.includes('{"event":"ready"'),
      20_000,
      options.logPath,
    );
    const line = server
      .output()
      .split("\n")
      .find((text) => text.startsWith('{"event":"ready"'))!;
    const ready = JSON.parse(line) as { clients: string; gossip: string; metrics: string };
    node.process = server;
    node.clients = ready.clients;
    node.monitor = ready.metrics;
    gossip.set(node.id, ready.gossip);
  };

  await start(nodes[0]!);
  await Promise.all(nodes.slice(1).map(start));
  const node = (id: string) => {
    const found = nodes.find((candidate) => candidate.id === id);
    if (found === undefined) throw new Error(`bench: no router ${id}`);
    return found;
  };
  const status = async (id: string, timeoutMs = 1000) =>
    (await getJson(node(id).monitor, "/status", timeoutMs)) as RegionStatus;
  const region: Region = {
    nodes,
    node,
    clientCredentials: { ca: ca.cert, cert: client.cert, key: client.key },
    pids: () => nodes.flatMap((each) => (each.process === undefined ? [] : [each.process.pid])),
    status,
    kill: async (id) => {
      const target = node(id);
      const running = target.process;
      target.process = undefined;
      await running?.kill();
    },
    restart: async (id) => {
      const target = node(id);
      if (target.process !== undefined) throw new Error(`bench: router ${id} is still running`);
      await start(target);
    },
    waitHealthy: (timeoutMs) =>
      waitFor("the region: every router alive in every view, a roster of 3", timeoutMs, async () => {
        for (const each of nodes) {
          if (each.process === undefined) return `${each.id} is down`;
          const view = await status(each.id);
          const alive = view.members.filter((member) => member.state === "alive").length;
          if (alive < nodes.length) return `${each.id} sees ${alive} alive`;
          if ((view.mesh?.roster.length ?? 0) < nodes.length)
            return `${each.id}'s roster: ${view.mesh?.roster.join(",")}`;
        }
        return true;
      }),
  };
  await region.waitHealthy(30_000);
  return region;
}

// --- NATS ------------------------------------------------------------------------------------

export interface NatsCluster extends ClusterControl {
  readonly version: string;
  /** Stops all three, wipes their stores and starts them again: a fresh cluster on the same ports. */
  reset(): Promise<void>;
}

interface NatsPorts {
  readonly client: number;
  readonly route: number;
  readonly monitor: number;
}

/** Starts nats-server x3 with routes and JetStream (file store in a temp dir). */
export async function startNatsCluster(executable: string): Promise<NatsCluster> {
  const dir = temporaryDirectory("nats-bench-cluster-");
  const ids = ["n1", "n2", "n3"];
  const ports = new Map<string, NatsPorts>();
  for (const id of ids)
    ports.set(id, { client: await freePort(), route: await freePort(), monitor: await freePort() });
  const nodes: ClusterNode[] = ids.map((id) => ({
    id,
    process: undefined,
    clients: `127.0.0.1:${ports.get(id)!.client}`,
    monitor: `127.0.0.1:${ports.get(id)!.monitor}`,
  }));
  for (const id of ids) {
    const own = ports.get(id)!;
    const routes = ids.filter((other) => other !== id).map((other) => ports.get(other)!.route);
    writeFileSync(
      join(dir, `${id}.conf`),
      [
        `server_name: ${id}`,
        `listen: 127.0.0.1:${own.client}`,
        `http: 127.0.0.1:${own.monitor}`,
        "jetstream {",
        `  store_dir: "${join(dir, id)}"`,
        "  max_memory_store: 1GB",
        "  max_file_store: 20GB",
        "}",
        "cluster {",
        "  name: bench",
        `  listen: 127.0.0.1:${own.route}`,
        `  routes: [${routes.map((port) => `nats-route://127.0.0.1:${port}`).join(", ")}]`,
        "}",
        "",
      ].join("\n"),
    );
  }
  let version = "unknown";
  const start = async (node: ClusterNode): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        const { server } = await startChild(
          `nats-server ${node.id}`,
          executable,
          ["-c", join(dir, `${node.id}.conf`)],
          (output) => output.includes("Server is ready"),
          15_000,
        );
        node.process = server;
        version = /Version:\s+(\S+)/.exec(server.output())?.[1] ?? version;
        return;
      } catch (error) {
        // A port of the killed life may still be held for a moment.
        if (attempt >= 5) throw error;
        await sleep(200 * attempt);
      }
    }
  };
  await Promise.all(nodes.map(start));
  const node = (id: string) => {
    const found = nodes.find((candidate) => candidate.id === id);
    if (found === undefined) throw new Error(`bench: no nats-server ${id}`);
    return found;
  };
  const cluster: NatsCluster = {
    nodes,
    node,
    get version() {
      return version;
    },
    pids: () => nodes.flatMap((each) => (each.process === undefined ? [] : [each.process.pid])),
    kill: async (id) => {
      const target = node(id);
      const running = target.process;
      target.process = undefined;
      await running?.kill();
    },
    restart: async (id) => {
      const target = node(id);
      if (target.process !== undefined) throw new Error(`bench: nats-server ${id} is still running`);
      await start(target);
    },
    reset: async () => {
      await Promise.all(
        nodes.map(async (each) => {
          const running = each.process;
          each.process = undefined;
          await running?.stop(5000);
        }),
      );
      for (const id of ids) rmSync(join(dir, id), { recursive: true, force: true });
      await Promise.all(nodes.map(start));
      await cluster.waitHealthy(60_000);
    },
    // Healthy: each node's /healthz is ok, or the JetStream meta leader reports it current. A
    // nats-server 2.9.10 restarted after a kill -9 sometimes answers "JetStream is not current
    // with the meta leader" for minutes (a second restart does not help) while the meta leader
    // lists it as current and streams place and replicate on it.
    waitHealthy: (timeoutMs) =>
      waitFor(
        "nats-server x3: each /healthz ok or current for the JetStream meta leader",
        timeoutMs,
        async () => {
          const unhealthy = new Map<string, string>();
          let leader: string | undefined;
          for (const each of nodes) {
            if (each.process === undefined) return `${each.id} is down`;
            const health = (await getJson(each.monitor, "/healthz").catch((error: Error) => ({
              status: error.message,
            }))) as { status?: string; error?: string };
            if (health.status !== "ok")
              unhealthy.set(each.id, `${each.id} /healthz: ${health.error ?? health.status}`);
            const jsz = (await getJson(each.monitor, "/jsz")) as { meta_cluster?: { leader?: string } };
            leader ??= jsz.meta_cluster?.leader;
          }
          if (leader === undefined) return "no JetStream meta leader";
          if (unhealthy.size === 0) return true;
          const meta = (await getJson(node(leader).monitor, "/jsz")) as {
            meta_cluster?: { leader?: string; replicas?: { name: string; current?: boolean }[] };
          };
          if (meta.meta_cluster?.leader !== leader) return `the meta leader moved from ${leader}`;
          for (const id of unhealthy.keys()) {
            if (
              meta.meta_cluster.replicas?.some((replica) => replica.name === id && replica.current === true)
            )
              unhealthy.delete(id);
          }
          return unhealthy.size === 0 ? true : [...unhealthy.values()].join("; ");
        },
        100,
      ),
  };
  await cluster.waitHealthy(60_000);
  return cluster;
}
