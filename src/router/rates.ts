// Publish and delivery rates for GET /status: a sampler records the router's running totals
// once a second and reports messages per second over the last ten seconds.
//
// The core (`record`, `rates`) is plain arithmetic on the samples it is given; `start` is the
// thin shell that records on the injected clock's timers (systemClock's are unref'd, so the
// sampler never keeps a process alive).
// Invariants: samples are in time order, and only those within `windowMs` of the newest are
// kept (plus nothing past `samplesMax`), so memory is bounded whatever the call pattern.
// Trap: totals that go down (a counter reset) count as a rate of 0 for that window, never a
// negative rate.
import type { Clock, Timer } from "../ports/index.ts";

/** Running totals since the router started; the sampler only reads them. */
export interface RateTotals {
  /** Publishes this router's clients made that passed validation. */
  readonly published: number;
  /** Messages this router wrote to its clients' links. */
  readonly delivered: number;
}

export interface Rates {
  /** Seconds between the oldest and newest sample used; 0 until there are two samples. */
  readonly windowSeconds: number;
  /** Messages per second, rounded to 0.01; null until there are two samples. */
  readonly publishedPerSecond: number | null;
  readonly deliveredPerSecond: number | null;
}

export interface RateSamplerConfig {
  /** Time between samples, ms. Default 1,000. */
  readonly intervalMs: number;
  /** Rates are over the samples of the last `windowMs`, ms. Default 10,000. */
  readonly windowMs: number;
}

export const defaultRateSamplerConfig: RateSamplerConfig = { intervalMs: 1_000, windowMs: 10_000 };

/** Whatever the interval, never more samples than this (a bound on memory, not a setting). */
const samplesMax = 1_024;

interface Sample {
  readonly atMs: number;
  readonly published: number;
  readonly delivered: number;
}

export class RateSampler {
  private readonly read: () => RateTotals;
  private readonly clock: Clock;
  private readonly config: RateSamplerConfig;
  /** Invariant: ascending `atMs`; all within `config.windowMs` of the last; length <= samplesMax. */
  private readonly samples: Sample[] = [];
  private timer: Timer | undefined;

  constructor(read: () => RateTotals, clock: Clock, config: Partial<RateSamplerConfig> = {}) {
    this.read = read;
    this.clock = clock;
    this.config = { ...defaultRateSamplerConfig, ...config };
    if (!(this.config.intervalMs > 0 && this.config.windowMs >= this.config.intervalMs)) {
      throw new Error(
        `rate sampler: need intervalMs > 0 and windowMs >= intervalMs, got ${this.config.intervalMs} and ${this.config.windowMs}`,
      );
    }
  }

  /** Records the totals now; then again every `intervalMs` until `stop()`. Idempotent. */
  start(): void {
    if (this.timer !== undefined) return;
    const loop = () => {
      this.record();
      this.timer = this.clock.schedule(this.config.intervalMs, loop);
    };
    loop();
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Takes one sample: the clock's time and the current totals. */
  record(): void {
    const totals = this.read();
    const atMs = this.clock.nowMs();
    const last = this.samples.at(-1);
    if (last !== undefined && atMs < last.atMs) throw new Error("rate sampler: the clock went backwards");
    this.samples.push({ atMs, published: totals.published, delivered: totals.delivered });
    let drop = 0;
    while (drop < this.samples.length - 1 && atMs - this.samples[drop]!.atMs > this.config.windowMs)
      drop += 1;
    drop = Math.max(drop, this.samples.length - samplesMax);
    if (drop > 0) this.samples.splice(0, drop);
  }

  /** Messages per second between the oldest and the newest sample of the window. */
  rates(): Rates {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (first === undefined || last === undefined || last.atMs === first.atMs) {
      return { windowSeconds: 0, publishedPerSecond: null, deliveredPerSecond: null };
    }
    const seconds = (last.atMs - first.atMs) / 1000;
    const perSecond = (from: number, to: number) =>
      Math.round((Math.max(0, to - from) / seconds) * 100) / 100;
    return {
      windowSeconds: Math.round(seconds * 1000) / 1000,
      publishedPerSecond: perSecond(first.published, last.published),
      deliveredPerSecond: perSecond(first.delivered, last.delivered),
    };
  }
}
