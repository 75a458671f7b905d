// SimNetwork: a deterministic network for simulations, driven by a SimClock and a seeded
// Random. Endpoints are "host:port" strings. It carries two kinds of traffic:
//
// - Datagrams (what SWIM uses): unreliable. Each one may be lost (`dropProbability`),
//   duplicated (`duplicateProbability`) and is delayed uniformly in
//   [datagramDelayMinMs, datagramDelayMaxMs], so reordering falls out of the delays.
// - Pipes (what links use; pipe.ts): reliable ordered byte streams modelling TCP, with a
//   window, a send buffer and backpressure; never lost, duplicated or reordered, but broken
//   (both ends told why) when a partition or a crash cuts them for `breakDetectionMs`.
//
// Partitions block traffic between groups (both ways, or one way); `crash` takes a host down:
// its sockets and listeners vanish, its pipes break after the detection delay.
// Invariants: nothing is ever delivered across an active partition (checked at send and again
// at delivery); every run with the same seed, config and calls yields the same trace. Every
// map is bounded (`endpointsMax`, `pipesMax`, `datagramsInFlightMax`, `traceMax`).
// Traps: draws come from two forks of the seed ("datagrams", "pipes"), so pipe traffic never
// shifts datagram faults and vice versa; but any change in the order of calls changes the
// draws, which is the point. Payloads are copied on send: senders may reuse their buffers.
import type { SimClock } from "./clock.ts";
import { Pipe, type PipeContext, type PipeEnd, type PipeHandler } from "./pipe.ts";
import type { SeededRandom } from "./random.ts";
import {
  checkPattern,
  covers,
  formatAddress,
  type PartitionId,
  parseAddress,
  Reachability,
} from "./reachability.ts";
import { Trace, type TraceEvent, type TraceKind } from "./trace.ts";

export interface SimNetworkConfig {
  /** Datagram one-way delay bounds, ms; each datagram draws uniformly between them. */
  readonly datagramDelayMinMs: number;
  readonly datagramDelayMaxMs: number;
  /** Chance a datagram is lost, in [0, 1]. */
  readonly dropProbability: number;
  /** Chance a datagram is delivered twice (each copy with its own delay), in [0, 1]. */
  readonly duplicateProbability: number;
  /** Largest datagram, bytes: 65,507 (the IPv4 UDP payload limit). Larger sends fail. */
  readonly datagramBytesMax: number;
  /** Datagrams in flight at once; past it new ones are dropped and counted ("queue full"). */
  readonly datagramsInFlightMax: number;
  /** Pipe chunk one-way delay bounds, ms. */
  readonly pipeDelayMinMs: number;
  readonly pipeDelayMaxMs: number;
  /** Bytes in flight per pipe direction (TCP's window); the rest waits in the send buffer. */
  readonly pipeWindowBytes: number;
  /** Send buffer per pipe direction, bytes; a writer that overruns it breaks its pipe (ENOBUFS). */
  readonly pipeBufferBytesMax: number;
  /** Chance a pipe chunk is split in two on the way (TCP segments freely), in [0, 1]. */
  readonly pipeSplitProbability: number;
  /** How long a cut pipe (partition, crash) lives before both ends hear it broke, ms. */
  readonly breakDetectionMs: number;
  /** Datagram sockets plus pipe listeners bound at once. */
  readonly endpointsMax: number;
  /** Pipes alive at once. */
  readonly pipesMax: number;
  /** Trace events kept (the digest covers all of them regardless). */
  readonly traceMax: number;
}

export const defaultSimNetworkConfig: SimNetworkConfig = {
  datagramDelayMinMs: 1,
  datagramDelayMaxMs: 10,
  dropProbability: 0,
  duplicateProbability: 0,
  datagramBytesMax: 65_507,
  datagramsInFlightMax: 100_000,
  pipeDelayMinMs: 1,
  pipeDelayMaxMs: 5,
  pipeWindowBytes: 256 * 1024,
  pipeBufferBytesMax: 64 * 1024 * 1024,
  pipeSplitProbability: 0,
  breakDetectionMs: 3000,
  endpointsMax: 10_000,
  pipesMax: 10_000,
  traceMax: 100_000,
};

