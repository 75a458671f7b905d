// One client connection to a router: turns the client's frames into requests to partition
// leaders (region.ts) and local subscriptions, and carries deliveries back.
//
// Request ids on a link are strictly increasing; every request is answered by a cumulative
// Ack, and a failed one by a Refusal sent before that Ack (wire/schema.ts). Requests finish
// out of order (partitions commit independently), so the Ack covers the longest prefix of
// finished requests: `open` holds the unfinished ids in order. Acks are coalesced: at most one
// per microtask.
// A publish or declaration that this router passed on to the partition's leader elsewhere is
// followed by a Leader frame naming that leader, so the client sends the partition's next
// requests there itself (client/partition-map.ts): at once when the leader is new to this
// session, else at most every `leaderRenameMs` (requests still coming the long way mean the
// client lost its link to that leader, or could not open one).
// Bad input (invalid topic, oversized payload, bad producer id, duplicate or unknown
// subscription id, a request id that does not increase) is refused with a code and changes
// nothing.
import type { Link, TransportKind } from "../axon/index.ts";
import { isValidProducerId } from "../delivery/index.ts";
import { checkTopic, isValidTopic, partitionOf } from "../partitions/index.ts";
import type { Clock } from "../ports/index.ts";
import type {
  DeclareTopic,
  ErrorCode,
  Frame,
  Headers,
  Publish,
  Subscribe,
  Unsubscribe,
} from "../wire/index.ts";
import type { RouterLimits } from "./config.ts";
import type { FeedSubscriber, LocalDelivery } from "./local-delivery.ts";
import type { Outcome } from "./outcome.ts";
import type { DeliveredMessage, Region } from "./region.ts";

export interface SessionCounters {
  published: number;
  delivered: number;
  refused: number;
  slowConsumers: number;
}

/** One subscription of this session. */
interface SessionSubscription {
  readonly topic: string;
  /** Offset of the last persistent message sent for it. */
  last: number;
  /** Still replaying from a past offset (or not placed in its feed yet): live messages wait. */
  catchingUp: boolean;
  /** Placed in its feed, and the client told where it starts (Subscribed). */
  started: boolean;
}

/** Where router `router` serves clients over `transport` ("host:port"), or null if unknown. */
export type ClientAddressOf = (router: string, transport: TransportKind) => string | null;

/** A leader already named to a client is named again at most this often (see the header). */
export const leaderRenameMs = 1_000;

export class ClientSession implements FeedSubscriber {
  readonly link: Link;
  private readonly delivery: LocalDelivery;
  private readonly region: Region;
  private readonly limits: RouterLimits;
  private readonly counters: SessionCounters;
  private readonly clientAddressOf: ClientAddressOf;
  private readonly clock: Clock;
  /** The leader last named to the client for each partition, and when. Bounded by the partition count. */
  private readonly namedLeaders = new Map<number, { readonly router: string; readonly atMs: number }>();
  /** By subscription id. Invariant: mirrors this session's entries in the delivery table. */
  private readonly subscriptions = new Map<number, SessionSubscription>();
  private lastRequestId = 0;
  /** Unfinished request ids, ascending, from `openHead` on; finished ones are in `finished`. */
  private readonly open: number[] = [];
  private openHead = 0;
  private readonly finished = new Set<number>();
  private lastAcked = 0;
  private ackScheduled = false;
  /**
   * The latest interest registration or topic declaration of this session still in progress:
   * later requests start after it, so a publish sent after a subscribe on one connection
   * reaches that subscriber (as a NATS user expects), even though the two go to the leader by
   * different paths, and one sent after a declaration is stored or not as declared.
   */
  private barrier: Promise<unknown> | null = null;
  /**
   * The last topic found valid, so a stream of publishes to one topic is checked once. The
   * decoder hands out the same string for a repeated topic, which makes the comparison a
   * pointer check; a different string with the same text still compares equal.
   */
  private lastValidTopic: string | undefined;
  private lastPartition = 0;
  /** The last producer id found valid (a client publishes under one for many messages). */
  private lastProducerId: string | undefined;

  constructor(
    link: Link,
    delivery: LocalDelivery,
    region: Region,
    limits: RouterLimits,
    counters: SessionCounters,
    clientAddressOf: ClientAddressOf,
    clock: Clock,
  ) {
    this.link = link;
    this.delivery = delivery;
    this.region = region;
    this.limits = limits;
    this.counters = counters;
    this.clientAddressOf = clientAddressOf;
    this.clock = clock;
  }

  get subscriptionCount(): number {
    return this.subscriptions.size;
  }

  frame(frame: Frame): void {
    switch (frame.kind) {
      case "Publish":
        if (this.accept(frame.requestId)) this.publish(frame);
        return;
      case "Subscribe":
        if (this.accept(frame.requestId)) this.subscribe(frame);
        return;
      case "Unsubscribe":
        if (this.accept(frame.requestId)) this.unsubscribe(frame);
        return;
      case "DeclareTopic":
        if (this.accept(frame.requestId)) this.declareTopic(frame);
        return;
      case "Drain":
        if (this.accept(frame.requestId)) this.track(frame.requestId, this.region.drain(frame.router));
        return;
      default:
        this.link.close("ProtocolViolation", `a client may not send ${frame.kind}`);
    }
  }

