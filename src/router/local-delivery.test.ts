// LocalDelivery's feeds, one rule a test: interest registered once per topic, messages held
// until the interest's cursor is known, gaps held and replayed once, duplicates dropped, the
// held queue bounded, ephemeral messages outside the feed, catch-ups addressed to one
// subscription, interest withdrawn by the last unsubscribe, and a failed registration.
//
// The region is a fake (interest and replay return promises the test resolves); as the real
// link does, a replay's messages reach receive() before its answer. Sessions are a test double
// that keeps ClientSession's per-subscription rules (session.ts: deliver drops offsets at or
// below `last` and anything while catching up; deliverCatchUp drops offsets at or below
// `last`; start raises `last` and sets catching up). Microtasks are settled, never slept on.
import { describe, expect, it } from "vitest";
import { type ReplayRequest, SubscriptionTable } from "../delivery/index.ts";
import { SimClock, settleMicrotasks } from "../sim/index.ts";
import { type FeedSubscriber, LocalDelivery } from "./local-delivery.ts";
import { done, doneAt, failed, type Outcome } from "./outcome.ts";
import type { DeliveredMessage, Region } from "./region.ts";

const topic = "orders";
const partition = 3;

interface InterestCall {
  readonly topic: string;
  readonly partition: number;
  readonly on: boolean;
  readonly answer: (outcome: Outcome) => void;
}

interface ReplayCall {
  readonly partition: number;
  readonly request: ReplayRequest;
  readonly answer: (outcome: Outcome) => void;
}

/** The two Region methods LocalDelivery uses; every call waits for the test to answer it. */
class FakeRegion {
  readonly interests: InterestCall[] = [];
  readonly replays: ReplayCall[] = [];

  interest(topic: string, partition: number, on: boolean): Promise<Outcome> {
    return new Promise((answer) => this.interests.push({ topic, partition, on, answer }));
  }

  replay(partition: number, request: ReplayRequest): Promise<Outcome> {
    return new Promise((answer) => this.replays.push({ partition, request, answer }));
  }

  interestCalls(): { topic: string; on: boolean }[] {
    return this.interests.map(({ topic, on }) => ({ topic, on }));
  }

  replayRequests(): ReplayRequest[] {
    return this.replays.map(({ request }) => request);
  }
}

/** A session as the feed sees it, with ClientSession's per-subscription rules. */
class FakeSession implements FeedSubscriber {
  closed = false;
  private readonly subscriptions = new Map<number, { last: number; catchingUp: boolean }>();
  /** Offsets that reached the client, per subscription (0: an ephemeral message). */
  readonly sent = new Map<number, number[]>();
  /** Every call the feed made, in order. */
  readonly calls: string[] = [];

  /** The session's side of a Subscribe: the subscription exists, catching up, before the feed knows it. */
  open(subscriptionId: number): void {
    this.subscriptions.set(subscriptionId, { last: 0, catchingUp: true });
    this.sent.set(subscriptionId, []);
  }

  /** The session's side of an Unsubscribe. */
  drop(subscriptionId: number): void {
    this.subscriptions.delete(subscriptionId);
  }

  deliver(subscriptionId: number, message: DeliveredMessage): void {
    this.calls.push(`deliver ${subscriptionId} ${message.offset}`);
    const subscription = this.subscriptions.get(subscriptionId);
    if (subscription === undefined) return;
    if (message.offset !== 0) {
      if (subscription.catchingUp || message.offset <= subscription.last) return;
      subscription.last = message.offset;
    }
    this.sent.get(subscriptionId)!.push(message.offset);
  }

  deliverCatchUp(subscriptionId: number, message: DeliveredMessage): void {
    this.calls.push(`catchUp ${subscriptionId} ${message.offset}`);
    const subscription = this.subscriptions.get(subscriptionId);
    if (subscription === undefined || message.offset <= subscription.last) return;
    subscription.last = message.offset;
    this.sent.get(subscriptionId)!.push(message.offset);
  }

  start(subscriptionId: number, last: number, catchingUp: boolean): void {
    this.calls.push(`start ${subscriptionId} ${last} ${catchingUp}`);
    const subscription = this.subscriptions.get(subscriptionId);
    if (subscription === undefined) return;
    subscription.last = Math.max(subscription.last, last);
    subscription.catchingUp = catchingUp;
  }

