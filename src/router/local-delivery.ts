// This router's side of delivery: which local subscriptions want which topic (`table`), this
// router's interest registered with each topic's partition leader, and one feed per topic that
// turns the leader's Deliver frames into an ordered, gap-free stream for local subscribers.
//
// A persistent topic's messages each name the topic's message before them (`previous`). The
// feed delivers a message only once everything up to its `previous` was delivered; otherwise
// it holds it (bounded) and asks the leader to replay the gap, so a Deliver lost with a dead
// leader, dropped under backpressure, or sent before the interest was known, still arrives,
// late but in order (at least once; sessions drop offsets already delivered). A subscription
// resumed from an offset catches up through replays addressed to it alone, then joins the feed.
//
// Invariants: `cursor` is the offset of the last message handed to subscribers (null while the
// interest is being registered); `pending` is sorted by offset, every offset > cursor, and at
// most `pendingMax` long. Ephemeral messages (offset 0) bypass the feed: at most once.
import type { SubscriptionTable } from "../delivery/index.ts";
import { type Clock, systemClock, type Timer } from "../ports/index.ts";
import { failed, type Outcome } from "./outcome.ts";
import type { DeliveredMessage, Region } from "./region.ts";

/** What a feed needs from a session. */
export interface FeedSubscriber {
  /** A live message of the topic for subscription `subscriptionId`. */
  deliver(subscriptionId: number, message: DeliveredMessage): void;
  /** A message answering this subscription's catch-up. */
  deliverCatchUp(subscriptionId: number, message: DeliveredMessage): void;
  /** Where the subscription starts: after `last`, and whether it must catch up first. */
  start(subscriptionId: number, last: number, catchingUp: boolean): void;
  /** The offset of the last message the subscription got. */
  lastOffset(subscriptionId: number): number;
  readonly closed: boolean;
}

interface Feed {
  readonly topic: string;
  readonly partition: number;
  cursor: number | null;
  /** When the feed last got a message or asked the leader (clock ms). */
  lastActivityMs: number;
  pending: DeliveredMessage[];
  /** A gap replay is in flight. */
  replaying: boolean;
  /** Resolves when the interest is registered (or failed). */
  readonly registered: Promise<Outcome>;
  /** Subscriptions waiting for the cursor, with the offset they start from (0: new messages only). */
  readonly waiting: { subscriber: FeedSubscriber; subscriptionId: number; fromOffset: number }[];
}

interface CatchUp {
  readonly subscriber: FeedSubscriber;
  readonly subscriptionId: number;
  readonly feed: Feed;
  /** The subscription was removed: the catch-up stops at its next step. */
  cancelled: boolean;
}

/** Pause between two gap replays that failed (a leader may be moving). */
const replayRetryMs = 50;
/** Pause before a catch-up asks again after a failed replay (each one already retried for seconds). */
const catchUpRetryMs = 500;
/**
 * A gap shows only when the topic's next message arrives; a topic gone quiet would keep its
 * last message from a subscriber whose Deliver was lost. So a feed quiet for this long asks
 * the leader for the topic's last offset, and replays what it lacks.
 */
const probeIntervalMs = 2_000;
/** Most feeds probed per interval (the rest wait for the next one). */
const probesPerIntervalMax = 256;

export interface LocalDeliveryStats {
  feeds: number;
  gapReplays: number;
  probes: number;
  probeGaps: number;
  gapReplaysFailed: number;

  catchUps: number;
  heldDropped: number;
  catchUpRetries: number;
  duplicatesDropped: number;
  withoutFeed: number;
}

export class LocalDelivery {
  readonly stats: LocalDeliveryStats = {
    feeds: 0,
    gapReplays: 0,
    probes: 0,
    probeGaps: 0,
    gapReplaysFailed: 0,

    catchUps: 0,
    heldDropped: 0,
    catchUpRetries: 0,
    duplicatesDropped: 0,
    withoutFeed: 0,
  };
  private readonly table: SubscriptionTable<FeedSubscriber>;
  private readonly region: () => Region;
  private readonly pendingMax: number;
  private readonly feeds = new Map<string, Feed>();
  private readonly catchUps = new Map<number, CatchUp>();
  private nextReplayId = 1;
  private readonly clock: Clock;
  private probeTimer: Timer | null = null;
  private stopped = false;

  constructor(
    table: SubscriptionTable<FeedSubscriber>,
    region: () => Region,
    pendingMax = 10_000,
    clock: Clock = systemClock,
  ) {
    this.table = table;
    this.region = region;
    this.pendingMax = pendingMax;
    this.clock = clock;
  }