  get closed(): boolean {
    return this.link.closed;
  }

  /** The link closed: drop every subscription of this session. */
  ended(): void {
    for (const [subscriptionId, subscription] of this.subscriptions)
      this.delivery.unsubscribe(this, subscriptionId, subscription.topic);
    this.subscriptions.clear();
  }

  /** A live message for one of this session's subscriptions (persistent ones once each, in order). */
  deliver(subscriptionId: number, message: DeliveredMessage): void {
    const subscription = this.subscriptions.get(subscriptionId);
    if (subscription === undefined) return;
    if (message.offset !== 0) {
      if (subscription.catchingUp || message.offset <= subscription.last) return;
      subscription.last = message.offset;
    }
    this.send(subscriptionId, message.topic, message.payload, message.headers, message.offset);
  }

  deliverCatchUp(subscriptionId: number, message: DeliveredMessage): void {
    const subscription = this.subscriptions.get(subscriptionId);
    if (subscription === undefined || message.offset <= subscription.last) return;
    subscription.last = message.offset;
    this.send(subscriptionId, message.topic, message.payload, message.headers, message.offset);
  }

  start(subscriptionId: number, last: number, catchingUp: boolean): void {
    const subscription = this.subscriptions.get(subscriptionId);
    if (subscription === undefined) return;
    subscription.last = Math.max(subscription.last, last);
    subscription.catchingUp = catchingUp;
    if (!subscription.started) {
      subscription.started = true;
      if (!this.link.closed)
        this.link.send({ kind: "Subscribed", subscriptionId, offset: subscription.last });
    }
  }

  lastOffset(subscriptionId: number): number {
    return this.subscriptions.get(subscriptionId)?.last ?? 0;
  }

  private send(
    subscriptionId: number,
    topic: string,
    payload: Uint8Array,
    headers: Headers,
    offset: number,
  ): void {
    if (this.link.closed) return;
    const sent = this.link.send({ kind: "Message", subscriptionId, topic, payload, headers, offset });
    if (!sent.ok) {
      // Bigger than the frames this client said it accepts: it cannot get this stream.
      this.link.close(
        "FrameTooLarge",
        `a message on ${topic} does not fit this client's frames: ${sent.error.message}`,
      );
      return;
    }
    this.counters.delivered += 1;
    if (this.link.bufferedBytes > this.limits.slowConsumerBytes) {
      this.counters.slowConsumers += 1;
      this.link.close(
        "SlowConsumer",
        `more than ${this.limits.slowConsumerBytes} bytes of messages are waiting for this client; it is reading too slowly`,
      );
    }
  }

  /** Checks the request id order; schedules the Ack that will cover it. */
  private accept(requestId: number): boolean {
    if (requestId <= this.lastRequestId) {
      this.link.close("ProtocolViolation", `request id ${requestId} does not follow ${this.lastRequestId}`);
      return false;
    }
    this.lastRequestId = requestId;
    this.scheduleAck();
    return true;
  }

  private scheduleAck(): void {
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    queueMicrotask(this.sendAck);
  }

  private readonly sendAck = () => {
    this.ackScheduled = false;
    const through = this.openHead < this.open.length ? this.open[this.openHead]! - 1 : this.lastRequestId;
    if (through <= this.lastAcked || this.link.closed) return;
    this.lastAcked = through;
    this.link.send({ kind: "Ack", throughRequestId: through });
  };

  /**
   * Request `requestId` finishes when `outcome` settles; the Ack waits for it. A request for
   * `partition` that another router answered as its leader names that leader to the client.
   */
  private track(
    requestId: number,
    outcome: Promise<Outcome>,
    onFailure?: () => void,
    partition?: number,
  ): void {
    this.open.push(requestId);
    outcome.then(
      (result) => {
        if (!result.ok) {
          onFailure?.();
          this.refuse(requestId, result.code, result.message);
        } else if (result.by !== undefined && partition !== undefined) {
          this.nameLeader(partition, result.by);
        }
        this.finish(requestId);
      },
      (error: unknown) => {
        onFailure?.();
        this.refuse(requestId, "Internal", (error as Error).message);
        this.finish(requestId);
      },
    );
  }

  private finish(requestId: number): void {
    this.finished.add(requestId);
    while (this.openHead < this.open.length && this.finished.delete(this.open[this.openHead]!))
      this.openHead++;
    if (this.openHead === this.open.length) {
      this.open.length = 0;
      this.openHead = 0;
    } else if (this.openHead > 1024 && this.openHead * 2 > this.open.length) {
      this.open.splice(0, this.openHead);
      this.openHead = 0;
    }
    this.scheduleAck();
  }

