// The durable log store of a router: every Raft group's log in one write-ahead log (WAL) of
// segment files, so one fdatasync covers all groups' writes (group commit). `openDiskStore`
// recovers the directory (recovery.ts, replay.ts), makes the damage it finds durable, and
// returns the store, that damage and notes. Bytes: wal-format.ts; staging: wal-stage.ts; files:
// segment-files.ts; reads: disk-group-log.ts.
//
// Writes are staged: each call validates (a bad argument throws and changes nothing), updates
// the in-memory view at once (reads see it), and encodes its record into one staging buffer.
// `sync()` seals the buffer as a batch (hard states, then the commit record twice, listing
// every record of the batch) and writes it durably in one step (FileHandle.writeAndSync: an
// O_DSYNC write, or a write and an fdatasync). Calls made while a
// flush is in flight share it if nothing was staged since it started, or else the next one.
// Flushes are strictly sequential: batch k+1 is written only after batch k is durable, which is
// what lets recovery call a damaged last batch torn instead of lost (recovery.ts).
//
// Segments roll at `segmentBytes` (a batch is never split: a segment exceeds it by at most one
// batch). The batch that fills a segment also snapshots every group's state (hard state,
// snapshot reference, first and last index, record count, lowest index touched in that segment)
// as a checkpoint, written twice as the first batch of the next segment. So old segments can be
// deleted once no live entry is in them: their hard states and metadata survive in every later
// segment's checkpoint, and the oldest segment's checkpoint is recovery's base. Segments are
// deleted oldest first, with a directory fsync after each, so the survivors are always
// consecutive; deletion runs after the sync that freed them resolved (`idle()` waits for it).
// Snapshot files (one per group, the latest) are written to a temporary name, fsynced and
// renamed before the batch that refers to them; the one they replace is unlinked once that
// batch is durable. Open continues the last segment, or starts a new one if it is full.
//
// The fsync gate: a failed write or fsync (or any file operation of a flush) fails that sync
// and every later call that writes; reads still work (from memory where the disk cannot be
// trusted). Only reopening the store (recovery) clears it.
//
// Residual ambiguity: a torn write and damage look alike only at the very end of the log. A
// batch is applied at recovery only if one of its two commit copies is intact, and damage
// before an intact commit is reported; so a flipped bit in the last record of the log (the
// second commit copy) is found harmless, and one in any record before it is damage. What
// would pass silently as "torn" is a last batch whose two commit copies were both corrupted
// (two independent corruptions within a few hundred bytes at the tail): we accept that.
//
// Traps: entries and snapshots are kept by reference (in the cache and until their batch is
// written): callers must not mutate an Entry's or Snapshot's data after handing it over. Staged
// bytes are bounded by `stagedBytesMax`; the Raft shell syncs every Ready that stages entries
// (a hard state is staged once per group until the next sync), so it never comes close.
// Every live segment keeps an open file handle (64 MiB each by default).
// Trap: after a process crash (not a power cut) the page cache may still hold a batch that was
// written but never synced; it reads back intact. Open therefore fdatasyncs every recovered
// segment before anything is acknowledged on top of it (an O_DSYNC write makes only itself
// durable).

import { DiskGroupLog, type EntryReader } from "./disk-group-log.ts";
import {
  type DiskStoreOptions,
  type DiskStoreStats,
  type ResolvedDiskStoreOptions,
  resolveDiskStoreOptions,
} from "./disk-store-options.ts";
import {
  StorageAssertionError,
  StorageClosedError,
  StorageFailedError,
  StorageLimitError,
} from "./errors.ts";
import type { FileSystem } from "./file-system.ts";
import { type CurrentSnapshot, EntryCache, GroupState } from "./group-state.ts";
import { type DamageFinding, type Recovered, recover } from "./recovery.ts";
import { SegmentFiles } from "./segment-files.ts";
import {
  type Damage,
  type Entry,
  type GroupId,
  type HardState,
  type LogStore,
  type Snapshot,
  StorageDamageError,
} from "./types.ts";
import {
  ByteWriter,
  encodeConfiguration,
  encodeSnapshotHead,
  entryHeaderBytes,
  entryKindCodes,
  nodeIdBytesMax,
  recordBytes,
  segmentName,
  snapshotName,
} from "./wal-format.ts";
import { type TakenBatch, WalStage } from "./wal-stage.ts";

