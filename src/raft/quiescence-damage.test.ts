// Quiescence of idle groups (CockroachDB's, with the shell's leaderUnreachable() verdict) and
// protocol-aware repair of a damaged replica (PAR, FAST '18): a replica that lost entries it may
// have acknowledged neither votes nor campaigns until a leader re-replicated them, so a
// committed entry is never lost. Groups run in RaftHarness; time passes only through tick().
import { describe, expect, it } from "vitest";
import { SeededRandom } from "../sim/index.ts";
import {
  type Entry,
  type EntryKind,
  type GroupLog,
  type HardState,
  MemoryStore,
  type NodeId,
  type Snapshot,
  type SnapshotMeta,
  StorageDamageError,
} from "../storage/index.ts";
import { defaultRaftConfig } from "./config.ts";
import { RaftNode } from "./core.ts";
import { bytes, message, RaftHarness } from "./harness.sim.ts";

const electionTicks = defaultRaftConfig.electionTicks;
const heartbeatTicks = defaultRaftConfig.heartbeatTicks;

function runRounds(h: RaftHarness, rounds: number, ids?: NodeId[]): void {
  for (let i = 0; i < rounds; i++) {
    for (const id of ids ?? [...h.nodes.keys()]) if (!h.down.has(id)) h.tick(id);
    h.stabilize();
  }
}

/** a leads a, b, c; entry 2 ("x") committed; b crashed and lost it as a disk store marks damage found at open. */
function damagedFollower(): { h: RaftHarness; store: MemoryStore } {
  const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
  h.elect("a");
  h.node("a").propose(bytes("x"));
  h.stabilize();
  h.crash("b");
  const store = h.stores.get("b")!;
  store.truncate(h.group, 2);
  store.setHardState(h.group, { ...store.group(h.group).hardState(), damagedUpTo: 2 });
  return { h, store };
}

describe("quiescence", () => {
  function quiescedGroup(): RaftHarness {
    const h = new RaftHarness({ voters: ["a", "b", "c"] });
    h.elect("a");
    h.node("a").propose(bytes("x"));
    h.stabilize();
    runRounds(h, heartbeatTicks);
    for (const id of ["a", "b", "c"]) expect(h.node(id).quiesced).toBe(true);
    return h;
  }

  it("an idle group quiesces: once all replicas applied everything, ticks send nothing and elect nobody", () => {
    const h = quiescedGroup();
    const mark = h.sent.length;
    runRounds(h, 10 * electionTicks);
    expect(h.sent.length).toBe(mark);
    expect([h.node("a").role, h.node("b").leader, h.node("c").leader, h.node("a").term]).toEqual([
      "leader",
      "a",
      "a",
      1,
    ]);
  });

  it("a quiesced group wakes on a proposal, replicates it, then quiesces again", () => {
    const h = quiescedGroup();
    expect(h.node("a").propose(bytes("y")).ok).toBe(true);
    expect(h.node("a").quiesced).toBe(false);
    h.stabilize();
    for (const id of ["a", "b", "c"]) expect(h.appliedData(id)).toEqual(["x", "y"]);
    expect(h.node("b").quiesced).toBe(false);
    runRounds(h, heartbeatTicks);
    for (const id of ["a", "b", "c"]) expect(h.node(id).quiesced).toBe(true);
  });

  it("a leader does not quiesce while a follower lags behind", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"] });
    h.elect("a");
    h.cut.add("a->c");
    h.node("a").propose(bytes("x"));
    h.stabilize();
    const mark = h.sent.length;
    runRounds(h, 3 * heartbeatTicks, ["a", "b"]);
    expect(h.node("a").quiesced).toBe(false);
    expect(h.sent.slice(mark).filter((m) => m.type === "heartbeat" && m.to === "c")).toHaveLength(3);
  });

  it("a quiesced follower ignores pre-votes: its leader's lease still holds", () => {
    const h = quiescedGroup();
    h.crash("a");
    h.node("c").leaderUnreachable();
    while (h.node("c").role === "follower") h.tick("c");
    const mark = h.sent.length;
    h.stabilize();
    expect(sentTypes(h, mark, "b", "c")).toEqual([]);
    expect([h.node("b").term, h.node("b").vote, h.node("b").leader]).toEqual([1, "a", "a"]);
  });

  it("without leaderUnreachable() a quiesced group whose leader died elects nobody (the shell's duty)", () => {
    const h = quiescedGroup();
    h.crash("a");
    runRounds(h, 10 * electionTicks);
    expect(h.leader()).toBeNull();
    expect([h.node("b").term, h.node("c").term]).toEqual([1, 1]);
  });

  it("leaderUnreachable() makes quiesced followers elect a new leader within an election timeout", () => {
    const h = quiescedGroup();
    h.crash("a");
    h.node("b").leaderUnreachable();
    h.node("c").leaderUnreachable();
    runRounds(h, 2 * electionTicks);
    const leader = h.leader();
    expect(["b", "c"]).toContain(leader?.id);
    leader!.propose(bytes("y"));
    h.stabilize();
    expect(h.appliedData("b")).toEqual(["x", "y"]);
  });
});

