// Waiting for a condition in real-process tests (STYLE.md, tests 5): poll a check until it
// holds or a deadline passes, then fail with what was awaited, how long, and the last answer.
// The sleep between polls is pacing, never the condition.
// Invariants: the check runs at least once; no check outlives the deadline (each attempt is
// cut at the time left); the effect ends within about timeoutMs + intervalMs.
// Trap: a failing check counts as "not yet" (a router still starting refuses /status), so a
// check that always fails shows up only as a Timeout; its last error is in the detail.
import { Clock, Effect, Option, Result } from "effect";
import { Timeout } from "./errors.ts";

export interface WaitOptions {
  /** The deadline, from the first check. */
  readonly timeoutMs: number;
  /** What is awaited, in words, for the failure message: "r3 dead everywhere". */
  readonly what: string;
  /** Pause between checks; default 50 ms. */
  readonly intervalMs?: number;
}

/**
 * Polls `check` until it answers true. `false` or a string (what is still missing, for the
 * failure message) means not yet; so does a failure of the check.
 */
export const waitUntil = <E, R>(
  check: Effect.Effect<boolean | string, E, R>,
  options: WaitOptions & {
    /** More detail for the failure message (the cluster's state, say), read at the deadline. */
    readonly describe?: () => string;
  },
): Effect.Effect<void, Timeout, R> =>
  Effect.gen(function* () {
    const intervalMs = options.intervalMs ?? 50;
    const startMs = yield* Clock.currentTimeMillis;
    const deadlineMs = startMs + options.timeoutMs;
    let last = "no check finished before the deadline";
    for (;;) {
      const remainingMs = deadlineMs - (yield* Clock.currentTimeMillis);
      const attempt = yield* check.pipe(Effect.result, Effect.timeoutOption(Math.max(1, remainingMs)));
      if (Option.isNone(attempt)) {
        // Keep what the check said before: it says more than that this one ran out of time.
        last = `${last} (then a check did not finish by the deadline)`;
      } else if (Result.isFailure(attempt.value)) {
        last = `the last check failed: ${describeFailure(attempt.value.failure)}`;
      } else if (attempt.value.success === true) {
        return;
      } else {
        last = attempt.value.success === false ? "the last check answered false" : attempt.value.success;
      }
      const nowMs = yield* Clock.currentTimeMillis;
      if (nowMs >= deadlineMs) {
        const extra = options.describe?.();
        return yield* new Timeout({
          what: options.what,
          elapsedMs: nowMs - startMs,
          detail: extra === undefined ? last : `${last}\n${extra}`,
        });
      }
      yield* Effect.sleep(Math.min(intervalMs, deadlineMs - nowMs));
    }
  });

function describeFailure(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
