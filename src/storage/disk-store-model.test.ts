// Model-based property test: random sequences of writes, syncs, crashes (clean, torn, during
// an fdatasync) and reopens, on the disk store over SimDisk and on the memory store (the
// reference) side by side. Rule checked: after every reopen, every group's state equals the
// reference as of the last sync that resolved (or, after a crash during a sync, as of that
// sync's call), nothing is reported as damage, and reads always equal the reference.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { settleMicrotasks } from "../sim/index.ts";
import { dataOf, dumpStore, memoryStoreOf, newDisk, openSim, type StoreDump } from "./disk-fixtures.sim.ts";
import type { DiskStore } from "./disk-store.ts";
import type { MemoryStore } from "./memory-store.ts";
import type { Entry, GroupLog, LogStore } from "./types.ts";

const groupIds = [0, 1, 2, 3];

type Command =
  | { kind: "append"; group: number; back: number; count: number; bump: number }
  | { kind: "hardState"; group: number; bump: number; vote: number; commit: number }
  | { kind: "truncate"; group: number; back: number }
  | { kind: "compact"; group: number; back: number }
  | { kind: "install"; group: number; ahead: number; sameTerm: boolean }
  | { kind: "sync" }
  | { kind: "crash"; tear: boolean; duringSync: boolean }
  | { kind: "reopen" };

const group = fc.constantFrom(...groupIds);
const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("append" as const),
      group,
      back: fc.nat(4),
      count: fc.integer({ min: 1, max: 8 }),
      bump: fc.nat(1),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("hardState" as const),
      group,
      bump: fc.nat(1),
      vote: fc.nat(2),
      commit: fc.nat(1000),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("truncate" as const), group, back: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("compact" as const), group, back: fc.nat(6) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("install" as const),
      group,
      ahead: fc.integer({ min: -3, max: 6 }),
      sameTerm: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.constant({ kind: "sync" as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("crash" as const),
      tear: fc.boolean(),
      duringSync: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "reopen" as const }) },
);

const configuration = { voters: ["r1", "r2", "r3"], learners: [] };

/** Applies `command` to both stores, choosing arguments the Raft core could send (valid ones). */
function stage(
  command: Exclude<Command, { kind: "sync" | "crash" | "reopen" }>,
  stores: LogStore[],
  reference: MemoryStore,
): void {
  const log: GroupLog = reference.group(command.group);
  const first = log.firstIndex();
  const last = log.lastIndex();
  const hardState = log.hardState();
  // Committed entries never change (Raft §5.4): writes only touch indexes above the commit.
  const floor = Math.max(first, hardState.commit + 1);
  const apply = (action: (store: LogStore) => void) => {
    for (const store of stores) action(store);
  };
  switch (command.kind) {
    case "append": {
      const start = Math.max(floor, last + 1 - command.back);
      if (start > last + 1) return;
      const term = (log.term(start - 1) ?? 0) + command.bump + (start === 1 ? 1 : 0);
      const entries: Entry[] = [];
      for (let index = start; index < start + command.count; index++) {
        entries.push({
          index,
          term,
          kind: index % 5 === 0 ? "config" : "normal",
          data: dataOf(command.group, index, term),
        });
      }
      apply((store) => store.append(command.group, entries));
      return;
    }
    case "hardState": {
      const term = hardState.term + command.bump;
      const vote =
        term === hardState.term && hardState.vote !== null
          ? hardState.vote
          : [null, "r1", "r2"][command.vote]!;
      const commit = Math.min(last, Math.max(hardState.commit, command.commit % (last + 1)));
      apply((store) => store.setHardState(command.group, { term, vote, commit, damagedUpTo: 0 }));
      return;
    }
    case "truncate": {
      const from = Math.max(floor, last + 1 - command.back);
      apply((store) => store.truncate(command.group, from));
      return;
    }
    case "compact": {
      const index = Math.max(first - 1, last - command.back);
      const term = log.term(index)!;
      const snapshot = {
        meta: { index, term, configuration },
        data: dataOf(command.group + 100, index, term),
      };
      apply((store) => store.compact(command.group, snapshot));
      return;
    }
    case "install": {
      const index = Math.max(hardState.commit, last + command.ahead, 0);
      const term =
        command.sameTerm && log.term(index) !== undefined
          ? log.term(index)!
          : Math.max(hardState.term, log.term(last) ?? 0) + 1;
      const snapshot = {
        meta: { index, term, configuration },
        data: dataOf(command.group + 200, index, term),
      };
      apply((store) => store.installSnapshot(command.group, snapshot));
      return;
    }
  }
}

async function run(seed: number, commands: Command[]): Promise<void> {
  const disk = newDisk(seed);
  const options = { segmentBytes: 4096, cacheBytes: seed % 3 === 0 ? 0 : 1 << 16 };
  let store: DiskStore = (await openSim(disk, options)).store;
  let reference = memoryStoreOf({});
  let durable: StoreDump = {};
  const reopen = async (allowed: StoreDump[], why: string) => {
    const opened = await openSim(disk, options);
    expect(opened.damage, why).toEqual([]);
    const state = dumpStore(opened.store, groupIds);
    expect(allowed, why).toContainEqual(state);
    store = opened.store;
    reference = memoryStoreOf(state);
    durable = state;
  };
  for (const [step, next] of commands.entries()) {
    const why = `seed ${seed}, step ${step}: ${JSON.stringify(next)}`;
    switch (next.kind) {
      case "sync":
        await store.sync();
        durable = dumpStore(reference, groupIds);
        break;
      case "crash": {
        const staged = dumpStore(reference, groupIds);
        if (next.duringSync) {
          disk.holdSyncs(/wal-/);
          store.sync().catch(() => {});
          await settleMicrotasks();
          disk.crash({ tear: next.tear });
          await reopen([durable, staged], why);
        } else {
          disk.crash({ tear: next.tear });
          await reopen([durable], why);
        }
        break;
      }
      case "reopen": {
        const staged = dumpStore(reference, groupIds);
        await store.close();
        await reopen([staged], why);
        break;
      }
      default:
        stage(next, [store, reference], reference);
        expect(dumpStore(store, groupIds), why).toEqual(dumpStore(reference, groupIds));
    }
  }
}

describe("disk store against the memory store", () => {
  it("after any crash, every group equals the reference as of the last resolved sync", async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(1_000_000), fc.array(command, { minLength: 5, maxLength: 80 }), run),
      { numRuns: 150 },
    );
  });

  it("replays a long run with many segments, compactions and crashes (seed 7)", async () => {
    const commands = fc.sample(fc.array(command, { minLength: 600, maxLength: 600 }), {
      seed: 7,
      numRuns: 1,
    })[0]!;
    await run(7, commands);
  });
});
