// SimDisk rules: what survives a crash (synced bytes, directory entries made durable), how a
// torn crash tears (a prefix, deterministic per seed), the failed-fsync trap, dead handles and
// sessions after a crash, held syncs, corruption helpers, and independent clones.
import { describe, expect, it } from "vitest";
import { SimDisk, SimDiskError } from "./disk.ts";
import { SeededRandom } from "./random.ts";

const bytes = (...values: number[]) => Uint8Array.from(values);
const range = (length: number, start = 0) =>
  Uint8Array.from({ length }, (_, index) => (start + index) & 0xff);

async function diskWithFile(seed = 1): Promise<SimDisk> {
  const disk = new SimDisk(new SeededRandom(seed));
  await disk.mkdirp("/d");
  const handle = await disk.open("/d/f", "create");
  await disk.syncDirectory("/d");
  await handle.write(range(10), 0);
  await handle.sync();
  return disk;
}

describe("SimDisk", () => {
  it("a crash loses unsynced writes and keeps synced ones", async () => {
    const disk = await diskWithFile();
    const handle = await disk.open("/d/f", "existing");
    await handle.write(bytes(99, 99), 10);
    await handle.write(bytes(77), 0);
    expect(disk.readFile("/d/f")).toEqual(Uint8Array.from([77, ...range(9, 1), 99, 99]));
    disk.crash();
    expect(disk.readFile("/d/f")).toEqual(range(10));
  });

  it("creates, renames and unlinks survive a crash only after a directory fsync", async () => {
    const disk = await diskWithFile();
    const created = await disk.open("/d/new", "create");
    await created.write(bytes(1), 0);
    await created.sync();
    await disk.rename("/d/f", "/d/g");
    disk.crash();
    expect(disk.paths()).toEqual(["/d/f"]);
    await (await disk.open("/d/new", "create")).sync();
    await disk.unlink("/d/f");
    await disk.syncDirectory("/d");
    disk.crash();
    expect(disk.paths()).toEqual(["/d/new"]);
  });

  it("a torn crash keeps a prefix of the pending writes, the same for the same seed", async () => {
    const results = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      const outcome = async () => {
        const disk = await diskWithFile(seed);
        const handle = await disk.open("/d/f", "existing");
        await handle.write(range(100, 50), 10);
        disk.crash({ tear: true, garbageChance: 0 });
        return disk.readFile("/d/f");
      };
      const first = await outcome();
      expect(await outcome()).toEqual(first);
      expect(first.subarray(0, 10)).toEqual(range(10));
      expect(first.subarray(10)).toEqual(range(100, 50).subarray(0, first.byteLength - 10));
      results.add(String(first.byteLength));
    }
    expect(results.size).toBeGreaterThan(10);
  });

  it("keepBytes keeps exactly that many pending bytes, then the garbage asked for", async () => {
    const disk = await diskWithFile();
    const handle = await disk.open("/d/f", "existing");
    await handle.write(range(20, 100), 10);
    await handle.write(range(20, 200), 30);
    disk.crash({ keepBytes: 25, garbageBytes: 4 });
    const after = disk.readFile("/d/f");
    expect(after.byteLength).toBe(10 + 25 + 4);
    expect(after.subarray(10, 35)).toEqual(Uint8Array.from([...range(20, 100), ...range(5, 200)]));
  });

  it("a failed fdatasync never makes its writes durable, even after a later successful one", async () => {
    const disk = await diskWithFile();
    const handle = await disk.open("/d/f", "existing");
    await handle.write(bytes(1, 2, 3), 10);
    disk.failNext("sync", { path: "/d/f" });
    await expect(handle.sync()).rejects.toBeInstanceOf(SimDiskError);
    expect(disk.readFile("/d/f").byteLength).toBe(13); // still visible to reads
    await handle.sync();
    disk.crash();
    expect(disk.readFile("/d/f")).toEqual(range(10));
    expect(disk.stats.faults).toBe(1);
  });

  it("handles and sessions opened before a crash are dead after it", async () => {
    const disk = await diskWithFile();
    const session = disk.session();
    const handle = await session.open("/d/f", "existing");
    disk.crash();
    await expect(handle.write(bytes(1), 0)).rejects.toThrow(/crash/);
    expect(() => handle.readSync(new Uint8Array(1), 0, 1, 0)).toThrow(/crash/);
    await expect(session.unlink("/d/f")).rejects.toThrow(/died in a crash/);
    expect(disk.exists("/d/f")).toBe(true);
  });

  it("held syncs complete at release, and fail at a crash", async () => {
    const disk = await diskWithFile();
    const handle = await disk.open("/d/f", "existing");
    disk.holdSyncs(/\/d\/f/);
    await handle.write(bytes(5), 10);
    let done = false;
    const synced = handle.sync().then(() => {
      done = true;
    });
    await Promise.resolve();
    expect([done, disk.heldSyncCount]).toEqual([false, 1]);
    disk.releaseSyncs();
    await synced;
    disk.holdSyncs();
    await handle.write(bytes(6), 11);
    const interrupted = handle.sync();
    disk.crash();
    await expect(interrupted).rejects.toThrow(/interrupted by a crash/);
    expect(disk.readFile("/d/f").byteLength).toBe(11);
  });

  it("flipBit and truncateFile change what survives, at once", async () => {
    const disk = await diskWithFile();
    disk.flipBit("/d/f", 3, 0);
    disk.truncateFile("/d/f", 5);
    disk.crash();
    expect(disk.readFile("/d/f")).toEqual(bytes(0, 1, 2, 2, 4));
  });

  it("a clone is independent of its original", async () => {
    const disk = await diskWithFile();
    const handle = await disk.open("/d/f", "existing");
    await handle.write(bytes(9), 10);
    const copy = disk.clone(new SeededRandom(2));
    copy.crash();
    expect(copy.readFile("/d/f").byteLength).toBe(10);
    expect(disk.readFile("/d/f").byteLength).toBe(11);
    await handle.sync();
    disk.crash();
    expect(disk.readFile("/d/f").byteLength).toBe(11);
  });
});
