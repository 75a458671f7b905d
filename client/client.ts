// The Neuron client: connect to any seed router, publish, subscribe, and carry on by itself
// when routers go away (reconnect to another seed, subscriptions re-registered).
//
// Routing: the router the client connected to (its home) takes every request and passes each
// on to its partition's leader. When it did so for a publish or a declaration it names that
// leader (a Leader frame); the client then links to the leader too and sends that partition's
// next requests there directly (partition-map.ts), saving a hop. A router that no longer leads
// a partition forwards the request anyway and names the new leader, so a moved leadership
// costs no error; a broken link to a leader sends what waited on it, and that leader's
// partitions, back through the home router. Subscriptions and declarations go to the home
// router, and while one is pending publishes go there too: the router orders a publish after
// a subscribe sent before it on the same link, and the leader one after a declaration. A
// partition's requests change links only once those on the old one are answered (dispatch).
//
// Flow control: at most `maxInFlight` requests and `maxPendingBytes` payload bytes are
// unacknowledged or unsent at once. Past that, `publish` waits for room (at most
// `maxWaiting` callers wait; more are refused with BufferFull), or with `whenFull: "reject"`
// refuses at once. Memory therefore never grows without bound, even while disconnected.
//
// A publish resolves when the topic's partition leader took it: for a persistent topic, once
// it is committed (fsynced on a quorum of replicas); for an ephemeral one, once routed to the
// subscribers connected at that moment. Every publish carries this client's producer id and
// its sequence on the topic, so a publish can be sent again without being stored twice: when
// a connection breaks, requests sent on it go out again on the next connection (up to
// `retriesMax` times, within their deadline) instead of failing; only then do they reject
// with ConnectionLost. A publish that fails makes the client take a new producer id: the
// partition stores a producer's sequence n + 1 only after n, so keeping the old one would
// stall that topic for good. (Publishes of the old producer already in flight behind the
// failed one cannot be stored either; they fail after the routers' deadline.)
//
// Trap: Acks are cumulative per link and a Refusal comes before the Ack covering its id, so the
// requests sent on a link are filed by their id on it (connection.ts) and an Ack settles a
// prefix of them; `pending` files every request by its own id, for deadlines and flow control.
//
// Hot path (every publish): no timer per request (deadlines grow with the id, so one timer for
// the oldest request covers them all), no closure or await when there is room (one promise per
// publish), an allocation-free topic check, the last topic's partition remembered, and the
// payload handed to the encoder as given.

import { randomUUID } from "node:crypto";
import { type Address, parseAddress, type Transport, tlsTransport } from "../src/axon/index.ts";
import { checkTopic, isValidTopic, partitionOf } from "../src/partitions/index.ts";
import { type Clock, systemClock, systemRandom, type Timer } from "../src/ports/index.ts";
import {
  type ErrorCode,
  type Frame,
  type Headers,
  headersMax,
  type Message,
  noHeaders,
  type TopicKind,
} from "../src/wire/index.ts";
import type { ConnectOptions, MessageHandler, SubscribeOptions, Subscription } from "./api.ts";
import type { LinkedRequest, RouterConnection } from "./connection.ts";
import { NeuronError, type NeuronErrorCode } from "./errors.ts";
import { RouterLinks } from "./links.ts";
import { RequestQueue } from "./request-queue.ts";

export const clientVersion = "0.1.0";

interface PendingRequest extends LinkedRequest {
  /** This client's number for it (the link it goes on numbers it too: LinkedRequest). */
  readonly id: number;
  readonly kind: Frame["kind"];
  /** The topic it is about, for error messages. */
  readonly topic: string | undefined;
  /** The partition whose leader takes it; -1: the home router takes it (subscriptions, drain). */
  readonly partition: number;
  /** The frame, kept until the Ack: it is sent again if its link breaks first. */
  readonly frame: Frame & { requestId: number };
  readonly bytes: number;
  readonly resolve: () => void;
  readonly reject: (error: NeuronError) => void;
  /** clock.nowMs() past which the request times out. Invariant: non-decreasing in id order. */
  readonly deadlineMs: number;
  /** Queued behind its partition's requests on another link (in that partition's `held`). */
  heldBack: boolean;
}