  lastOffset(subscriptionId: number): number {
    return this.subscriptions.get(subscriptionId)?.last ?? 0;
  }

  catchingUp(subscriptionId: number): boolean | undefined {
    return this.subscriptions.get(subscriptionId)?.catchingUp;
  }

  /** The offsets the feed handed to `subscriptionId` through deliver(), before the session's rules. */
  delivered(subscriptionId: number): number[] {
    const prefix = `deliver ${subscriptionId} `;
    return this.calls
      .filter((call) => call.startsWith(prefix))
      .map((call) => Number(call.slice(prefix.length)));
  }
}

/** A persistent message of `orders` at `offset` naming `previous` (a live one unless `replay`). */
function message(offset: number, previous: number, replay = 0): DeliveredMessage {
  return {
    partition,
    offset,
    previous,
    replay,
    topic,
    payload: Buffer.from(`m${offset}`),
    headers: {},
  };
}

function ephemeral(text: string): DeliveredMessage {
  return { partition, offset: 0, previous: 0, replay: 0, topic, payload: Buffer.from(text), headers: {} };
}

function setup(pendingMax?: number) {
  const region = new FakeRegion();
  const table = new SubscriptionTable<FeedSubscriber>();
  const clock = new SimClock();
  const delivery = new LocalDelivery(table, () => region as unknown as Region, pendingMax, clock);
  /** Opens the subscription on the session, then in the feed; answers what subscribe answers. */
  const subscribe = (session: FakeSession, subscriptionId: number, fromOffset = 0, on = topic) => {
    session.open(subscriptionId);
    return delivery.subscribe(session, subscriptionId, on, partition, fromOffset);
  };
  /** One live subscription of a fresh session to `orders`, with the feed's cursor at `cursor`. */
  const live = async (cursor: number) => {
    const session = new FakeSession();
    const subscribed = subscribe(session, 1);
    region.interests[0]!.answer(doneAt(cursor));
    expect(await subscribed).toEqual({ ok: true });
    return session;
  };
  return { region, table, delivery, subscribe, live, clock };
}

