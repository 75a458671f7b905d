// The multi-Raft shell's round, one rule a test, on one router whose groups have it as their
// only voter, over a MemoryStore whose syncs the test holds and releases: a round that only
// moves commit indexes is not synced; committed entries already durable are applied while
// another group's writes wait for their sync, and the core counts them applied at once (a
// config change is no longer pending); entries staged in a round wait for it. The clock is a SimClock that never
// moves: the test ticks the groups by hand until each sole voter has elected itself.
import { describe, expect, it } from "vitest";
import { SeededRandom, SimClock, settleMicrotasks } from "../sim/index.ts";
import { type Configuration, type Entry, type GroupId, MemoryStore } from "../storage/index.ts";
import { MultiRaft } from "./multi-raft.ts";

/** A MemoryStore whose syncs wait until released (`hold` on), counting them. */
class HeldStore extends MemoryStore {
  hold = false;
  private readonly held: (() => void)[] = [];

  override sync(): Promise<void> {
    if (!this.hold) return super.sync();
    return new Promise((resolve) => this.held.push(() => void super.sync().then(resolve)));
  }

  get waiting(): number {
    return this.held.length;
  }

  release(): void {
    for (const resolve of this.held.splice(0)) resolve();
  }
}

const self = "a";

function setup() {
  const store = new HeldStore();
  const applied: { group: GroupId; index: number }[] = [];
  const multi = new MultiRaft({
    id: self,
    store,
    transport: { send: () => {} },
    clock: new SimClock(),
    random: new SeededRandom(1),
    configurationOf: (): Configuration => ({ voters: [self], learners: [] }),
    stateMachine: {
      apply: (group: GroupId, entries: readonly Entry[]) => {
        for (const entry of entries) applied.push({ group, index: entry.index });
        return undefined;
      },
      restore: () => {},
      leadershipChanged: () => {},
    },
  });
  return { store, multi, applied };
}

/** Creates the groups and ticks them by hand until each elected itself and committed its first entries. */
async function leading(s: ReturnType<typeof setup>, groups: readonly GroupId[]): Promise<void> {
  for (const group of groups) s.multi.group(group);
  for (let tick = 0; tick < 30; tick++) {
    s.multi.tick();
    await settleMicrotasks();
  }
  for (const group of groups) expect(s.multi.group(group)?.role).toBe("leader");
}

function track<T>(promise: Promise<T>): { settled: boolean } {
  const state = { settled: false };
  void promise.then(() => {
    state.settled = true;
  });
  return state;
}

describe("multi-Raft rounds", () => {
  it("an entry waits for its sync; the round that only commits it is not synced", async () => {
    const s = setup();
    await leading(s, [1]);
    s.store.hold = true;
    const syncsBefore = s.store.syncs;
    const proposal = track(s.multi.propose(1, new Uint8Array([7])));
    await settleMicrotasks();
    expect(s.store.waiting).toBe(1);
    expect(proposal.settled).toBe(false);
    s.store.release();
    await settleMicrotasks();
    expect(proposal.settled).toBe(true);
    // One sync for the entry; the commit index it moved is staged, not synced.
    expect(s.store.syncs - syncsBefore).toBe(1);
    expect(s.store.waiting).toBe(0);
  });

  it("committed entries already durable are applied while another group's entries wait for their sync", async () => {
    const s = setup();
    await leading(s, [1, 2]);
    s.store.hold = true;
    const first = track(s.multi.propose(1, new Uint8Array([1])));
    await settleMicrotasks();
    expect(s.store.waiting).toBe(1);
    // Group 2's entry joins the next round, with group 1's commit.
    const second = track(s.multi.propose(2, new Uint8Array([2])));
    const appliedBefore = s.applied.length;
    s.store.release();
    await settleMicrotasks();
    expect(first.settled).toBe(true);
    expect(second.settled).toBe(false);
    expect(s.store.waiting).toBe(1);
    expect(s.applied.slice(appliedBefore).map(({ group }) => group)).toEqual([1]);
    s.store.release();
    await settleMicrotasks();
    expect(second.settled).toBe(true);
  });

  it("a config change applied before its round's sync is no longer pending: the next one may be proposed", async () => {
    const s = setup();
    await leading(s, [1, 2]);
    s.store.hold = true;
    const first = track(s.multi.proposeConfigChange(1, { type: "addLearner", node: "b" }));
    await settleMicrotasks();
    const entry = track(s.multi.propose(2, new Uint8Array([2])));
    s.store.release();
    await settleMicrotasks();
    // Group 1's change is applied; group 2's entry holds the round at its sync.
    expect(first.settled).toBe(true);
    expect(entry.settled).toBe(false);
    expect(s.multi.group(1)!.configChangePending).toBe(false);
    const second = track(s.multi.proposeConfigChange(1, { type: "addLearner", node: "c" }));
    s.store.hold = false;
    s.store.release();
    await settleMicrotasks();
    expect(entry.settled).toBe(true);
    expect(second.settled).toBe(true);
    expect(s.multi.group(1)!.configuration.learners).toEqual(["b", "c"]);
  });
});