interface SubscriptionState {
  readonly id: number;
  readonly topic: string;
  readonly handler: MessageHandler;
  active: boolean;
  /** The router acknowledged it once: re-register it after a reconnect (else its first Subscribe is still pending). */
  registered: boolean;
  /** Where it asked to start (0: new messages only). */
  readonly fromOffset: number;
  /** The offset of the last persistent message handed to the handler (0: none yet). */
  lastOffset: number;
  /** The router said where it starts (Subscribed): a reconnect resumes after `lastOffset`. */
  positioned: boolean;
  /** The id of its re-registration while that is pending (a later home router gets that one, not another). */
  resubscribeId: number | undefined;
}

/**
 * One partition's requests on their way: how many are sent and unanswered, on which link (they
 * are all on one), and those held back until they are answered, oldest first (a request
 * settled meanwhile stays in `held` with `heldBack` false, and is skipped).
 * Invariants: `connection` is set iff `count` > 0; `held` is empty when `count` is 0; an entry
 * exists while `count` > 0.
 */
interface InFlight {
  connection: RouterConnection | undefined;
  count: number;
  readonly held: PendingRequest[];
}

function topicProblem(topic: string): string {
  const check = checkTopic(topic);
  return check.ok ? `topic ${JSON.stringify(topic)}` : check.error.message;
}

function checkHeaders(headers: Headers): string | undefined {
  let count = 0;
  for (const key in headers) {
    count += 1;
    if (typeof headers[key] !== "string") return `header ${JSON.stringify(key)} must be a string`;
  }
  return count > headersMax ? `at most ${headersMax} headers are allowed, got ${count}` : undefined;
}

const routerCodeToClient: Partial<Record<ErrorCode, NeuronErrorCode>> = {
  InvalidTopic: "InvalidTopic",
  PayloadTooLarge: "PayloadTooLarge",
  UnknownTopic: "UnknownTopic",
  TopicKindConflict: "TopicKindConflict",
  NoLeader: "ElectionInProgress",
  NotLeader: "Unavailable",
  Unavailable: "Unavailable",
  OutOfOrder: "Unavailable",
  Timeout: "Timeout",
};

/** Topics a producer id numbers before the client takes a new one (bounds `sequences`). */
const topicsPerProducerMax = 100_000;
export class Client {
  private readonly options: ConnectOptions;
  private readonly clock: Clock;
  private readonly maxInFlight: number;
  private readonly maxPendingBytes: number;
  private readonly maxWaiting: number;
  private readonly requestTimeoutMs: number;
  private readonly retriesMax: number;
  private readonly links: RouterLinks;
  /** Names this client's publishes; see `sequences`. */
  private producerId = randomUUID();
  /** The last sequence this producer used on each topic (1, 2, ...). */
  private readonly sequences = new Map<string, number>();
  /** The highest sequence acknowledged on each topic. */
  private readonly acknowledged = new Map<string, number>();
  private closed = false;
  private closeReason = "";
  private nextRequestId = 1;
  private nextSubscriptionId = 1;
  /** Every unsettled request, by id. A request is sent on a link (`connection`) or waits for one. */
  private readonly pending = new RequestQueue<PendingRequest>((request) => request.id);
  private pendingBytes = 0;
  /**
   * Subscribe and DeclareTopic requests not yet answered (both go to the home router):
   * everything else goes there too meanwhile, so it reaches the partition's leader after them.
   */
  private ordering = 0;
  /** By partition: its requests on their way (see dispatch). Bounded by the partition count. */
  private readonly inFlight = new Map<number, InFlight>();
  private readonly waiting: (() => void)[] = [];
  private readonly subscriptions = new Map<number, SubscriptionState>();
  private payloadMaxBytes = Number.POSITIVE_INFINITY;
  /** Armed while requests are pending: fires at (or after) the oldest one's deadline. */
  private deadlineTimer: Timer | undefined;
  /** See burstClockMs. */
  private burstNowMs: number | undefined;
  /** The last topic published to and its partition (a run of publishes hashes it once). */
  private lastTopic: string | undefined;
  private lastPartition = 0;

