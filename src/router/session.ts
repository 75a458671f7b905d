// One client connection to a router: turns the client's frames into subscriptions and
// publishes, and carries deliveries back.
//
// Request ids on a link are strictly increasing; every request is answered by a cumulative
// Ack, and a failed one by a Refusal sent before that Ack (wire/schema.ts). Acks are
// coalesced: one per batch of frames read together (a microtask after the batch).
// Bad input (invalid topic, oversized payload, duplicate or unknown subscription id, a
// request id that does not increase) is refused with a code and changes nothing.
import type { Link } from "../axon/index.ts";
import type { SubscriptionTable } from "../delivery/index.ts";
import { checkTopic, isValidTopic } from "../partitions/index.ts";
import type { ErrorCode, Frame, Headers, Publish, Subscribe, Unsubscribe } from "../wire/index.ts";
import type { RouterLimits } from "./config.ts";

export interface SessionCounters {
  published: number;
  delivered: number;
  refused: number;
  slowConsumers: number;
}

export class ClientSession {
  readonly link: Link;
  private readonly table: SubscriptionTable<ClientSession>;
  private readonly limits: RouterLimits;
  private readonly counters: SessionCounters;
  /** subscriptionId -> topic. Invariant: mirrors this session's entries in `table`. */
  private readonly subscriptions = new Map<number, string>();
  private lastRequestId = 0;
  private ackScheduled = false;
  /**
   * The last topic found valid, so a stream of publishes to one topic is checked once. The
   * decoder hands out the same string for a repeated topic, which makes the comparison a
   * pointer check; a different string with the same text still compares equal.
   */
  private lastValidTopic: string | undefined;

  constructor(
    link: Link,
    table: SubscriptionTable<ClientSession>,
    limits: RouterLimits,
    counters: SessionCounters,
  ) {
    this.link = link;
    this.table = table;
    this.limits = limits;
    this.counters = counters;
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
      default:
        this.link.close("ProtocolViolation", `a client may not send ${frame.kind}`);
    }
  }

  /** The link closed: drop every subscription of this session. */
  closed(): void {
    for (const [subscriptionId, topic] of this.subscriptions) this.table.remove(topic, this, subscriptionId);
    this.subscriptions.clear();
  }

  /** Sends a message to one of this session's subscriptions. */
  deliver(subscriptionId: number, topic: string, payload: Uint8Array, headers: Headers): void {
    if (this.link.closed) return;
    const sent = this.link.send({ kind: "Message", subscriptionId, topic, payload, headers });
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
    if (!this.ackScheduled) {
      this.ackScheduled = true;
      queueMicrotask(this.sendAck);
    }
    return true;
  }

  private readonly sendAck = () => {
    this.ackScheduled = false;
    if (!this.link.closed) this.link.send({ kind: "Ack", throughRequestId: this.lastRequestId });
  };

  private refuse(requestId: number, code: ErrorCode, message: string): void {
    this.counters.refused += 1;
    this.link.send({ kind: "Refusal", requestId, code, message });
  }

  private refuseTopic(requestId: number, topic: string): void {
    const check = checkTopic(topic);
    this.refuse(requestId, "InvalidTopic", check.ok ? `topic ${JSON.stringify(topic)}` : check.error.message);
  }

  private publish(frame: Publish): void {
    if (frame.topic !== this.lastValidTopic) {
      if (!isValidTopic(frame.topic)) return this.refuseTopic(frame.requestId, frame.topic);
      this.lastValidTopic = frame.topic;
    }
    if (frame.payload.length > this.limits.payloadMaxBytes) {
      return this.refuse(
        frame.requestId,
        "PayloadTooLarge",
        `payload of ${frame.payload.length} bytes exceeds the limit of ${this.limits.payloadMaxBytes} bytes`,
      );
    }
    this.counters.published += 1;
    for (const entry of this.table.match(frame.topic)) {
      entry.subscriber.deliver(entry.subscriptionId, frame.topic, frame.payload, frame.headers);
    }
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
    this.subscriptions.set(frame.subscriptionId, frame.topic);
    this.table.add(frame.topic, this, frame.subscriptionId);
  }

  private unsubscribe(frame: Unsubscribe): void {
    const topic = this.subscriptions.get(frame.subscriptionId);
    if (topic === undefined) {
      return this.refuse(
        frame.requestId,
        "UnknownSubscription",
        `no subscription ${frame.subscriptionId} on this connection`,
      );
    }
    this.subscriptions.delete(frame.subscriptionId);
    this.table.remove(topic, this, frame.subscriptionId);
  }
}
