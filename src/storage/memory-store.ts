// An in-memory LogStore: the same semantics as the disk store, no files and no faults. It is
// the reference model the disk store is tested against, and the store of Raft core unit tests.
// `sync()` resolves on a microtask; everything staged is "durable" at once (the simulator
// models crashes and torn writes with the disk store over src/sim's SimDisk instead).
// Invariant: each group's `entries` are contiguous from `first`; terms never decrease.
import {
  type Entry,
  type EntryKind,
  emptyHardState,
  type GroupId,
  type GroupLog,
  type HardState,
  type LogStore,
  type Snapshot,
  type SnapshotMeta,
} from "./types.ts";

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

class MemoryGroupLog implements GroupLog {
  readonly group: GroupId;
  state: HardState = emptyHardState;
  latest: Snapshot | null = null;
  /** Index of entries[0]; snapshot index + 1. */
  first = 1;
  entriesHeld: Entry[] = [];

  constructor(group: GroupId) {
    this.group = group;
  }

  hardState(): HardState {
    return this.state;
  }
  snapshot(): Snapshot | null {
    return this.latest;
  }
  snapshotMeta(): SnapshotMeta | null {
    return this.latest?.meta ?? null;
  }
  firstIndex(): number {
    return this.first;
  }
  lastIndex(): number {
    return this.first + this.entriesHeld.length - 1;
  }
  term(index: number): number | undefined {
    if (index === this.first - 1) return this.latest?.meta.term ?? 0;
    if (index < this.first || index > this.lastIndex()) return undefined;
    return this.entriesHeld[index - this.first]!.term;
  }
  kindOf(index: number): EntryKind | undefined {
    if (index < this.first || index > this.lastIndex()) return undefined;
    return this.entriesHeld[index - this.first]!.kind;
  }
  entries(from: number, to: number, maxBytes: number): readonly Entry[] {
    assert(
      from >= this.first && to <= this.lastIndex() + 1 && from <= to,
      `entries [${from}, ${to}) out of range`,
    );
    const result: Entry[] = [];
    let bytes = 0;
    for (let index = from; index < to; index++) {
      const entry = this.entriesHeld[index - this.first]!;
      bytes += entry.data.byteLength;
      if (result.length > 0 && bytes > maxBytes) break;
      result.push(entry);
    }
    return result;
  }
}

export class MemoryStore implements LogStore {
  private readonly logs = new Map<GroupId, MemoryGroupLog>();
  /** Number of `sync()` calls, for tests counting fsyncs. */
  syncs = 0;

  groups(): readonly GroupId[] {
    return [...this.logs.keys()];
  }

  group(group: GroupId): MemoryGroupLog {
    let log = this.logs.get(group);
    if (log === undefined) {
      log = new MemoryGroupLog(group);
      this.logs.set(group, log);
    }
    return log;
  }

  append(group: GroupId, entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const log = this.group(group);
    const start = entries[0]!.index;
    assert(
      start >= log.first && start <= log.lastIndex() + 1,
      `append at ${start} leaves a gap or rewrites the snapshot`,
    );
    for (let i = 1; i < entries.length; i++) {
      assert(entries[i]!.index === start + i, "appended entries are not contiguous");
      assert(entries[i]!.term >= entries[i - 1]!.term, "appended terms decrease");
    }
    assert((log.term(start - 1) ?? 0) <= entries[0]!.term, "appended term below the previous entry's");
    log.entriesHeld.length = start - log.first;
    for (const entry of entries) log.entriesHeld.push(entry);
  }

  setHardState(group: GroupId, state: HardState): void {
    const log = this.group(group);
    const previous = log.state;
    assert(state.term >= previous.term, `hard state term goes back from ${previous.term} to ${state.term}`);
    assert(
      state.term > previous.term || previous.vote === null || state.vote === previous.vote,
      `vote in term ${state.term} changes from ${previous.vote} to ${state.vote}`,
    );
    log.state = state;
  }

  truncate(group: GroupId, fromIndex: number): void {
    const log = this.group(group);
    assert(fromIndex >= log.first, `truncate at ${fromIndex} reaches into the snapshot`);
    if (fromIndex <= log.lastIndex()) log.entriesHeld.length = fromIndex - log.first;
  }

  installSnapshot(group: GroupId, snapshot: Snapshot): void {
    const log = this.group(group);
    const { index, term } = snapshot.meta;
    if (log.term(index) === term && index <= log.lastIndex()) {
      log.entriesHeld = log.entriesHeld.slice(index + 1 - log.first);
    } else {
      log.entriesHeld = [];
    }
    log.first = index + 1;
    log.latest = snapshot;
  }

  compact(group: GroupId, snapshot: Snapshot): void {
    const log = this.group(group);
    const { index, term } = snapshot.meta;
    assert(index >= log.first - 1 && index <= log.lastIndex(), `compact at ${index} outside the log`);
    assert(log.term(index) === term, `compact at ${index}: snapshot term ${term} is not the log's`);
    log.entriesHeld = log.entriesHeld.slice(index + 1 - log.first);
    log.first = index + 1;
    log.latest = snapshot;
  }

  async sync(): Promise<void> {
    this.syncs += 1;
  }

  async close(): Promise<void> {}
}