/** What open found: damage (made durable: views truncated, `damagedUpTo` raised) and notes. */
export interface OpenedDiskStore {
  readonly store: DiskStore;
  readonly damage: readonly Damage[];
  /** Things a person may want to know that lost nothing: torn tails dropped, redundant copies damaged. */
  readonly notes: readonly string[];
}

/** Opens (or creates) the store in `options.dir`, recovering what is there. */
export async function openDiskStore(options: DiskStoreOptions): Promise<OpenedDiskStore> {
  const resolved = resolveDiskStoreOptions(options);
  const dir = options.dir.length > 1 ? options.dir.replace(/\/+$/, "") : options.dir;
  await options.fs.mkdirp(dir);
  const recovered = await recover(options.fs, dir);
  const store = new DiskStore(options.fs, dir, resolved, recovered);
  try {
    const damage = await store.finishOpen(recovered);
    return { store, damage, notes: recovered.notes };
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }
}

interface StagedSnapshot {
  readonly state: GroupState;
  readonly current: CurrentSnapshot;
  readonly snapshot: Snapshot;
  readonly head: Buffer;
}

/** One flush: a sealed batch and what must happen around its write. */
interface Capture {
  readonly batch: TakenBatch;
  readonly snapshots: StagedSnapshot[];
  /** Snapshot files to unlink once this batch is durable. */
  readonly superseded: string[];
  /** Segments below this one hold nothing live once this batch is durable (0: none to check). */
  readonly reclaimBelow: number;
  /** `opsStaged` when it was sealed. */
  readonly upTo: number;
  readonly done: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

export class DiskStore implements LogStore, EntryReader {
  readonly stats: DiskStoreStats = {
    flushes: 0,
    bytesWritten: 0,
    entriesReadUncached: 0,
    cacheHits: 0,
    segmentsCreated: 0,
    segmentsDeleted: 0,
    snapshotFilesWritten: 0,
    snapshotFilesDeleted: 0,
  };
  private readonly dir: string;
  private readonly options: ResolvedDiskStoreOptions;
  private readonly states = new Map<GroupId, GroupState>();
  private readonly logs = new Map<GroupId, DiskGroupLog>();
  /** Groups with anything on disk or written since open. */
  private readonly listed = new Set<GroupId>();
  private readonly files: SegmentFiles;
  private readonly stage: WalStage;
  private readonly dirtyHardStates = new Set<GroupState>();
  private stagedSnapshots: StagedSnapshot[] = [];
  private superseded: string[] = [];
  private reclaimWanted = false;
  private nextFileId: number;
  private nextSegmentSeq: number;

  // Sync. Invariant: opsDurable <= opsCaptured <= opsStaged.
  private opsStaged = 0;
  private opsCaptured = 0;
  private opsDurable = 0;
  private waiters: Waiter[] = [];
  /** The flush being written; its bytes serve reads until it is durable (or forever, if it failed). */
  private inflight: Capture | null = null;
  private flushing: Promise<void> | null = null;
  private failure: StorageFailedError | null = null;
  private closed = false;

  private readonly cache: EntryCache;

  /** Use `openDiskStore`. */
  constructor(fs: FileSystem, dir: string, options: ResolvedDiskStoreOptions, recovered: Recovered) {
    this.dir = dir;
    this.options = options;
    this.cache = new EntryCache(options.cacheBytes);
    for (const [group, state] of recovered.groups) {
      this.states.set(group, state);
      this.listed.add(group);
    }
    this.files = new SegmentFiles(fs, dir, recovered.segments);
    this.stage = new WalStage(recovered.lastBatchId + 1);
    this.nextFileId = recovered.maxFileId + 1;
    this.nextSegmentSeq = (recovered.segments.at(-1)?.seq ?? 0) + 1;
  }

