// Disk store rules over SimDisk: staging and reads, group commit and its coalescing, the fsync
// gate, limits and programmer errors, segment rolling and space reclaimed after compaction,
// snapshot files, and the round trip through a reopen. Damage and torn writes are in
// disk-store-recovery.test.ts; the model-based test against the memory store in
// disk-store-model.test.ts.
import { describe, expect, it } from "vitest";
import { settleMicrotasks } from "../sim/index.ts";
import { dir, dumpStore, entriesOf, entryOf, newDisk, openSim, segmentPaths } from "./disk-fixtures.sim.ts";
import {
  StorageAssertionError,
  StorageClosedError,
  StorageFailedError,
  StorageLimitError,
} from "./errors.ts";
import type { Snapshot } from "./types.ts";

const configuration = { voters: ["r1", "r2", "r3"], learners: ["r4"] };

function snapshotAt(index: number, term: number, fill = index): Snapshot {
  return { meta: { index, term, configuration }, data: new Uint8Array(100).fill(fill & 0xff) };
}

describe("disk store: staging, reads and the round trip", () => {
  it("reads see staged writes at once; a reopen after sync returns the same state", async () => {
    const disk = newDisk();
    const { store, damage } = await openSim(disk);
    expect(damage).toEqual([]);
    store.append(1, entriesOf(1, 1, 20, 1));
    store.append(2, entriesOf(2, 1, 5, 3));
    store.setHardState(1, { term: 2, vote: "r2", commit: 7, damagedUpTo: 0 });
    store.append(1, entriesOf(1, 15, 30, 2)); // overwrites 15..20 (Raft §5.3)
    store.truncate(2, 4);
    expect(store.group(1).lastIndex()).toBe(30);
    expect(store.group(1).term(14)).toBe(1);
    expect(store.group(1).term(15)).toBe(2);
    expect(store.group(2).lastIndex()).toBe(3);
    expect(store.group(1).entries(14, 16, 1e9)).toEqual([entryOf(1, 14, 1), entryOf(1, 15, 2)]);
    await store.sync();
    const before = dumpStore(store, [1, 2]);
    await store.close();
    const reopened = await openSim(disk);
    expect(reopened.damage).toEqual([]);
    expect(dumpStore(reopened.store, [1, 2])).toEqual(before);
    expect([...reopened.store.groups()].sort()).toEqual([1, 2]);
  });

  it("entries stop once their data passes maxBytes, but always return one", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk, { cacheBytes: 0 });
    const big = (index: number) => ({
      index,
      term: 1,
      kind: "normal" as const,
      data: new Uint8Array(100).fill(index),
    });
    store.append(1, [big(1), big(2), big(3), big(4)]);
    await store.sync();
    const reopened = (await openSim(disk, { cacheBytes: 0 })).store;
    expect(
      reopened
        .group(1)
        .entries(1, 5, 250)
        .map((entry) => entry.index),
    ).toEqual([1, 2]);
    expect(
      reopened
        .group(1)
        .entries(1, 5, 10)
        .map((entry) => entry.index),
    ).toEqual([1]);
    expect(reopened.group(1).entries(3, 3, 10)).toEqual([]);
    expect(() => reopened.group(1).entries(0, 2, 10)).toThrow(StorageAssertionError);
    expect(() => reopened.group(1).entries(1, 6, 10)).toThrow(StorageAssertionError);
  });

  it("term() answers from memory for firstIndex - 1 through lastIndex and nothing else", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    expect(store.group(9).term(0)).toBe(0);
    expect(store.group(9).term(1)).toBeUndefined();
    store.append(9, entriesOf(9, 1, 10, 4));
    store.compact(9, snapshotAt(5, 4));
    await store.sync();
    const reads = disk.stats.reads;
    const log = store.group(9);
    expect([log.term(4), log.term(5), log.term(10), log.term(11)]).toEqual([undefined, 4, 4, undefined]);
    expect(disk.stats.reads).toBe(reads);
  });

  it("a caught-up reader is served from the cache, a cold one from the disk, both verified", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk, { cacheBytes: 1 << 20, segmentBytes: 1 << 20 });
    store.append(1, entriesOf(1, 1, 50, 1));
    await store.sync();
    const reads = disk.stats.reads;
    expect(store.group(1).entries(40, 51, 1e9)).toHaveLength(11);
    expect(disk.stats.reads).toBe(reads);
    expect(store.stats.cacheHits).toBe(11);
    const cold = (await openSim(disk, { segmentBytes: 1 << 20 })).store;
    const coldReads = disk.stats.reads;
    expect(cold.group(1).entries(1, 51, 1e9)).toEqual(entriesOf(1, 1, 50, 1));
    expect(disk.stats.reads).toBe(coldReads + 1); // one read for the whole run
    expect(cold.stats.entriesReadUncached).toBe(50);
  });

  it("groups() lists groups written or recovered, not groups only looked at", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    store.group(5).lastIndex();
    store.setHardState(6, { term: 1, vote: null, commit: 0, damagedUpTo: 0 });
    expect(store.groups()).toEqual([6]);
    await store.close();
    expect((await openSim(disk)).store.groups()).toEqual([6]);
  });
});