  private constructor(options: ConnectOptions, seeds: readonly Address[], transport: Transport) {
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.maxInFlight = options.maxInFlight ?? 65_536;
    this.maxPendingBytes = options.maxPendingBytes ?? 64 * 1024 * 1024;
    this.maxWaiting = options.maxWaiting ?? 100_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.retriesMax = options.retriesMax ?? 5;
    this.links = new RouterLinks({
      seeds,
      transport,
      credentials: { ca: options.ca, cert: options.cert, key: options.key },
      agent: `neuron-client/${clientVersion}`,
      clock: this.clock,
      random: options.random ?? systemRandom,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
      directToLeaders: options.directToLeaders ?? true,
      routerLinksMax: options.routerLinksMax ?? 16,
      reconnectAttemptsMax: options.reconnectAttemptsMax ?? 120,
      reconnectBackoffMs: options.reconnectBackoffMs ?? [50, 2000],
      events: {
        frame: (connection, frame) => this.receive(connection, frame),
        home: (connection) => this.becameHome(connection),
        linked: (connection) => {
          this.options.onEvent?.({
            kind: "leaderLinked",
            router: connection.router,
            address: connection.address,
          });
          this.dispatchWaiting();
        },
        lost: (connection, reason, wasHome) => this.lost(connection, reason, wasHome),
        dialFailed: (router, reason) => this.options.onEvent?.({ kind: "leaderUnlinked", router, reason }),
        reconnecting: (attempt, delayMs) =>
          this.options.onEvent?.({ kind: "reconnecting", attempt, delayMs }),
        gaveUp: (reason) => this.shutDown(reason),
      },
    });
  }

  /** Connects to the first reachable seed; rejects with ConnectFailed naming each seed's reason. */
  static async connect(options: ConnectOptions): Promise<Client> {
    if (options.seeds.length === 0)
      throw new NeuronError("InvalidArgument", "connect needs at least one seed router");
    const seeds = options.seeds.map((seed) => {
      if (typeof seed !== "string") return seed;
      const parsed = parseAddress(seed);
      if (!parsed.ok) throw new NeuronError("InvalidArgument", `seed ${parsed.reason}`);
      return parsed.address;
    });
    const linksMax = options.routerLinksMax;
    if (linksMax !== undefined && !(Number.isSafeInteger(linksMax) && linksMax >= 1)) {
      throw new NeuronError("InvalidArgument", "routerLinksMax must be an integer >= 1");
    }
    let transport = options.transportImplementation;
    if (transport === undefined) {
      transport =
        options.transport === "quic" ? (await import("../src/axon/quic.ts")).quicTransport() : tlsTransport();
    }
    const client = new Client(options, seeds, transport);
    const failures = await client.links.connectFirst();
    if (failures === undefined) return client;
    client.closed = true;
    client.links.close();
    throw new NeuronError("ConnectFailed", `no seed router could be reached: ${failures.join("; ")}`);
  }

  /** The router this client is connected to (its home), if any. */
  get router(): string | undefined {
    return this.closed ? undefined : this.links.home?.router;
  }

  /** Routers this client has a link to, the home router first. */
  get linkedRouters(): readonly string[] {
    return this.links.routers;
  }

