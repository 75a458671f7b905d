// Test support for the disk store over SimDisk: deterministic entries, a canonical dump of a
// store's state (to compare the disk store with the memory store, or with itself across a
// reopen), and a walker that lists the records of a segment file (to aim corruption at one
// record kind). Only tests import this file.
import { SeededRandom, SimDisk } from "../sim/index.ts";
import { type OpenedDiskStore, openDiskStore } from "./disk-store.ts";
import type { DiskStoreOptions } from "./disk-store-options.ts";
import { MemoryStore } from "./memory-store.ts";
import type { Entry, EntryKind, GroupId, HardState, LogStore, SnapshotMeta } from "./types.ts";
import {
  decodeSegmentHeader,
  emptyRecordHeader,
  parseSegmentName,
  RecordKind,
  readRecordHeader,
  recordBytes,
  recordHeaderBytes,
  recordKindNames,
  segmentHeaderBytes,
} from "./wal-format.ts";

export const dir = "/data";

/** The data of entry (group, index, term): 0 to 40 bytes, all derived from the three numbers. */
export function dataOf(group: number, index: number, term: number): Uint8Array {
  const length = (group * 7 + index * 13 + term) % 41;
  const data = new Uint8Array(length);
  for (let k = 0; k < length; k++) data[k] = (group * 31 + index * 17 + term * 5 + k) & 0xff;
  return data;
}

export function entryOf(group: number, index: number, term: number, kind: EntryKind = "normal"): Entry {
  return { index, term, kind, data: dataOf(group, index, term) };
}

export function entriesOf(group: number, from: number, to: number, term: number): Entry[] {
  const entries: Entry[] = [];
  for (let index = from; index <= to; index++) entries.push(entryOf(group, index, term));
  return entries;
}

export function newDisk(seed = 1): SimDisk {
  return new SimDisk(new SeededRandom(seed).fork("disk"));
}

export function openSim(disk: SimDisk, options: Partial<DiskStoreOptions> = {}): Promise<OpenedDiskStore> {
  return openDiskStore({ fs: disk.session(), dir, segmentBytes: 4096, ...options });
}

export interface GroupDump {
  readonly first: number;
  readonly last: number;
  readonly hardState: HardState;
  readonly snapshotMeta: SnapshotMeta | null;
  readonly snapshotData: number[] | null;
  readonly entries: Array<{ index: number; term: number; kind: EntryKind; data: number[] }>;
}

/** A group's whole state as plain data (empty groups are left out). */
export function dumpGroup(store: LogStore, group: GroupId): GroupDump | null {
  const log = store.group(group);
  const first = log.firstIndex();
  const last = log.lastIndex();
  const snapshot = log.snapshot();
  const hardState = { ...log.hardState() };
  if (
    snapshot === null &&
    last < first &&
    hardState.term === 0 &&
    hardState.vote === null &&
    hardState.commit === 0 &&
    hardState.damagedUpTo === 0
  ) {
    return null;
  }
  const entries = last >= first ? log.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
  return {
    first,
    last,
    hardState,
    snapshotMeta: snapshot === null ? null : structuredClone(snapshot.meta),
    snapshotData: snapshot === null ? null : [...snapshot.data],
    entries: entries.map((entry) => ({
      index: entry.index,
      term: entry.term,
      kind: entry.kind,
      data: [...entry.data],
    })),
  };
}

export type StoreDump = Record<number, GroupDump>;

export function dumpStore(store: LogStore, groups: Iterable<GroupId>): StoreDump {
  const dump: StoreDump = {};
  for (const group of [...new Set(groups)].sort((x, y) => x - y)) {
    const groupDump = dumpGroup(store, group);
    if (groupDump !== null) dump[group] = groupDump;
  }
  return dump;
}

/** A memory store holding exactly `dump`. */
export function memoryStoreOf(dump: StoreDump): MemoryStore {
  const store = new MemoryStore();
  for (const [key, group] of Object.entries(dump)) {
    const id = Number(key);
    if (group.snapshotMeta !== null) {
      store.installSnapshot(id, {
        meta: group.snapshotMeta,
        data: Uint8Array.from(group.snapshotData ?? []),
      });
    }
    if (group.entries.length > 0) {
      store.append(
        id,
        group.entries.map((entry) => ({ ...entry, data: Uint8Array.from(entry.data) })),
      );
    }
    store.setHardState(id, group.hardState);
  }
  return store;
}

export interface WalRecord {
  readonly offset: number;
  /** Bytes the record takes, header and padding included. */
  readonly length: number;
  readonly kind: number;
  readonly kindName: string;
  readonly group: number;
  readonly seq: number;
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly payloadStart: number;
  readonly payloadLength: number;
}

/** The records of a segment file, in order, up to the first unreadable one. */
export function walRecords(bytes: Uint8Array): WalRecord[] {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (decodeSegmentHeader(buffer) === undefined) throw new Error("not a segment");
  const records: WalRecord[] = [];
  const header = emptyRecordHeader();
  let offset = segmentHeaderBytes;
  while (readRecordHeader(buffer, offset, buffer.byteLength, header)) {
    const length = recordBytes(header.payloadLength);
    records.push({
      offset,
      length,
      kind: header.kind,
      kindName: recordKindNames[header.kind] ?? "?",
      group: header.group,
      seq: header.seq,
      a: header.a,
      b: header.b,
      c: header.c,
      payloadStart: offset + recordHeaderBytes,
      payloadLength: header.payloadLength,
    });
    offset += length;
  }
  return records;
}

/** Segment file paths on `disk`, oldest first. */
export function segmentPaths(disk: SimDisk): string[] {
  return disk
    .paths()
    .filter((path) => parseSegmentName(path.slice(dir.length + 1)) !== undefined)
    .sort();
}

/** Every record of every segment, with its path. */
export function allRecords(disk: SimDisk): Array<WalRecord & { path: string }> {
  return segmentPaths(disk).flatMap((path) =>
    walRecords(disk.readFile(path)).map((record) => ({ ...record, path })),
  );
}

export { RecordKind };