describe("disk store: group commit", () => {
  it("concurrent syncs with nothing staged between them share one fdatasync", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    for (let group = 0; group < 50; group++) store.append(group, entriesOf(group, 1, 20, 1));
    const syncs = disk.stats.syncs;
    await Promise.all(Array.from({ length: 10 }, () => store.sync()));
    expect(disk.stats.syncs - syncs).toBe(1);
    expect(store.stats.flushes).toBe(2); // the open's, and this one
  });

  it("a sync with nothing staged writes nothing", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    const syncs = disk.stats.syncs;
    await store.sync();
    expect(disk.stats.syncs).toBe(syncs);
  });

  it("a sync called while one is in flight resolves only once what was staged before it is durable", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    disk.holdSyncs(/wal-/);
    store.append(1, entriesOf(1, 1, 3, 1));
    const order: string[] = [];
    const first = store.sync().then(() => order.push("first"));
    await settleMicrotasks();
    expect(disk.heldSyncCount).toBe(1);
    store.append(1, entriesOf(1, 4, 6, 1));
    const second = store.sync().then(() => order.push("second"));
    const third = store.sync().then(() => order.push("third"));
    disk.releaseSyncs(); // completes the first batch's fdatasync...
    disk.holdSyncs(/wal-/); // ...and holds the next one
    await first;
    await settleMicrotasks();
    expect(order).toEqual(["first"]);
    expect(disk.heldSyncCount).toBe(1); // the second batch is written, its fdatasync in flight
    disk.releaseSyncs();
    await Promise.all([second, third]);
    expect(order).toEqual(["first", "second", "third"]);
    expect(disk.stats.syncs).toBe(3); // the open's, and one per batch
  });

  it("a failed fdatasync rejects the sync and gates the store: later writes are refused, reads still work", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    store.append(1, entriesOf(1, 1, 5, 1));
    await store.sync();
    store.append(1, entriesOf(1, 6, 8, 1));
    disk.failNext("sync", { path: /wal-/ });
    await expect(store.sync()).rejects.toBeInstanceOf(StorageFailedError);
    expect(() => store.append(1, [entryOf(1, 9, 1)])).toThrow(StorageFailedError);
    expect(() => store.setHardState(1, { term: 1, vote: null, commit: 0, damagedUpTo: 0 })).toThrow(
      StorageFailedError,
    );
    await expect(store.sync()).rejects.toBeInstanceOf(StorageFailedError);
    expect(store.group(1).entries(1, 9, 1e9)).toEqual(entriesOf(1, 1, 8, 1));
    // The failed batch never reached the disk (the kernel dropped it); a reopen sees the last good sync.
    disk.crash();
    const reopened = await openSim(disk);
    expect(reopened.damage).toEqual([]);
    expect(reopened.store.group(1).lastIndex()).toBe(5);
    reopened.store.append(1, [entryOf(1, 6, 2)]);
    await reopened.store.sync();
  });

  it("a failed write gates the store too, and every sync waiting on it rejects", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    store.append(1, entriesOf(1, 1, 5, 1));
    disk.failNext("write", { path: /wal-/ });
    const results = await Promise.allSettled([store.sync(), store.sync()]);
    expect(results.map((result) => result.status)).toEqual(["rejected", "rejected"]);
    expect(() => store.truncate(1, 2)).toThrow(StorageFailedError);
  });

  it("a closed store refuses writes", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    store.append(1, entriesOf(1, 1, 2, 1));
    await store.close(); // syncs what was staged
    expect(() => store.append(1, [entryOf(1, 3, 1)])).toThrow(StorageClosedError);
    await expect(store.sync()).rejects.toBeInstanceOf(StorageClosedError);
    expect((await openSim(disk)).store.group(1).lastIndex()).toBe(2);
  });
});