function sentTypes(h: RaftHarness, mark: number, from: NodeId, to: NodeId): string[] {
  return h.sent.slice(mark).flatMap((m) => (m.from === from && m.to === to ? [m.type] : []));
}

/**
 * A group log whose bytes from `fromIndex` on fail their checksum once `broken`: the read that
 * meets them throws, and from then on the store's view ends before `fromIndex` (storage/types.ts,
 * Damage) until the range is truncated.
 */
class DamagedLog implements GroupLog {
  readonly group: number;
  broken = false;
  private found = false;
  private readonly inner: GroupLog;
  private readonly fromIndex: number;

  constructor(inner: GroupLog, fromIndex: number) {
    this.inner = inner;
    this.group = inner.group;
    this.fromIndex = fromIndex;
  }

  private hidden(): boolean {
    if (this.broken && this.inner.lastIndex() < this.fromIndex) this.broken = false; // truncated: repaired bytes
    return this.broken && this.found;
  }
  hardState(): HardState {
    return this.inner.hardState();
  }
  snapshot(): Snapshot | null {
    return this.inner.snapshot();
  }
  snapshotMeta(): SnapshotMeta | null {
    return this.inner.snapshotMeta();
  }
  firstIndex(): number {
    return this.inner.firstIndex();
  }
  lastIndex(): number {
    return this.hidden() ? Math.min(this.inner.lastIndex(), this.fromIndex - 1) : this.inner.lastIndex();
  }
  term(index: number): number | undefined {
    return this.hidden() && index >= this.fromIndex ? undefined : this.inner.term(index);
  }
  kindOf(index: number): EntryKind | undefined {
    return this.inner.kindOf(index);
  }

  entries(from: number, to: number, maxBytes: number): readonly Entry[] {
    if (this.hidden() || (this.broken && to > this.fromIndex)) {
      const toIndex = this.inner.lastIndex();
      this.found = true;
      throw new StorageDamageError({
        group: this.group,
        fromIndex: this.fromIndex,
        toIndex,
        reason: "checksum mismatch",
      });
    }
    return this.inner.entries(from, to, maxBytes);
  }
}

/** Replaces `id` (crashed) by a core over `log`, as a restart would. */
function restartOn(h: RaftHarness, id: NodeId, log: GroupLog): RaftNode {
  const node = new RaftNode({
    id,
    group: h.group,
    log,
    random: new SeededRandom(99).fork(id),
    config: h.config,
  });
  h.nodes.set(id, node);
  h.applied.set(id, []);
  h.down.delete(id);
  return node;
}