/** Every problem with `config`, each a sentence; empty if it is valid. */
export function checkSimNetworkConfig(config: SimNetworkConfig): string[] {
  const problems: string[] = [];
  const delays = [
    ["datagramDelayMinMs", "datagramDelayMaxMs"],
    ["pipeDelayMinMs", "pipeDelayMaxMs"],
  ] as const;
  for (const [min, max] of delays) {
    if (!(Number.isFinite(config[min]) && config[min] >= 0)) problems.push(`${min} must be a finite ms >= 0`);
    if (!(Number.isFinite(config[max]) && config[max] >= config[min]))
      problems.push(`${max} must be >= ${min}`);
  }
  for (const key of ["dropProbability", "duplicateProbability", "pipeSplitProbability"] as const) {
    if (!(config[key] >= 0 && config[key] <= 1)) problems.push(`${key} must be in [0, 1]`);
  }
  if (!(Number.isFinite(config.breakDetectionMs) && config.breakDetectionMs >= 0)) {
    problems.push("breakDetectionMs must be a finite ms >= 0");
  }
  const counts = [
    "datagramBytesMax",
    "datagramsInFlightMax",
    "pipeWindowBytes",
    "pipeBufferBytesMax",
    "endpointsMax",
    "pipesMax",
  ] as const;
  for (const key of counts) {
    if (!(Number.isSafeInteger(config[key]) && config[key] >= 1))
      problems.push(`${key} must be an integer >= 1`);
  }
  if (!(Number.isSafeInteger(config.traceMax) && config.traceMax >= 0)) {
    problems.push("traceMax must be an integer >= 0");
  }
  return problems;
}

export type SimNetworkErrorCode = "EADDRINUSE" | "EADDRNOTAVAIL" | "EINVAL" | "EMFILE" | "ENETDOWN";

/** A refused bind or dial: bad address, address in use, host down, or a limit reached. */
export class SimNetworkError extends Error {
  readonly code: SimNetworkErrorCode;

  constructor(code: SimNetworkErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.code = code;
    this.name = "SimNetworkError";
  }
}

export type DatagramDropReason = "loss" | "partition" | "crashed" | "unbound" | "queueFull";

export interface NetworkStats {
  datagramsSent: number;
  datagramsDelivered: number;
  datagramsDuplicated: number;
  datagramsDropped: number;
  readonly datagramsDroppedBy: Record<DatagramDropReason, number>;
  pipesDialled: number;
  pipesBroken: number;
  pipeBytesSent: number;
  pipeBytesDelivered: number;
  pipeChunksHeld: number;
}

export type DatagramSendResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface DatagramSocket {
  readonly address: string;
  /** Sends one datagram (copied). Fails only for local reasons; loss on the way is silent. */
  send(to: string, payload: Uint8Array): DatagramSendResult;
  close(): void;
  readonly closed: boolean;
}

export interface PipeListener {
  readonly address: string;
  /** Stops taking dials; pipes already accepted stay open. */
  close(): void;
  readonly closed: boolean;
}

export interface ListenPipesOptions {
  /** What the listener presents to every dialer (a TLS server's certificate). */
  readonly answer: string;
  /** A dial arrived: `offer` is what the dialer presented. Bind `end` before returning. */
  accept(end: PipeEnd, offer: string): void;
}

const ephemeralFirst = 49152;
const ephemeralCount = 65536 - ephemeralFirst;
const nextEphemeralMax = 100_000;

interface Bound {
  closed: boolean;
}

export class SimNetwork {
  readonly clock: SimClock;
  private current: SimNetworkConfig;
  private readonly datagramRandom: SeededRandom;
  private readonly pipeRandom: SeededRandom;
  private readonly reach = new Reachability();
  private readonly traceLog: Trace;
  /** Invariant: sockets.size + listeners.size <= endpointsMax. */
  private readonly sockets = new Map<string, Bound & { receive(payload: Buffer, from: string): void }>();
  private readonly listeners = new Map<string, Bound & ListenPipesOptions>();
  /** Invariant: size <= pipesMax; a pipe leaves once both ends closed and nothing is in flight. */
  private readonly pipes = new Map<number, Pipe>();
  /** TCP-side addresses in use by dialer ends (listeners are in `listeners`). */
  private readonly dialerAddresses = new Set<string>();
  /** Next ephemeral port to try, per "udp:host" / "tcp:host". Invariant: size <= nextEphemeralMax. */
  private readonly nextEphemeral = new Map<string, number>();
  private datagramsInFlight = 0;
  private datagramCount = 0;
  private pipeCount = 0;
  private readonly counters: NetworkStats = {
    datagramsSent: 0,
    datagramsDelivered: 0,
    datagramsDuplicated: 0,
    datagramsDropped: 0,
    datagramsDroppedBy: { loss: 0, partition: 0, crashed: 0, unbound: 0, queueFull: 0 },
    pipesDialled: 0,
    pipesBroken: 0,
    pipeBytesSent: 0,
    pipeBytesDelivered: 0,
    pipeChunksHeld: 0,
  };
  private readonly pipeContext: PipeContext;

