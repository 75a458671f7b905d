// The child of the real-disk crash test (test/storage-crash.test.ts): opens a disk store on
// real files (nodeFileSystem) and appends to several groups in a loop, as fast as it can, with
// a sync after every round; after each sync resolves it prints one JSON line with every group's
// synced last index, so the parent knows what must survive a SIGKILL. Every few rounds it also
// persists a hard state (commit = the synced index) and compacts, so segments roll and are
// deleted under the kill too. Entry content is derived from (group, index) by `contentOf`.
//
// Usage: node storage-writer.ts DIR GROUPS
import { fileURLToPath } from "node:url";
import { nodeFileSystem, openDiskStore } from "../../src/storage/index.ts";

/** The data of entry `index` of `group`: 1 to 300 bytes, all derived from the two numbers. */
export function contentOf(group: number, index: number): Uint8Array {
  const length = 1 + ((group * 131 + index * 29) % 300);
  const data = new Uint8Array(length);
  for (let k = 0; k < length; k++) data[k] = (group * 7 + index * 13 + k * 3) & 0xff;
  return data;
}

/** Bytes a segment holds before the log rolls: small, so a run rolls and deletes many. */
export const writerSegmentBytes = 256 * 1024;

async function main(dir: string, groups: number): Promise<void> {
  const { store, damage } = await openDiskStore({
    fs: nodeFileSystem,
    dir,
    segmentBytes: writerSegmentBytes,
  });
  if (damage.length > 0) throw new Error(`damage at open: ${JSON.stringify(damage)}`);
  for (let round = 0; ; round++) {
    for (let group = 0; group < groups; group++) {
      const log = store.group(group);
      const start = log.lastIndex() + 1;
      const count = 1 + ((round + group) % 20);
      const entries = [];
      for (let index = start; index < start + count; index++) {
        entries.push({ index, term: 1, kind: "normal" as const, data: contentOf(group, index) });
      }
      store.append(group, entries);
      if (round % 7 === group % 7) {
        store.setHardState(group, { term: 1, vote: null, commit: start - 1, damagedUpTo: 0 });
      }
      if (round % 25 === 24 && start - 1 > log.firstIndex() + 100) {
        const index = start - 50;
        store.compact(group, {
          meta: { index, term: 1, configuration: { voters: ["r1"], learners: [] } },
          data: contentOf(group + 1000, index),
        });
      }
    }
    await store.sync();
    const synced: Record<number, number> = {};
    for (let group = 0; group < groups; group++) synced[group] = store.group(group).lastIndex();
    process.stdout.write(`${JSON.stringify({ round, synced })}\n`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, groups] = process.argv.slice(2);
  if (dir === undefined || groups === undefined) {
    process.stderr.write("usage: storage-writer.ts DIR GROUPS\n");
    process.exit(2);
  }
  main(dir, Number(groups)).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
