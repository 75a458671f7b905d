// A cluster of real `neuron router` processes for real-process tests (DESIGN.md "harness";
// STYLE.md tests 5), as a scoped Effect: `Cluster.make` sets up a temp dir, a cluster CA with
// router and client certificates, a gossip key and one config per router, starts the routers
// and hands back operations (kill, stop, restart, add, status, waitUntil, ...). Closing the
// scope - success, failure or interruption - ends every process it started and removes the dir.
//
// Invariants:
// - Every process is registered in `started` in the same synchronous step that spawns it, so no
//   interruption can leave one behind; the release ends all of them (SIGTERM, then SIGKILL after
//   `stopTimeoutMs`) before it removes the dir. A process "exit" hook does the same (SIGKILL,
//   rmSync) if the test process exits without closing the scope; it is removed on release.
// - Every listener binds port 0. The first router starts with `seeds = []`; every later start
//   (the others, a restart, an add) is seeded with the gossip addresses of the routers serving
//   (alive, not paused) at that moment, read from their ready lines, so a restarted r1 on a new
//   port is fine.
// - Lifecycle operations (kill, stop, restart, add) run one at a time (a semaphore), so a
//   nemesis and a test can share a cluster without two of them racing on one router.
// Traps:
// - A restarted router comes back on new ports. Membership accepts a member's new gossip
//   address only once the old life is dead or left (view.ts, addressConflict): after a kill -9,
//   the others see the new life once they have declared the old one dead. Wait for "dead"
//   before restarting when a test needs the restart to be seen at once.
// - `status(id)` asks one router for its view; "alive" in its view is that router's belief,
//   which lags reality by the failure detector's timeouts (LAN: seconds).
// - Interruption: run with `Effect.runPromise(program, { signal })` from vitest's test context,
//   so a test timeout interrupts the program and the finalizer runs.
import { rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect, Option, type Scope, Semaphore } from "effect";
import { generateKey } from "../src/membership/keyring.ts";
import { type ClusterPki, type CredentialFiles, makeClusterPki, writeCredentials } from "./certificates.ts";
import { type RouterStartFailed, StatusFailed, Timeout } from "./errors.ts";
import { routerConfigToml } from "./router-config.ts";
import { type LogLevel, type ProcessExit, type ReadyLine, RouterProcess } from "./router-process.ts";
import { fetchStatus, type RouterStatus } from "./status.ts";
import { type WaitOptions, waitUntil } from "./wait.ts";

export interface ClusterOptions {
  /** Routers to start: 1 to `routersMax`. They are named r1, r2, ... */
  readonly routers: number;
  /** Where the cluster's temp dir is made. Default: the OS temp dir. */
  readonly baseDir?: string;
  /** Region of every router. Default "test". */
  readonly region?: string;
  /** TOML tables appended to each router's config ([limits], ...), or a function of the router id. */
  readonly extraConfig?: string | ((id: string) => string);
  /** The routers' --log-level. Default "info" (member events are logged at info and warn). */
  readonly logLevel?: LogLevel;
  /** Deadline for a router's ready line. Default 20 s (a cold start on a busy 2-core machine takes ~1 s). */
  readonly readyTimeoutMs?: number;
  /** Deadline for a router to exit after SIGTERM before it gets SIGKILL. Default 10 s (shutdown grace is 2 s). */
  readonly stopTimeoutMs?: number;
}

/** Bound on routers in one cluster (ports, certificates and processes on one test machine). */
export const routersMax = 64;

/** A snapshot of one router. Addresses are those of its current (or last) life. */
export interface RouterInfo {
  readonly id: string;
  /** pid of the current (or last) process. */
  readonly pid: number | undefined;
  /** Ready and not exited (a paused router is alive too; see `paused`). */
  readonly alive: boolean;
  /** Sent SIGSTOP (or SIGTSTP) by `kill` and not SIGCONT since: it answers nothing. */
  readonly paused: boolean;
  /** Processes started for this id so far (1 after the first start; +1 per restart). */
  readonly lives: number;
  readonly clients: string | undefined;
  readonly gossip: string | undefined;
  readonly metrics: string | undefined;
  /** How the last process ended, if it has. */
  readonly exit: ProcessExit | undefined;
  readonly configPath: string;
  readonly dataDir: string;
}

