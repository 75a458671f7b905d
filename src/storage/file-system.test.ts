// The real FileSystem (node:fs) on a temporary directory: what the store reads back after
// `writeAndSync`, on both of its paths (the O_DSYNC descriptor, and write + fdatasync when
// plain writes are not synced yet). Durability itself needs a power cut to observe; the
// SIGKILL test (test/storage-crash.test.ts) covers what a process crash keeps.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { nodeFileSystem } from "./file-system.ts";

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "neuron-fs-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function read(
  handle: { readSync: (t: Uint8Array, o: number, l: number, p: number) => number },
  length: number,
) {
  const bytes = Buffer.alloc(length);
  const count = handle.readSync(bytes, 0, length, 0);
  return bytes.subarray(0, count).toString();
}

describe("node file system", () => {
  it("writeAndSync appends what plain writes and earlier writeAndSyncs left, seen by every handle", async () => {
    const path = join(dir, "segment");
    const handle = await nodeFileSystem.open(path, "create");
    await handle.write(Buffer.from("abc"), 0);
    await handle.writeAndSync(Buffer.from("def"), 3);
    await handle.writeAndSync(Buffer.from("ghi"), 6);
    expect(read(handle, 16)).toBe("abcdefghi");
    expect(await handle.size()).toBe(9);
    await handle.truncate(4);
    await handle.writeAndSync(Buffer.from("XY"), 4);
    await handle.close();
    const reopened = await nodeFileSystem.open(path, "existing");
    expect(read(reopened, 16)).toBe("abcdXY");
    await reopened.close();
  });
});