  /**
   * Adds a local subscription; the first one of a topic registers this router's interest with
   * the partition leader. Resolves when the subscription is in the feed (it may still be
   * catching up from `fromOffset`).
   */
  async subscribe(
    subscriber: FeedSubscriber,
    subscriptionId: number,
    topic: string,
    partition: number,
    fromOffset: number,
  ): Promise<Outcome> {
    this.table.add(topic, subscriber, subscriptionId);
    let feed = this.feeds.get(topic);
    if (feed === undefined) {
      const registered = this.region().interest(topic, partition, true);
      const created: Feed = {
        topic,
        partition,
        cursor: null,
        lastActivityMs: this.clock.nowMs(),
        pending: [],
        replaying: false,
        registered,
        waiting: [],
      };
      feed = created;
      this.feeds.set(topic, created);
      this.stats.feeds = this.feeds.size;
      void registered.then((outcome) => this.registered(created, outcome));
    }
    if (feed.cursor === null) {
      feed.waiting.push({ subscriber, subscriptionId, fromOffset });
      const outcome = await feed.registered;
      if (!outcome.ok) {
        this.unsubscribe(subscriber, subscriptionId, topic);
        return outcome;
      }
      return { ok: true };
    }
    this.begin(feed, subscriber, subscriptionId, fromOffset);
    return { ok: true };
  }

  /** Removes a local subscription; the last one of a topic withdraws this router's interest. */
  unsubscribe(subscriber: FeedSubscriber, subscriptionId: number, topic: string): void {
    this.table.remove(topic, subscriber, subscriptionId);
    for (const [replay, catchUp] of this.catchUps) {
      if (catchUp.subscriber === subscriber && catchUp.subscriptionId === subscriptionId) {
        catchUp.cancelled = true;
        this.catchUps.delete(replay);
      }
    }
    if (this.table.match(topic).length > 0) return;
    const feed = this.feeds.get(topic);
    if (feed === undefined) return;
    this.feeds.delete(topic);
    this.stats.feeds = this.feeds.size;
    void this.region().interest(topic, feed.partition, false);
  }

  /** Starts the probes of quiet feeds. */
  start(): void {
    const loop = () => {
      if (this.stopped) return;
      this.probeQuietFeeds();
      this.probeTimer = this.clock.schedule(probeIntervalMs, loop);
    };
    this.probeTimer = this.clock.schedule(probeIntervalMs, loop);
  }

  stop(): void {
    this.stopped = true;
    this.probeTimer?.cancel();
  }

  private probeQuietFeeds(): void {
    const nowMs = this.clock.nowMs();
    let probes = 0;
    for (const feed of this.feeds.values()) {
      if (probes >= probesPerIntervalMax) return;
      if (feed.cursor === null || feed.replaying || nowMs - feed.lastActivityMs < probeIntervalMs) continue;
      probes += 1;
      feed.lastActivityMs = nowMs;
      this.stats.probes += 1;
      void this.probe(feed);
    }
  }

  private async probe(feed: Feed): Promise<void> {
    const outcome = await this.region()
      .replay(feed.partition, { topic: feed.topic, after: 0, through: 0, replay: 0, probe: true })
      .catch((error: unknown) => failed("Internal", (error as Error).message));
    if (!outcome.ok || this.feeds.get(feed.topic) !== feed || feed.cursor === null) return;
    const last = outcome.offset ?? 0;
    if (last > feed.cursor && !feed.replaying) {
      this.stats.probeGaps += 1;
      void this.fillGap(feed, last);
    }
  }

  /**
   * Registers this router's interest in every topic it has subscribers for again (after the
   * roster dropped and re-added it, the partitions forgot it). Idempotent at the leader.
   */
  reregister(): void {
    for (const feed of this.feeds.values()) {
      if (feed.cursor === null) continue;
      void this.region().interest(feed.topic, feed.partition, true);
    }
  }

  /** A message from a partition leader. */
  receive(message: DeliveredMessage): void {
    if (message.offset === 0) {
      for (const entry of this.table.match(message.topic))
        entry.subscriber.deliver(entry.subscriptionId, message);
      return;
    }
    if (message.replay !== 0) {
      const catchUp = this.catchUps.get(message.replay);
      if (catchUp !== undefined && !catchUp.subscriber.closed) {
        catchUp.subscriber.deliverCatchUp(catchUp.subscriptionId, message);
      }
      return;
    }
    const feed = this.feeds.get(message.topic);
    if (feed === undefined) {
      this.stats.withoutFeed += 1;
      return;
    }
    feed.lastActivityMs = this.clock.nowMs();
    if (feed.cursor !== null && message.offset <= feed.cursor) {
      this.stats.duplicatesDropped += 1;
      return;
    }
    if (feed.cursor !== null && message.previous <= feed.cursor && feed.pending.length === 0) {
      // The common case: the next message, nothing held.
      this.deliverAll(feed, message);
      return;
    }
    this.hold(feed, message);
    this.drain(feed);
  }

  private registered(feed: Feed, outcome: Outcome): void {
    if (this.feeds.get(feed.topic) !== feed) return;
    if (!outcome.ok) {
      this.feeds.delete(feed.topic);
      this.stats.feeds = this.feeds.size;
      return;
    }
    feed.cursor = outcome.offset ?? 0;
    for (const { subscriber, subscriptionId, fromOffset } of feed.waiting.splice(0)) {
      if (!subscriber.closed && this.subscribed(feed.topic, subscriber, subscriptionId))
        this.begin(feed, subscriber, subscriptionId, fromOffset);
    }
    feed.pending = feed.pending.filter((message) => message.offset > feed.cursor!);
    this.drain(feed);
  }