  constructor(options: {
    readonly clock: SimClock;
    readonly random: SeededRandom;
    readonly config?: Partial<SimNetworkConfig>;
  }) {
    this.clock = options.clock;
    this.current = SimNetwork.validated({ ...defaultSimNetworkConfig, ...options.config });
    this.datagramRandom = options.random.fork("datagrams");
    this.pipeRandom = options.random.fork("pipes");
    this.traceLog = new Trace(this.current.traceMax);
    this.pipeContext = {
      clock: this.clock,
      windowBytes: () => this.current.pipeWindowBytes,
      bufferBytesMax: () => this.current.pipeBufferBytesMax,
      breakDetectionMs: () => this.current.breakDetectionMs,
      delayMs: () => this.pipeRandom.between(this.current.pipeDelayMinMs, this.current.pipeDelayMaxMs),
      splitAt: (length) =>
        length >= 2 &&
        this.current.pipeSplitProbability > 0 &&
        this.pipeRandom.chance(this.current.pipeSplitProbability)
          ? 1 + this.pipeRandom.nextInt(length - 1)
          : undefined,
      cut: (from, to) => this.reach.down(from) ?? this.reach.down(to) ?? this.reach.blocked(from, to),
      record: (event) => this.record(event),
      arrive: (pipe, offer) => this.arrive(pipe, offer),
      release: (pipe) => {
        this.pipes.delete(pipe.id);
        this.dialerAddresses.delete(pipe.dialerAddress);
      },
    };
  }

  private static validated(config: SimNetworkConfig): SimNetworkConfig {
    const problems = checkSimNetworkConfig(config);
    if (problems.length > 0) throw new Error(`bad SimNetwork config: ${problems.join("; ")}`);
    return config;
  }

  get config(): SimNetworkConfig {
    return this.current;
  }

  /** Changes fault settings or limits from now on (a fault schedule calls this). `traceMax`
   *  is fixed at construction. */
  configure(changes: Partial<Omit<SimNetworkConfig, "traceMax">>): void {
    this.current = SimNetwork.validated({ ...this.current, ...changes });
  }

  // ---- datagrams ----

  /** Binds a datagram socket; port 0 picks a free ephemeral port. */
  bindDatagram(address: string, receive: (payload: Buffer, from: string) => void): DatagramSocket {
    const bound = this.bindAddress(address, "udp", (candidate) => this.sockets.has(candidate));
    const entry = { closed: false, receive };
    this.sockets.set(bound, entry);
    return {
      address: bound,
      send: (to, payload) =>
        entry.closed ? { ok: false, reason: "socket is closed" } : this.send(bound, to, payload),
      close: () => {
        if (entry.closed) return;
        entry.closed = true;
        if (this.sockets.get(bound) === entry) this.sockets.delete(bound);
      },
      get closed() {
        return entry.closed;
      },
    };
  }

  private send(from: string, to: string, payload: Uint8Array): DatagramSendResult {
    if (payload.length > this.current.datagramBytesMax) {
      return {
        ok: false,
        reason: `EMSGSIZE: datagram of ${payload.length} bytes is over ${this.current.datagramBytesMax}`,
      };
    }
    if (parseAddress(to) === undefined)
      return { ok: false, reason: `EINVAL: bad address ${JSON.stringify(to)}` };
    const id = ++this.datagramCount;
    const event = (kind: TraceKind, detail: string) =>
      this.record({
        atMs: this.clock.nowMs(),
        kind,
        channel: "datagram",
        id,
        from,
        to,
        bytes: payload.length,
        detail,
      });
    this.counters.datagramsSent += 1;
    event("sent", "");
    const down = this.reach.down(from) ?? this.reach.down(to);
    if (down !== undefined) return this.drop(event, "crashed", down);
    const blocked = this.reach.blocked(from, to);
    if (blocked !== undefined) return this.drop(event, "partition", blocked);
    if (this.datagramRandom.chance(this.current.dropProbability))
      return this.drop(event, "loss", "random loss");
    const copies = this.datagramRandom.chance(this.current.duplicateProbability) ? 2 : 1;
    if (copies === 2) {
      this.counters.datagramsDuplicated += 1;
      event("duplicated", "");
    }
    for (let copy = 0; copy < copies; copy++) {
      if (this.datagramsInFlight >= this.current.datagramsInFlightMax) {
        this.drop(event, "queueFull", `over ${this.current.datagramsInFlightMax} datagrams in flight`);
        continue;
      }
      this.datagramsInFlight += 1;
      const bytes = Buffer.from(payload);
      const delayMs = this.datagramRandom.between(
        this.current.datagramDelayMinMs,
        this.current.datagramDelayMaxMs,
      );
      this.clock.schedule(delayMs, () => {
        this.datagramsInFlight -= 1;
        const downNow = this.reach.down(to);
        if (downNow !== undefined) return void this.drop(event, "crashed", downNow);
        const blockedNow = this.reach.blocked(from, to);
        if (blockedNow !== undefined) return void this.drop(event, "partition", blockedNow);
        const socket = this.sockets.get(to);
        if (socket === undefined) return void this.drop(event, "unbound", "nothing bound there");
        this.counters.datagramsDelivered += 1;
        event("delivered", "");
        socket.receive(bytes, from);
      });
    }
    return { ok: true };
  }

