// Recovery rules over SimDisk: a torn tail (a crash at any byte of a batch in flight) keeps
// every synced write and is not damage; damage (a flipped bit in each record kind, a truncated
// or missing segment, a damaged snapshot file, a log ending before its commit) is reported with
// its group and range, never returned by reads, made durable (the view truncated, damagedUpTo
// raised), and a second open after a crash sees the same state and reports nothing new.
import { describe, expect, it } from "vitest";
import { SeededRandom, type SimDisk, settleMicrotasks } from "../sim/index.ts";
import {
  allRecords,
  dir,
  dumpStore,
  entriesOf,
  entryOf,
  newDisk,
  openSim,
  RecordKind,
  type StoreDump,
  segmentPaths,
} from "./disk-fixtures.sim.ts";
import { type DiskStore, openDiskStore } from "./disk-store.ts";
import { damagedUnbounded, type Snapshot, StorageDamageError } from "./types.ts";

const groups = [1, 2, 3];

function snapshotAt(index: number, term: number): Snapshot {
  return {
    meta: { index, term, configuration: { voters: ["r1", "r2"], learners: [] } },
    data: new Uint8Array(30).fill(index),
  };
}

/**
 * Four synced batches over three groups, in one segment:
 * 1: g1 1..10, g2 1..5, g1 hard state; 2: g1 11..20, g2 truncate at 4, g2 hard state;
 * 3: g3 1..3, g1 21..25, g1 compacted at 5; 4: g1 26..30, g1 hard state (commit 20).
 */
async function fourBatches(disk: SimDisk, segmentBytes = 1 << 20): Promise<DiskStore> {
  const { store } = await openSim(disk, { segmentBytes });
  store.append(1, entriesOf(1, 1, 10, 1));
  store.append(2, entriesOf(2, 1, 5, 1));
  store.setHardState(1, { term: 1, vote: "r1", commit: 3, damagedUpTo: 0 });
  await store.sync();
  store.append(1, entriesOf(1, 11, 20, 1));
  store.truncate(2, 4);
  store.setHardState(2, { term: 1, vote: null, commit: 2, damagedUpTo: 0 });
  await store.sync();
  store.append(3, entriesOf(3, 1, 3, 1));
  store.append(1, entriesOf(1, 21, 25, 1));
  store.compact(1, snapshotAt(5, 1));
  await store.sync();
  store.append(1, entriesOf(1, 26, 30, 1));
  store.setHardState(1, { term: 2, vote: "r1", commit: 20, damagedUpTo: 0 });
  await store.sync();
  return store;
}

/** Reopens after a crash; checks the second open reports nothing and sees the same state. */
async function reopenTwice(disk: SimDisk) {
  disk.crash();
  const first = await openSim(disk, { segmentBytes: 1 << 20 });
  const state = dumpStore(first.store, groups);
  disk.crash();
  const second = await openSim(disk, { segmentBytes: 1 << 20 });
  expect(second.damage).toEqual([]);
  expect(dumpStore(second.store, groups)).toEqual(state);
  return { ...first, state };
}

/** Every entry a dump holds is the one written (damaged bytes are never returned). */
function expectGenuine(dump: StoreDump, term = (_group: number, _index: number) => 1): void {
  for (const [group, log] of Object.entries(dump)) {
    for (const entry of log.entries) {
      const written = entryOf(Number(group), entry.index, term(Number(group), entry.index));
      expect({ ...entry, data: Uint8Array.from(entry.data) }).toEqual(written);
    }
  }
}

function recordOf(disk: SimDisk, kind: number, group: number, a?: number) {
  const record = allRecords(disk).find(
    (candidate) =>
      candidate.kind === kind && candidate.group === group && (a === undefined || candidate.a === a),
  );
  if (record === undefined) throw new Error(`no ${kind} record of group ${group}`);
  return record;
}

