// Running a SimClock under promise-based code (a Transport's connect/listen, a FramedLink's
// handshake) without any real timer: between two timers, let the microtask queue settle, so
// every `.then` and `await` a timer made runnable has run before the next timer fires. This
// is what the event loop does between two real timers, minus the wall clock.
//
// Invariant: the order of everything is fixed by the clock's (due, sequence) order and by
// JavaScript's microtask order, both deterministic; so a run is a function of its seed.
// Trap: only microtasks are awaited. Work that needs a real macrotask (I/O, webcrypto,
// setImmediate) never completes inside a drive; do it before, outside the simulated world.
import type { RunOptions, SimClock } from "./clock.ts";

/** Microtask turns awaited between timers: far more than any promise chain here needs. */
export const microtaskTurnsDefault = 64;

export interface DriveOptions extends RunOptions {
  /** Microtask turns to await between timers; default `microtaskTurnsDefault`. */
  readonly microtaskTurns?: number;
}

/** Lets pending promise callbacks (and the ones they chain) run; no macrotask, no time. */
export async function settleMicrotasks(turns = microtaskTurnsDefault): Promise<void> {
  for (let turn = 0; turn < turns; turn++) await Promise.resolve();
}

/**
 * Fires timers one at a time, settling microtasks before each, until `condition()` holds.
 * Rejects if the clock runs out of timers or `maxSteps` (default 1,000,000) first.
 * Returns the number of timers fired.
 */
export async function driveUntil(
  clock: SimClock,
  condition: () => boolean,
  options: DriveOptions = {},
): Promise<number> {
  const maxSteps = options.maxSteps ?? 1_000_000;
  let fired = 0;
  for (;;) {
    await settleMicrotasks(options.microtaskTurns);
    if (condition()) return fired;
    if (fired >= maxSteps) {
      throw new Error(`driveUntil: condition still false after ${maxSteps} timers at ${clock.nowMs()} ms`);
    }
    if (!clock.step()) {
      throw new Error(`driveUntil: no timers left at ${clock.nowMs()} ms and the condition is false`);
    }
    fired += 1;
  }
}

/** Resolves with `promise`'s value, driving the clock until it settles. */
export async function driveThrough<T>(
  clock: SimClock,
  promise: Promise<T>,
  options: DriveOptions = {},
): Promise<T> {
  let settled = false;
  const watched = promise.then(
    (value) => {
      settled = true;
      return value;
    },
    (error: unknown) => {
      settled = true;
      throw error;
    },
  );
  // Keep a rejection from counting as unhandled while the clock runs.
  watched.catch(() => {});
  await driveUntil(clock, () => settled, options);
  return watched;
}

/** Fires timers, settling microtasks before each, until none is pending. */
export async function driveUntilIdle(clock: SimClock, options: DriveOptions = {}): Promise<number> {
  return driveUntil(clock, () => clock.pendingTimers === 0, options);
}