/** A, B, C; "e" committed on A and B only (C never got it). */
function committedOnTwo(): RaftHarness {
  const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
  h.elect("a");
  h.cut.add("a->c");
  h.node("a").propose(bytes("e"));
  h.stabilize();
  expect([h.node("a").log.committed, h.node("b").log.committed, h.node("c").log.lastIndex()]).toEqual([
    2, 2, 1,
  ]);
  return h;
}

/** A is down and B damaged: nobody may lead (C lacks "e"). Then A returns and repairs B. */
function expectEntrySurvives(h: RaftHarness): void {
  h.crash("a");
  h.heal();
  runRounds(h, 10 * electionTicks);
  expect(h.leader()).toBeNull();
  expect(h.node("b").damagedUpTo).toBeGreaterThanOrEqual(2);
  h.restart("a");
  runRounds(h, 4 * electionTicks);
  expect(h.leader()?.id).toBe("a");
  expect(h.node("b").damagedUpTo).toBe(0);
  expect(h.stores.get("b")!.group(h.group).hardState().damagedUpTo).toBe(0);
  h.crash("a"); // now B, repaired, may lead
  runRounds(h, 4 * electionTicks);
  const leader = h.leader()!;
  expect(["b", "c"]).toContain(leader.id);
  leader.propose(bytes("f"));
  h.stabilize();
  expect(h.appliedData("c")).toEqual(["e", "f"]);
}

describe("damage (protocol-aware recovery)", () => {
  it("a replica with damagedUpTo set neither campaigns nor votes, not even for a leader transfer", () => {
    const store = new MemoryStore();
    store.compact(7, {
      meta: { index: 0, term: 0, configuration: { voters: ["a", "b", "c"], learners: [] } },
      data: bytes(""),
    });
    store.setHardState(7, { term: 1, vote: null, commit: 0, damagedUpTo: 5 });
    const b = new RaftNode({ id: "b", group: 7, log: store.group(7), random: new SeededRandom(3) });
    for (let i = 0; i < 4 * electionTicks; i++) b.tick();
    b.step(message({ type: "timeoutNow", from: "a", to: "b", term: 1 }));
    expect(b.role).toBe("follower");
    for (const type of ["preVote", "vote"] as const)
      b.step(message({ type, from: "c", to: "b", term: 2, index: 9, logTerm: 2 }));
    const sent = b.ready().messages;
    expect(sent.filter((m) => m.type !== "appendResponse").map((m) => [m.type, m.reject])).toEqual([
      ["preVoteResponse", true],
      ["voteResponse", true],
    ]);
    // Knowing no leader, it asks to be found instead: rejections carrying its last index.
    expect(sent.filter((m) => m.type === "appendResponse").every((m) => m.reject && m.rejectHint === 0)).toBe(
      true,
    );
    expect(new Set(sent.filter((m) => m.type === "appendResponse").map((m) => m.to))).toEqual(
      new Set(["a", "c"]),
    );
  });

  it("a damaged replica is repaired once its log matches a current leader's, and records it durably", () => {
    const { h, store } = damagedFollower();
    expect(h.restart("b").damagedUpTo).toBe(2);
    runRounds(h, heartbeatTicks);
    expect(h.node("b").damagedUpTo).toBe(0);
    expect(store.group(h.group).hardState().damagedUpTo).toBe(0);
    expect(store.group(h.group).term(2)).toBe(1);
  });

  it("a follower that lost entries it acknowledged is probed from its end, not sent the same append forever", () => {
    const { h } = damagedFollower();
    h.restart("b");
    h.node("a").propose(bytes("y")); // the append after index 2 meets b's shorter log
    h.stabilize(100);
    expect(h.node("b").log.lastIndex()).toBe(3);
    expect(h.node("b").damagedUpTo).toBe(0);
    expect(h.appliedData("b")).toEqual(["x", "y"]);
  });

  it("a committed entry survives when one copy is damaged at open and the other's holder crashes", () => {
    const h = committedOnTwo();
    h.crash("b");
    const store = h.stores.get("b")!;
    store.truncate(h.group, 1);
    store.setHardState(h.group, { ...store.group(h.group).hardState(), commit: 0, damagedUpTo: 2 });
    h.restart("b");
    expectEntrySurvives(h);
  });

  it("a committed entry survives when a read meets the damage (StorageDamageError) and the view shrinks", () => {
    const h = committedOnTwo();
    h.crash("b");
    const log = new DamagedLog(h.stores.get("b")!.group(h.group), 1);
    log.broken = true;
    const b = restartOn(h, "b", log);
    h.stabilize(); // b re-applies from index 1 and meets the damage
    expect(b.damageSeen).toHaveLength(1);
    expect(h.stores.get("b")!.group(h.group).lastIndex()).toBe(0); // the range was truncated
    expectEntrySurvives(h);
  });

  it("a leader whose read meets damage steps down and stays out of elections until repaired", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    const log = new DamagedLog(h.stores.get("a")!.group(h.group), 2);
    h.crash("a");
    restartOn(h, "a", log);
    h.elect("a");
    h.node("a").propose(bytes("e1"));
    h.stabilize();
    h.crash("c");
    h.node("a").propose(bytes("e2"));
    h.stabilize();
    log.broken = true;
    h.restart("c");
    runRounds(h, heartbeatTicks); // a reads entries 2.. to catch c up, and meets the damage
    expect(h.node("a").role).toBe("follower");
    expect(h.node("a").damagedUpTo).toBeGreaterThanOrEqual(3);
    runRounds(h, 4 * electionTicks);
    expect(h.leader()?.id).toBe("b"); // c's log is behind b's; a does not campaign
    expect(h.node("a").damagedUpTo).toBe(0);
    h.leader()!.propose(bytes("e3"));
    h.stabilize();
    expect(h.appliedData("c")).toEqual(["e1", "e2", "e3"]);
    expect(h.appliedData("a")).toEqual(["e1", "e2", "e3"]); // nothing re-applied after the repair
  });
});