describe("torn writes are not damage", () => {
  /** Builds the same history on a fresh disk each time, leaving a last batch written but not synced. */
  async function inFlight(seed: number, roll: boolean) {
    const disk = newDisk(seed);
    const segmentBytes = roll ? 4096 : 1 << 20;
    const store = await fourBatches(disk, segmentBytes);
    if (roll) {
      // Fill the segment so that the next batch starts a new one.
      for (let round = 0; round < 20 && store.segments().length < 2; round++) {
        store.append(2, entriesOf(2, 4 + round * 5, 8 + round * 5, 1));
        await store.sync();
      }
    }
    const before = dumpStore(store, groups);
    disk.holdSyncs(/wal-/);
    store.append(1, entriesOf(1, 31, 40, 2));
    store.append(3, entriesOf(3, 2, 6, 2)); // overwrites 2..3
    store.setHardState(3, { term: 2, vote: "r2", commit: 1, damagedUpTo: 0 });
    store.compact(2, snapshotAt(2, 1));
    void store.sync().catch(() => {});
    await settleMicrotasks();
    const after = dumpStore(store, groups);
    const pending = segmentPaths(disk).reduce((sum, path) => sum + disk.pendingBytes(path), 0);
    expect(disk.heldSyncCount).toBe(1);
    const lastCommit = allRecords(disk).at(-1)!;
    expect(lastCommit.kind).toBe(RecordKind.commit);
    // Once the first commit copy is whole, the batch is complete and kept (its second copy is repaired).
    const completeAt = pending - lastCommit.length;
    return { disk, before, after, pending, completeAt };
  }

  for (const roll of [false, true]) {
    it(`a crash at any byte of the batch in flight keeps every synced write${roll ? " (the batch opens a new segment)" : ""}`, async () => {
      const segmentBytes = roll ? 4096 : 1 << 20;
      const { disk: built, before, after, pending, completeAt } = await inFlight(1, roll);
      expect(pending).toBeGreaterThan(500);
      for (let keep = 0; keep <= pending; keep++) {
        for (const garbageBytes of keep % 5 === 0 ? [0, 24] : [0]) {
          const disk = built.clone(new SeededRandom(keep).fork("garbage"));
          disk.crash({ keepBytes: keep, garbageBytes });
          const { store, damage } = await openSim(disk, { segmentBytes });
          expect(damage, `keep ${keep}`).toEqual([]);
          const state = dumpStore(store, groups);
          expect(state, `keep ${keep}`).toEqual(keep >= completeAt ? after : before);
          // The store takes new writes, and they survive the next reopen.
          store.append(4, entriesOf(4, 1, 2, 1));
          await store.sync();
          disk.crash();
          const again = await openSim(disk, { segmentBytes });
          expect(again.damage).toEqual([]);
          expect(dumpStore(again.store, groups)).toEqual(state);
          expect(again.store.group(4).lastIndex()).toBe(2);
        }
      }
    });
  }

  it("random tears over many seeds never lose a synced write nor report damage", async () => {
    for (let seed = 1; seed <= 60; seed++) {
      const { disk, before, after } = await inFlight(seed, seed % 2 === 0);
      disk.crash({ tear: true });
      const { store, damage } = await openSim(disk, { segmentBytes: seed % 2 === 0 ? 4096 : 1 << 20 });
      expect(damage, `seed ${seed}`).toEqual([]);
      expect([before, after], `seed ${seed}`).toContainEqual(dumpStore(store, groups));
    }
  });
});