  /** Starts a subscription at the feed's cursor, or behind it with a catch-up. */
  private begin(feed: Feed, subscriber: FeedSubscriber, subscriptionId: number, fromOffset: number): void {
    const cursor = feed.cursor!;
    if (fromOffset === 0 || fromOffset > cursor) {
      subscriber.start(subscriptionId, fromOffset === 0 ? cursor : fromOffset - 1, false);
      return;
    }
    subscriber.start(subscriptionId, fromOffset - 1, true);
    this.stats.catchUps += 1;
    void this.catchUp({ subscriber, subscriptionId, feed, cancelled: false });
  }

  private subscribed(topic: string, subscriber: FeedSubscriber, subscriptionId: number): boolean {
    return this.table
      .match(topic)
      .some((entry) => entry.subscriber === subscriber && entry.subscriptionId === subscriptionId);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.schedule(ms, resolve));
  }

  /** Replays to one subscription until it reaches the feed's cursor; then it is live. */
  private async catchUp(catchUp: CatchUp): Promise<void> {
    const { subscriber, subscriptionId, feed } = catchUp;
    const replay = this.nextReplayId++;
    this.catchUps.set(replay, catchUp);
    try {
      for (;;) {
        if (catchUp.cancelled || subscriber.closed || this.feeds.get(feed.topic) !== feed) return;
        const after = subscriber.lastOffset(subscriptionId);
        const through = feed.cursor ?? after;
        if (after >= through) {
          subscriber.start(subscriptionId, after, false);
          return;
        }
        const outcome = await this.region().replay(feed.partition, {
          topic: feed.topic,
          after,
          through,
          replay,
          probe: false,
        });
        if (!outcome.ok) {
          // No leader for a while, a full link: never skip what the subscription asked for;
          // ask again after a pause, for as long as the subscription lives.
          this.stats.catchUpRetries += 1;
          await this.pause(catchUpRetryMs);
          continue;
        }
        // Everything of the topic in (after, read] arrived before this answer (same link, in
        // order): the subscription is at `read` even if none of it was this topic's.
        const read = Math.max(outcome.offset ?? after, subscriber.lastOffset(subscriptionId));
        subscriber.start(subscriptionId, read, true);
        // The leader had not applied that far yet (a new leader catching up): ask again shortly.
        if (read === after) await this.pause(replayRetryMs);
      }
    } finally {
      this.catchUps.delete(replay);
    }
  }

  /** Keeps `message` in `pending`, in offset order, bounded. */
  private hold(feed: Feed, message: DeliveredMessage): void {
    const pending = feed.pending;
    let index = pending.length;
    while (index > 0 && pending[index - 1]!.offset > message.offset) index--;
    if (index > 0 && pending[index - 1]!.offset === message.offset) {
      this.stats.duplicatesDropped += 1;
      return;
    }
    if (pending.length >= this.pendingMax) {
      // Keep the oldest: a later replay brings the newest back.
      if (index === pending.length) {
        this.stats.heldDropped += 1;
        return;
      }
      pending.pop();
      this.stats.heldDropped += 1;
    }
    pending.splice(index, 0, message);
  }

  /** Delivers what follows the cursor without a gap; asks for a replay of the first gap. */
  private drain(feed: Feed): void {
    if (feed.cursor === null) return;
    const pending = feed.pending;
    let taken = 0;
    while (taken < pending.length) {
      const message = pending[taken]!;
      if (message.offset <= feed.cursor) {
        taken++;
        continue;
      }
      if (message.previous > feed.cursor) break;
      taken++;
      this.deliverAll(feed, message);
    }
    if (taken > 0) pending.splice(0, taken);
    if (pending.length > 0 && !feed.replaying) void this.fillGap(feed, pending[0]!.previous);
  }

  private deliverAll(feed: Feed, message: DeliveredMessage): void {
    feed.cursor = message.offset;
    for (const entry of this.table.match(feed.topic)) entry.subscriber.deliver(entry.subscriptionId, message);
  }

  private async fillGap(feed: Feed, through: number): Promise<void> {
    feed.replaying = true;
    this.stats.gapReplays += 1;
    const outcome: Outcome = await this.region()
      .replay(feed.partition, { topic: feed.topic, after: feed.cursor!, through, replay: 0, probe: false })
      .catch((error: unknown) => failed("Internal", (error as Error).message));
    if (this.feeds.get(feed.topic) !== feed) return;
    // The replayed messages came through receive() before this answer (same link, in order)
    // and were delivered; if some did not come, draining asks again.
    if (!outcome.ok) {
      // Never skipped: a persistent stream is delivered at least once. Ask again shortly.
      this.stats.gapReplaysFailed += 1;
      await this.pause(replayRetryMs);
    }
    feed.replaying = false;
    if (this.feeds.get(feed.topic) !== feed) return;
    this.drain(feed);
  }
}