it("a stray candidate's pre-votes do not wake quiesced followers, so it cannot depose a quiet leader", () => {
  const h = new RaftHarness({ voters: ["a", "b", "c"] });
  h.elect("a");
  h.node("a").propose(bytes("x"));
  h.stabilize();
  runRounds(h, heartbeatTicks);
  const term = h.node("a").term;
  for (let round = 0; round < 20; round++) {
    // "z" (a replica removed while it was away, say) keeps asking b and c for votes.
    for (const to of ["b", "c"]) {
      h.node(to).step(message({ type: "preVote", from: "z", to, term: term + 1, index: 99, logTerm: term }));
      // Still quiet: woken, its election timer would run with no heartbeat coming from a.
      expect(h.node(to).quiesced).toBe(true);
    }
    runRounds(h, electionTicks);
  }
  expect([h.node("a").role, h.node("a").term, h.node("b").term, h.node("c").term]).toEqual([
    "leader",
    term,
    term,
    term,
  ]);
});

it("a leader restarted before its router was missed: its own pre-vote ends the quiesced followers' lease", () => {
  const h = new RaftHarness({ voters: ["a", "b", "c"] });
  h.elect("a");
  h.node("a").propose(bytes("x"));
  h.stabilize();
  runRounds(h, heartbeatTicks);
  expect([h.node("b").quiesced, h.node("c").quiesced]).toEqual([true, true]);
  h.crash("a");
  h.restart("a");
  // Nobody calls leaderUnreachable(): the router came back too fast to be declared down.
  runRounds(h, 6 * electionTicks);
  const leader = h.leader();
  expect(leader).not.toBeNull();
  expect(leader!.term).toBeGreaterThan(1);
  h.node(leader!.id).propose(bytes("y"));
  h.stabilize();
  for (const id of ["a", "b", "c"]) expect(h.appliedData(id)).toContain("y");
});