  /** The router the client sends `topic`'s requests to now (its leader if known and linked). */
  routeOf(topic: string): string | undefined {
    if (!isValidTopic(topic)) return undefined;
    return this.links.connectionFor(partitionOf(topic), this.ordering > 0)?.router;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Publishes to a topic. Resolves once the topic's leader took it (see the file's header);
   * rejects with a NeuronError (InvalidTopic, UnknownTopic, PayloadTooLarge, InvalidArgument,
   * BufferFull, Timeout, ElectionInProgress, Unavailable, ConnectionLost, Refused, Closed). The
   * payload is kept until the promise settles (it may be sent again): do not change it.
   */
  publish(topic: string, payload: Uint8Array | string, options?: { headers?: Headers }): Promise<void> {
    let partition = this.lastPartition;
    if (topic !== this.lastTopic) {
      if (!isValidTopic(topic)) return Promise.reject(new NeuronError("InvalidTopic", topicProblem(topic)));
      partition = partitionOf(topic);
      this.lastTopic = topic;
      this.lastPartition = partition;
    }
    const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
    if (!(body instanceof Uint8Array)) {
      return Promise.reject(new NeuronError("InvalidArgument", "a payload must be a Uint8Array or a string"));
    }
    if (body.length > this.payloadMaxBytes) {
      const message = `payload of ${body.length} bytes exceeds the router's limit of ${this.payloadMaxBytes} bytes`;
      return Promise.reject(new NeuronError("PayloadTooLarge", message));
    }
    let headers = noHeaders;
    if (options?.headers !== undefined) {
      headers = options.headers;
      const headerProblem = checkHeaders(headers);
      if (headerProblem !== undefined)
        return Promise.reject(new NeuronError("InvalidArgument", headerProblem));
    }
    if (!this.sequences.has(topic) && this.sequences.size >= topicsPerProducerMax) {
      this.producerId = randomUUID();
      this.sequences.clear();
      this.acknowledged.clear();
    }
    const sequence = (this.sequences.get(topic) ?? 0) + 1;
    this.sequences.set(topic, sequence);
    const frame = {
      kind: "Publish",
      requestId: 0,
      topic,
      payload: body,
      headers,
      producerId: this.producerId,
      sequence,
      ackedSequence: this.acknowledged.get(topic) ?? 0,
    } as const;
    // The common case, inline: room to spare and nobody waiting (whenRoom's first branch).
    if (!this.closed && this.waiting.length === 0 && this.fits(body.length)) {
      return this.request(frame, body.length, partition);
    }
    return this.whenRoom(body.length, false, () => this.request(frame, body.length, partition));
  }

  /**
   * Declares a topic persistent (stored, replicated, every message fsynced on a quorum before
   * its publish resolves) or ephemeral (never stored). A topic keeps its first kind: declaring
   * the other rejects with TopicKindConflict. Declaring it again with its kind changes nothing.
   */
  declareTopic(topic: string, kind: TopicKind): Promise<void> {
    if (!isValidTopic(topic)) return Promise.reject(new NeuronError("InvalidTopic", topicProblem(topic)));
    if (kind !== "persistent" && kind !== "ephemeral") {
      return Promise.reject(
        new NeuronError("InvalidArgument", 'a topic kind is "persistent" or "ephemeral"'),
      );
    }
    const frame = { kind: "DeclareTopic", requestId: 0, topic, topicKind: kind } as const;
    return this.whenRoom(0, false, () => this.request(frame, 0, -1));
  }

  /**
   * Drains router `router` (an operator's request): the cluster moves its replicas and
   * leaderships away, then it stops by itself. Resolves once the cluster recorded it.
   */
  drain(router: string): Promise<void> {
    if (typeof router !== "string" || router.length === 0 || Buffer.byteLength(router) > 255) {
      return Promise.reject(new NeuronError("InvalidArgument", "a router id is 1..255 bytes"));
    }
    return this.whenRoom(0, false, () => this.request({ kind: "Drain", requestId: 0, router }, 0, -1));
  }

