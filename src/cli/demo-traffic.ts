// The demo's traffic (demo.ts): a paced publisher (an in-process client) that numbers its
// payloads "seq 1", "seq 2", ..., and the tally of what the subscriber (`neuron sub`, a child
// process) printed, so the demo can say what was lost, duplicated or reordered.
//
// Invariants: `published` counts publish calls; each one ends in exactly one of `acknowledged`
// or `failed`, so once `stop()` resolves, published = acknowledged + failed. The publisher
// keeps at most `inFlightMax` publishes unacknowledged: paced publishing never queues without
// bound while the partition elects a leader.
// Trap: acknowledgements are cumulative (client.ts), so they arrive in bursts; the gap between
// two of them is measured on arrival here, in wall time.
import type { Client } from "../../client/index.ts";

export interface Gap {
  readonly ms: number;
  /** Demo time (ms since the demo started) of the first event after the gap. */
  readonly endMs: number;
}

export class Publisher {
  published = 0;
  acknowledged = 0;
  readonly failures: string[] = [];
  /** acknowledgedSeq[n]: publish "seq n" was acknowledged. */
  readonly acknowledgedSeq: boolean[] = [];
  /** The longest time between two acknowledgements. */
  longestGap: Gap = { ms: 0, endMs: 0 };
  /** When each acknowledgement arrived, in order (bounded by the run: ratePerSecond x its length). */
  readonly ackTimesMs: number[] = [];
  private readonly client: Client;
  private readonly topic: string;
  private readonly ratePerSecond: number;
  private readonly inFlightMax: number;
  private readonly nowMs: () => number;
  private lastAckMs: number | undefined;
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;

  constructor(options: {
    client: Client;
    topic: string;
    ratePerSecond: number;
    inFlightMax: number;
    nowMs: () => number;
  }) {
    this.client = options.client;
    this.topic = options.topic;
    this.ratePerSecond = options.ratePerSecond;
    this.inFlightMax = options.inFlightMax;
    this.nowMs = options.nowMs;
  }

  get failed(): number {
    return this.failures.length;
  }

  get inFlight(): number {
    return this.published - this.acknowledged - this.failed;
  }

  start(): void {
    this.running = true;
    const startMs = this.nowMs();
    this.loop = (async () => {
      while (this.running) {
        const due = Math.floor(((this.nowMs() - startMs) * this.ratePerSecond) / 1000) - this.published;
        const room = this.inFlightMax - this.inFlight;
        for (let index = 0; index < Math.min(due, room); index++) this.publishNext();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, 10);
        });
      }
      while (this.inFlight > 0)
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
    })();
  }

  /** Stops publishing and resolves once every publish is acknowledged or failed. */
  stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    return this.loop;
  }

  private publishNext(): void {
    const seq = ++this.published;
    this.client.publish(this.topic, `seq ${seq}`).then(
      () => {
        this.acknowledged += 1;
        this.acknowledgedSeq[seq] = true;
        const nowMs = this.nowMs();
        if (this.lastAckMs !== undefined && nowMs - this.lastAckMs > this.longestGap.ms)
          this.longestGap = { ms: nowMs - this.lastAckMs, endMs: nowMs };
        this.lastAckMs = nowMs;
        this.ackTimesMs.push(nowMs);
        this.wake?.();
      },
      (error: Error) => {
        this.failures.push(`seq ${seq}: ${error.message}`);
        this.wake?.();
      },
    );
  }
}

/** What the subscriber printed ("[TOPIC] seq N" per message), checked as it arrives. */
export class Deliveries {
  delivered = 0;
  duplicated = 0;
  outOfOrder = 0;
  /** Lines that were not "[TOPIC] seq N". */
  readonly unexpected: string[] = [];
  longestGap: Gap = { ms: 0, endMs: 0 };
  private readonly seen = new Set<number>();
  private readonly prefix: string;
  private readonly nowMs: () => number;
  /** When each message was printed, in order (bounded like Publisher.ackTimesMs). */
  readonly timesMs: number[] = [];
  private lastSeq = 0;
  private lastMs: number | undefined;

  constructor(topic: string, nowMs: () => number) {
    this.prefix = `[${topic}] seq `;
    this.nowMs = nowMs;
  }

  /** Takes one stdout line of `neuron sub`. */
  line(line: string): void {
    const seq = line.startsWith(this.prefix) ? Number(line.slice(this.prefix.length)) : Number.NaN;
    if (!Number.isSafeInteger(seq) || seq < 1) {
      if (this.unexpected.length < 10) this.unexpected.push(line);
      return;
    }
    this.delivered += 1;
    if (this.seen.has(seq)) this.duplicated += 1;
    else this.seen.add(seq);
    if (seq < this.lastSeq) this.outOfOrder += 1;
    this.lastSeq = Math.max(this.lastSeq, seq);
    const nowMs = this.nowMs();
    if (this.lastMs !== undefined && nowMs - this.lastMs > this.longestGap.ms)
      this.longestGap = { ms: nowMs - this.lastMs, endMs: nowMs };
    this.lastMs = nowMs;
    this.timesMs.push(nowMs);
  }

  has(seq: number): boolean {
    return this.seen.has(seq);
  }
}

/** Acknowledged publishes the subscriber never printed. */
export function lostOf(publisher: Publisher, deliveries: Deliveries): number {
  let lost = 0;
  for (let seq = 1; seq <= publisher.published; seq++)
    if (publisher.acknowledgedSeq[seq] === true && !deliveries.has(seq)) lost += 1;
  return lost;
}

/** The longest gap between consecutive `timesMs` (ascending) that overlaps [fromMs, toMs]. */
export function longestGapWithin(timesMs: readonly number[], fromMs: number, toMs: number): Gap | undefined {
  let longest: Gap | undefined;
  for (let index = 1; index < timesMs.length; index++) {
    const startMs = timesMs[index - 1]!;
    const endMs = timesMs[index]!;
    if (endMs < fromMs || startMs > toMs) continue;
    if (longest === undefined || endMs - startMs > longest.ms) longest = { ms: endMs - startMs, endMs };
  }
  return longest;
}