/** What `client/index.ts connect()` needs: the clients addresses of live routers and PEM credentials. */
export interface ClusterClientOptions {
  readonly seeds: readonly string[];
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface Cluster {
  /** The temp dir holding certificates, configs and data dirs; removed on scope close. */
  readonly dir: string;
  readonly region: string;
  /** Every router ever added, in order, as a fresh snapshot on each read. */
  readonly routers: readonly RouterInfo[];
  /** Every pid this cluster started (all lives), for checks after close. */
  readonly startedPids: readonly number[];
  /** A snapshot of one router; an unknown id is a programmer error (throws). */
  router(id: string): RouterInfo;
  /** The last lines the router's current (or last) process wrote. */
  output(id: string, lines?: number): string;
  /**
   * Sends `signal` (default SIGKILL) to the router's process. For SIGKILL, waits until it has
   * exited; other signals return once sent (SIGSTOP pauses it, SIGCONT resumes it: `paused`).
   * A router that is not running is a programmer error (dies).
   */
  kill(id: string, signal?: NodeJS.Signals): Effect.Effect<void>;
  /** SIGTERM and wait for the exit; after `stopTimeoutMs` it is SIGKILLed and this fails with Timeout. */
  stop(id: string): Effect.Effect<ProcessExit, Timeout>;
  /** Stops the router if it runs, then starts a new process with the same id, data dir and certificates. */
  restart(id: string): Effect.Effect<RouterInfo, RouterStartFailed | Timeout>;
  /** Adds and starts a new router (the next rN), joining through the live routers, the first one first. */
  add(): Effect.Effect<RouterInfo, RouterStartFailed>;
  /** GET /status of a live router. */
  status(id: string): Effect.Effect<RouterStatus, StatusFailed>;
  /** GET /status of the given routers (default: every live, unpaused one), concurrently, keyed by id. */
  views(ids?: readonly string[]): Effect.Effect<ReadonlyMap<string, RouterStatus>, StatusFailed>;
  /** Seeds (clients addresses of live, unpaused routers) and client credentials issued by the cluster CA. */
  clientOptions(): Effect.Effect<ClusterClientOptions>;
  /**
   * Polls `check` until it answers true, or fails with Timeout naming `what`, the last answer
   * (return a string from the check to say what is still missing) and every router's state.
   */
  waitUntil<E, R>(
    check: Effect.Effect<boolean | string, E, R>,
    options: WaitOptions,
  ): Effect.Effect<void, Timeout, R>;
}

interface Slot {
  readonly id: string;
  readonly dataDir: string;
  readonly configPath: string;
  readonly tls: CredentialFiles;
  /** The current (or last) process; undefined before the first start. */
  current: RouterProcess | undefined;
  lives: number;
  /** Stopped by SIGSTOP/SIGTSTP through `kill`; cleared by SIGCONT and by a new life. */
  paused: boolean;
}

interface State {
  readonly dir: string;
  readonly region: string;
  readonly gossipKey: string;
  readonly pki: ClusterPki;
  readonly options: ClusterOptions;
  readonly readyTimeoutMs: number;
  readonly stopTimeoutMs: number;
  /** Insertion order is r1, r2, ...: the first live one is the preferred seed. */
  readonly slots: Map<string, Slot>;
  /** Every process started, all lives. Invariant: holds every process that might still run. */
  readonly started: RouterProcess[];
  readonly exitHook: () => void;
  closed: boolean;
}

const isAlive = (slot: Slot) => slot.current?.running === true && slot.current.ready !== undefined;
/** Alive and not paused: worth asking for /status, as a seed, or by a client. */
const isServing = (slot: Slot) => isAlive(slot) && !slot.paused;

function info(slot: Slot): RouterInfo {
  const ready: ReadyLine | undefined = slot.current?.ready;
  return {
    id: slot.id,
    pid: slot.current?.pid,
    alive: isAlive(slot),
    paused: slot.paused,
    lives: slot.lives,
    clients: ready?.clients,
    gossip: ready?.gossip,
    metrics: ready?.metrics,
    exit: slot.current?.exit,
    configPath: slot.configPath,
    dataDir: slot.dataDir,
  };
}

/** One line per router, with the last lines of a dead or starting one's output. */
function describeCluster(state: State): string {
  const lines: string[] = [];
  for (const slot of state.slots.values()) {
    const current = slot.current;
    const life =
      current === undefined
        ? "never started"
        : isAlive(slot)
          ? `${slot.paused ? "paused" : "alive"} pid ${current.pid} gossip ${current.ready?.gossip}`
          : current.running
            ? `starting pid ${current.pid}`
            : `${current.describeExit()} (pid ${current.pid})`;
    lines.push(`${slot.id} (life ${slot.lives}): ${life}`);
    if (current !== undefined) lines.push(indent(current.stderr.tail(5)));
  }
  return lines.join("\n");
}

const indent = (text: string) =>
  text
    .split("\n")
    .map((line) => `    ${line}`)
    .join("\n");

function slotOf(state: State, id: string): Slot {
  const slot = state.slots.get(id);
  if (slot === undefined)
    throw new Error(
      `harness: no router ${JSON.stringify(id)}; routers: ${[...state.slots.keys()].join(", ")}`,
    );
  return slot;
}

/** The temp dir, the exit hook and the state; released by `release`. Kept small: it runs uninterruptibly. */
const acquire = (options: ClusterOptions, pki: ClusterPki): Effect.Effect<State> =>
  Effect.promise(() => mkdtemp(join(options.baseDir ?? tmpdir(), "neuron-harness-"))).pipe(
    Effect.map((dir) => {
      const started: RouterProcess[] = [];
      const exitHook = () => {
        for (const router of started) router.signal("SIGKILL");
        rmSync(dir, { recursive: true, force: true });
      };
      process.on("exit", exitHook);
      return {
        dir,
        region: options.region ?? "test",
        gossipKey: generateKey(),
        pki,
        options,
        readyTimeoutMs: options.readyTimeoutMs ?? 20_000,
        stopTimeoutMs: options.stopTimeoutMs ?? 10_000,
        slots: new Map(),
        started,
        exitHook,
        closed: false,
      };
    }),
  );

const release = (state: State): Effect.Effect<void> =>
  Effect.gen(function* () {
    state.closed = true;
    const exits = yield* Effect.forEach(state.started, (router) => router.terminate(state.stopTimeoutMs), {
      concurrency: "unbounded",
    });
    yield* Effect.promise(() => rm(state.dir, { recursive: true, force: true, maxRetries: 3 }));
    process.off("exit", state.exitHook);
    const survivors = state.started
      .filter((_, index) => exits[index] === undefined)
      .map((router) => router.pid);
    if (survivors.length > 0)
      yield* Effect.die(
        new Error(`harness: processes ${survivors.join(", ")} did not exit even after SIGKILL`),
      );
  });

/** Adds router `id`: its certificate, key and data dir path (the config is written at each start). */
const addSlot = (state: State, id: string): Effect.Effect<Slot> =>
  Effect.gen(function* () {
    const credentials = yield* state.pki.issue({ role: "router", id });
    const certificates = join(state.dir, "certs");
    yield* Effect.promise(() => mkdir(certificates, { recursive: true }));
    const tls = yield* writeCredentials(certificates, id, credentials);
    const slot: Slot = {
      id,
      dataDir: join(state.dir, "data", id),
      configPath: join(state.dir, `${id}.toml`),
      tls,
      current: undefined,
      lives: 0,
      paused: false,
    };
    state.slots.set(id, slot);
    return slot;
  });

/** Starts a new life of `slot`, seeded with the live routers' gossip addresses; waits for its ready line. */
const startSlot = (state: State, slot: Slot): Effect.Effect<RouterInfo, RouterStartFailed> =>
  Effect.gen(function* () {
    const seeds = [...state.slots.values()]
      .filter((other) => other !== slot && isServing(other))
      .flatMap((other) => (other.current?.ready?.gossip === undefined ? [] : [other.current.ready.gossip]));
    const extra = state.options.extraConfig;
    const toml = routerConfigToml({
      id: slot.id,
      region: state.region,
      dataDir: slot.dataDir,
      seeds,
      gossipKey: state.gossipKey,
      tls: slot.tls,
      extra: typeof extra === "function" ? extra(slot.id) : (extra ?? ""),
    });
    yield* Effect.promise(() => writeFile(slot.configPath, toml));
    // Spawn and register in one synchronous step (see the invariant at the top).
    const router = yield* Effect.sync(() => {
      if (state.closed) throw new Error(`harness: router ${slot.id} started after the cluster closed`);
      const spawned = RouterProcess.spawn(slot.id, slot.configPath, state.options.logLevel);
      state.started.push(spawned);
      slot.current = spawned;
      slot.lives++;
      slot.paused = false;
      return spawned;
    });
    const ready = yield* router
      .awaitReady(state.readyTimeoutMs)
      .pipe(Effect.onError(() => router.terminate(state.stopTimeoutMs)));
    if (ready.id !== slot.id)
      yield* Effect.die(new Error(`harness: router ${slot.id} announced itself as ${ready.id}`));
    return info(slot);
  });

const stopSlot = (state: State, slot: Slot): Effect.Effect<ProcessExit, Timeout> =>
  Effect.gen(function* () {
    const router = slot.current;
    if (router === undefined)
      return yield* Effect.die(new Error(`harness: router ${slot.id} was never started`));
    if (router.exit !== undefined) return router.exit;
    const startMs = Date.now();
    router.signal("SIGTERM");
    router.signal("SIGCONT");
    const exit = yield* router.awaitExit().pipe(Effect.timeoutOption(state.stopTimeoutMs));
    if (Option.isSome(exit)) return exit.value;
    const output = router.outputTail();
    yield* router.terminate(0);
    return yield* new Timeout({
      what: `router ${slot.id} (pid ${router.pid}) to exit after SIGTERM (it was then SIGKILLed)`,
      elapsedMs: Date.now() - startMs,
      detail: output,
    });
  });

const killSlot = (slot: Slot, signal: NodeJS.Signals): Effect.Effect<void> =>
  Effect.gen(function* () {
    const router = slot.current;
    if (router === undefined || !router.running)
      return yield* Effect.die(
        new Error(
          `harness: cannot send ${signal} to router ${slot.id}: it is not running (${router?.describeExit() ?? "never started"})`,
        ),
      );
    router.signal(signal);
    if (signal === "SIGSTOP" || signal === "SIGTSTP") slot.paused = true;
    if (signal === "SIGCONT") slot.paused = false;
    if (signal !== "SIGKILL") return;
    // SIGKILL cannot be caught; an exit that takes seconds means the machine is in trouble.
    const exit = yield* router.awaitExit().pipe(Effect.timeoutOption(5000));
    if (Option.isNone(exit))
      yield* Effect.die(
        new Error(`harness: router ${slot.id} (pid ${router.pid}) still runs 5 s after SIGKILL`),
      );
  });

const statusOf = (state: State, id: string): Effect.Effect<RouterStatus, StatusFailed> =>
  Effect.suspend(() => {
    const slot = slotOf(state, id);
    const metrics = slot.current?.ready?.metrics;
    if (!isAlive(slot) || metrics === undefined) {
      const why = slot.current === undefined ? "it was never started" : slot.current.describeExit();
      return Effect.fail(new StatusFailed({ id, url: "", reason: `router ${id} is not running (${why})` }));
    }
    return fetchStatus(id, metrics);
  });

const make = (options: ClusterOptions): Effect.Effect<Cluster, RouterStartFailed, Scope.Scope> =>
  Effect.gen(function* () {
    if (!Number.isInteger(options.routers) || options.routers < 1 || options.routers > routersMax)
      return yield* Effect.die(
        new Error(`harness: routers must be an integer from 1 to ${routersMax}, got ${options.routers}`),
      );
    const pki = yield* makeClusterPki("Neuron harness cluster CA");
    const state = yield* Effect.acquireRelease(acquire(options, pki), release);
    const client = yield* pki.issue({ role: "client", id: "harness-client" });
    const lifecycle = yield* Semaphore.make(1);
    const serial = lifecycle.withPermits(1);

    // The first router has no seeds; the others join through it, started together.
    const slots: Slot[] = [];
    for (let index = 1; index <= options.routers; index++) slots.push(yield* addSlot(state, `r${index}`));
    yield* startSlot(state, slots[0]!);
    yield* Effect.forEach(slots.slice(1), (slot) => startSlot(state, slot), {
      concurrency: "unbounded",
      discard: true,
    });

    const cluster: Cluster = {
      dir: state.dir,
      region: state.region,
      get routers() {
        return [...state.slots.values()].map(info);
      },
      get startedPids() {
        return state.started.flatMap((router) => (router.pid === undefined ? [] : [router.pid]));
      },
      router: (id) => info(slotOf(state, id)),
      output: (id, lines) => slotOf(state, id).current?.outputTail(lines) ?? "",
      kill: (id, signal = "SIGKILL") => serial(Effect.suspend(() => killSlot(slotOf(state, id), signal))),
      stop: (id) => serial(Effect.suspend(() => stopSlot(state, slotOf(state, id)))),
      restart: (id) =>
        serial(
          Effect.suspend(() => {
            const slot = slotOf(state, id);
            return stopSlot(state, slot).pipe(Effect.andThen(startSlot(state, slot)));
          }),
        ),
      add: () =>
        serial(
          Effect.suspend(() => addSlot(state, `r${state.slots.size + 1}`)).pipe(
            Effect.flatMap((slot) => startSlot(state, slot)),
          ),
        ),
      status: (id) => statusOf(state, id),
      views: (ids) =>
        Effect.suspend(() => {
          const chosen = ids ?? [...state.slots.values()].filter(isServing).map((slot) => slot.id);
          return Effect.forEach(chosen, (id) => statusOf(state, id), { concurrency: "unbounded" }).pipe(
            Effect.map((statuses) => new Map(chosen.map((id, index) => [id, statuses[index]!]))),
          );
        }),
      clientOptions: () =>
        Effect.sync(() => ({
          seeds: [...state.slots.values()].filter(isServing).map((slot) => slot.current!.ready!.clients),
          ca: client.ca,
          cert: client.cert,
          key: client.key,
        })),
      waitUntil: (check, waitOptions) =>
        waitUntil(check, { ...waitOptions, describe: () => `cluster:\n${describeCluster(state)}` }),
    };
    return cluster;
  });

export const Cluster = { make } as const;
