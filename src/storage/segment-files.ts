// The disk store's files: the live WAL segments (open handles, oldest first) and the snapshot
// files, with the fsync discipline of each operation. Creating a segment or renaming a
// snapshot file into place is durable only after `syncDirectory`, which the caller runs once
// for all of them before the batch that refers to them; deleting segments fsyncs the
// directory after each one, oldest first, so whatever a crash keeps is a consecutive run.
// Invariant: `seqs` ascending and consecutive; every seq has an open handle.
import type { FileHandle, FileSystem } from "./file-system.ts";
import type { RecoveredSegment } from "./recovery.ts";
import { segmentName, snapshotName, temporarySuffix } from "./wal-format.ts";

export class SegmentFiles {
  private readonly fs: FileSystem;
  private readonly dir: string;
  private readonly handles = new Map<number, FileHandle>();
  private readonly seqs: number[] = [];

  constructor(fs: FileSystem, dir: string, recovered: readonly RecoveredSegment[]) {
    this.fs = fs;
    this.dir = dir;
    for (const segment of recovered) {
      this.handles.set(segment.seq, segment.handle);
      this.seqs.push(segment.seq);
    }
  }

  /** Live segment numbers, oldest first. */
  list(): readonly number[] {
    return this.seqs;
  }

  /** Creates segment `seq` (the next one); durable after `syncDirectory`. */
  async create(seq: number): Promise<void> {
    const handle = await this.fs.open(`${this.dir}/${segmentName(seq)}`, "create");
    this.handles.set(seq, handle);
    this.seqs.push(seq);
  }

  /** Removes the newest segment at once (a torn creation found at open). */
  async removeNewest(): Promise<void> {
    const seq = this.seqs.pop();
    if (seq === undefined) return;
    await this.handles.get(seq)?.close();
    this.handles.delete(seq);
    await this.fs.unlink(`${this.dir}/${segmentName(seq)}`);
    await this.syncDirectory();
  }

  /** Writes `bytes` at `position` of segment `seq` and fdatasyncs it. */
  async writeAndSync(seq: number, bytes: Uint8Array, position: number): Promise<void> {
    const handle = this.handles.get(seq);
    if (handle === undefined) throw new Error(`${segmentName(seq)} is not open`);
    await handle.writeAndSync(bytes, position);
  }

  /** Reads bytes of segment `seq` synchronously; a reason string if they cannot all be read. */
  read(seq: number, position: number, length: number): Uint8Array | string {
    const handle = this.handles.get(seq);
    if (handle === undefined) return `${segmentName(seq)} is not open (deleted?)`;
    const bytes = new Uint8Array(length);
    const read = handle.readSync(bytes, 0, length, position);
    if (read < length) return `${segmentName(seq)} ends at byte ${position + read}`;
    return bytes;
  }

  /** Deletes segments below `seq`, oldest first, always keeping the newest. Returns how many. */
  async deleteBelow(seq: number): Promise<number> {
    let deleted = 0;
    while (this.seqs.length > 1 && this.seqs[0]! < seq) {
      const oldest = this.seqs.shift()!;
      const handle = this.handles.get(oldest);
      this.handles.delete(oldest);
      await handle?.close();
      await this.fs.unlink(`${this.dir}/${segmentName(oldest)}`);
      // One directory fsync per segment: the survivors stay consecutive whatever a crash keeps.
      await this.syncDirectory();
      deleted += 1;
    }
    return deleted;
  }

  /** Writes a snapshot file under a temporary name, fdatasyncs it, renames it into place. */
  async writeSnapshot(group: number, fileId: number, head: Uint8Array, data: Uint8Array): Promise<void> {
    const name = snapshotName(group, fileId);
    const temporary = `${this.dir}/${name}${temporarySuffix}`;
    const handle = await this.fs.open(temporary, "create");
    try {
      await handle.write(head, 0);
      await handle.write(data, head.byteLength);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await this.fs.rename(temporary, `${this.dir}/${name}`);
  }

  readSnapshot(group: number, fileId: number): Uint8Array {
    return this.fs.readFileSync(`${this.dir}/${snapshotName(group, fileId)}`);
  }

  /** Unlinks files by name (a missing one is fine), then fsyncs the directory. */
  async unlinkAll(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    for (const name of names) {
      await this.fs.unlink(`${this.dir}/${name}`).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") throw error;
      });
    }
    await this.syncDirectory();
  }

  syncDirectory(): Promise<void> {
    return this.fs.syncDirectory(this.dir);
  }

  async close(): Promise<void> {
    for (const handle of this.handles.values()) await handle.close().catch(() => {});
    this.handles.clear();
    this.seqs.length = 0;
  }
}
