// The Clock port: the only way protocol code learns the time or schedules work.
// Cores take a Clock (or plain tick counts) in their constructor; production passes
// `systemClock`, the simulator passes its own (src/sim/clock.ts), so a whole cluster can run
// on virtual time from one seed. Invariant: `nowMs()` never goes backwards.

/** A cancellable scheduled callback. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic clock (not wall time); fractional values allowed. */
  nowMs(): number;
  /** Milliseconds since the Unix epoch: only for certificate validity and human-readable stamps. */
  wallMs(): number;
  /** Runs `callback` once, `delayMs` from now. */
  schedule(delayMs: number, callback: () => void): Timer;
}

/** The real clock: `performance.now()` and Node timers. Timers do not keep the process alive. */
export const systemClock: Clock = {
  nowMs: () => performance.now(),
  wallMs: () => Date.now(),
  schedule(delayMs, callback) {
    const handle = setTimeout(callback, Math.max(0, delayMs));
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
};