describe("disk store: bad input changes nothing", () => {
  it("an append leaving a gap, not contiguous, or with a decreasing term is a programmer error", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    store.append(1, entriesOf(1, 1, 5, 2));
    await store.sync();
    const before = dumpStore(store, [1]);
    const syncs = disk.stats.syncs;
    expect(() => store.append(1, [entryOf(1, 7, 2)])).toThrow(StorageAssertionError);
    expect(() => store.append(1, [entryOf(1, 6, 2), entryOf(1, 8, 2)])).toThrow(StorageAssertionError);
    expect(() => store.append(1, [entryOf(1, 6, 1)])).toThrow(StorageAssertionError);
    expect(() => store.append(1, [entryOf(1, 6, 3), entryOf(1, 7, 2)])).toThrow(StorageAssertionError);
    expect(() => store.setHardState(1, { term: 1, vote: null, commit: 0, damagedUpTo: 0 })).not.toThrow();
    expect(() => store.setHardState(1, { term: 0, vote: null, commit: 0, damagedUpTo: 0 })).toThrow(
      StorageAssertionError,
    );
    store.setHardState(1, { term: 3, vote: "r1", commit: 0, damagedUpTo: 0 });
    expect(() => store.setHardState(1, { term: 3, vote: "r2", commit: 0, damagedUpTo: 0 })).toThrow(
      StorageAssertionError,
    );
    expect(() => store.compact(1, snapshotAt(9, 2))).toThrow(StorageAssertionError);
    expect(() => store.compact(1, snapshotAt(3, 1))).toThrow(StorageAssertionError);
    expect(() => store.truncate(1, 0)).toThrow(StorageAssertionError);
    expect(() => store.append(-1, [entryOf(1, 1, 1)])).toThrow(StorageAssertionError);
    expect(dumpStore(store, [1])).toEqual({
      1: { ...before[1]!, hardState: { term: 3, vote: "r1", commit: 0, damagedUpTo: 0 } },
    });
    await store.sync();
    expect(disk.stats.syncs).toBe(syncs + 1);
  });

  it("an entry over entryBytesMax is refused with a limit error, and nothing of its append is kept", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk, { entryBytesMax: 1000 });
    const error = (() => {
      try {
        store.append(1, [
          entryOf(1, 1, 1),
          { index: 2, term: 1, kind: "normal", data: new Uint8Array(1001) },
        ]);
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(StorageLimitError);
    expect((error as StorageLimitError).limit).toBe("entryBytesMax");
    expect(store.group(1).lastIndex()).toBe(0);
    await expect(openSim(newDisk(), { entryBytesMax: 2 ** 24 })).rejects.toThrow(/entryBytesMax/);
  });
});

describe("disk store: limits", () => {
  it("staging past stagedBytesMax is refused until a sync; nothing of the refused append is kept", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk, { stagedBytesMax: 1 << 20, segmentBytes: 1 << 22 });
    const big = (index: number) => ({
      index,
      term: 1,
      kind: "normal" as const,
      data: new Uint8Array(64 * 1024),
    });
    let index = 1;
    let refused: unknown;
    try {
      for (; index <= 40; index++) store.append(1, [big(index)]);
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(StorageLimitError);
    expect((refused as StorageLimitError).limit).toBe("stagedBytesMax");
    expect(store.group(1).lastIndex()).toBe(index - 1);
    await store.sync();
    store.append(1, [big(index)]);
    await store.sync();
    expect(store.group(1).lastIndex()).toBe(index);
  });
});