  /** Open, second half: tail repair, a fresh segment if needed, damage made durable. */
  async finishOpen(recovered: Recovered): Promise<Damage[]> {
    await this.files.unlinkAll(recovered.temporaryFiles);
    const last = recovered.segments.at(-1);
    let continues = false;
    if (last !== undefined && !last.committed) {
      // A segment whose first batch never became durable: a roll or an open that crashed. The
      // segment before it is left as it is (never written again: recovery read it as non-last).
      recovered.notes.push(`${segmentName(last.seq)}: removed (its creation was torn)`);
      await this.files.removeNewest();
      this.nextSegmentSeq = last.seq;
    } else if (last !== undefined) {
      if (last.repairCopy !== null || last.validEnd < last.size) {
        // Drop the torn tail (never acknowledged), completing a torn second commit copy.
        if (last.repairCopy !== null) await last.handle.write(last.repairCopy.bytes, last.repairCopy.at);
        await last.handle.truncate(last.validEnd);
        await last.handle.sync();
      }
      continues = last.validEnd < this.options.segmentBytes;
    }
    // See the file's traps: what recovery read must be on the disk, not only in the page cache.
    for (const segment of recovered.segments) {
      if (segment !== last || last.committed) await segment.handle.sync();
    }
    if (continues) {
      this.stage.continueSegment(last!.seq, last!.validEnd);
    } else {
      // The checkpoint is taken before the damage fixes are staged: a later replay meets the
      // same damage, then these records, which repair it the same way.
      this.stage.startSegment(this.nextSegmentSeq++, this.listedStates());
      this.opsStaged += 1; // the new segment must exist before open resolves
    }
    const damage: Damage[] = [];
    for (const finding of recovered.damage) {
      this.stageDamageFix(finding);
      const { group, fromIndex, toIndex, reason } = finding;
      damage.push({ group, fromIndex, toIndex, reason });
    }
    await this.sync();
    // Snapshot files no group refers to: written before a crash, replaced, or dropped as damaged.
    const referenced = new Set<string>();
    for (const state of this.states.values()) {
      if (state.snapshot !== null) referenced.add(snapshotName(state.group, state.snapshot.ref.fileId));
    }
    await this.files.unlinkAll(recovered.snapshotFiles.filter((name) => !referenced.has(name)));
    return damage;
  }

  // --- LogStore ---

  groups(): readonly GroupId[] {
    return [...this.listed];
  }

  group(group: GroupId): DiskGroupLog {
    let log = this.logs.get(group);
    if (log === undefined) {
      checkGroupId(group);
      log = new DiskGroupLog(this.stateOf(group), this);
      this.logs.set(group, log);
    }
    return log;
  }

