// One `neuron router --config PATH` child process: spawn, the ready line, signals, the exit.
// The router prints one JSON line {"event":"ready","id","pid","clients",...} on stdout once every
// listener is bound (src/cli/router.ts); everything else goes to stderr. Both streams are kept
// in bounded line buffers for failure messages.
//
// Invariants: `exit` is set once, from the child's "close" event (process gone and both pipes
// drained, so the output tail is complete when a start failure is reported); `ready` is set at
// most once, before or never after `exit`. Both pipes are always read, so a router never blocks
// on a full pipe.
// Traps: a SIGTERM sent to a paused (SIGSTOP) router waits until it is continued, so
// `terminate` sends SIGCONT after SIGTERM. `awaitReady` does not kill on failure: the caller
// owns the process (the cluster kills it, and everything else it started, on scope close).
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Effect } from "effect";
import { RouterStartFailed } from "./errors.ts";
import { LineBuffer } from "./line-buffer.ts";

/** The `neuron` command's entry point, run with this process's node (type stripping). */
export const cliPath = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));

/** The router's ready line: its bound addresses as "host:port". */
export interface ReadyLine {
  readonly id: string;
  readonly pid: number;
  readonly clients: string;
  readonly clientsQuic?: string;
  readonly gossip?: string;
  readonly metrics?: string;
}

export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export type LogLevel = "debug" | "info" | "warn" | "error";

export class RouterProcess {
  readonly id: string;
  readonly configPath: string;
  /** undefined only when the spawn itself failed (see `spawnError`). */
  readonly pid: number | undefined;
  readonly stdout = new LineBuffer();
  readonly stderr = new LineBuffer();
  private readonly child: ChildProcess;
  private readyLine: ReadyLine | undefined;
  private exitStatus: ProcessExit | undefined;
  private spawnFailure: Error | undefined;
  /** Called on every change of ready/exit; awaiting effects register here. Bounded by the awaiting fibers. */
  private readonly watchers = new Set<() => void>();

  private constructor(id: string, configPath: string, child: ChildProcess) {
    this.id = id;
    this.configPath = configPath;
    this.child = child;
    this.pid = child.pid;
  }

  /** Spawns the router (synchronously, so the caller can register it before anything can fail). */
  static spawn(id: string, configPath: string, logLevel: LogLevel = "info"): RouterProcess {
    const child = spawn(
      process.execPath,
      [cliPath, "router", "--config", configPath, "--log-level", logLevel],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const router = new RouterProcess(id, configPath, child);
    child.stdout?.setEncoding("utf8");
    child.stderr?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      for (const line of router.stdout.push(chunk)) router.readLine(line);
    });
    child.stderr?.on("data", (chunk: string) => {
      router.stderr.push(chunk);
    });
    child.on("error", (error) => {
      // "error" also fires when a signal cannot be sent; only a failed spawn ends the process.
      if (router.pid !== undefined) return;
      router.spawnFailure = error;
      router.exitStatus ??= { code: null, signal: null };
      router.notify();
    });
    child.on("close", (code, signal) => {
      router.exitStatus ??= { code, signal };
      router.notify();
    });
    return router;
  }

  get ready(): ReadyLine | undefined {
    return this.readyLine;
  }

  get exit(): ProcessExit | undefined {
    return this.exitStatus;
  }

  /** Spawned and not yet exited (it may still be starting, or paused). */
  get running(): boolean {
    return this.exitStatus === undefined;
  }

  /** Sends a signal; false if the process is gone. */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.running) return false;
    return this.child.kill(signal);
  }

  /** The last lines of stderr, then stdout, for failure messages. */
  outputTail(lines = 20): string {
    const parts = [`stderr:\n${this.stderr.tail(lines)}`];
    const stdout = this.stdout.tail(5);
    if (stdout !== "") parts.push(`stdout:\n${stdout}`);
    if (this.spawnFailure !== undefined) parts.push(`spawn failed: ${this.spawnFailure.message}`);
    return parts.join("\n");
  }

  /** Waits for the ready line; fails if the process ends first or `timeoutMs` passes. */
  awaitReady(timeoutMs: number): Effect.Effect<ReadyLine, RouterStartFailed> {
    const outcome = this.when((): Effect.Effect<ReadyLine, RouterStartFailed> | undefined => {
      if (this.readyLine !== undefined) return Effect.succeed(this.readyLine);
      if (this.exitStatus !== undefined) return Effect.fail(this.startFailed(this.describeExit()));
      return undefined;
    });
    return outcome.pipe(
      Effect.timeoutOrElse({
        duration: timeoutMs,
        orElse: () => Effect.fail(this.startFailed(`no ready line within ${timeoutMs} ms`)),
      }),
    );
  }

  /** Waits for the process to end (no deadline: pair it with one). */
  awaitExit(): Effect.Effect<ProcessExit> {
    return this.when(() => (this.exitStatus === undefined ? undefined : Effect.succeed(this.exitStatus)));
  }

  /**
   * Ends the process: SIGTERM (and SIGCONT, in case it is paused), then SIGKILL if it has not
   * exited within `graceMs`. Returns the exit, or undefined if even SIGKILL did not end it
   * within `killWaitMs` (a process stuck in the kernel); never fails, so it is safe in finalizers.
   */
  terminate(graceMs: number, killWaitMs = 5000): Effect.Effect<ProcessExit | undefined> {
    return Effect.suspend(() => {
      if (this.exitStatus !== undefined) return Effect.succeed(this.exitStatus);
      this.signal("SIGTERM");
      this.signal("SIGCONT");
      return this.awaitExit().pipe(
        Effect.timeoutOrElse({
          duration: graceMs,
          orElse: () =>
            Effect.suspend(() => {
              this.signal("SIGKILL");
              return this.awaitExit().pipe(
                Effect.timeoutOrElse({ duration: killWaitMs, orElse: () => Effect.succeed(undefined) }),
              );
            }),
        }),
      );
    });
  }

  describeExit(): string {
    const exit = this.exitStatus;
    if (exit === undefined) return "still running";
    if (this.spawnFailure !== undefined) return `could not be spawned (${this.spawnFailure.message})`;
    const how = exit.signal === null ? `with code ${exit.code}` : `on ${exit.signal}`;
    return `exited ${how} ${this.readyLine === undefined ? "before its ready line" : "after it was ready"}`;
  }

  private startFailed(reason: string): RouterStartFailed {
    return new RouterStartFailed({ id: this.id, reason, outputTail: this.outputTail() });
  }

  private readLine(line: string): void {
    if (this.readyLine !== undefined || !line.startsWith('{"event":"ready"')) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return;
    }
    const ready = parsed as Partial<ReadyLine>;
    if (typeof ready.clients !== "string" || typeof ready.pid !== "number") return;
    this.readyLine = ready as ReadyLine;
    this.notify();
  }

  private notify(): void {
    for (const watcher of [...this.watchers]) watcher();
  }

  /** An effect that completes with `pick()`'s effect as soon as `pick()` returns one. */
  private when<A, E>(pick: () => Effect.Effect<A, E> | undefined): Effect.Effect<A, E> {
    return Effect.callback<A, E>((resume) => {
      const now = pick();
      if (now !== undefined) {
        resume(now);
        return;
      }
      const watcher = () => {
        const next = pick();
        if (next === undefined) return;
        this.watchers.delete(watcher);
        resume(next);
      };
      this.watchers.add(watcher);
      return Effect.sync(() => {
        this.watchers.delete(watcher);
      });
    });
  }
}
