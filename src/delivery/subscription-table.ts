// Which subscriptions want a topic: the fan-out index of one router. Pure and synchronous.
//
// Invariant: a (subscriber, subscriptionId) pair is in at most one topic's list.
// Lists are replaced, never mutated, on add and remove (copy on write), so a fan-out loop over
// `match()` is never disturbed by a subscriber that goes away during the loop. Writes are
// rare next to publishes, which is the trade this makes.

export interface SubscriptionEntry<S> {
  readonly subscriber: S;
  readonly subscriptionId: number;
}

export class SubscriptionTable<S> {
  private readonly byTopic = new Map<string, readonly SubscriptionEntry<S>[]>();
  private count = 0;

  /** Number of subscriptions in the table. */
  get size(): number {
    return this.count;
  }

  /** Number of topics with at least one subscription. */
  get topics(): number {
    return this.byTopic.size;
  }

  add(topic: string, subscriber: S, subscriptionId: number): void {
    const entries = this.byTopic.get(topic) ?? [];
    this.byTopic.set(topic, [...entries, { subscriber, subscriptionId }]);
    this.count += 1;
  }

  /** Removes one subscription; returns whether it was there. */
  remove(topic: string, subscriber: S, subscriptionId: number): boolean {
    const entries = this.byTopic.get(topic);
    if (entries === undefined) return false;
    const kept = entries.filter(
      (entry) => !(entry.subscriber === subscriber && entry.subscriptionId === subscriptionId),
    );
    if (kept.length === entries.length) return false;
    if (kept.length === 0) this.byTopic.delete(topic);
    else this.byTopic.set(topic, kept);
    this.count -= 1;
    return true;
  }

  /** The subscriptions to a topic; the array is never mutated afterwards. */
  match(topic: string): readonly SubscriptionEntry<S>[] {
    return this.byTopic.get(topic) ?? [];
  }
}
