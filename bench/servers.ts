// The servers a benchmark run needs, started as real processes: a Neuron router (`neuron
// router --config FILE`, certificates made by the library into a temp dir) and nats-server on
// a free port (clusters.ts starts three of each for the persistent scenarios, through
// `startChild`). Each is waited for with a deadline (never a fixed sleep).
//
// Invariant: every process started here is in `children` until it has exited, and
// `stopAllNow()` (signal handlers, process exit) kills each by its PID and removes the temp
// dirs, so a Ctrl-C or a crash never leaves a server running.
// Trap: a killed child stays a zombie until Node reaps it; `stop()` waits for its exit event.
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, appendFileSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { type Credentials, createCertificateAuthority, issueCertificate } from "../src/axon/index.ts";

const cliPath = new URL("../src/cli/main.ts", import.meta.url).pathname;

const children = new Set<ChildProcess>();
const directories = new Set<string>();

export interface ServerProcess {
  readonly pid: number;
  /** The last lines the process wrote (stderr and stdout), for error reports. */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
  /** kill -9 (nothing else first); resolves once the process has exited. */
  kill(): Promise<void>;
}

/** PIDs of the servers running now (all lives), for the CPU meters and the quiet wait. */
export function runningPids(): number[] {
  return [...children].flatMap((child) =>
    child.pid !== undefined && child.exitCode === null && child.signalCode === null ? [child.pid] : [],
  );
}

/** A temp dir removed by `stopAll` / `stopAllNow`. */
export function temporaryDirectory(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  directories.add(dir);
  return dir;
}

/** Kills every child by PID and removes temp dirs, synchronously (for signal and exit handlers). */
export function stopAllNow(): void {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  children.clear();
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
  directories.clear();
}

/** Stops every child gracefully (SIGTERM, SIGKILL after 5 s) and removes temp dirs. */
export async function stopAll(): Promise<void> {
  // The router itself gives its links up to 2 s to flush (router.ts), and a profile to write.
  await Promise.all([...children].map((child) => stopChild(child, 5000)));
  stopAllNow();
}

function killChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      children.delete(child);
      return resolve();
    }
    child.once("exit", () => {
      children.delete(child);
      resolve();
    });
    if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
  });
}

function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      children.delete(child);
      return resolve();
    }
    const kill = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
    }, graceMs);
    child.once("exit", () => {
      clearTimeout(kill);
      children.delete(child);
      resolve();
    });
    if (child.pid !== undefined) process.kill(child.pid, "SIGTERM");
  });
}

/** Spawns a child, keeps its last output, resolves when `ready(output)` says so (deadline). */
export function startChild(
  what: string,
  command: string,
  args: readonly string[],
  ready: (output: string) => boolean,
  deadlineMs: number,
  logPath?: string,
): Promise<{ child: ChildProcess; server: ServerProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let output = "";
    let started = false;
    const keep = (chunk: Buffer) => {
      if (logPath !== undefined) appendFileSync(logPath, chunk);
      output = (output + chunk.toString()).slice(-16_384);
      if (!started && ready(output)) {
        started = true;
        clearTimeout(deadline);
        resolve({
          child,
          server: {
            pid: child.pid!,
            output: () => output,
            stop: (graceMs = 2000) => stopChild(child, graceMs),
            kill: () => killChild(child),
          },
        });
      }
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    const deadline = setTimeout(() => {
      void stopChild(child, 0);
      reject(new Error(`${what} not ready within ${deadlineMs} ms; output:\n${output}`));
    }, deadlineMs);
    child.once("error", (error) => {
      clearTimeout(deadline);
      children.delete(child);
      reject(new Error(`${what} did not start: ${error.message}`));
    });
    child.once("exit", (code, signal) => {
      children.delete(child);
      if (started) return;
      clearTimeout(deadline);
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready; output:\n${output}`));
    });
  });
}

export interface RouterProcess extends ServerProcess {
  /** "127.0.0.1:PORT" of the TLS client listener. */
  readonly clients: string;
  readonly clientsQuic: string | undefined;
  /** Client credentials issued by the router's CA. */
  readonly clientCredentials: Credentials;
}

/** Makes a CA and certificates in a temp dir, writes a config, starts `neuron router`. */
export async function startRouter(options: {
  readonly quic: boolean;
  readonly nodeFlags: readonly string[];
  /** Append everything the router writes to this file. */
  readonly logPath?: string | undefined;
}): Promise<RouterProcess> {
  const dir = temporaryDirectory("neuron-bench-");
  const ca = await createCertificateAuthority("Neuron bench CA");
  const router = await issueCertificate(ca, { role: "router", id: "bench-r1" });
  const client = await issueCertificate(ca, { role: "client", id: "bench" });
  writeFileSync(join(dir, "ca.pem"), ca.cert);
  writeFileSync(join(dir, "r1.pem"), router.cert);
  writeFileSync(join(dir, "r1.key"), router.key);
  const configPath = join(dir, "router.toml");
  writeFileSync(
    configPath,
    [
      `id = "bench-r1"`,
      `region = "bench"`,
      `data_dir = "${join(dir, "data")}"`,
      "seeds = []",
      "[listen]",
      `clients = "127.0.0.1:0"`,
      options.quic ? `clients_quic = "127.0.0.1:0"` : "",
      "[tls]",
      `ca = "${join(dir, "ca.pem")}"`,
      `cert = "${join(dir, "r1.pem")}"`,
      `key = "${join(dir, "r1.key")}"`,
      "",
    ].join("\n"),
  );
  const { server } = await startChild(
    "neuron router",
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
  const ready = JSON.parse(line) as { clients: string; clientsQuic?: string };
  return {
    ...server,
    clients: ready.clients,
    clientsQuic: ready.clientsQuic,
    clientCredentials: { ca: ca.cert, cert: client.cert, key: client.key },
  };
}

/** The nats-server executable on PATH (or in /usr/sbin, where Debian puts it), if any. */
export function findNatsServer(): string | undefined {
  const directoriesToTry = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/bin"];
  for (const directory of directoriesToTry) {
    if (directory === "") continue;
    const candidate = join(directory, "nats-server");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A TCP port free at the moment of asking (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface NatsProcess extends ServerProcess {
  /** "127.0.0.1:PORT" for clients. */
  readonly url: string;
  readonly version: string;
}

/** Starts nats-server with default settings on a free loopback port. */
export async function startNats(executable: string): Promise<NatsProcess> {
  const port = await freePort();
  const { server } = await startChild(
    "nats-server",
    executable,
    ["-a", "127.0.0.1", "-p", String(port)],
    (output) => output.includes("Server is ready"),
    10_000,
  );
  const version = /Version:\s+(\S+)/.exec(server.output())?.[1] ?? "unknown";
  return { ...server, url: `127.0.0.1:${port}`, version };
}