describe("disk store: segments and snapshots", () => {
  it("segments roll at segmentBytes and a segment is deleted once nothing live is in it", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk, { segmentBytes: 4096 });
    store.append(7, entriesOf(7, 1, 3, 1)); // group 7 pins segment 1 until it compacts
    for (let round = 0; round < 40; round++) {
      store.append(1, entriesOf(1, round * 10 + 1, round * 10 + 10, 1));
      await store.sync();
    }
    expect(store.segments().length).toBeGreaterThan(4);
    const first = store.segments()[0];
    store.compact(1, snapshotAt(395, 1));
    await store.sync();
    await store.idle();
    expect(store.segments()[0]).toBe(first); // group 7 still holds entries in the first segment
    store.compact(7, snapshotAt(3, 1));
    await store.sync();
    await store.idle();
    expect(store.segments().length).toBeLessThanOrEqual(2);
    expect(segmentPaths(disk)).toHaveLength(store.segments().length);
    expect(store.stats.segmentsDeleted).toBeGreaterThan(3);
    const before = dumpStore(store, [1, 7]);
    await store.close();
    disk.crash();
    const reopened = await openSim(disk);
    expect(reopened.damage).toEqual([]);
    expect(dumpStore(reopened.store, [1, 7])).toEqual(before);
  });

  it("hard states written only in deleted segments survive through the checkpoints", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk, { segmentBytes: 4096 });
    store.setHardState(3, { term: 5, vote: "r3", commit: 0, damagedUpTo: 0 }); // never written again
    store.compact(4, snapshotAt(0, 0));
    for (let round = 0; round < 30; round++) {
      store.append(1, entriesOf(1, round * 10 + 1, round * 10 + 10, 1));
      store.compact(1, snapshotAt(round * 10 + 5, 1));
      await store.sync();
    }
    expect(segmentPaths(disk)[0]).not.toContain("000000000001");
    await store.close();
    const reopened = await openSim(disk);
    expect(reopened.damage).toEqual([]);
    expect(reopened.store.group(3).hardState()).toEqual({ term: 5, vote: "r3", commit: 0, damagedUpTo: 0 });
    expect(reopened.store.group(1).firstIndex()).toBe(296);
  });

  it("only each group's latest snapshot file is kept, and snapshot() reads it back verified", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    store.append(1, entriesOf(1, 1, 30, 1));
    store.compact(1, snapshotAt(10, 1, 1));
    store.compact(1, snapshotAt(20, 1, 2)); // supersedes the first before it is ever written
    await store.sync();
    store.installSnapshot(1, snapshotAt(40, 2, 3)); // no entry 40: the whole log goes
    await store.sync();
    expect(store.group(1).firstIndex()).toBe(41);
    expect(store.group(1).lastIndex()).toBe(40);
    expect(disk.paths().filter((path) => path.includes("snap-"))).toEqual([`${dir}/snap-1-3.snap`]);
    expect(store.group(1).snapshot()).toEqual(snapshotAt(40, 2, 3));
    const reopened = await openSim(disk);
    expect(reopened.store.group(1).snapshot()).toEqual(snapshotAt(40, 2, 3));
    expect(reopened.store.group(1).snapshotMeta()).toEqual(snapshotAt(40, 2, 3).meta);
  });

  it("installing a snapshot whose last entry the log holds with the same term keeps the entries after it", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    store.append(1, entriesOf(1, 1, 30, 1));
    store.installSnapshot(1, snapshotAt(20, 1));
    expect([store.group(1).firstIndex(), store.group(1).lastIndex()]).toEqual([21, 30]);
    store.installSnapshot(1, snapshotAt(25, 9)); // term differs: the log goes
    expect([store.group(1).firstIndex(), store.group(1).lastIndex()]).toEqual([26, 25]);
    await store.sync();
    const reopened = await openSim(disk);
    expect([reopened.store.group(1).firstIndex(), reopened.store.group(1).lastIndex()]).toEqual([26, 25]);
    expect(reopened.store.group(1).term(25)).toBe(9);
  });

  it("a snapshot file left by a crash before its batch was durable is removed at open", async () => {
    const disk = newDisk();
    const { store } = await openSim(disk);
    store.append(1, entriesOf(1, 1, 10, 1));
    await store.sync();
    disk.holdSyncs(/wal-/);
    store.compact(1, snapshotAt(5, 1));
    void store.sync().catch(() => {});
    await settleMicrotasks();
    expect(disk.exists(`${dir}/snap-1-1.snap`)).toBe(true);
    disk.crash();
    const reopened = await openSim(disk);
    expect(reopened.damage).toEqual([]);
    expect(reopened.store.group(1).firstIndex()).toBe(1);
    expect(disk.paths().some((path) => path.includes("snap-"))).toBe(false);
  });
});