  private nameLeader(partition: number, router: string): void {
    if (this.link.closed) return;
    const nowMs = this.clock.nowMs();
    const named = this.namedLeaders.get(partition);
    if (named !== undefined && named.router === router && nowMs - named.atMs < leaderRenameMs) return;
    const address = this.clientAddressOf(router, this.link.transport);
    if (address === null) return;
    this.namedLeaders.set(partition, { router, atMs: nowMs });
    this.link.send({ kind: "Leader", partition, router, address });
  }

  private refuse(requestId: number, code: ErrorCode, message: string): void {
    this.counters.refused += 1;
    if (!this.link.closed) this.link.send({ kind: "Refusal", requestId, code, message });
  }

  private refuseTopic(requestId: number, topic: string): void {
    const check = checkTopic(topic);
    this.refuse(requestId, "InvalidTopic", check.ok ? `topic ${JSON.stringify(topic)}` : check.error.message);
  }

  private publish(frame: Publish): void {
    if (frame.topic !== this.lastValidTopic) {
      if (!isValidTopic(frame.topic)) return this.refuseTopic(frame.requestId, frame.topic);
      this.lastValidTopic = frame.topic;
      this.lastPartition = partitionOf(frame.topic);
    }
    if (frame.payload.length > this.limits.payloadMaxBytes) {
      return this.refuse(
        frame.requestId,
        "PayloadTooLarge",
        `payload of ${frame.payload.length} bytes exceeds the limit of ${this.limits.payloadMaxBytes} bytes`,
      );
    }
    const producerValid = frame.producerId === this.lastProducerId || isValidProducerId(frame.producerId);
    if (!producerValid || frame.sequence < 1 || frame.ackedSequence >= frame.sequence) {
      return this.refuse(
        frame.requestId,
        "InvalidArgument",
        "a publish needs a producer id of 1..64 bytes, a sequence >= 1 and an acknowledged sequence below it",
      );
    }
    this.lastProducerId = frame.producerId;
    this.counters.published += 1;
    const partition = this.lastPartition;
    const publish = () =>
      this.region.publish(
        frame.topic,
        partition,
        frame.payload,
        frame.headers,
        frame.producerId,
        frame.sequence,
        frame.ackedSequence,
      );
    this.track(
      frame.requestId,
      this.barrier === null ? publish() : this.barrier.then(publish),
      undefined,
      partition,
    );
  }

  private declareTopic(frame: DeclareTopic): void {
    if (!isValidTopic(frame.topic)) return this.refuseTopic(frame.requestId, frame.topic);
    const partition = partitionOf(frame.topic);
    const declare = () => this.region.declareTopic(frame.topic, partition, frame.topicKind);
    const declared = this.barrier === null ? declare() : this.barrier.then(declare);
    // Later requests wait for it: a publish sent after a declaration must find the topic's kind.
    this.raiseBarrier(declared);
    this.track(frame.requestId, declared, undefined, partition);
  }

  /** Later requests of this session start once `until` settles (and whatever it follows). */
  private raiseBarrier(until: Promise<unknown>): void {
    const barrier = Promise.all([this.barrier, until]);
    this.barrier = barrier;
    void barrier.then(() => {
      if (this.barrier === barrier) this.barrier = null;
    });
  }

  private subscribe(frame: Subscribe): void {
    if (!isValidTopic(frame.topic)) return this.refuseTopic(frame.requestId, frame.topic);
    if (this.subscriptions.has(frame.subscriptionId)) {
      return this.refuse(
        frame.requestId,
        "DuplicateSubscription",
        `subscription id ${frame.subscriptionId} is already in use on this connection`,
      );
    }
    if (this.subscriptions.size >= this.limits.subscriptionsPerClientMax) {
      return this.refuse(
        frame.requestId,
        "TooManySubscriptions",
        `a connection may hold at most ${this.limits.subscriptionsPerClientMax} subscriptions`,
      );
    }
    const subscription: SessionSubscription = {
      topic: frame.topic,
      last: 0,
      catchingUp: true,
      started: false,
    };
    this.subscriptions.set(frame.subscriptionId, subscription);
    // Answered once this router's interest is registered with the partition leader (a publish
    // after the answer reaches this subscriber).
    const registered = this.delivery.subscribe(
      this,
      frame.subscriptionId,
      frame.topic,
      partitionOf(frame.topic),
      frame.fromOffset,
    );
    this.raiseBarrier(registered);
    this.track(frame.requestId, registered, () => {
      if (this.subscriptions.get(frame.subscriptionId) === subscription)
        this.subscriptions.delete(frame.subscriptionId);
    });
  }

  private unsubscribe(frame: Unsubscribe): void {
    const subscription = this.subscriptions.get(frame.subscriptionId);
    if (subscription === undefined) {
      return this.refuse(
        frame.requestId,
        "UnknownSubscription",
        `no subscription ${frame.subscriptionId} on this connection`,
      );
    }
    this.subscriptions.delete(frame.subscriptionId);
    this.delivery.unsubscribe(this, frame.subscriptionId, subscription.topic);
  }
}
