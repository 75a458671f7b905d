// What a partition's leader needs to serve its persistent streams besides the replicated
// state: each topic's last stored offset (so every delivery names the one before it, and a
// subscriber's router sees a gap), and which Publish entries of the log were not stored
// (duplicates of a retried publish, out-of-order ones), so a replay from the log skips them.
//
// Every replica builds it while applying its log (deterministic, like the state machine), so a
// new leader has it at once. Not in snapshots: nothing is compacted yet, so a restarted router
// rebuilds it by applying the whole log.
// Limit: at most `skippedMax` skipped entries are remembered; past that a replay may deliver a
// refused duplicate again (at least once still holds; counted in `skippedForgotten`).

export class StreamIndex {
  private readonly lastOffsets = new Map<string, number>();
  private readonly skipped = new Set<number>();
  private readonly skippedMax: number;
  skippedForgotten = 0;

  constructor(skippedMax = 1_000_000) {
    this.skippedMax = skippedMax;
  }

  /** The topic's last stored offset, 0 if none. */
  lastOffsetOf(topic: string): number {
    return this.lastOffsets.get(topic) ?? 0;
  }

  /** A message of `topic` stored at `offset`; returns the topic's offset before it (0 if none). */
  stored(topic: string, offset: number): number {
    const previous = this.lastOffsets.get(topic) ?? 0;
    if (!(offset > previous)) throw new Error(`stream index: offset ${offset} after ${previous} on ${topic}`);
    this.lastOffsets.set(topic, offset);
    return previous;
  }

  /** A Publish entry at `index` that was not stored. */
  skip(index: number): void {
    if (this.skipped.size >= this.skippedMax) {
      this.skippedForgotten += 1;
      return;
    }
    this.skipped.add(index);
  }

  wasSkipped(index: number): boolean {
    return this.skipped.has(index);
  }
}
