// SimDisk: an in-memory FileSystem (src/storage/file-system.ts) for the deterministic simulator,
// with a seeded fault model. Each file (an inode) has durable bytes and the writes and
// truncates made since its last fdatasync; each directory has durable entries and the creates,
// renames and unlinks made since its last directory fsync. `crash()` throws away everything
// not durable: optionally it tears instead, keeping a random prefix of each file's pending
// operations, the last one cut at any byte and possibly followed by garbage (a torn sector).
// Corruption is injected by hand (`flipBit`, `truncateFile`, `deleteFile`); failures of single
// operations by `failNext`.
//
// Invariants: every operation takes effect synchronously when called and its promise resolves
// on a microtask (no timer, no wall clock), so a run is a function of the seed and the calls.
// A failed `sync()` models Linux: the pending writes stay visible to reads but are marked clean,
// so no later `sync()` makes them durable, and a crash loses them (the fsync-gate trap).
// Traps: handles opened before a crash are dead after it (every operation on them throws).
// While `holdSyncs()` is on, file syncs resolve (and make data durable) only at
// `releaseSyncs()`; a crash in between fails them, as a crash during a real fsync would.
import { dirname } from "node:path/posix";
import type { Random } from "../ports/index.ts";
import type { FileHandle, FileSystem, OpenMode } from "../storage/file-system.ts";

type PendingOperation =
  | { readonly kind: "write"; readonly position: number; readonly data: Uint8Array }
  | { readonly kind: "truncate"; readonly size: number };

/** A growable byte array. */
class Bytes {
  data = new Uint8Array(64);
  size = 0;

  write(source: Uint8Array, position: number): void {
    this.reserve(position + source.byteLength);
    if (position > this.size) this.data.fill(0, this.size, position);
    this.data.set(source, position);
    this.size = Math.max(this.size, position + source.byteLength);
  }

  truncate(size: number): void {
    if (size > this.size) {
      this.reserve(size);
      this.data.fill(0, this.size, size);
    }
    this.size = size;
  }

  copy(): Bytes {
    const bytes = new Bytes();
    bytes.data = this.data.slice(0, Math.max(64, this.size));
    bytes.size = this.size;
    return bytes;
  }

  private reserve(capacity: number): void {
    if (capacity <= this.data.byteLength) return;
    const grown = new Uint8Array(Math.max(capacity, this.data.byteLength * 2));
    grown.set(this.data.subarray(0, this.size));
    this.data = grown;
  }
}

class Inode {
  /** What reads see: durable bytes plus every pending operation. */
  current = new Bytes();
  /** What survives a crash. */
  durable = new Bytes();
  /** Operations since the last sync, oldest first. Invariant: applying them to `durable` gives
   *  `current`, except for writes a failed sync marked clean (they are no longer here). */
  pending: PendingOperation[] = [];
}

export interface SimDiskStats {
  writes: number;
  bytesWritten: number;
  /** fdatasync calls that succeeded. */
  syncs: number;
  directorySyncs: number;
  reads: number;
  bytesRead: number;
  truncates: number;
  creates: number;
  renames: number;
  unlinks: number;
  crashes: number;
  /** Operations failed on purpose (`failNext`). */
  faults: number;
}

/** An operation `failNext` can make fail. */
export type SimDiskOperation = "write" | "sync" | "syncDirectory" | "open" | "rename" | "unlink" | "truncate";

export interface CrashOptions {
  /** Keep a random prefix of each file's pending operations, torn at a random byte; default false. */
  readonly tear?: boolean;
  /**
   * Instead of a random tear: keep exactly this many bytes of each file's pending writes, in
   * order (a truncate counts as 0 bytes and is kept once reached). For exhaustive tests.
   */
  readonly keepBytes?: number;
  /** With `keepBytes`: random bytes written after the cut (within the cut write); default 0. */
  readonly garbageBytes?: number;
  /** With `tear`, the chance that garbage follows the cut; default 0.5. */
  readonly garbageChance?: number;
}

export class SimDiskError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = "SimDiskError";
    this.code = code;
  }
}