describe("a flipped bit is damage, reported with its group and range", () => {
  it("in an entry's data: from that entry, up to the highest index that existed", async () => {
    const disk = newDisk();
    await fourBatches(disk);
    const record = recordOf(disk, RecordKind.entries, 1, 11);
    const entry15 =
      record.payloadStart +
      10 * 16 +
      [11, 12, 13, 14].reduce((sum, i) => sum + entryOf(1, i, 1).data.byteLength, 0);
    disk.flipBit(record.path, entry15 + 2, 3);
    const { damage, store, state } = await reopenTwice(disk);
    expect(damage).toEqual([
      { group: 1, fromIndex: 15, toIndex: 30, reason: expect.stringContaining("entry 15") },
    ]);
    expect(store.group(1).lastIndex()).toBe(14);
    expect(store.group(1).hardState()).toMatchObject({ term: 2, commit: 20, damagedUpTo: 30 });
    expect(state[2]!.last).toBe(3);
    expectGenuine(state);
  });

  it("in an entries record's header: the whole record's range, from the batch manifest", async () => {
    const disk = newDisk();
    await fourBatches(disk);
    const record = recordOf(disk, RecordKind.entries, 1, 26);
    disk.flipBit(record.path, record.offset + 30, 0); // inside field a
    const { damage, store } = await reopenTwice(disk);
    expect(damage).toEqual([
      { group: 1, fromIndex: 26, toIndex: 30, reason: expect.stringContaining("unreadable") },
    ]);
    expect(store.group(1).lastIndex()).toBe(25);
    expect(store.group(1).hardState().damagedUpTo).toBe(30);
  });

  it("in the latest hard state: the hard state may be lost, so damagedUpTo becomes unbounded", async () => {
    const disk = newDisk();
    await fourBatches(disk);
    const record = allRecords(disk)
      .filter((candidate) => candidate.kind === RecordKind.hardState && candidate.group === 1)
      .at(-1)!;
    disk.flipBit(record.path, record.payloadStart + 1, 6);
    const { damage, store } = await reopenTwice(disk);
    expect(damage).toEqual([
      { group: 1, fromIndex: 31, toIndex: damagedUnbounded, reason: expect.stringContaining("hard state") },
    ]);
    expect(store.group(1).lastIndex()).toBe(30);
    expect(store.group(1).hardState()).toEqual({
      term: 1,
      vote: "r1",
      commit: 3,
      damagedUpTo: damagedUnbounded,
    });
  });

  it("in a hard state a later one replaced: nothing is lost, nothing reported", async () => {
    const disk = newDisk();
    const intact = dumpStore(await fourBatches(disk), groups);
    const record = recordOf(disk, RecordKind.hardState, 1);
    disk.flipBit(record.path, record.payloadStart + 3, 1);
    const { damage, state } = await reopenTwice(disk);
    expect(damage).toEqual([]);
    expect(state).toEqual(intact);
  });

  it("in a snapshot record: the group's snapshot and log are dropped (fromIndex 1)", async () => {
    const disk = newDisk();
    await fourBatches(disk);
    const record = recordOf(disk, RecordKind.snapshot, 1);
    disk.flipBit(record.path, record.payloadStart + 2, 2);
    const { damage, store } = await reopenTwice(disk);
    expect(damage).toEqual([
      { group: 1, fromIndex: 1, toIndex: 30, reason: expect.stringContaining("snapshot") },
    ]);
    expect(store.group(1).snapshot()).toBeNull();
    expect([store.group(1).firstIndex(), store.group(1).lastIndex()]).toEqual([1, 0]);
    expect(store.group(1).hardState().damagedUpTo).toBe(30);
    expect(store.group(2).lastIndex()).toBe(3);
  });

  it("in a record the manifest fully describes (a truncate): restored, not damage", async () => {
    const disk = newDisk();
    const intact = dumpStore(await fourBatches(disk), groups);
    const record = recordOf(disk, RecordKind.truncate, 2);
    disk.flipBit(record.path, record.offset + 26, 4);
    const { damage, state, notes } = await reopenTwice(disk);
    expect(damage).toEqual([]);
    expect(state).toEqual(intact);
    expect(notes.join("\n")).toContain("restored from the batch manifest");
  });

  it("in one of the two copies of a commit or a checkpoint: the other copy serves, nothing lost", async () => {
    for (const [kind, copy] of [
      [RecordKind.commit, 0],
      [RecordKind.commit, 1],
      [RecordKind.checkpoint, 0],
      [RecordKind.checkpoint, 1],
    ] as const) {
      const disk = newDisk();
      const intact = dumpStore(await fourBatches(disk), groups);
      const record = allRecords(disk).filter((candidate) => candidate.kind === kind)[copy]!;
      disk.flipBit(record.path, record.offset + 20, 5);
      const { damage, state, notes } = await reopenTwice(disk);
      expect(damage, `${kind} copy ${copy}`).toEqual([]);
      expect(state).toEqual(intact);
      expect(notes.join("\n")).toMatch(/damaged/);
    }
  });

  it("in the very last record of the log (the second commit copy): found as harmless, not taken for a torn write", async () => {
    const disk = newDisk();
    const intact = dumpStore(await fourBatches(disk), groups);
    const last = allRecords(disk).at(-1)!;
    expect(last.kind).toBe(RecordKind.commit);
    disk.flipBit(last.path, last.offset + last.length - 9, 0);
    const { damage, state } = await reopenTwice(disk);
    expect(damage).toEqual([]);
    expect(state).toEqual(intact);
  });

  it("in the last data record before the final commit: damage, not a torn tail", async () => {
    const disk = newDisk();
    await fourBatches(disk);
    const record = allRecords(disk)
      .filter((candidate) => candidate.kind === RecordKind.hardState)
      .at(-1)!;
    expect(record.group).toBe(1);
    disk.flipBit(record.path, record.offset + 5, 0); // its header
    const { damage } = await reopenTwice(disk);
    expect(damage).toEqual([
      { group: 1, fromIndex: 31, toIndex: damagedUnbounded, reason: expect.stringContaining("unreadable") },
    ]);
  });

  it("in both commit copies of a batch: its readable records are kept; groups not proven whole are damaged", async () => {
    const disk = newDisk();
    const intact = dumpStore(await fourBatches(disk), groups);
    // Batch 2 (g1 11..20, g2 truncate and hard state): nothing after it mentions group 2 again.
    const commits = allRecords(disk).filter(
      (candidate) => candidate.kind === RecordKind.commit && candidate.a === 2,
    );
    expect(commits).toHaveLength(2);
    for (const commit of commits) disk.flipBit(commit.path, commit.offset + 28, 2);
    const { damage, state } = await reopenTwice(disk);
    // Group 1's next record continues its sequence, so it lost nothing; group 3 starts after.
    // Group 2 cannot be proven whole: conservatively, its whole log and its vote are in doubt.
    expect(damage).toEqual([
      { group: 2, fromIndex: 1, toIndex: damagedUnbounded, reason: expect.stringContaining("commit") },
    ]);
    expect(state[1]).toEqual(intact[1]);
    expect(state[3]).toEqual(intact[3]);
  });

  it("found by a read after open: entries() throws StorageDamageError and returns nothing damaged", async () => {
    const disk = newDisk();
    await fourBatches(disk);
    const { store } = await openSim(disk, { cacheBytes: 0, segmentBytes: 1 << 20 });
    const record = recordOf(disk, RecordKind.entries, 1, 21);
    const dataStart = record.payloadStart + 5 * 16;
    disk.flipBit(record.path, dataStart, 7); // the data of entry 21 (entries 21..25 all have data)
    expect(entryOf(1, 21, 1).data.byteLength).toBeGreaterThan(0);
    expect(store.group(1).entries(6, 21, 1e9)).toHaveLength(15);
    let caught: unknown;
    try {
      store.group(1).entries(18, 26, 1e9);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(StorageDamageError);
    expect((caught as StorageDamageError).damage).toMatchObject({ group: 1, fromIndex: 21, toIndex: 30 });
  });

  it("found by a read after open: snapshot() throws StorageDamageError", async () => {
    const disk = newDisk();
    await fourBatches(disk);
    const { store } = await openSim(disk, { segmentBytes: 1 << 20 });
    expect(store.group(1).snapshot()?.meta.index).toBe(5);
    disk.flipBit(`${dir}/snap-1-1.snap`, 80, 1);
    expect(() => store.group(1).snapshot()).toThrow(StorageDamageError);
  });
});

describe("damage outside the records", () => {
  /** Three groups over many small segments; group 2 is idle after the first segment. */
  async function manySegments(disk: SimDisk) {
    const { store } = await openSim(disk, { segmentBytes: 4096 });
    store.append(2, entriesOf(2, 1, 4, 1));
    store.setHardState(2, { term: 1, vote: "r2", commit: 4, damagedUpTo: 0 });
    await store.sync();
    for (let round = 0; round < 30; round++) {
      store.append(1, entriesOf(1, round * 5 + 1, round * 5 + 5, 1));
      store.setHardState(1, { term: 1, vote: null, commit: round * 5, damagedUpTo: 0 });
      await store.sync();
    }
    expect(store.segments().length).toBeGreaterThanOrEqual(4);
    await store.close();
    return store.segments();
  }

  /** The first index of group 1 written in a segment file. */
  function firstIndexIn(disk: SimDisk, path: string): number {
    return allRecords(disk).find(
      (record) => record.path === path && record.kind === RecordKind.entries && record.group === 1,
    )!.a;
  }

  it("a non-last segment cut short: the groups that lost records are damaged from the lowest index it touched", async () => {
    const disk = newDisk();
    await manySegments(disk);
    const path = segmentPaths(disk)[1]!;
    const from = firstIndexIn(disk, path);
    disk.truncateFile(path, disk.fileSize(path) - 700);
    const { damage, store } = await reopenTwice(disk);
    expect(damage).toEqual([
      {
        group: 1,
        fromIndex: from,
        toIndex: 150,
        reason: expect.stringContaining(path.slice(dir.length + 1)),
      },
    ]);
    expect(store.group(1).lastIndex()).toBe(from - 1);
    expect(store.group(1).hardState().damagedUpTo).toBe(150);
    expect(store.group(2).lastIndex()).toBe(4); // no record of group 2 was lost
  });

  it("a missing non-last segment: the groups that lost records are damaged", async () => {
    const disk = newDisk();
    await manySegments(disk);
    const path = segmentPaths(disk)[2]!;
    disk.deleteFile(path);
    const { damage, store } = await reopenTwice(disk);
    expect(damage).toEqual([
      { group: 1, fromIndex: expect.any(Number), toIndex: 150, reason: expect.stringContaining("missing") },
    ]);
    expect(damage[0]!.fromIndex).toBeLessThanOrEqual(firstIndexIn(disk, segmentPaths(disk)[1]!) + 10);
    expect(store.group(2).lastIndex()).toBe(4);
  });

  it("a missing first segment: entries it held are in no segment, so they are damage", async () => {
    const disk = newDisk();
    await manySegments(disk);
    disk.deleteFile(segmentPaths(disk)[0]!);
    const { damage, store } = await reopenTwice(disk);
    expect(damage.map((found) => [found.group, found.fromIndex])).toEqual([
      [1, 1],
      [2, 1],
    ]);
    expect(store.group(2).hardState()).toMatchObject({ vote: "r2", damagedUpTo: 4 });
  });

  it("a damaged snapshot file: its group loses the snapshot and its log (fromIndex 1)", async () => {
    for (const corrupt of ["flip", "delete"] as const) {
      const disk = newDisk();
      await fourBatches(disk);
      const path = `${dir}/snap-1-1.snap`;
      if (corrupt === "flip") disk.flipBit(path, 70, 0);
      else disk.deleteFile(path);
      const { damage, store } = await reopenTwice(disk);
      expect(damage, corrupt).toEqual([
        { group: 1, fromIndex: 1, toIndex: 30, reason: expect.stringContaining("snap-1-1.snap") },
      ]);
      expect(store.group(1).snapshot()).toBeNull();
      expect(store.group(1).lastIndex()).toBe(0);
      expect(store.group(3).lastIndex()).toBe(3);
      expect(disk.exists(path)).toBe(false);
    }
  });

  it("a log ending before its own persisted commit is damage up to the commit", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    store.append(1, entriesOf(1, 1, 30, 1));
    store.setHardState(1, { term: 1, vote: null, commit: 30, damagedUpTo: 0 });
    store.truncate(1, 21);
    await store.close();
    const { damage } = await reopenTwice(disk);
    expect(damage).toEqual([
      {
        group: 1,
        fromIndex: 21,
        toIndex: 30,
        reason: expect.stringContaining("before its own persisted commit 30"),
      },
    ]);
  });

  it("a crash while open makes its damage durable: the next open finds the same damage", async () => {
    const disk = newDisk();
    await fourBatches(disk);
    const record = recordOf(disk, RecordKind.entries, 1, 26);
    disk.flipBit(record.path, record.payloadStart + 1, 1);
    disk.crash();
    disk.holdSyncs();
    const interrupted = openSim(disk, { segmentBytes: 1 << 20 });
    interrupted.catch(() => {});
    await settleMicrotasks();
    disk.crash();
    const { damage } = await reopenTwice(disk);
    expect(damage).toEqual([{ group: 1, fromIndex: 26, toIndex: 30, reason: expect.any(String) }]);
  });
});

describe("what open reads is made durable", () => {
  it("open fdatasyncs every recovered segment before it resolves (a crashed process may leave unsynced pages behind)", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk, { segmentBytes: 4096 });
    for (let batch = 0; batch < 6; batch++) {
      store.append(1, entriesOf(1, batch * 100 + 1, batch * 100 + 100, 1));
      await store.sync();
    }
    await store.close();
    const segments = segmentPaths(disk);
    expect(segments.length).toBeGreaterThan(2);
    const synced: string[] = [];
    const fs = disk.session();
    const recording = {
      ...fs,
      async open(path: string, mode: "create" | "existing") {
        const handle = await fs.open(path, mode);
        return new Proxy(handle, {
          get(target, key, receiver) {
            const value = Reflect.get(target, key, receiver);
            if (key !== "sync" || typeof value !== "function") return value;
            return () => {
              synced.push(path);
              return (value as () => Promise<void>).call(target);
            };
          },
        });
      },
    };
    const reopened = await openDiskStore({ fs: recording, dir, segmentBytes: 4096 });
    for (const path of segments) expect(synced, path).toContain(path);
    await reopened.store.close();
  });
});
