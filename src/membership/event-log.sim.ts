// The event log of a membership simulation: every view change with its virtual time, by
// subject, so a checker asks "when had every member seen X dead?" without scanning the run;
// and quantile() for the distributions the experiments report.
// Invariants: events are appended in virtual-time order; every kind is counted even when only
// some kinds are kept (a 10,000-member run under loss makes millions of suspicions a minute).
import type { MemberId, ViewEventKind } from "./types.ts";

/** One view change: `observer` saw `subject` change (`kind`) at `atMs`, at `incarnation`. */
export interface SimEvent {
  readonly atMs: number;
  readonly observer: number;
  readonly kind: ViewEventKind;
  readonly subject: MemberId;
  readonly incarnation: number;
}

/** Every view change of the run, by subject. Bounded by what the run does, not by time. */
export class EventLog {
  private readonly bySubject = new Map<MemberId, SimEvent[]>();
  private readonly totals = new Map<ViewEventKind, number>();
  private readonly kept: ReadonlySet<ViewEventKind> | undefined;
  /** Events kept. */
  count = 0;

  /** Keeps events of `kinds` only (all by default); counts every kind. */
  constructor(kinds?: readonly ViewEventKind[]) {
    this.kept = kinds === undefined ? undefined : new Set(kinds);
  }

  add(event: SimEvent): void {
    this.totals.set(event.kind, (this.totals.get(event.kind) ?? 0) + 1);
    if (this.kept !== undefined && !this.kept.has(event.kind)) return;
    const list = this.bySubject.get(event.subject);
    if (list === undefined) this.bySubject.set(event.subject, [event]);
    else list.push(event);
    this.count++;
  }

  /** Events of `kind` logged so far (O(1): take one before and one after to count a window). */
  total(kind: ViewEventKind): number {
    return this.totals.get(kind) ?? 0;
  }

  about(subject: MemberId): readonly SimEvent[] {
    return this.bySubject.get(subject) ?? [];
  }

  /** Subjects with at least one event of `kind` at or after `sinceMs` by an observer other than themselves. */
  subjectsWith(kind: ViewEventKind, sinceMs: number): Set<MemberId> {
    const found = new Set<MemberId>();
    for (const [subject, list] of this.bySubject) {
      if (list.some((e) => e.kind === kind && e.atMs >= sinceMs && `m${e.observer}` !== subject))
        found.add(subject);
    }
    return found;
  }

  /** Events of `kind` at or after `sinceMs`, about others. */
  countOf(kind: ViewEventKind, sinceMs: number): number {
    let count = 0;
    for (const [subject, list] of this.bySubject)
      for (const e of list) if (e.kind === kind && e.atMs >= sinceMs && `m${e.observer}` !== subject) count++;
    return count;
  }

  /**
   * When the last of `observers` first saw `subject` change by `kind` at or after `sinceMs`,
   * or undefined if one of them never did.
   */
  allSawAt(
    subject: MemberId,
    kind: ViewEventKind,
    observers: readonly number[],
    sinceMs: number,
  ): number | undefined {
    const first = new Map<number, number>();
    for (const e of this.about(subject)) {
      if (e.kind === kind && e.atMs >= sinceMs && !first.has(e.observer)) first.set(e.observer, e.atMs);
    }
    let last = sinceMs;
    for (const observer of observers) {
      const atMs = first.get(observer);
      if (atMs === undefined) return undefined;
      last = Math.max(last, atMs);
    }
    return last;
  }

  clear(): void {
    this.bySubject.clear();
    this.totals.clear();
    this.count = 0;
  }
}

/** The q-th quantile (0..1) of `values` by nearest rank; NaN if empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
