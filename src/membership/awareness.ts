// Local health (Lifeguard §IV-A, "local health multiplier"; memberlist's awareness.go). A
// member that misses acks it should have had, misses nacks its intermediaries should have
// sent, or has to refute suspicions of itself is probably the slow one: rather than accuse
// others, it stretches its own probe interval and probe timeout by (score + 1).
//
// Invariant: 0 <= score <= max - 1. Events (Lifeguard §IV-A): a successful probe -1; a failed
// probe +1, or +(missing nacks) when intermediaries were asked; a refutation of a suspicion
// about ourselves +1; a probe deadline we ourselves overslept +1.

export class LocalHealth {
  private scoreValue = 0;
  /** Invariant: max >= 1. */
  private readonly max: number;

  constructor(max: number) {
    if (!(Number.isSafeInteger(max) && max >= 1)) throw new Error(`awareness max must be >= 1, got ${max}`);
    this.max = max;
  }

  /** 0 is healthy; max - 1 is the worst. */
  get score(): number {
    return this.scoreValue;
  }

  /** Adds `delta`, clamped to [0, max - 1]. */
  applyDelta(delta: number): void {
    this.scoreValue = Math.min(this.max - 1, Math.max(0, this.scoreValue + delta));
  }

  /** `ms` stretched by the current multiplier (score + 1). */
  scale(ms: number): number {
    return ms * (this.scoreValue + 1);
  }
}