interface Fault {
  readonly operation: SimDiskOperation;
  readonly path: string | RegExp | undefined;
  remaining: number;
}

export class SimDisk implements FileSystem {
  readonly stats: SimDiskStats = {
    writes: 0,
    bytesWritten: 0,
    syncs: 0,
    directorySyncs: 0,
    reads: 0,
    bytesRead: 0,
    truncates: 0,
    creates: 0,
    renames: 0,
    unlinks: 0,
    crashes: 0,
    faults: 0,
  };
  private readonly random: Random;
  /** Directory entries as reads see them: path -> inode. */
  private names = new Map<string, Inode>();
  /** Directory entries that survive a crash. */
  private durableNames = new Map<string, Inode>();
  private readonly directories = new Set<string>(["/"]);
  /** Bumped by every crash; handles of an older generation are dead. */
  private generation = 0;
  private readonly faults: Fault[] = [];
  /** While defined, syncs of matching files wait for `releaseSyncs()`. */
  private syncsHeld: RegExp | undefined;
  private readonly heldSyncs: Array<() => void> = [];

  constructor(random: Random) {
    this.random = random;
  }

  // --- the FileSystem port ---

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    this.maybeFail("open", path);
    let inode = this.names.get(path);
    if (mode === "existing") {
      if (inode === undefined) throw new SimDiskError("ENOENT", `no such file: ${path}`);
    } else {
      if (!this.directories.has(dirname(path)))
        throw new SimDiskError("ENOENT", `no such directory: ${dirname(path)}`);
      if (inode === undefined) {
        inode = new Inode();
        this.names.set(path, inode);
        this.stats.creates += 1;
      } else if (inode.current.size > 0) {
        inode.current.truncate(0);
        inode.pending.push({ kind: "truncate", size: 0 });
      }
    }
    return new SimFileHandle(this, path, inode, this.generation);
  }

  readFileSync(path: string): Uint8Array {
    const inode = this.names.get(path);
    if (inode === undefined) throw new SimDiskError("ENOENT", `no such file: ${path}`);
    this.stats.reads += 1;
    this.stats.bytesRead += inode.current.size;
    return inode.current.data.slice(0, inode.current.size);
  }

  async list(dir: string): Promise<readonly string[]> {
    if (!this.directories.has(dir)) throw new SimDiskError("ENOENT", `no such directory: ${dir}`);
    const prefix = dir.endsWith("/") ? dir : `${dir}/`;
    return [...this.names.keys()]
      .filter((path) => dirname(path) === dir)
      .map((path) => path.slice(prefix.length))
      .sort();
  }

  async unlink(path: string): Promise<void> {
    this.maybeFail("unlink", path);
    if (!this.names.delete(path)) throw new SimDiskError("ENOENT", `no such file: ${path}`);
    this.stats.unlinks += 1;
  }

  async rename(from: string, to: string): Promise<void> {
    this.maybeFail("rename", from);
    const inode = this.names.get(from);
    if (inode === undefined) throw new SimDiskError("ENOENT", `no such file: ${from}`);
    if (!this.directories.has(dirname(to)))
      throw new SimDiskError("ENOENT", `no such directory: ${dirname(to)}`);
    this.names.delete(from);
    this.names.set(to, inode);
    this.stats.renames += 1;
  }

  async syncDirectory(dir: string): Promise<void> {
    this.maybeFail("syncDirectory", dir);
    if (!this.directories.has(dir)) throw new SimDiskError("ENOENT", `no such directory: ${dir}`);
    for (const path of [...this.durableNames.keys()]) {
      if (dirname(path) === dir && !this.names.has(path)) this.durableNames.delete(path);
    }
    for (const [path, inode] of this.names) {
      if (dirname(path) === dir) this.durableNames.set(path, inode);
    }
    this.stats.directorySyncs += 1;
  }

  async mkdirp(dir: string): Promise<void> {
    let current = dir;
    while (!this.directories.has(current)) {
      this.directories.add(current);
      current = dirname(current);
    }
  }

  // --- faults and inspection, for tests and the simulator ---

  /**
   * Loses everything not durable. With `tear`, each file keeps a random prefix of its pending
   * operations, the last kept write cut at a random byte and maybe followed by garbage.
   * Directory entries not made durable by `syncDirectory` are lost (or come back, if unlinked).
   */
  crash(options: CrashOptions = {}): void {
    const tear = options.tear ?? false;
    const garbageChance = options.garbageChance ?? 0.5;
    const inodes = new Set([...this.names.values(), ...this.durableNames.values()]);
    for (const inode of inodes) {
      if (options.keepBytes !== undefined) {
        const torn = keepPrefix(inode, options.keepBytes);
        if (torn !== undefined && (options.garbageBytes ?? 0) > 0) {
          this.writeGarbage(
            inode,
            torn.write.position + torn.cut,
            Math.min(options.garbageBytes!, torn.write.data.byteLength - torn.cut),
          );
        }
      } else if (tear && inode.pending.length > 0) this.tearInto(inode, garbageChance);
      inode.pending = [];
      inode.current = inode.durable.copy();
    }
    this.names = new Map(this.durableNames);
    this.generation += 1;
    this.syncsHeld = undefined;
    this.stats.crashes += 1;
    // Held syncs fail: the crash interrupted them.
    for (const complete of this.heldSyncs.splice(0)) complete();
  }

  /**
   * A view of this disk for one incarnation of a process: every operation through it fails
   * (EIO) once the disk has crashed, as the process that used it would be dead. Give each
   * store opened in a simulation its own session, so a crashed store's background work (a
   * flush, a segment deletion) cannot touch the files of the store opened after the crash.
   */
  session(): FileSystem {
    const generation = this.generation;
    const alive = (path: string) => {
      if (generation !== this.generation)
        throw new SimDiskError("EIO", `the process using ${path} died in a crash`);
    };
    return {
      open: async (path, mode) => {
        alive(path);
        return this.open(path, mode);
      },
      readFileSync: (path) => {
        alive(path);
        return this.readFileSync(path);
      },
      list: async (dir) => {
        alive(dir);
        return this.list(dir);
      },
      unlink: async (path) => {
        alive(path);
        return this.unlink(path);
      },
      rename: async (from, to) => {
        alive(from);
        return this.rename(from, to);
      },
      syncDirectory: async (dir) => {
        alive(dir);
        return this.syncDirectory(dir);
      },
      mkdirp: async (dir) => {
        alive(dir);
        return this.mkdirp(dir);
      },
    };
  }

  /**
   * An independent copy of this disk (files, durable and pending bytes, directory entries), with
   * its own randomness; handles, held syncs, faults and counters are not copied. Lets a test
   * build a history once and crash a copy of it many ways.
   */
  clone(random: Random): SimDisk {
    const copy = new SimDisk(random);
    const inodes = new Map<Inode, Inode>();
    const copyOf = (inode: Inode): Inode => {
      let twin = inodes.get(inode);
      if (twin === undefined) {
        twin = new Inode();
        twin.current = inode.current.copy();
        twin.durable = inode.durable.copy();
        twin.pending = [...inode.pending];
        inodes.set(inode, twin);
      }
      return twin;
    };
    for (const [path, inode] of this.names) copy.names.set(path, copyOf(inode));
    for (const [path, inode] of this.durableNames) copy.durableNames.set(path, copyOf(inode));
    for (const directory of this.directories) copy.directories.add(directory);
    return copy;
  }

  /** Makes the next `count` calls of `operation` (on `path`, if given) fail with EIO. */
  failNext(operation: SimDiskOperation, options: { path?: string | RegExp; count?: number } = {}): void {
    this.faults.push({ operation, path: options.path, remaining: options.count ?? 1 });
  }

  /** From now on, syncs of files matching `path` (all by default) resolve only at `releaseSyncs()`. */
  holdSyncs(path: RegExp = /./): void {
    this.syncsHeld = path;
  }

  /** Completes every held sync, in call order, and stops holding. */
  releaseSyncs(): void {
    this.syncsHeld = undefined;
    const held = this.heldSyncs.splice(0);
    for (const complete of held) complete();
  }

  /** Syncs waiting for `releaseSyncs()`. */
  get heldSyncCount(): number {
    return this.heldSyncs.length;
  }

  /** Flips one bit of a file, in what reads see and in what survives a crash (media corruption). */
  flipBit(path: string, byteOffset: number, bit: number): void {
    const inode = this.inodeOf(path);
    if (!(Number.isInteger(bit) && bit >= 0 && bit < 8)) throw new Error(`bit must be 0..7, got ${bit}`);
    for (const bytes of [inode.current, inode.durable]) {
      if (byteOffset < 0 || byteOffset >= bytes.size) continue;
      bytes.data[byteOffset]! ^= 1 << bit;
    }
  }

  /** Cuts a file to `size` bytes, durably and at once (a lost tail). */
  truncateFile(path: string, size: number): void {
    const inode = this.inodeOf(path);
    inode.current.truncate(Math.min(size, inode.current.size));
    inode.durable.truncate(Math.min(size, inode.durable.size));
  }

  /** Removes a file, durably and at once (a lost file). */
  deleteFile(path: string): void {
    this.inodeOf(path);
    this.names.delete(path);
    this.durableNames.delete(path);
  }

  /** Writes a whole file, durably and at once (test setup). */
  writeFile(path: string, data: Uint8Array): void {
    const inode = new Inode();
    inode.current.write(data, 0);
    inode.durable.write(data, 0);
    this.directories.add(dirname(path));
    this.names.set(path, inode);
    this.durableNames.set(path, inode);
  }

  /** What reads of `path` see now (a copy). */
  readFile(path: string): Uint8Array {
    const inode = this.inodeOf(path);
    return inode.current.data.slice(0, inode.current.size);
  }

  /** Whether `path` exists now. */
  exists(path: string): boolean {
    return this.names.has(path);
  }

  /** Size of `path` as reads see it. */
  fileSize(path: string): number {
    return this.inodeOf(path).current.size;
  }

  /** Paths of every file, sorted. */
  paths(): string[] {
    return [...this.names.keys()].sort();
  }

  /** Bytes written since the last sync of `path` (0 if none): what a crash may lose. */
  pendingBytes(path: string): number {
    let total = 0;
    for (const operation of this.inodeOf(path).pending) {
      if (operation.kind === "write") total += operation.data.byteLength;
    }
    return total;
  }

  // --- internals, used by SimFileHandle ---

  /** @internal */
  checkAlive(generation: number, path: string): void {
    if (generation !== this.generation) throw new SimDiskError("EBADF", `handle of ${path} died in a crash`);
  }

  /** @internal */
  maybeFail(operation: SimDiskOperation, path: string): void {
    const index = this.faults.findIndex(
      (fault) =>
        fault.operation === operation &&
        (fault.path === undefined ||
          (typeof fault.path === "string" ? fault.path === path : fault.path.test(path))),
    );
    if (index < 0) return;
    const fault = this.faults[index]!;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.faults.splice(index, 1);
    this.stats.faults += 1;
    throw new SimDiskError("EIO", `injected ${operation} failure on ${path}`);
  }

  /** @internal */
  syncInode(inode: Inode, generation: number, path: string, failed: boolean): Promise<void> {
    const complete = (): void => {
      if (generation !== this.generation) return;
      if (!failed) {
        for (const operation of inode.pending) applyTo(inode.durable, operation);
        this.stats.syncs += 1;
      }
      // A failed fdatasync marks the pages clean anyway: they never reach the disk.
      inode.pending = [];
    };
    if (failed) {
      complete();
      return Promise.reject(new SimDiskError("EIO", `injected sync failure on ${path}`));
    }
    if (this.syncsHeld === undefined || !this.syncsHeld.test(path)) {
      complete();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const crashGeneration = this.generation;
      this.heldSyncs.push(() => {
        if (crashGeneration !== this.generation) {
          reject(new SimDiskError("EIO", `sync of ${path} interrupted by a crash`));
          return;
        }
        complete();
        resolve();
      });
    });
  }

  private tearInto(inode: Inode, garbageChance: number): void {
    const pending = inode.pending;
    const kept = this.random.nextInt(pending.length + 1);
    for (let index = 0; index < kept; index++) applyTo(inode.durable, pending[index]!);
    const torn = pending[kept];
    if (torn === undefined || torn.kind !== "write") return;
    const cut = this.random.nextInt(torn.data.byteLength + 1);
    if (cut > 0) inode.durable.write(torn.data.subarray(0, cut), torn.position);
    if (cut < torn.data.byteLength && this.random.nextFloat() < garbageChance) {
      this.writeGarbage(inode, torn.position + cut, 1 + this.random.nextInt(torn.data.byteLength - cut));
    }
  }

  private writeGarbage(inode: Inode, position: number, length: number): void {
    if (length <= 0) return;
    const garbage = new Uint8Array(length);
    for (let index = 0; index < length; index++) garbage[index] = this.random.nextInt(256);
    inode.durable.write(garbage, position);
  }

  private inodeOf(path: string): Inode {
    const inode = this.names.get(path) ?? this.durableNames.get(path);
    if (inode === undefined) throw new Error(`SimDisk: no such file ${path}`);
    return inode;
  }
}

