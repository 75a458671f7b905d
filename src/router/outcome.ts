// What a request to a Raft group's leader came to, as the router tells a client or a peer.
//
// Retriable codes (the leader moved, none is elected yet, the request's fate is unknown after
// a link broke, an earlier sequence is still missing) are retried by the router that took the
// request until its deadline; the rest are answers.
import type { ErrorCode } from "../wire/index.ts";

export type Outcome =
  /**
   * `offset`: what the answer reports, if anything (ForwardResult.offset). `by`: the router
   * that answered as the group's leader, when it is not this one (the request was forwarded).
   */
  | { readonly ok: true; readonly offset?: number; readonly by?: string }
  | {
      readonly ok: false;
      readonly code: ErrorCode;
      readonly message: string;
      /** The group's leader if known: where to ask next. */
      readonly leader?: string;
    };

export const done: Outcome = Object.freeze({ ok: true });

export function doneAt(offset: number): Outcome {
  return { ok: true, offset };
}

export function failed(code: ErrorCode, message: string, leader?: string): Outcome {
  return leader === undefined ? { ok: false, code, message } : { ok: false, code, message, leader };
}

const retriable = new Set<ErrorCode>(["NotLeader", "NoLeader", "Unavailable", "OutOfOrder"]);

/** True if asking again (elsewhere, or later) may succeed and cannot do harm. */
export function isRetriable(outcome: Outcome): boolean {
  return !outcome.ok && retriable.has(outcome.code);
}