  private drop(
    event: (kind: TraceKind, detail: string) => void,
    reason: DatagramDropReason,
    detail: string,
  ): DatagramSendResult {
    this.counters.datagramsDropped += 1;
    this.counters.datagramsDroppedBy[reason] += 1;
    event("dropped", `${reason}: ${detail}`);
    return { ok: true };
  }

  // ---- pipes ----

  /** Listens for pipe dials; port 0 picks a free ephemeral port. */
  listen(address: string, options: ListenPipesOptions): PipeListener {
    const bound = this.bindAddress(
      address,
      "tcp",
      (candidate) => this.listeners.has(candidate) || this.dialerAddresses.has(candidate),
    );
    const entry = { closed: false, answer: options.answer, accept: options.accept };
    this.listeners.set(bound, entry);
    return {
      address: bound,
      close: () => {
        if (entry.closed) return;
        entry.closed = true;
        if (this.listeners.get(bound) === entry) this.listeners.delete(bound);
      },
      get closed() {
        return entry.closed;
      },
    };
  }

  /**
   * Dials `to` from an ephemeral port of `fromHost`, presenting `offer` (e.g. a certificate).
   * The returned end is "connecting": its handler hears `opened(answer)` once the listener
   * took the dial, or `closed(error)`: ECONNREFUSED if nothing listens, ETIMEDOUT if a
   * partition or crash keeps the dial from arriving for `breakDetectionMs`.
   */
  connect(fromHost: string, to: string, offer: string, handler: PipeHandler): PipeEnd {
    if (checkPattern(fromHost) !== undefined || fromHost.includes(":")) {
      throw new SimNetworkError("EINVAL", `bad host ${JSON.stringify(fromHost)}`);
    }
    const target = parseAddress(to);
    if (target === undefined || target.port === 0) {
      throw new SimNetworkError("EINVAL", `bad address to dial ${JSON.stringify(to)}`);
    }
    const down = this.reach.down(fromHost);
    if (down !== undefined) throw new SimNetworkError("ENETDOWN", `cannot dial from ${fromHost}: ${down}`);
    if (this.pipes.size >= this.current.pipesMax) {
      throw new SimNetworkError("EMFILE", `more than ${this.current.pipesMax} pipes open at once`);
    }
    const local = this.ephemeral(
      fromHost,
      "tcp",
      (candidate) => this.listeners.has(candidate) || this.dialerAddresses.has(candidate),
    );
    this.dialerAddresses.add(local);
    const pipe = new Pipe(++this.pipeCount, local, to, offer, this.pipeContext);
    this.pipes.set(pipe.id, pipe);
    pipe.dialer.bind(handler);
    return pipe.dialer;
  }

  private arrive(pipe: Pipe, offer: string): void {
    const listener = this.listeners.get(pipe.listenerAddress);
    if (listener === undefined) return pipe.refuse("nothing listens there");
    const end = pipe.accept(listener.answer);
    listener.accept(end, offer);
  }

  /** Pipes alive (open, closing, or with bytes still in flight). */
  get pipeCountAlive(): number {
    return this.pipes.size;
  }

  // ---- faults ----

  /** Blocks traffic both ways between two groups of hosts or addresses. */
  partition(groupA: readonly string[], groupB: readonly string[]): PartitionId {
    const id = this.reach.partition(groupA, groupB, false);
    this.rewatch();
    return id;
  }