  /**
   * Subscribes to a topic; resolves once the router has registered the subscription. A
   * persistent topic's messages reach the handler once each, in order, also across reconnects
   * (the subscription resumes after the last offset it got); ephemeral ones at most once.
   */
  async subscribe(topic: string, handler: MessageHandler, options?: SubscribeOptions): Promise<Subscription> {
    if (!isValidTopic(topic)) throw new NeuronError("InvalidTopic", topicProblem(topic));
    if (typeof handler !== "function")
      throw new NeuronError("InvalidArgument", "subscribe needs a handler function");
    const fromOffset = options?.from ?? 0;
    if (!Number.isSafeInteger(fromOffset) || fromOffset < 0)
      throw new NeuronError(
        "InvalidArgument",
        "subscribe's `from` must be an offset >= 1 (or 0: new messages)",
      );
    const state: SubscriptionState = {
      id: this.nextSubscriptionId++,
      topic,
      handler,
      active: true,
      registered: false,
      fromOffset,
      lastOffset: 0,
      positioned: false,
      resubscribeId: undefined,
    };
    this.subscriptions.set(state.id, state);
    const frame = { kind: "Subscribe", requestId: 0, subscriptionId: state.id, topic, fromOffset } as const;
    try {
      await this.whenRoom(0, false, () => this.request(frame, 0, -1));
      state.registered = true;
    } catch (error) {
      state.active = false;
      this.subscriptions.delete(state.id);
      throw error;
    }
    return {
      topic,
      unsubscribe: async () => {
        if (!state.active) return;
        state.active = false;
        this.subscriptions.delete(state.id);
        if (this.links.home === undefined) return;
        await this.request({ kind: "Unsubscribe", requestId: 0, subscriptionId: state.id }, 0, -1).catch(
          (error: NeuronError) => {
            // The subscription is gone either way once the connection is gone (a resent
            // Unsubscribe finds none on the new connection).
            if (error.code === "ConnectionLost" || error.code === "Closed") return;
            if (error.routerCode === "UnknownSubscription") return;
            throw error;
          },
        );
      },
    };
  }

  /** Closes every link; pending requests reject with Closed. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.shutDown("closed by the application");
  }

  // --- requests ---------------------------------------------------------------------------

  /**
   * Runs `send` once a request of `bytes` fits the window: at once if it fits and nobody is
   * waiting (the check and the reservation are synchronous, so calls in a loop see each
   * other), otherwise after the callers before it (first come, first served); or rejects with
   * BufferFull or Closed.
   */
  private whenRoom(bytes: number, woken: boolean, send: () => Promise<void>): Promise<void> {
    if (this.closed) {
      return Promise.reject(new NeuronError("Closed", `client is closed: ${this.closeReason}`));
    }
    if (this.fits(bytes) && (woken || this.waiting.length === 0)) {
      const sent = send();
      // Room freed by one big settle may fit several waiters: pass the turn on.
      if (woken) this.wakeWaiting();
      return sent;
    }
    if (this.options.whenFull === "reject") {
      const message = `${this.pending.size} requests (${this.pendingBytes} bytes) are waiting for the router`;
      return Promise.reject(new NeuronError("BufferFull", message));
    }
    if (!woken && this.waiting.length >= this.maxWaiting) {
      const message = `${this.waiting.length} publishers are already waiting for room`;
      return Promise.reject(new NeuronError("BufferFull", message));
    }
    return new Promise<void>((resolve) => {
      // A woken caller that still does not fit goes back to the front, so order is kept.
      if (woken) this.waiting.unshift(resolve);
      else this.waiting.push(resolve);
    }).then(() => this.whenRoom(bytes, true, send));
  }

  private fits(bytes: number): boolean {
    return (
      this.pending.size < this.maxInFlight &&
      (this.pendingBytes + bytes <= this.maxPendingBytes || this.pending.size === 0)
    );
  }