  append(group: GroupId, entries: readonly Entry[]): void {
    this.checkWritable();
    checkGroupId(group);
    if (entries.length === 0) return;
    const state = this.stateOf(group);
    const index = state.index;
    const first = entries[0]!.index;
    if (!(Number.isSafeInteger(first) && first >= index.first && first <= index.last + 1)) {
      fail(
        `append at ${first} to group ${group} leaves a gap or rewrites the snapshot (log ${index.first}..${index.last})`,
      );
    }
    // Validate everything before changing anything. Plain checks: this loop runs per entry.
    const entryBytesMax = this.options.entryBytesMax;
    let previousTerm = state.term(first - 1) ?? 0;
    let dataBytes = 0;
    for (let k = 0; k < entries.length; k++) {
      const entry = entries[k]!;
      const term = entry.term;
      if (entry.index !== first + k)
        fail(`appended entries to group ${group} are not contiguous at ${first + k}`);
      if (!(term >= previousTerm && Number.isSafeInteger(term))) {
        fail(
          `appended term ${term} at ${entry.index} of group ${group} is below the previous ${previousTerm}`,
        );
      }
      if (entryKindCodes[entry.kind] === undefined) fail(`unknown entry kind ${String(entry.kind)}`);
      if (!(entry.data instanceof Uint8Array)) fail("entry data must be a Uint8Array");
      const length = entry.data.byteLength;
      if (length > entryBytesMax) {
        const message = `entry ${entry.index} of group ${group} holds ${length} bytes; the limit is ${entryBytesMax}`;
        throw new StorageLimitError("entryBytesMax", length, entryBytesMax, message);
      }
      previousTerm = term;
      dataBytes += length;
    }
    this.checkStageRoom(recordBytes(entries.length * entryHeaderBytes + dataBytes));
    // Valid: from here on nothing throws.
    this.own(state);
    index.truncateFrom(first);
    this.stage.entries(state, entries, dataBytes);
    state.touch(first);
    if (this.options.cacheBytes > 0) {
      state.cacheAppend(entries);
      this.cache.add(state, index.last, dataBytes);
    } else {
      state.cacheTruncateFrom(first);
    }
    this.opsStaged += 1;
  }

  setHardState(group: GroupId, hardState: HardState): void {
    this.checkWritable();
    checkGroupId(group);
    const state = this.stateOf(group);
    const current = state.hardState;
    const { term, vote, commit, damagedUpTo } = hardState;
    if (!(Number.isSafeInteger(term) && term >= current.term)) {
      fail(`hard state term of group ${group} decreases from ${current.term} to ${term}`);
    }
    if (!(vote === null || (typeof vote === "string" && Buffer.byteLength(vote) <= nodeIdBytesMax))) {
      fail(`vote must be null or a string of at most ${nodeIdBytesMax} bytes`);
    }
    if (term === current.term && current.vote !== null && vote !== current.vote) {
      fail(`group ${group} changes its vote in term ${term} from ${current.vote} to ${vote}`);
    }
    if (!(Number.isSafeInteger(commit) && commit >= 0))
      fail(`commit must be a non-negative integer, got ${commit}`);
    if (!(Number.isSafeInteger(damagedUpTo) && damagedUpTo >= 0)) {
      fail(`damagedUpTo must be a non-negative integer, got ${damagedUpTo}`);
    }
    this.stageHardState(this.own(state), { term, vote, commit, damagedUpTo });
  }

  truncate(group: GroupId, fromIndex: number): void {
    this.checkWritable();
    checkGroupId(group);
    const state = this.stateOf(group);
    if (!(Number.isSafeInteger(fromIndex) && fromIndex >= state.index.first)) {
      fail(
        `truncate of group ${group} at ${fromIndex} reaches into the snapshot (first index ${state.index.first})`,
      );
    }
    this.checkStageRoom(recordBytes(0));
    this.stageTruncate(this.own(state), fromIndex);
  }

  installSnapshot(group: GroupId, snapshot: Snapshot): void {
    this.checkWritable();
    checkGroupId(group);
    const state = this.stateOf(group);
    this.checkSnapshot(group, snapshot);
    const { index, term } = snapshot.meta;
    // Raft §7: keep the entries after the snapshot only if the log holds its last entry.
    const keep = index <= state.index.last && state.term(index) === term;
    this.stageSnapshot(this.own(state), snapshot, !keep);
  }

  compact(group: GroupId, snapshot: Snapshot): void {
    this.checkWritable();
    checkGroupId(group);
    const state = this.stateOf(group);
    this.checkSnapshot(group, snapshot);
    const { index, term } = snapshot.meta;
    const { first, last } = state.index;
    if (!(index >= first - 1 && index <= last))
      fail(`compact of group ${group} at ${index} outside the log ${first}..${last}`);
    if (state.term(index) !== term) {
      fail(
        `compact of group ${group} at ${index}: snapshot term ${term} is not the log's ${state.term(index)}`,
      );
    }
    this.stageSnapshot(this.own(state), snapshot, false);
  }