describe("LocalDelivery feeds", () => {
  it("the first subscription of a topic registers this router's interest; later ones do not", async () => {
    const { region, delivery, subscribe } = setup();
    const a = new FakeSession();
    const b = new FakeSession();
    const first = subscribe(a, 1);
    const second = subscribe(b, 1);
    expect(region.interests.map(({ topic, partition, on }) => ({ topic, partition, on }))).toEqual([
      { topic, partition, on: true },
    ]);
    region.interests[0]!.answer(doneAt(7));
    expect(await first).toEqual({ ok: true });
    expect(await second).toEqual({ ok: true });
    expect(await subscribe(a, 2)).toEqual({ ok: true }); // the feed is up: no request at all
    expect(region.interests).toHaveLength(1);
    expect(delivery.stats.feeds).toBe(1);
    // Each starts at the cursor the interest answered with, live.
    expect([...a.calls, ...b.calls]).toEqual(["start 1 7 false", "start 2 7 false", "start 1 7 false"]);
    void subscribe(a, 3, 0, "payments");
    expect(region.interestCalls()).toEqual([
      { topic, on: true },
      { topic: "payments", on: true },
    ]);
  });

  it("messages that arrive before the interest is answered are held, then delivered from the answered cursor", async () => {
    const { region, delivery, subscribe } = setup();
    const session = new FakeSession();
    const subscribed = subscribe(session, 1);
    delivery.receive(message(3, 1)); // at or before the cursor the leader will answer with
    delivery.receive(message(4, 3));
    delivery.receive(message(6, 5));
    delivery.receive(message(5, 4));
    expect(session.calls).toEqual([]);
    region.interests[0]!.answer(doneAt(4));
    await subscribed;
    expect(session.delivered(1)).toEqual([5, 6]);
    expect(session.sent.get(1)).toEqual([5, 6]);
    expect(region.replays).toEqual([]); // no gap after 4
  });

  it("a message whose previous is past the cursor is held, and the gap is replayed once: (cursor, previous]", async () => {
    const { region, delivery, live } = setup();
    const session = await live(4);
    delivery.receive(message(9, 7));
    delivery.receive(message(10, 9));
    delivery.receive(message(12, 10));
    expect(session.delivered(1)).toEqual([]);
    expect(region.replays.map(({ partition, request }) => ({ partition, request }))).toEqual([
      { partition, request: { topic, after: 4, through: 7, replay: 0, probe: false } },
    ]);
    expect(delivery.stats.gapReplays).toBe(1);
  });

  it("replayed messages fill the gap and the held ones follow, in offset order, each once", async () => {
    const { region, delivery, live } = setup();
    const session = await live(4);
    delivery.receive(message(9, 7));
    delivery.receive(message(10, 9));
    // The leader replays (4, 7] (they arrive before its answer), and a live repeat of 9 comes too.
    delivery.receive(message(5, 4));
    delivery.receive(message(7, 5));
    delivery.receive(message(9, 7));
    region.replays[0]!.answer(doneAt(7));
    await settleMicrotasks();
    delivery.receive(message(11, 10));
    expect(session.delivered(1)).toEqual([5, 7, 9, 10, 11]);
    expect(session.sent.get(1)).toEqual([5, 7, 9, 10, 11]);
    expect(region.replays).toHaveLength(1); // filled: nothing more to ask
  });

  it("a replay that stops short of the gap (the leader's byte budget) is followed by one from the new cursor", async () => {
    const { region, delivery, live } = setup();
    const session = await live(0);
    delivery.receive(message(9, 7));
    delivery.receive(message(2, 0));
    region.replays[0]!.answer(doneAt(2)); // read (0, 2] only
    await settleMicrotasks();
    expect(region.replayRequests()).toEqual([
      { topic, after: 0, through: 7, replay: 0, probe: false },
      { topic, after: 2, through: 7, replay: 0, probe: false },
    ]);
    delivery.receive(message(7, 2));
    region.replays[1]!.answer(doneAt(7));
    await settleMicrotasks();
    expect(session.delivered(1)).toEqual([2, 7, 9]);
    expect(region.replays).toHaveLength(2);
  });

  it("a failed gap replay is counted and asked again after a pause", async () => {
    const { region, delivery, live, clock } = setup();
    const session = await live(4);
    delivery.receive(message(9, 7));
    region.replays[0]!.answer(failed("Unavailable", "the link is down"));
    await settleMicrotasks();
    expect(delivery.stats.gapReplaysFailed).toBe(1);
    expect(region.replayRequests()).toHaveLength(1);
    clock.advance(50);
    await settleMicrotasks();
    expect(region.replayRequests()).toEqual([
      { topic, after: 4, through: 7, replay: 0, probe: false },
      { topic, after: 4, through: 7, replay: 0, probe: false },
    ]);
    delivery.receive(message(7, 4));
    expect(session.delivered(1)).toEqual([7, 9]);
  });

  it("drops messages at or before the cursor and repeats of held ones", async () => {
    const { delivery, live } = setup();
    const session = await live(4);
    delivery.receive(message(5, 4));
    delivery.receive(message(5, 4));
    delivery.receive(message(3, 1));
    delivery.receive(message(8, 6)); // held behind a gap
    delivery.receive(message(8, 6));
    expect(delivery.stats.duplicatesDropped).toBe(3);
    delivery.receive(message(6, 5));
    expect(session.delivered(1)).toEqual([5, 6, 8]);
  });

  it("holds at most pendingMax messages, keeping the oldest; a later gap replay brings the dropped ones back", async () => {
    const { region, delivery, live } = setup(3);
    const session = await live(0);
    delivery.receive(message(10, 5)); // gap (0, 5]
    delivery.receive(message(14, 12));
    delivery.receive(message(16, 14));
    expect(delivery.stats.heldDropped).toBe(0);
    delivery.receive(message(12, 10)); // older than 16: 16 makes room
    delivery.receive(message(18, 16)); // the newest: not held
    expect(delivery.stats.heldDropped).toBe(2);
    // The replay of (0, 5]: held first, so it too keeps the oldest (10, 12) and 14 makes room.
    delivery.receive(message(5, 0));
    expect(delivery.stats.heldDropped).toBe(3);
    region.replays[0]!.answer(doneAt(5));
    await settleMicrotasks();
    expect(session.delivered(1)).toEqual([5, 10, 12]);
    expect(region.replays).toHaveLength(1);
    delivery.receive(message(20, 18)); // the next live message shows the gap (12, 18]
    expect(region.replays[1]!.request).toEqual({ topic, after: 12, through: 18, replay: 0, probe: false });
    delivery.receive(message(14, 12));
    delivery.receive(message(16, 14));
    delivery.receive(message(18, 16));
    expect(session.delivered(1)).toEqual([5, 10, 12, 14, 16, 18, 20]);
  });

  it("ephemeral messages (offset 0) bypass the feed: delivered at once to every subscription, cursor untouched", async () => {
    const { region, delivery, subscribe } = setup();
    const a = new FakeSession();
    const b = new FakeSession();
    const subscribedA = subscribe(a, 1);
    const subscribedB = subscribe(b, 4);
    delivery.receive(ephemeral("before the interest is answered"));
    expect([a.sent.get(1), b.sent.get(4)]).toEqual([[0], [0]]);
    region.interests[0]!.answer(doneAt(4));
    await Promise.all([subscribedA, subscribedB]);
    delivery.receive(message(7, 6)); // held behind a gap
    delivery.receive(ephemeral("past the gap"));
    expect([a.sent.get(1), b.sent.get(4)]).toEqual([
      [0, 0],
      [0, 0],
    ]);
    expect(region.replays).toHaveLength(1); // only the gap's
    delivery.receive(message(5, 4));
    delivery.receive(message(6, 5));
    expect(a.sent.get(1)).toEqual([0, 0, 5, 6, 7]);
    expect(delivery.stats.duplicatesDropped).toBe(0);
  });

  it("a subscription from an offset behind the cursor catches up through replays addressed to it, then goes live without gap or repeat", async () => {
    const { region, delivery, subscribe, live } = setup();
    const a = await live(5);
    const b = new FakeSession();
    expect(await subscribe(b, 2, 2)).toEqual({ ok: true });
    expect(b.calls).toEqual(["start 2 1 true"]);
    const [first] = region.replayRequests();
    expect(first).toEqual({ topic, after: 1, through: 5, replay: first!.replay, probe: false });
    expect(first!.replay).not.toBe(0);
    const id = first!.replay;
    // A live message while b catches up: a gets it, b skips it (it is behind).
    delivery.receive(message(6, 5));
    expect(a.sent.get(1)).toEqual([6]);
    expect(b.sent.get(2)).toEqual([]);
    // The leader answers b's catch-up; the feed (and a) never see these.
    for (const [offset, previous] of [
      [2, 1],
      [3, 2],
      [5, 3],
    ] as const)
      delivery.receive(message(offset, previous, id));
    region.replays[0]!.answer(doneAt(5));
    await settleMicrotasks();
    expect(b.sent.get(2)).toEqual([2, 3, 5]);
    // Still behind the cursor (6): a second replay, to the same catch-up.
    expect(region.replayRequests()[1]).toEqual({ topic, after: 5, through: 6, replay: id, probe: false });
    delivery.receive(message(6, 5, id));
    region.replays[1]!.answer(doneAt(6));
    await settleMicrotasks();
    expect(b.catchingUp(2)).toBe(false);
    expect(region.replays).toHaveLength(2);
    delivery.receive(message(7, 6));
    delivery.receive(message(6, 5, id)); // a late answer to a finished catch-up goes nowhere
    expect(b.sent.get(2)).toEqual([2, 3, 5, 6, 7]);
    expect(a.sent.get(1)).toEqual([6, 7]);
    expect(a.calls.filter((call) => call.startsWith("catchUp"))).toEqual([]);
    expect(delivery.stats.catchUps).toBe(1);
  });

  it("a subscription waiting for the interest catches up from its offset once the cursor is known", async () => {
    const { region, subscribe } = setup();
    const session = new FakeSession();
    const subscribed = subscribe(session, 1, 3);
    region.interests[0]!.answer(doneAt(8));
    await subscribed;
    expect(session.calls).toEqual(["start 1 2 true"]);
    expect(region.replayRequests()).toEqual([
      { topic, after: 2, through: 8, replay: region.replays[0]!.request.replay, probe: false },
    ]);
  });

  it("a subscription from an offset past the cursor starts live after it", async () => {
    const { region, delivery, subscribe, live } = setup();
    await live(5);
    const session = new FakeSession();
    await subscribe(session, 1, 8);
    expect(session.calls).toEqual(["start 1 7 false"]);
    expect(region.replays).toEqual([]);
    delivery.receive(message(7, 5));
    delivery.receive(message(9, 7));
    expect(session.sent.get(1)).toEqual([9]);
  });

  it("a catch-up whose replay fails asks again after a pause; it never skips what was asked for", async () => {
    const { region, delivery, subscribe, live, clock } = setup();
    await live(5);
    const session = new FakeSession();
    await subscribe(session, 1, 2);
    region.replays[0]!.answer(failed("Unavailable", "no leader answered"));
    await settleMicrotasks();
    expect(delivery.stats.catchUpRetries).toBe(1);
    expect(region.replayRequests()).toHaveLength(1);
    delivery.receive(message(6, 5)); // live: the subscription is still catching up
    expect(session.sent.get(1) ?? []).toEqual([]);
    clock.advance(500);
    await settleMicrotasks();
    expect(region.replayRequests().at(-1)).toMatchObject({ after: 1, through: 6 });
  });

  it("the last unsubscribe of a topic withdraws the interest; the topic's messages then go nowhere", async () => {
    const { region, delivery, subscribe, live } = setup();
    const a = await live(0);
    const b = new FakeSession();
    await subscribe(b, 2);
    delivery.unsubscribe(a, 1, topic);
    expect(region.interestCalls()).toEqual([{ topic, on: true }]);
    delivery.unsubscribe(b, 2, topic);
    expect(region.interestCalls()).toEqual([
      { topic, on: true },
      { topic, on: false },
    ]);
    expect(delivery.stats.feeds).toBe(0);
    delivery.receive(message(1, 0));
    expect(delivery.stats.withoutFeed).toBe(1);
    expect([...a.calls, ...b.calls].filter((call) => call.startsWith("deliver"))).toEqual([]);
    void subscribe(a, 3);
    expect(region.interestCalls()).toHaveLength(3); // a new feed registers again
  });

  it("a failed interest registration fails every waiting subscribe and removes the feed", async () => {
    const { region, table, delivery, subscribe } = setup();
    const a = new FakeSession();
    const b = new FakeSession();
    const first = subscribe(a, 1);
    const second = subscribe(b, 1);
    const refusal = failed("Unavailable", "no leader of partition 3 answered");
    region.interests[0]!.answer(refusal);
    expect(await first).toEqual(refusal);
    expect(await second).toEqual(refusal);
    expect(delivery.stats.feeds).toBe(0);
    expect(table.size).toBe(0);
    expect([...a.calls, ...b.calls]).toEqual([]); // never started
    expect(region.interestCalls()).toEqual([{ topic, on: true }]); // nothing to withdraw
    delivery.receive(message(1, 0));
    expect(delivery.stats.withoutFeed).toBe(1);
    const again = subscribe(a, 2);
    expect(region.interestCalls()).toHaveLength(2); // the next subscribe registers afresh
    region.interests[1]!.answer(done);
    expect(await again).toEqual({ ok: true });
  });

  it("a feed quiet for 2 s asks the leader for the topic's last offset, and replays what it lacks", async () => {
    const { region, delivery, live, clock } = setup();
    delivery.start();
    const session = await live(4);
    // The Deliver of offset 5 was lost, and the topic went quiet: nothing shows the gap.
    clock.advance(1_999);
    expect(region.replayRequests()).toEqual([]);
    clock.advance(1);
    expect(region.replayRequests()).toEqual([{ topic, after: 0, through: 0, replay: 0, probe: true }]);
    region.replays[0]!.answer(doneAt(5));
    await settleMicrotasks();
    expect(region.replayRequests()[1]).toEqual({ topic, after: 4, through: 5, replay: 0, probe: false });
    delivery.receive(message(5, 4));
    region.replays[1]!.answer(doneAt(5));
    await settleMicrotasks();
    expect(session.delivered(1)).toEqual([5]);
    expect(delivery.stats.probeGaps).toBe(1);
    delivery.stop();
  });

  it("a busy feed is not probed", async () => {
    const { region, delivery, live, clock } = setup();
    delivery.start();
    await live(4);
    for (let offset = 5; offset < 10; offset++) {
      clock.advance(1_000);
      delivery.receive(message(offset, offset - 1));
    }
    expect(region.replayRequests()).toEqual([]);
    delivery.stop();
  });
});