  /** `partition`: whose leader takes it, or -1 for the home router. */
  private request(frame: Frame & { requestId: number }, bytes: number, partition: number): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const deadlineMs = this.burstClockMs() + this.requestTimeoutMs;
    const topic = "topic" in frame ? frame.topic : undefined;
    const request: PendingRequest = {
      id: this.nextRequestId++,
      kind: frame.kind,
      topic,
      partition,
      frame,
      connection: undefined,
      linkRequestId: 0,
      sends: 0,
      bytes,
      resolve,
      reject,
      deadlineMs,
      heldBack: false,
    };
    this.pending.push(request);
    this.pendingBytes += bytes;
    if (frame.kind === "Subscribe" || frame.kind === "DeclareTopic") this.ordering += 1;
    this.deadlineTimer ??= this.clock.schedule(this.requestTimeoutMs, this.expire);
    this.dispatch(request);
    return promise;
  }

  /**
   * The clock, read once per synchronous burst of requests (until the next microtask) rather
   * than for each of a loop of publishes: a deadline is then early by at most the time the
   * burst took to run, milliseconds next to a timeout of seconds.
   */
  private burstClockMs(): number {
    if (this.burstNowMs === undefined) {
      this.burstNowMs = this.clock.nowMs();
      queueMicrotask(this.endBurst);
    }
    return this.burstNowMs;
  }

  private readonly endBurst = () => {
    this.burstNowMs = undefined;
  };

  /** Times out the requests past their deadline (the oldest ones), then waits for the next. */
  private readonly expire = () => {
    this.deadlineTimer = undefined;
    const nowMs = this.clock.nowMs();
    for (let request = this.pending.oldest(); request !== undefined; request = this.pending.oldest()) {
      if (request.deadlineMs > nowMs) {
        this.deadlineTimer = this.clock.schedule(request.deadlineMs - nowMs, this.expire);
        return;
      }
      this.settle(
        request,
        new NeuronError(
          "Timeout",
          `${request.kind} to ${describeTarget(request.topic)} got no answer within ${this.requestTimeoutMs} ms`,
        ),
      );
    }
  };

  /**
   * Sends a request that waits on no link, if one is open for it; else it waits for one. A
   * partition's requests switch links (its leader became known, or a subscribe or declaration
   * opened or closed its window) only once those on the old link are answered, and in order:
   * requests on two paths would reach the leader out of order (a persistent one would be
   * proposed, then skipped as out of sequence; an ephemeral one delivered out of order). So a
   * request joins its partition's `held` queue while that is not empty or the partition's
   * requests are on another link; the queue goes out when they are answered (detach).
   */
  private dispatch(request: PendingRequest): void {
    if (request.heldBack) return;
    // While a subscribe or a declaration waits for its answer, everything follows it (see the header).
    const connection = this.links.connectionFor(request.partition, this.ordering > 0);
    if (connection === undefined) return;
    const partition = request.partition;
    const entry = partition >= 0 ? this.inFlight.get(partition) : undefined;
    if (
      entry !== undefined &&
      (entry.held.length > 0 || (entry.count > 0 && entry.connection !== connection))
    ) {
      request.heldBack = true;
      entry.held.push(request);
      return;
    }
    this.send(connection, request, entry);
  }

  /** `entry`: the request's partition's InFlight as it is now (entries are removed only by release and lost). */
  private send(connection: RouterConnection, request: PendingRequest, entry: InFlight | undefined): void {
    const frame = request.frame;
    if (frame.kind === "Subscribe") {
      // A re-registration sent again resumes after what arrived since it was made.
      const subscription = this.subscriptions.get(frame.subscriptionId);
      if (subscription?.positioned)
        (frame as { fromOffset: number }).fromOffset = subscription.lastOffset + 1;
    }
    const result = connection.send(request);
    if (result.ok) {
      if (request.partition < 0) return;
      if (entry === undefined) {
        this.inFlight.set(request.partition, { connection, count: 1, held: [] });
      } else {
        entry.connection = connection;
        entry.count += 1;
      }
      return;
    }
    // Too big for the router's frames: refuse. Any other failure means the link is closing;
    // the request goes out on another link once that is noticed.
    if (result.error.tag === "FrameTooLarge") {
      this.settle(request, new NeuronError("PayloadTooLarge", result.error.message));
    }
  }

  /** The request no longer waits on its link or in its partition's queue (answered, or settled otherwise). */
  private detach(request: PendingRequest): void {
    const entry = request.partition >= 0 ? this.inFlight.get(request.partition) : undefined;
    // Left in its partition's queue, which skips it: taking it out would cost a scan.
    request.heldBack = false;
    const connection = request.connection;
    if (connection === undefined) return;
    connection.remove(request);
    if (entry === undefined || entry.connection !== connection || --entry.count > 0) return;
    entry.connection = undefined;
    this.release(request.partition, entry);
  }

  /** Sends a partition's held requests, oldest first, now that none of its requests is on a link. */
  private release(partition: number, entry: InFlight): void {
    const held = entry.held.splice(0);
    for (const request of held) {
      if (!request.heldBack) continue; // settled while it waited
      request.heldBack = false;
      const connection = this.links.connectionFor(partition, this.ordering > 0);
      // With no link it waits, in id order, for the next one (dispatchWaiting).
      if (connection !== undefined) this.send(connection, request, entry);
    }
    const now = this.inFlight.get(partition);
    if (now !== undefined && now.count === 0 && now.held.length === 0) this.inFlight.delete(partition);
  }

  /** Sends every request that waits on no link and is not held back, oldest first (ids increase on a link). */
  private dispatchWaiting(): void {
    for (const request of this.pending.list()) if (request.connection === undefined) this.dispatch(request);
  }

  /** Settles one request: resolves it if `error` is undefined. */
  private settle(request: PendingRequest, error?: NeuronError): void {
    if (this.pending.remove(request.id) === undefined) return;
    this.detach(request);
    this.pendingBytes -= request.bytes;
    const frame = request.frame;
    if (frame.kind === "Subscribe" || frame.kind === "DeclareTopic") this.ordering -= 1;
    if (error === undefined) {
      if (frame.kind === "Publish" && frame.producerId === this.producerId) {
        // Acks of one topic come in order on one link, but a resend after a broken link may
        // be answered after later ones: the highest stays.
        if (frame.sequence > (this.acknowledged.get(frame.topic) ?? 0))
          this.acknowledged.set(frame.topic, frame.sequence);
      }
      request.resolve();
    } else {
      if (frame.kind === "Publish" && frame.producerId === this.producerId) {
        // Sequence n failed and was not stored: the partition waits for n before n + 1, so
        // the next publishes start a new producer (their sequences from 1) instead of
        // waiting forever. Publishes already sent under the old one keep their ids.
        this.producerId = randomUUID();
        this.sequences.clear();
        this.acknowledged.clear();
      }
      request.reject(error);
    }
    this.wakeWaiting();
  }

  private wakeWaiting(): void {
    if (this.closed) {
      for (const wake of this.waiting.splice(0)) wake();
      return;
    }
    // Wake only the next caller: it reserves its slot when it runs, and a later settle wakes
    // the one after it.
    if (this.pending.size < this.maxInFlight) this.waiting.shift()?.();
  }

  // --- frames from the routers ------------------------------------------------------------

  private receive(connection: RouterConnection, frame: Frame): void {
    switch (frame.kind) {
      case "Message":
        return this.deliver(frame);
      case "Subscribed": {
        // Where the subscription starts: a reconnect resumes after it, not from "now".
        const subscription = this.subscriptions.get(frame.subscriptionId);
        if (subscription === undefined) return;
        subscription.positioned = true;
        if (frame.offset > subscription.lastOffset) subscription.lastOffset = frame.offset;
        return;
      }
      case "Ack": {
        const through = frame.throughRequestId;
        for (let sent = connection.oldest(); sent !== undefined; sent = connection.oldest()) {
          if (sent.linkRequestId > through) break;
          this.settle(sent as PendingRequest);
        }
        return;
      }
      case "Refusal": {
        const request = connection.get(frame.requestId);
        if (request === undefined) return;
        const code = routerCodeToClient[frame.code] ?? "Refused";
        this.settle(
          request as PendingRequest,
          new NeuronError(code, `router refused: ${frame.message}`, frame.code),
        );
        return;
      }
      case "Leader":
        return this.links.learnLeader(frame.partition, frame.router, frame.address);
      default:
        connection.link.close("ProtocolViolation", `a router may not send ${frame.kind} to a client`);
    }
  }

  private deliver(frame: Message): void {
    const subscription = this.subscriptions.get(frame.subscriptionId);
    if (subscription === undefined || !subscription.active) return;
    if (frame.offset !== 0) {
      // At least once from the routers (a replay after a failover may repeat): once here.
      if (frame.offset <= subscription.lastOffset) return;
      subscription.lastOffset = frame.offset;
    }
    try {
      // Decoded frames carry Buffers (wire/hot-frames.ts); the type admits any Uint8Array to send.
      subscription.handler({
        topic: frame.topic,
        payload: frame.payload as Buffer,
        headers: frame.headers,
        offset: frame.offset,
      });
    } catch (error) {
      this.options.onEvent?.({ kind: "handlerError", error, topic: frame.topic });
    }
  }

  // --- links ----------------------------------------------------------------------------

  /** `connection` is the home router now: what waited is sent, and the subscriptions are registered there. */
  private becameHome(connection: RouterConnection): void {
    this.payloadMaxBytes = connection.link.peerHello.payloadMaxBytes;
    this.options.onEvent?.({ kind: "connected", router: connection.router, address: connection.address });
    this.dispatchWaiting();
    for (const subscription of this.subscriptions.values()) {
      if (!(subscription.active && subscription.registered)) continue;
      // Its re-registration is still pending (sent again on this link, or to be): not twice.
      const pendingId = subscription.resubscribeId;
      if (pendingId !== undefined && this.pending.get(pendingId) !== undefined) continue;
      const fromOffset = subscription.positioned ? subscription.lastOffset + 1 : subscription.fromOffset;
      subscription.resubscribeId = this.nextRequestId;
      void this.request(
        {
          kind: "Subscribe",
          requestId: 0,
          subscriptionId: subscription.id,
          topic: subscription.topic,
          fromOffset,
        },
        0,
        -1,
      ).catch((error: NeuronError) =>
        this.options.onEvent?.({ kind: "resubscribeFailed", error, topic: subscription.topic }),
      );
    }
  }

  /** A link closed: what was sent on it and not answered goes out again on another one. */
  private lost(connection: RouterConnection, reason: string, wasHome: boolean): void {
    const released = connection.release() as PendingRequest[];
    // Their partitions' held requests join them, all waiting for a link again: dispatchWaiting
    // below sends them in id order, so the oldest still go first.
    for (const [partition, entry] of this.inFlight) {
      if (entry.connection !== connection) continue;
      for (const request of entry.held) request.heldBack = false;
      this.inFlight.delete(partition);
    }
    // Sent and unanswered: sent again on another link (the routers store a publish once, and
    // the other requests are idempotent), unless sent too often already.
    for (const request of released) {
      if (request.sends <= this.retriesMax) continue;
      this.settle(
        request,
        new NeuronError(
          "ConnectionLost",
          `connection to the router broke before ${request.kind} was acknowledged, ${request.sends} times (${reason})`,
        ),
      );
    }
    if (wasHome) this.options.onEvent?.({ kind: "disconnected", reason });
    else this.options.onEvent?.({ kind: "leaderUnlinked", router: connection.router, reason });
    this.dispatchWaiting();
  }

  private shutDown(reason: string): void {
    this.closed = true;
    this.closeReason = reason;
    this.deadlineTimer?.cancel();
    this.deadlineTimer = undefined;
    this.links.close();
    for (const request of this.pending.list()) {
      this.settle(request, new NeuronError("Closed", `client is closed: ${reason}`));
    }
    for (const wake of this.waiting.splice(0)) wake();
    this.options.onEvent?.({ kind: "closed", reason });
  }
}

function describeTarget(topic: string | undefined): string {
  return topic === undefined ? "the router" : `topic ${topic}`;
}

/** Connects a client (see ConnectOptions). */
export function connect(options: ConnectOptions): Promise<Client> {
  return Client.connect(options);
}