  sync(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new StorageClosedError());
    if (this.opsStaged <= this.opsDurable) return Promise.resolve();
    if (this.inflight !== null && this.opsStaged <= this.opsCaptured) return this.inflight.done;
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Syncs what is staged (unless the store failed), then releases the files. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.failure === null && this.opsStaged > this.opsDurable) await this.sync();
    } finally {
      this.closed = true;
      await this.idle();
      await this.files.close();
    }
  }

  /**
   * Resolves once no flush is running: in particular once the space a durable compaction freed
   * is reclaimed, which happens after the sync that made it durable resolved (so unlinking old
   * segments never delays an acknowledgement). Never rejects.
   */
  async idle(): Promise<void> {
    while (this.flushing !== null) await this.flushing.catch(() => {});
  }

  /** Live segment numbers, oldest first (for tests and status). */
  segments(): readonly number[] {
    return [...this.files.list()];
  }

  // --- EntryReader (for DiskGroupLog) ---

  /** Bytes [position, position + length) of segment `segment`, wherever they are now. */
  readBytes(group: GroupId, index: number, segment: number, position: number, length: number): Uint8Array {
    const staged = this.stage.read(segment, position, length);
    if (staged !== undefined) return staged;
    const inflight = this.inflight?.batch;
    if (inflight !== undefined && segment === inflight.segment && position >= inflight.position) {
      const at = position - inflight.position;
      return new Uint8Array(inflight.bytes.subarray(at, at + length));
    }
    const read = this.files.read(segment, position, length);
    if (typeof read !== "string") return read;
    const toIndex = this.states.get(group)?.index.last ?? index;
    throw new StorageDamageError({
      group,
      fromIndex: index,
      toIndex,
      reason: `${read}, reading entry ${index}`,
    });
  }

  readSnapshotFile(group: GroupId, fileId: number): Uint8Array {
    return this.files.readSnapshot(group, fileId);
  }

  countRead(uncached: number, cached: number): void {
    this.stats.entriesReadUncached += uncached;
    this.stats.cacheHits += cached;
  }

  // --- staging ---

  private checkWritable(): void {
    if (this.closed) throw new StorageClosedError();
    if (this.failure !== null) throw this.failure;
  }

  private checkStageRoom(bytes: number): void {
    const max = this.options.stagedBytesMax;
    if (this.stage.length + bytes > max) {
      const message = `staging ${bytes} more bytes would pass the ${max}-byte limit on unsynced writes; sync() first`;
      throw new StorageLimitError("stagedBytesMax", this.stage.length + bytes, max, message);
    }
  }

  private checkSnapshot(group: GroupId, snapshot: Snapshot): void {
    const { index, term, configuration } = snapshot.meta;
    if (!(Number.isSafeInteger(index) && index >= 0 && Number.isSafeInteger(term) && term >= 0)) {
      fail(`snapshot of group ${group} at index ${index}, term ${term}: both must be non-negative integers`);
    }
    if (!(snapshot.data instanceof Uint8Array)) fail("snapshot data must be a Uint8Array");
    const members = [...configuration.voters, ...configuration.learners];
    if (members.length > 0xffff) fail("configuration too large");
    for (const member of members) {
      if (!(typeof member === "string" && Buffer.byteLength(member) <= nodeIdBytesMax)) {
        fail(`configuration member ${String(member)} is not a string of at most ${nodeIdBytesMax} bytes`);
      }
    }
    if (this.nextFileId > 0xffffffff) fail("snapshot file ids exhausted");
  }

  /** The group's state, created (not yet listed) if new: validation reads it before anything changes. */
  private stateOf(group: GroupId): GroupState {
    let state = this.states.get(group);
    if (state === undefined) {
      state = new GroupState(group);
      this.states.set(group, state);
    }
    return state;
  }

  private own(state: GroupState): GroupState {
    this.listed.add(state.group);
    return state;
  }

  private *listedStates(): Iterable<GroupState> {
    for (const group of this.listed) yield this.states.get(group)!;
  }

  private stageHardState(state: GroupState, hardState: HardState): void {
    state.hardState = hardState;
    this.dirtyHardStates.add(state); // encoded once, at the flush
    this.opsStaged += 1;
  }

  private stageTruncate(state: GroupState, fromIndex: number): void {
    state.index.truncateFrom(fromIndex);
    state.cacheTruncateFrom(fromIndex);
    state.touch(fromIndex);
    this.stage.truncate(state, fromIndex);
    this.reclaimWanted = true;
    this.opsStaged += 1;
  }

  private stageSnapshot(state: GroupState, snapshot: Snapshot, dropAll: boolean): void {
    const { index, term, configuration } = snapshot.meta;
    const fileId = this.nextFileId;
    const { head, bodyCrc, fileBytes } = encodeSnapshotHead(
      state.group,
      fileId,
      index,
      term,
      configuration,
      snapshot.data,
    );
    const payload = new ByteWriter(64 + head.byteLength);
    payload.u32(bodyCrc);
    payload.f64(fileBytes);
    encodeConfiguration(payload, configuration);
    this.checkStageRoom(recordBytes(payload.length));
    this.nextFileId += 1;
    this.supersede(state);
    const copied = { voters: [...configuration.voters], learners: [...configuration.learners] };
    const current: CurrentSnapshot = {
      ref: { fileId, index, term, configuration: copied, fileCrc: bodyCrc, fileBytes },
      meta: { index, term, configuration: copied },
      staged: snapshot,
      written: false,
    };
    state.snapshot = current;
    this.stagedSnapshots.push({ state, current, snapshot, head });
    if (dropAll || index > state.index.last) {
      state.index.reset(index + 1);
      state.cacheTruncateFrom(index + 1);
    } else {
      state.index.dropThrough(index);
      state.cacheDropThrough(index);
    }
    if (dropAll) state.touch(index + 1);
    this.stage.snapshot(state, index, term, fileId, dropAll, payload);
    this.reclaimWanted = true;
    this.opsStaged += 1;
  }

  /** The group's current snapshot is being replaced: never write it, or delete its file later. */
  private supersede(state: GroupState): void {
    const previous = state.snapshot;
    if (previous === null) return;
    const staged = this.stagedSnapshots.findIndex((item) => item.current === previous);
    if (staged >= 0) this.stagedSnapshots.splice(staged, 1);
    else this.superseded.push(snapshotName(state.group, previous.ref.fileId));
  }

  private stageReset(state: GroupState): void {
    this.supersede(state);
    state.snapshot = null;
    state.index.reset(1);
    state.cacheTruncateFrom(1);
    state.touch(1);
    this.stage.reset(state);
    this.reclaimWanted = true;
    this.opsStaged += 1;
  }

  /** Makes a damage finding durable: the view ends before it, and damagedUpTo covers it. */
  private stageDamageFix(finding: DamageFinding): void {
    const state = this.own(this.stateOf(finding.group));
    if (finding.reset || finding.fromIndex < state.index.first) this.stageReset(state);
    else this.stageTruncate(state, finding.fromIndex);
    const hardState = state.hardState;
    this.stageHardState(state, {
      ...hardState,
      damagedUpTo: Math.max(hardState.damagedUpTo, finding.toIndex),
    });
  }

  // --- flushing ---

  private async flushLoop(): Promise<void> {
    try {
      while (this.waiters.length > 0 && this.failure === null) {
        const capture = this.capture();
        const waiters = this.waiters;
        this.waiters = [];
        void capture.done.then(
          () => {
            for (const waiter of waiters) waiter.resolve();
          },
          (error: Error) => {
            for (const waiter of waiters) waiter.reject(error);
          },
        );
        try {
          await this.write(capture);
        } catch (error) {
          this.fail(error, capture);
          return;
        }
        this.opsDurable = capture.upTo;
        this.inflight = null;
        capture.resolve();
        try {
          await this.reclaim(capture);
        } catch (error) {
          this.fail(error, null);
          return;
        }
      }
    } finally {
      this.flushing = null;
    }
  }

  /** Seals what is staged into a flush, and opens the next stage (a new segment if this one is full). */
  private capture(): Capture {
    for (const state of this.dirtyHardStates) this.stage.hardState(state);
    this.dirtyHardStates.clear();
    const batch = this.stage.take();
    let resolve!: () => void;
    let reject!: (error: Error) => void;
    const done = new Promise<void>((onResolve, onReject) => {
      resolve = onResolve;
      reject = onReject;
    });
    done.catch(() => {});
    const capture: Capture = {
      batch,
      snapshots: this.stagedSnapshots,
      superseded: this.superseded,
      reclaimBelow: this.reclaimWanted ? this.oldestNeededSegment() : 0,
      upTo: this.opsStaged,
      done,
      resolve,
      reject,
    };
    this.reclaimWanted = false;
    this.stagedSnapshots = [];
    this.superseded = [];
    this.opsCaptured = this.opsStaged;
    this.inflight = capture;
    if (batch.position + batch.bytes.byteLength >= this.options.segmentBytes) {
      // This batch fills its segment: the next one begins a new segment, whose checkpoint is
      // every group's state as of now (after this batch).
      this.stage.startSegment(this.nextSegmentSeq++, this.listedStates());
    }
    return capture;
  }

  /** The oldest segment holding a live entry (or the one being written). */
  private oldestNeededSegment(): number {
    let oldest = this.stage.segment;
    for (const state of this.states.values()) {
      const index = state.index;
      if (index.last < index.first) continue;
      const segment = index.segments[index.slot(index.first)]!;
      if (segment < oldest) oldest = segment;
    }
    return oldest;
  }

  private async write(capture: Capture): Promise<void> {
    const { batch } = capture;
    for (const staged of capture.snapshots) {
      const { ref } = staged.current;
      await this.files.writeSnapshot(staged.state.group, ref.fileId, staged.head, staged.snapshot.data);
      staged.current.written = true;
      this.stats.snapshotFilesWritten += 1;
    }
    if (batch.creates) {
      await this.files.create(batch.segment);
      this.stats.segmentsCreated += 1;
    }
    // Renamed snapshot files and a new segment must be durable names before the batch that
    // refers to them is: one directory fsync covers them all.
    if (batch.creates || capture.snapshots.length > 0) await this.files.syncDirectory();
    if (batch.bytes.byteLength > 0) {
      await this.files.writeAndSync(batch.segment, batch.bytes, batch.position);
      this.stats.flushes += 1;
      this.stats.bytesWritten += batch.bytes.byteLength;
    }
    for (const staged of capture.snapshots) {
      if (staged.state.snapshot === staged.current) staged.current.staged = null;
    }
  }

  /** After a durable flush: unlink replaced snapshot files and segments holding nothing live. */
  private async reclaim(capture: Capture): Promise<void> {
    await this.files.unlinkAll(capture.superseded);
    this.stats.snapshotFilesDeleted += capture.superseded.length;
    this.stats.segmentsDeleted += await this.files.deleteBelow(capture.reclaimBelow);
  }

  private fail(error: unknown, capture: Capture | null): void {
    const message = error instanceof Error ? error.message : String(error);
    this.failure = new StorageFailedError(
      `the log store in ${this.dir} failed to write (${message}); it refuses writes until reopened`,
      { cause: error },
    );
    capture?.reject(this.failure);
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.reject(this.failure);
  }
}

/** A programmer error: throws, before anything changed. */
function fail(message: string): never {
  throw new StorageAssertionError(message);
}

function checkGroupId(group: GroupId): void {
  if (!(Number.isInteger(group) && group >= 0 && group <= 0xffffffff)) {
    fail(`group id must be an integer 0..2^32-1, got ${group}`);
  }
}
