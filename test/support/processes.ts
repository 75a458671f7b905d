// Real router processes for tests: generated certificates, a config on port 0, the `neuron
// router` command as a child process, and a wait for its ready line with a deadline (never a
// fixed sleep). Every process started here is killed by `stopAll()`; call it in afterEach.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Credentials } from "../../src/axon/index.ts";
import type { TestPki } from "./certs.ts";

export const cliPath = new URL("../../src/cli/main.ts", import.meta.url).pathname;

const children = new Set<ChildProcess>();
const directories = new Set<string>();

export async function tempDir(prefix = "neuron-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  directories.add(dir);
  return dir;
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `neuron ARGS` to completion (deadline 30 s). */
export function runCli(
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const deadline = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`neuron ${args.join(" ")} did not finish within 30 s; stderr: ${stderr}`));
    }, 30_000);
    child.on("exit", (code, signal) => {
      clearTimeout(deadline);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface RouterProcess {
  readonly id: string;
  readonly pid: number;
  /** "127.0.0.1:PORT" of the client listener. */
  readonly clients: string;
  readonly clientsQuic: string | undefined;
  /** "127.0.0.1:PORT" of the gossip socket and of GET /status, when configured. */
  readonly gossip: string | undefined;
  readonly metrics: string | undefined;
  readonly configPath: string;
  /** Everything the router wrote to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code and signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  signal(signal: NodeJS.Signals): void;
}

export interface RouterSpec {
  readonly id: string;
  readonly dir: string;
  readonly pki: TestPki;
  /** Fixed client port (to restart on the same address); default 0. */
  readonly port?: number;
  readonly quic?: boolean;
  /** Gossip on: the cluster key and the seeds (gossip addresses); a fixed port to restart on. */
  readonly gossip?: { readonly key: string; readonly seeds?: readonly string[]; readonly port?: number };
  /** Serve GET /status on a free port. */
  readonly metrics?: boolean;
  readonly extraToml?: string;
}

/** Writes certificates and a router.toml for `spec` into spec.dir; returns the config path. */
export async function writeRouterConfig(spec: RouterSpec): Promise<string> {
  const certs = await spec.pki.credentials({ role: "router", id: spec.id });
  await writeCredentials(spec.dir, spec.id, certs);
  const configPath = join(spec.dir, `${spec.id}.toml`);
  await writeFile(
    configPath,
    [
      `id = "${spec.id}"`,
      `region = "test"`,
      `data_dir = "${join(spec.dir, `data-${spec.id}`)}"`,
      `seeds = ${JSON.stringify(spec.gossip?.seeds ?? [])}`,
      spec.extraToml ?? "",
      "[listen]",
      `clients = "127.0.0.1:${spec.port ?? 0}"`,
      spec.quic === true ? `clients_quic = "127.0.0.1:0"` : "",
      spec.gossip === undefined ? "" : `gossip = "127.0.0.1:${spec.gossip.port ?? 0}"`,
      spec.metrics === true ? `metrics = "127.0.0.1:0"` : "",
      spec.gossip === undefined ? "" : `[gossip]\nkeys = ["${spec.gossip.key}"]`,
      "[tls]",
      `ca = "${join(spec.dir, "ca.pem")}"`,
      `cert = "${join(spec.dir, `${spec.id}.pem`)}"`,
      `key = "${join(spec.dir, `${spec.id}.key`)}"`,
    ].join("\n"),
  );
  return configPath;
}

export async function writeCredentials(dir: string, id: string, credentials: Credentials): Promise<void> {
  await writeFile(join(dir, "ca.pem"), credentials.ca);
  await writeFile(join(dir, `${id}.pem`), credentials.cert);
  await writeFile(join(dir, `${id}.key`), credentials.key);
}

/** Starts `neuron router --config PATH` and waits (20 s deadline) for its ready line. */
export function startRouterProcess(id: string, configPath: string): Promise<RouterProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, "router", "--config", configPath], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.on("exit", (code, signal) => {
        children.delete(child);
        done({ code, signal });
      }),
    );
    const deadline = setTimeout(
      () => reject(new Error(`router ${id} not ready within 20 s; stderr: ${stderr}`)),
      20_000,
    );
    void exited.then(({ code, signal }) => {
      clearTimeout(deadline);
      reject(new Error(`router ${id} exited (${code ?? signal}) before it was ready; stderr: ${stderr}`));
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const line = stdout.split("\n").find((text) => text.startsWith('{"event":"ready"'));
      if (line === undefined) return;
      clearTimeout(deadline);
      const ready = JSON.parse(line) as {
        clients: string;
        clientsQuic?: string;
        gossip?: string;
        metrics?: string;
        pid: number;
      };
      resolve({
        id,
        pid: ready.pid,
        clients: ready.clients,
        clientsQuic: ready.clientsQuic,
        gossip: ready.gossip,
        metrics: ready.metrics,
        configPath,
        stderr: () => stderr,
        exited,
        signal: (signal) => child.kill(signal),
      });
    });
  });
}

/** Kills every process this module started and removes temporary directories. */
export async function stopAll(): Promise<void> {
  const exits = [...children].map(
    (child) =>
      new Promise<void>((done) => {
        if (child.exitCode !== null || child.signalCode !== null) return done();
        child.once("exit", () => done());
        child.kill("SIGKILL");
      }),
  );
  await Promise.all(exits);
  children.clear();
  for (const dir of directories) await rm(dir, { recursive: true, force: true });
  directories.clear();
}

/** Waits for `condition` (polled every 10 ms) with a deadline. For real-process tests only. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
