// Suspicion timers (SWIM §4.2 with Lifeguard §IV-B, "local health aware suspicion"; memberlist's
// suspicion.go). A suspect is declared dead when its timer runs out. The timer starts at
// `maxMs` and shrinks toward `minMs` as independent members confirm the suspicion:
//
//   timeout(n) = max(minMs, maxMs - (maxMs - minMs) * log(n + 1) / log(k + 1))
//
// where n is the number of confirmations so far (capped at k). The deadline is always
// startedMs + timeout(n): a confirmation never restarts the clock, it only pulls the deadline
// in. With k = 0 (too few members to expect confirmations) the timeout stays at maxMs.
//
// Pure: no timers. The core asks `deadlineMs()` and compares it with its clock.
// Invariant: confirmers holds at most k + 1 ids (the first suspecter plus k confirmations).
import type { MemberId } from "./types.ts";

/** SWIM §4.2's base suspicion timeout: mult * max(1, log10(N)) * probe interval, in ms. */
export function suspicionTimeoutMs(
  suspicionMult: number,
  memberCount: number,
  probeIntervalMs: number,
): number {
  const scale = Math.max(1, Math.log10(Math.max(1, memberCount)));
  return Math.floor(suspicionMult * scale * probeIntervalMs);
}

/** Lifeguard §IV-B: the timeout after `confirmations` of the `k` wanted, in ms. */
export function suspicionTimeoutAfterMs(
  confirmations: number,
  k: number,
  minMs: number,
  maxMs: number,
): number {
  if (k <= 0) return maxMs;
  const fraction = Math.log(Math.min(confirmations, k) + 1) / Math.log(k + 1);
  return Math.max(minMs, Math.floor(maxMs - fraction * (maxMs - minMs)));
}

/**
 * How many confirmations drive the timer to its floor: suspicionMult - 2 (memberlist's choice:
 * the floor is reached two probe periods short of the nominal timeout), or 0 when the cluster
 * is too small to supply them (N - 2 members besides us and the suspect).
 */
export function confirmationsWanted(suspicionMult: number, memberCount: number): number {
  const k = suspicionMult - 2;
  return memberCount - 2 < k ? 0 : Math.max(0, k);
}

export interface SuspicionOptions {
  /** Who suspected first; its own suspicion gossiped back is not a confirmation. */
  readonly fromId: MemberId;
  readonly startedMs: number;
  readonly k: number;
  readonly minMs: number;
  readonly maxMs: number;
}

export class Suspicion {
  readonly startedMs: number;
  readonly k: number;
  readonly minMs: number;
  readonly maxMs: number;
  /** Members whose suspicion counted. Invariant: size <= k + 1. */
  private readonly confirmers = new Set<MemberId>();
  private confirmationCount = 0;

  constructor(options: SuspicionOptions) {
    this.startedMs = options.startedMs;
    this.k = options.k;
    this.minMs = options.minMs;
    this.maxMs = Math.max(options.minMs, options.maxMs);
    this.confirmers.add(options.fromId);
  }

  /** Independent confirmations so far (the first suspecter not counted). */
  get confirmations(): number {
    return this.confirmationCount;
  }

  /**
   * Records that `fromId` suspects too. Returns whether it was new information: a first
   * confirmation from that member while fewer than k have confirmed (then it is worth
   * re-gossiping, so others' timers shrink too).
   */
  confirm(fromId: MemberId): boolean {
    if (this.confirmationCount >= this.k || this.confirmers.has(fromId)) return false;
    this.confirmers.add(fromId);
    this.confirmationCount++;
    return true;
  }

  /** When the suspect is to be declared dead. */
  deadlineMs(): number {
    return this.startedMs + suspicionTimeoutAfterMs(this.confirmationCount, this.k, this.minMs, this.maxMs);
  }
}
