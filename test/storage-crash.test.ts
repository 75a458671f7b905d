// The disk store on real files under a real crash: a child process (support/storage-writer.ts)
// appends and syncs in a loop and reports what each sync made durable; the test SIGKILLs it
// mid-write at a different moment each round, then opens the store itself and checks that
// every entry the child reported synced is there with its content, that nothing is reported
// as damage, and that the store takes new writes. Plus one real-disk corruption: a flipped
// byte in a segment of a closed store is reported as damage at the next open.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { walRecords } from "../src/storage/disk-fixtures.sim.ts";
import { nodeFileSystem, openDiskStore } from "../src/storage/index.ts";
import { RecordKind } from "../src/storage/wal-format.ts";
import { contentOf, writerSegmentBytes } from "./support/storage-writer.ts";

const writerPath = new URL("./support/storage-writer.ts", import.meta.url).pathname;
const groups = 6;

let child: ChildProcess | undefined;
const directories: string[] = [];

afterEach(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child!.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }
  child = undefined;
  for (const dir of directories.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function temporaryDirectory(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "neuron-storage-"));
  directories.push(dir);
  return dir;
}

interface Progress {
  rounds: number;
  synced: Record<number, number>;
}

/** Starts the writer; resolves with its progress once it has reported `rounds` syncs (deadline 30 s). */
function runWriterUntil(
  dir: string,
  rounds: number,
): Promise<{ progress: Progress; exited: Promise<unknown> }> {
  return new Promise((resolve, reject) => {
    const started = spawn(process.execPath, [writerPath, dir, String(groups)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = started;
    const exited = new Promise((done) => started.once("exit", done));
    const progress: Progress = { rounds: 0, synced: {} };
    let pending = "";
    let stderr = "";
    const deadline = setTimeout(
      () => reject(new Error(`writer made ${progress.rounds} of ${rounds} syncs in 30 s; ${stderr}`)),
      30_000,
    );
    started.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    started.once("exit", (code, signal) => {
      clearTimeout(deadline);
      reject(new Error(`writer exited (${code ?? signal}) after ${progress.rounds} syncs: ${stderr}`));
    });
    started.stdout!.on("data", (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        const report = JSON.parse(line) as { round: number; synced: Record<number, number> };
        progress.rounds += 1;
        progress.synced = report.synced;
      }
      if (progress.rounds >= rounds) {
        clearTimeout(deadline);
        resolve({ progress, exited });
      }
    });
  });
}

describe("disk store on real files", () => {
  it("a SIGKILL mid-write keeps every synced entry, reports no damage, and the store goes on", async () => {
    const dir = await temporaryDirectory();
    let expected: Record<number, number> = {};
    for (const rounds of [3, 40, 11, 90, 25]) {
      const { progress, exited } = await runWriterUntil(dir, rounds);
      // The writer is still looping (append, write, fdatasync): kill it wherever it is.
      child!.kill("SIGKILL");
      await exited;
      for (const [group, last] of Object.entries(progress.synced)) expected[Number(group)] = last;

      const { store, damage, notes } = await openDiskStore({
        fs: nodeFileSystem,
        dir,
        segmentBytes: writerSegmentBytes,
      });
      expect(damage, notes.join("\n")).toEqual([]);
      for (let group = 0; group < groups; group++) {
        const log = store.group(group);
        const synced = expected[group] ?? 0;
        expect(log.lastIndex()).toBeGreaterThanOrEqual(synced);
        const first = log.firstIndex();
        if (synced >= first) {
          const entries = log.entries(first, synced + 1, Number.MAX_SAFE_INTEGER);
          expect(entries).toHaveLength(synced - first + 1);
          for (const entry of entries)
            expect(entry.data, `group ${group} entry ${entry.index}`).toEqual(contentOf(group, entry.index));
        }
        // The store takes new writes after the crash.
        const next = log.lastIndex() + 1;
        store.append(group, [{ index: next, term: 1, kind: "normal", data: contentOf(group, next) }]);
      }
      await store.sync();
      expected = Object.fromEntries(
        Array.from({ length: groups }, (_, group) => [group, store.group(group).lastIndex()]),
      );
      await store.close();
    }
    const segments = (await readdir(dir)).filter((name) => name.startsWith("wal-"));
    expect(segments.length).toBeGreaterThan(0);
  });

  it("a byte flipped in a segment of a closed store is reported as damage at the next open", async () => {
    const dir = await temporaryDirectory();
    const { store } = await openDiskStore({ fs: nodeFileSystem, dir });
    for (let index = 1; index <= 100; index += 10) {
      store.append(
        4,
        Array.from({ length: 10 }, (_, k) => ({
          index: index + k,
          term: 1,
          kind: "normal" as const,
          data: contentOf(4, index + k),
        })),
      );
      await store.sync();
    }
    await store.close();
    const [segment] = (await readdir(dir)).filter((name) => name.startsWith("wal-"));
    const path = join(dir, segment!);
    const bytes = await readFile(path);
    const record = walRecords(bytes).find(
      (candidate) => candidate.kind === RecordKind.entries && candidate.a === 41,
    )!;
    const at = record.payloadStart + record.payloadLength - 1; // the last byte of entry 50's data
    bytes[at] = bytes[at]! ^ 0x10;
    await writeFile(path, bytes);

    const reopened = await openDiskStore({ fs: nodeFileSystem, dir });
    expect(reopened.damage).toEqual([
      { group: 4, fromIndex: 50, toIndex: 100, reason: expect.stringContaining("entry 50") },
    ]);
    expect(reopened.store.group(4).lastIndex()).toBe(49);
    expect(reopened.store.group(4).hardState().damagedUpTo).toBe(100);
    await reopened.store.close();
    const again = await openDiskStore({ fs: nodeFileSystem, dir });
    expect(again.damage).toEqual([]);
    expect(again.store.group(4).lastIndex()).toBe(49);
    await again.store.close();
  });
});