  /** Blocks traffic from `from` to `to` only. A pipe needs both ways, so pipes still break. */
  partitionOneWay(from: readonly string[], to: readonly string[]): PartitionId {
    const id = this.reach.partition(from, to, true);
    this.rewatch();
    return id;
  }

  /** Ends one partition; held pipe traffic resumes. False if it was not active. */
  heal(id: PartitionId): boolean {
    const healed = this.reach.heal(id);
    this.rewatch();
    return healed;
  }

  healAll(): void {
    this.reach.healAll();
    this.rewatch();
  }

  /** Takes a host (or one address) down: its sockets and listeners vanish without a word (the
   *  process died), datagrams to it are lost, and its pipes break after `breakDetectionMs`. */
  crash(pattern: string): void {
    this.reach.crash(pattern);
    for (const [address, socket] of this.sockets) {
      if (covers(pattern, address)) {
        socket.closed = true;
        this.sockets.delete(address);
      }
    }
    for (const [address, listener] of this.listeners) {
      if (covers(pattern, address)) {
        listener.closed = true;
        this.listeners.delete(address);
      }
    }
    for (const pipe of this.pipes.values()) {
      if (covers(pattern, pipe.dialerAddress) || covers(pattern, pipe.listenerAddress)) {
        pipe.doom(`${pattern} crashed`);
      }
    }
  }

  /** Brings a crashed host back: it may bind again. Its old pipes still break. */
  restart(pattern: string): boolean {
    const restarted = this.reach.restart(pattern);
    this.rewatch();
    return restarted;
  }

  private rewatch(): void {
    for (const pipe of [...this.pipes.values()]) pipe.watch();
  }

  // ---- trace and stats ----

  /** The trace events kept (the last `traceMax`), oldest first. */
  trace(): TraceEvent[] {
    return this.traceLog.events();
  }

  /** A fingerprint of the whole trace: equal digests mean equal runs. */
  get traceDigest(): string {
    return this.traceLog.digest;
  }

  stats(): NetworkStats {
    return { ...this.counters, datagramsDroppedBy: { ...this.counters.datagramsDroppedBy } };
  }

  private record(event: TraceEvent): void {
    if (event.channel === "pipe") {
      if (event.kind === "sent") this.counters.pipeBytesSent += event.bytes;
      else if (event.kind === "delivered") this.counters.pipeBytesDelivered += event.bytes;
      else if (event.kind === "connect") this.counters.pipesDialled += 1;
      else if (event.kind === "broken") this.counters.pipesBroken += 1;
      else if (event.kind === "held") this.counters.pipeChunksHeld += 1;
    }
    this.traceLog.record(event);
  }

  // ---- addresses ----

  private bindAddress(address: string, space: "udp" | "tcp", used: (address: string) => boolean): string {
    const parsed = parseAddress(address);
    if (parsed === undefined) throw new SimNetworkError("EINVAL", `bad address ${JSON.stringify(address)}`);
    const down = this.reach.down(address);
    if (down !== undefined) throw new SimNetworkError("ENETDOWN", `cannot bind ${address}: ${down}`);
    if (this.sockets.size + this.listeners.size >= this.current.endpointsMax) {
      throw new SimNetworkError(
        "EMFILE",
        `more than ${this.current.endpointsMax} sockets and listeners bound`,
      );
    }
    if (parsed.port === 0) return this.ephemeral(parsed.host, space, used);
    if (used(address)) throw new SimNetworkError("EADDRINUSE", `${address} is already in use`);
    return address;
  }

  /** The next free ephemeral port of `host`, round robin, as real kernels pick them. */
  private ephemeral(host: string, space: "udp" | "tcp", used: (address: string) => boolean): string {
    const key = `${space}:${host}`;
    // One entry per host ever used; forgetting them only restarts the round robin.
    if (this.nextEphemeral.size >= nextEphemeralMax && !this.nextEphemeral.has(key))
      this.nextEphemeral.clear();
    let port = this.nextEphemeral.get(key) ?? ephemeralFirst;
    for (let tries = 0; tries < ephemeralCount; tries++) {
      const candidate = formatAddress(host, port);
      port = port + 1 >= 65536 ? ephemeralFirst : port + 1;
      if (!used(candidate)) {
        this.nextEphemeral.set(key, port);
        return candidate;
      }
    }
    throw new SimNetworkError("EADDRNOTAVAIL", `no free ${space} port left on ${host}`);
  }
}
