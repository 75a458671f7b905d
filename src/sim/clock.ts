// SimClock: virtual time for simulations (the Clock port, src/ports/clock.ts). Time moves only
// when the simulation says so (`step`, `advance`, `runUntil`, `runUntilIdle`); nothing here
// touches a real timer, so a run is a pure function of its inputs and its seed.
//
// Invariants: `nowMs()` never goes backwards. Timers fire in (due time, scheduling order):
// two timers due at the same instant fire in the order they were scheduled, always. A timer
// fires at most once, and never after `cancel()`. Each callback runs with `nowMs()` equal to
// its due time.
// Traps: a callback that throws stops the run and the error propagates out of `step()` (the
// timer is already removed, so the clock stays consistent). The run methods are not
// re-entrant: calling them from inside a timer callback is a programmer error and throws.
// A timer that reschedules itself with no delay would spin forever; `maxSteps` bounds every run.
import type { Clock, Timer } from "../ports/index.ts";

/** What `wallMs()` returns at virtual time 0 unless told otherwise: 2025-01-01T00:00:00Z. */
export const defaultWallStartMs = Date.UTC(2025, 0, 1);

export interface SimClockOptions {
  /** `wallMs()` at virtual time 0, in ms since the Unix epoch; default `defaultWallStartMs`. */
  readonly wallStartMs?: number;
  /** Pending timers allowed at once; default 1,000,000. Past it `schedule` throws. */
  readonly timersMax?: number;
}

export interface RunOptions {
  /** Timers a single run may fire before it gives up with an error; default 1,000,000. */
  readonly maxSteps?: number;
}

const defaultMaxSteps = 1_000_000;

interface Entry {
  readonly dueMs: number;
  readonly sequence: number;
  readonly callback: () => void;
  /** Position in the heap; -1 once fired or cancelled. Invariant: heap[index] === this. */
  index: number;
}

function before(a: Entry, b: Entry): boolean {
  return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.sequence < b.sequence);
}

export class SimClock implements Clock {
  private now = 0;
  private sequence = 0;
  /** A binary min-heap on (dueMs, sequence). Invariant: every entry has index >= 0. */
  private readonly heap: Entry[] = [];
  private running = false;
  private readonly listeners = new Set<() => void>();
  private readonly wallStartMs: number;
  private readonly timersMax: number;
  /** Timers fired since construction. */
  firedCount = 0;

  constructor(options: SimClockOptions = {}) {
    this.wallStartMs = options.wallStartMs ?? defaultWallStartMs;
    this.timersMax = options.timersMax ?? 1_000_000;
    if (!Number.isFinite(this.wallStartMs)) throw new Error(`wallStartMs must be finite`);
    if (!(Number.isInteger(this.timersMax) && this.timersMax > 0)) {
      throw new Error(`timersMax must be a positive integer, got ${this.timersMax}`);
    }
  }

  nowMs(): number {
    return this.now;
  }

  wallMs(): number {
    return this.wallStartMs + this.now;
  }

  /** Runs `callback` once at `nowMs() + delayMs`; a negative delay counts as 0, as Node's do. */
  schedule(delayMs: number, callback: () => void): Timer {
    if (!Number.isFinite(delayMs)) throw new Error(`timer delay must be finite, got ${delayMs}`);
    if (this.heap.length >= this.timersMax) {
      throw new Error(
        `SimClock: more than ${this.timersMax} pending timers; something schedules without end`,
      );
    }
    const entry: Entry = {
      dueMs: this.now + Math.max(0, delayMs),
      sequence: this.sequence++,
      callback,
      index: this.heap.length,
    };
    this.heap.push(entry);
    this.siftUp(entry.index);
    for (const listener of this.listeners) listener();
    return { cancel: () => this.remove(entry) };
  }

  /** Timers scheduled and not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.heap.length;
  }

  /** When the next timer is due, or undefined if none is pending. */
  nextDueMs(): number | undefined {
    return this.heap[0]?.dueMs;
  }

