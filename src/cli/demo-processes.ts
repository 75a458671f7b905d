// The demo's child processes (`npm run demo`, demo.ts): every `neuron` process it starts, their
// output split into lines, the routers' ready lines and GET /status.
//
// Invariants: a child is registered in `Children` in the same synchronous step that spawns it,
// so `killAll` (run on success, on failure, on Ctrl-C, and from a process "exit" hook) reaches
// every process that might still run. Both pipes of every child are always read, so none
// blocks on a full pipe.
// Traps: a router prints its ready line (JSON, on stdout) only once every listener is bound;
// everything else it says is its log on stderr, "time LEVEL message key=value ...". A router
// killed with SIGKILL says nothing more: its exit is the only sign.
import { type ChildProcess, spawn } from "node:child_process";

const cli = new URL("./main.ts", import.meta.url).pathname;

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export type LineHandler = (line: string, stream: "out" | "err") => void;

/** One `neuron` child process. */
export class Child {
  readonly name: string;
  readonly pid: number | undefined;
  /** Resolves once the process is gone and its pipes are drained. */
  readonly exited: Promise<ChildExit>;
  private readonly process: ChildProcess;
  private exitStatus: ChildExit | undefined;
  /** Set by `expectExit`, `stop` and `Children.killAll`: an exit now is no surprise. */
  private exitExpected = false;

  constructor(
    name: string,
    process: ChildProcess,
    onLine: LineHandler,
    onUnexpectedExit: (child: Child, exit: ChildExit) => void,
  ) {
    this.name = name;
    this.process = process;
    this.pid = process.pid;
    for (const [stream, source] of [
      ["out", process.stdout],
      ["err", process.stderr],
    ] as const) {
      let buffered = "";
      source?.setEncoding("utf8");
      source?.on("data", (chunk: string) => {
        buffered += chunk;
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        for (const line of lines) onLine(line, stream);
      });
    }
    this.exited = new Promise((resolve) => {
      process.once("error", (error) => {
        // Also fires when a signal cannot be sent; only a failed spawn (no pid) ends it.
        if (this.pid !== undefined) return;
        this.exitStatus ??= { code: null, signal: null };
        onLine(`could not start: ${error.message}`, "err");
        resolve(this.exitStatus);
      });
      process.once("close", (code, signal) => {
        this.exitStatus ??= { code, signal };
        resolve(this.exitStatus);
      });
    });
    void this.exited.then((exit) => {
      if (!this.exitExpected) onUnexpectedExit(this, exit);
    });
  }

  get running(): boolean {
    return this.exitStatus === undefined;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.process.kill(signal);
  }

  /** The next exit is intended (a kill -9 on purpose): no `onUnexpectedExit` for it. */
  expectExit(): void {
    this.exitExpected = true;
  }

  /** SIGTERM, then SIGKILL if it is still running after `graceMs`; resolves with the exit. */
  async stop(graceMs: number): Promise<ChildExit> {
    this.expectExit();
    this.signal("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), graceMs);
    });
    const first = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (first !== "late") return first;
    this.signal("SIGKILL");
    return this.exited;
  }
}

export function describeExit(exit: ChildExit): string {
  return exit.signal === null ? `exit code ${exit.code}` : `killed by ${exit.signal}`;
}

/**
 * Every child the demo started; `killAll` ends the ones still running. A child that exits
 * without `expectExit`, `stop` or `killAll` first is reported to `onUnexpectedExit`.
 */
export class Children {
  private readonly all: Child[] = [];
  private readonly cwd: string;
  private readonly onUnexpectedExit: (child: Child, exit: ChildExit) => void;
  private readonly exitHook = () => this.killAll();

  constructor(cwd: string, onUnexpectedExit: (child: Child, exit: ChildExit) => void) {
    this.cwd = cwd;
    this.onUnexpectedExit = onUnexpectedExit;
    process.on("exit", this.exitHook);
  }

  /** Runs `neuron ARGS` (this process's node, type stripping) in the demo dir. */
  start(name: string, args: readonly string[], onLine: LineHandler): Child {
    const spawned = spawn(process.execPath, [cli, ...args], {
      cwd: this.cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const child = new Child(name, spawned, onLine, this.onUnexpectedExit);
    this.all.push(child);
    return child;
  }

  get running(): readonly Child[] {
    return this.all.filter((child) => child.running);
  }

  /** SIGKILL to every child still running (synchronous: safe in an exit hook). */
  killAll(): void {
    for (const child of this.all) {
      child.expectExit();
      child.signal("SIGKILL");
    }
  }

  /** Forgets the exit hook (after every child is known to be gone). */
  release(): void {
    process.off("exit", this.exitHook);
  }
}

/** The router's ready line (src/cli/router.ts): its bound addresses, "host:port". */
export interface ReadyLine {
  readonly id: string;
  readonly pid: number;
  readonly clients: string;
  readonly gossip: string;
  readonly metrics: string;
}

/** Parses a ready line, or undefined if `line` is not one (or lacks an address the demo needs). */
export function readyLineOf(line: string): ReadyLine | undefined {
  if (!line.startsWith('{"event":"ready"')) return undefined;
  try {
    const ready = JSON.parse(line) as Partial<ReadyLine>;
    const complete =
      typeof ready.id === "string" &&
      typeof ready.clients === "string" &&
      typeof ready.gossip === "string" &&
      typeof ready.metrics === "string";
    return complete ? (ready as ReadyLine) : undefined;
  } catch {
    return undefined;
  }
}

/** The parts of GET /status (src/router/router.ts, region.ts) the demo reads. */
export interface DemoStatus {
  readonly id: string;
  readonly members: readonly { readonly id: string; readonly state: string }[];
  readonly mesh?: {
    readonly roster: readonly string[];
    readonly controllerLeader: string | null;
    readonly groups: readonly {
      readonly group: number;
      readonly role: string;
      readonly voters: readonly string[];
      readonly leader: string | null;
    }[];
  };
}

/** A status request's deadline: a loopback answer takes milliseconds. */
const statusTimeoutMs = 2_000;

/** GET http://METRICS/status; rejects on a refused connection, an HTTP error or the deadline. */
export async function fetchStatus(metrics: string): Promise<DemoStatus> {
  const response = await fetch(`http://${metrics}/status`, {
    signal: AbortSignal.timeout(statusTimeoutMs),
  });
  if (!response.ok) throw new Error(`GET http://${metrics}/status: HTTP ${response.status}`);
  return (await response.json()) as DemoStatus;
}