/**
 * Applies the pending operations durably up to `keep` bytes of writes, the last one cut there;
 * returns the cut write and where it was cut, or undefined if nothing was cut.
 */
function keepPrefix(
  inode: Inode,
  keep: number,
): { write: PendingOperation & { kind: "write" }; cut: number } | undefined {
  let left = keep;
  for (const operation of inode.pending) {
    if (operation.kind === "truncate") {
      applyTo(inode.durable, operation);
      continue;
    }
    if (left >= operation.data.byteLength) {
      applyTo(inode.durable, operation);
      left -= operation.data.byteLength;
      continue;
    }
    if (left > 0) inode.durable.write(operation.data.subarray(0, left), operation.position);
    return { write: operation, cut: left };
  }
  return undefined;
}

function applyTo(bytes: Bytes, operation: PendingOperation): void {
  if (operation.kind === "write") bytes.write(operation.data, operation.position);
  else bytes.truncate(operation.size);
}

class SimFileHandle implements FileHandle {
  readonly path: string;
  private readonly disk: SimDisk;
  private readonly inode: Inode;
  private readonly generation: number;
  private closed = false;

  constructor(disk: SimDisk, path: string, inode: Inode, generation: number) {
    this.disk = disk;
    this.path = path;
    this.inode = inode;
    this.generation = generation;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.check();
    this.disk.maybeFail("write", this.path);
    const copy = data.slice();
    this.inode.current.write(copy, position);
    this.inode.pending.push({ kind: "write", position, data: copy });
    this.disk.stats.writes += 1;
    this.disk.stats.bytesWritten += copy.byteLength;
  }

