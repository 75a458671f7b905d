// A group's log as the Raft core sees it: the store's durable view plus the entries (and a
// received snapshot) not yet persisted, and the commit and apply cursors (Raft §5.3, §7).
//
// Invariants: applied <= committed <= lastIndex() (except on a replica that just lost a
// damaged range, where applied may exceed lastIndex until repaired; nothing is re-applied).
// Unstable entries start at `unstableOffset`; for any index >= unstableOffset they mask the
// store, which still holds the old suffix until the shell persists them.
// Trap: store reads may throw StorageDamageError; callers in core.ts catch it.
import type { Entry, GroupLog, Snapshot } from "../storage/index.ts";
import { assert } from "./errors.ts";

export class RaftLog {
  readonly store: GroupLog;
  /** Entries not yet handed to the shell as persisted. */
  unstable: Entry[] = [];
  /** Index of unstable[0]. */
  unstableOffset: number;
  /** A snapshot received from the leader, not yet persisted. */
  pendingSnapshot: Snapshot | null = null;
  committed: number;
  applied: number;

  constructor(store: GroupLog, applied: number) {
    this.store = store;
    this.unstableOffset = store.lastIndex() + 1;
    const snapshotIndex = store.firstIndex() - 1;
    this.committed = Math.max(snapshotIndex, Math.min(store.hardState().commit, store.lastIndex()));
    this.applied = Math.max(snapshotIndex, Math.min(applied, this.committed));
  }

  firstIndex(): number {
    if (this.pendingSnapshot !== null) return this.pendingSnapshot.meta.index + 1;
    return this.store.firstIndex();
  }

  lastIndex(): number {
    if (this.unstable.length > 0) return this.unstableOffset + this.unstable.length - 1;
    if (this.pendingSnapshot !== null) return this.pendingSnapshot.meta.index;
    return Math.min(this.store.lastIndex(), this.unstableOffset - 1);
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  /** Term at `index`, or undefined if compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index >= this.unstableOffset) {
      const entry = this.unstable[index - this.unstableOffset];
      if (entry !== undefined) return entry.term;
      if (this.pendingSnapshot !== null && index === this.pendingSnapshot.meta.index) {
        return this.pendingSnapshot.meta.term;
      }
      return undefined;
    }
    if (this.pendingSnapshot !== null) {
      return index === this.pendingSnapshot.meta.index ? this.pendingSnapshot.meta.term : undefined;
    }
    return this.store.term(index);
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Raft §5.4.1: is a log ending at (index, term) at least as up-to-date as ours? */
  isUpToDate(index: number, term: number): boolean {
    const lastTerm = this.lastTerm();
    return term > lastTerm || (term === lastTerm && index >= this.lastIndex());
  }

  /** Entries [from, to), at most `maxBytes` of data (at least one entry). */
  slice(from: number, to: number, maxBytes: number): Entry[] {
    assert(from >= this.firstIndex() && to <= this.lastIndex() + 1, `slice [${from}, ${to}) outside the log`);
    const result: Entry[] = [];
    if (from >= to) return result;
    let bytes = 0;
    if (from < this.unstableOffset) {
      const stored = this.store.entries(from, Math.min(to, this.unstableOffset), maxBytes);
      for (const entry of stored) {
        bytes += entry.data.byteLength;
        result.push(entry);
      }
      if (result.length < Math.min(to, this.unstableOffset) - from) return result;
    }
    for (let index = Math.max(from, this.unstableOffset); index < to; index++) {
      const entry = this.unstable[index - this.unstableOffset]!;
      bytes += entry.data.byteLength;
      if (result.length > 0 && bytes > maxBytes) break;
      result.push(entry);
    }
    return result;
  }

  /** Appends after truncating any conflicting suffix; returns the new last index. */
  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0]!.index;
    assert(after > this.committed, `append at ${after} would overwrite committed ${this.committed}`);
    assert(after <= this.lastIndex() + 1, `append at ${after} leaves a gap after ${this.lastIndex()}`);
    if (after >= this.unstableOffset && after <= this.unstableOffset + this.unstable.length) {
      this.unstable.length = after - this.unstableOffset;
    } else {
      // The new entries replace part of the stored log: they mask it until persisted.
      this.unstable = [];
      this.unstableOffset = after;
    }
    for (const entry of entries) this.unstable.push(entry);
    return this.lastIndex();
  }

  /**
   * Raft §5.3 AppendEntries receiver: if our log has (prevIndex, prevTerm), append the new
   * entries (dropping a conflicting suffix, keeping a matching one) and return the last new
   * index; otherwise return -1.
   */
  maybeAppend(prevIndex: number, prevTerm: number, entries: readonly Entry[]): number {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    const lastNew = prevIndex + entries.length;
    let conflict = 0;
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) {
        conflict = entry.index;
        break;
      }
    }
    if (conflict !== 0) {
      assert(conflict > this.committed, `entry ${conflict} conflicts with the committed log`);
      this.append(entries.slice(conflict - prevIndex - 1));
    }
    return lastNew;
  }

  commitTo(index: number): void {
    if (index > this.committed) {
      assert(index <= this.lastIndex(), `commit ${index} beyond last index ${this.lastIndex()}`);
      this.committed = index;
    }
  }

  /** Committed entries the application has not been given yet, up to `maxBytes`. */
  nextCommitted(maxBytes: number): Entry[] {
    const from = Math.max(this.applied + 1, this.firstIndex());
    if (from > this.committed) return [];
    return this.slice(from, this.committed + 1, maxBytes);
  }

  hasNextCommitted(): boolean {
    return this.committed > this.applied && this.committed >= this.firstIndex();
  }

  /** The shell persisted entries up to (index, term): they leave the unstable buffer. */
  stableTo(index: number, term: number): void {
    if (index < this.unstableOffset) return;
    const entry = this.unstable[index - this.unstableOffset];
    if (entry === undefined || entry.term !== term) return;
    this.unstable = this.unstable.slice(index + 1 - this.unstableOffset);
    this.unstableOffset = index + 1;
  }

  stableSnapshot(index: number): void {
    if (this.pendingSnapshot !== null && this.pendingSnapshot.meta.index === index)
      this.pendingSnapshot = null;
  }

  /** Replace the whole log by a snapshot from the leader (Raft §7). */
  restore(snapshot: Snapshot): void {
    this.pendingSnapshot = snapshot;
    this.unstable = [];
    this.unstableOffset = snapshot.meta.index + 1;
    this.committed = snapshot.meta.index;
    // The state machine's state is replaced by the snapshot's (even one behind what it had
    // applied, after a damaged range was dropped): what follows is applied again from there.
    this.applied = snapshot.meta.index;
  }

  /** Drop everything from `index` on (a damaged range). */
  discardFrom(index: number): void {
    if (index >= this.unstableOffset) {
      this.unstable.length = Math.max(0, Math.min(this.unstable.length, index - this.unstableOffset));
    } else {
      this.unstable = [];
      this.unstableOffset = index;
    }
    this.committed = Math.min(this.committed, index - 1);
  }
}