  /**
   * Calls `listener` every time a timer is scheduled; returns a function that stops it.
   * Only for drivers that bridge virtual time to real time (a compliance fixture): it lets
   * them sleep while nothing is pending instead of polling.
   */
  onScheduled(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Fires the earliest pending timer, moving time to its due time. False if none was pending. */
  step(): boolean {
    this.enter("step");
    try {
      return this.fireNext(Number.POSITIVE_INFINITY);
    } finally {
      this.running = false;
    }
  }

  /** Fires, in order, every timer due within `ms` from now (including ones they schedule), then
   *  sets the time to now + ms. Returns the number fired. */
  advance(ms: number, options: RunOptions = {}): number {
    if (!(Number.isFinite(ms) && ms >= 0)) throw new Error(`advance needs a finite ms >= 0, got ${ms}`);
    return this.advanceTo(this.now + ms, options);
  }

  /** Like `advance`, to an absolute virtual time (not before now). */
  advanceTo(targetMs: number, options: RunOptions = {}): number {
    if (!(Number.isFinite(targetMs) && targetMs >= this.now)) {
      throw new Error(`advanceTo ${targetMs} is before now (${this.now}) or not finite`);
    }
    const maxSteps = options.maxSteps ?? defaultMaxSteps;
    this.enter("advance");
    try {
      let fired = 0;
      while ((this.heap[0]?.dueMs ?? Number.POSITIVE_INFINITY) <= targetMs) {
        if (fired >= maxSteps) {
          throw new Error(
            `SimClock.advance: still busy after ${maxSteps} timers at ${this.now} ms (target ${targetMs} ms)`,
          );
        }
        this.fireNext(targetMs);
        fired += 1;
      }
      this.now = targetMs;
      return fired;
    } finally {
      this.running = false;
    }
  }

  /** Fires timers in order until `condition()` holds (checked before each timer). Throws if the
   *  clock runs out of timers or of `maxSteps` first. Returns the number fired. */
  runUntil(condition: () => boolean, options: RunOptions = {}): number {
    const maxSteps = options.maxSteps ?? defaultMaxSteps;
    this.enter("runUntil");
    try {
      let fired = 0;
      while (!condition()) {
        if (fired >= maxSteps) {
          throw new Error(
            `SimClock.runUntil: condition still false after ${maxSteps} timers at ${this.now} ms`,
          );
        }
        if (!this.fireNext(Number.POSITIVE_INFINITY)) {
          throw new Error(`SimClock.runUntil: no timers left at ${this.now} ms and the condition is false`);
        }
        fired += 1;
      }
      return fired;
    } finally {
      this.running = false;
    }
  }

  /** Fires timers in order until none is pending. Returns the number fired. */
  runUntilIdle(options: RunOptions = {}): number {
    const maxSteps = options.maxSteps ?? defaultMaxSteps;
    this.enter("runUntilIdle");
    try {
      let fired = 0;
      while (this.heap.length > 0) {
        if (fired >= maxSteps) {
          throw new Error(
            `SimClock.runUntilIdle: ${this.heap.length} timers still pending after ${maxSteps} steps at ${this.now} ms (a periodic timer never stops?)`,
          );
        }
        this.fireNext(Number.POSITIVE_INFINITY);
        fired += 1;
      }
      return fired;
    } finally {
      this.running = false;
    }
  }

  private enter(method: string): void {
    if (this.running) throw new Error(`SimClock.${method} called from inside a timer callback`);
    this.running = true;
  }

  /** Fires the earliest timer if it is due at or before `limitMs`. */
  private fireNext(limitMs: number): boolean {
    const entry = this.heap[0];
    if (entry === undefined || entry.dueMs > limitMs) return false;
    this.remove(entry);
    this.now = entry.dueMs;
    this.firedCount += 1;
    entry.callback();
    return true;
  }

  private remove(entry: Entry): void {
    const index = entry.index;
    if (index < 0) return;
    entry.index = -1;
    const last = this.heap.pop()!;
    if (last === entry) return;
    this.heap[index] = last;
    last.index = index;
    this.siftDown(index);
    this.siftUp(last.index);
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    const entry = heap[index]!;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (!before(entry, parent)) break;
      heap[index] = parent;
      parent.index = index;
      index = parentIndex;
    }
    heap[index] = entry;
    entry.index = index;
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    const entry = heap[index]!;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right]!, heap[left]!) ? right : left;
      const smaller = heap[child]!;
      if (!before(smaller, entry)) break;
      heap[index] = smaller;
      smaller.index = index;
      index = child;
    }
    heap[index] = entry;
    entry.index = index;
  }
}