  sync(): Promise<void> {
    try {
      this.check();
      this.disk.maybeFail("sync", this.path);
    } catch (error) {
      if (error instanceof SimDiskError && error.code === "EIO") {
        return this.disk.syncInode(this.inode, this.generation, this.path, true);
      }
      return Promise.reject(error);
    }
    return this.disk.syncInode(this.inode, this.generation, this.path, false);
  }

  async writeAndSync(data: Uint8Array, position: number): Promise<void> {
    await this.write(data, position);
    await this.sync();
  }

  readSync(target: Uint8Array, targetOffset: number, length: number, position: number): number {
    this.check();
    const bytes = this.inode.current;
    const count = Math.max(0, Math.min(length, bytes.size - position));
    if (count > 0) target.set(bytes.data.subarray(position, position + count), targetOffset);
    this.disk.stats.reads += 1;
    this.disk.stats.bytesRead += count;
    return count;
  }

  async size(): Promise<number> {
    this.check();
    return this.inode.current.size;
  }

  async truncate(size: number): Promise<void> {
    this.check();
    this.disk.maybeFail("truncate", this.path);
    this.inode.current.truncate(size);
    this.inode.pending.push({ kind: "truncate", size });
    this.disk.stats.truncates += 1;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private check(): void {
    if (this.closed) throw new SimDiskError("EBADF", `${this.path} is closed`);
    this.disk.checkAlive(this.generation, this.path);
  }
}
