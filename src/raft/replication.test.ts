// Log replication rules (Raft §5.3, §5.4.2; thesis §3.5, §3.6.2, §10.2), one test each, named
// after the rule, in the manner of etcd's raft_paper_test.go. A leader core is stepped by hand:
// the test plays its followers by building their answers. Whole-group scenarios run in
// RaftHarness, where time passes only through tick().
import { describe, expect, it } from "vitest";
import type { Random } from "../ports/index.ts";
import type { NodeId } from "../storage/index.ts";
import { defaultRaftConfig, type RaftConfig } from "./config.ts";
import { entryOverheadBytes } from "./core.ts";
import {
  bytes,
  entry,
  flush,
  message,
  RaftHarness,
  type Replica,
  type ReplicaOptions,
  replica,
} from "./harness.sim.ts";
import type { Message, Ready } from "./types.ts";

const group = 7;
const electionTicks = defaultRaftConfig.electionTicks;

const firstDraw: Random = { nextInt: () => 0, nextFloat: () => 0 };

function start(id: NodeId, voters: readonly NodeId[], options: ReplicaOptions = {}): Replica {
  return replica(id, voters, {
    ...options,
    random: firstDraw,
    config: { quiesce: false, preVote: false, ...options.config },
  });
}

/** "a" elected by hand (every other voter grants), its first Ready persisted. */
function startLeader(voters: readonly NodeId[], options: ReplicaOptions = {}): Replica {
  const leader = start("a", voters, options);
  while (leader.raft.role === "follower") leader.raft.tick();
  flush(leader);
  for (const from of voters) {
    if (from !== "a" && leader.raft.role !== "leader") {
      leader.raft.step(message({ type: "voteResponse", from, to: "a", term: leader.raft.term }));
    }
  }
  expect(leader.raft.role).toBe("leader");
  return leader;
}

/** The follower `from` acknowledges everything up to `index`. */
function ack(leader: Replica, from: NodeId, index: number): void {
  leader.raft.step(message({ type: "appendResponse", from, to: "a", term: leader.raft.term, index }));
}

function appendsTo(ready: Ready, to: NodeId): Message[] {
  return ready.messages.filter((m) => m.type === "append" && m.to === to);
}

function indexes(m: Message | undefined): number[] {
  return (m?.entries ?? []).map((e) => e.index);
}

/** A leader of ["a", "b", "c"] whose followers both acknowledged its first entry (replicate state). */
function replicatingLeader(config: Partial<RaftConfig> = {}): Replica {
  const leader = startLeader(["a", "b", "c"], { config });
  ack(leader, "b", 1);
  ack(leader, "c", 1);
  flush(leader);
  return leader;
}

function logOf(h: RaftHarness, id: NodeId): string[] {
  const log = h.stores.get(id)!.group(h.group);
  const entries = log.entries(log.firstIndex(), log.lastIndex() + 1, Number.MAX_SAFE_INTEGER);
  return entries.map((e) => `${e.index}:${e.term}:${Buffer.from(e.data).toString()}`);
}

describe("appending (§5.3)", () => {
  it("§5.3 proposals between two Readies go out as one append per follower", () => {
    const leader = replicatingLeader();
    for (const data of ["x", "y", "z"]) expect(leader.raft.propose(bytes(data)).ok).toBe(true);
    const ready = flush(leader);
    expect(ready.entries.map((e) => e.index)).toEqual([2, 3, 4]);
    for (const to of ["b", "c"]) {
      const appends = appendsTo(ready, to);
      expect(appends).toHaveLength(1);
      expect([appends[0]!.index, appends[0]!.logTerm, appends[0]!.commit, indexes(appends[0])]).toEqual([
        1,
        1,
        1,
        [2, 3, 4],
      ]);
    }
  });

  it("§5.3 a follower rejects an append whose previous entry it lacks or holds with another term", () => {
    const b = start("b", ["a", "b", "c"], {
      entries: [entry(1, 1), entry(2, 1)],
      hard: { term: 2, vote: null, commit: 0, damagedUpTo: 0 },
    });
    b.raft.step(
      message({ type: "append", from: "a", to: "b", term: 2, index: 5, logTerm: 2, entries: [entry(6, 2)] }),
    );
    b.raft.step(
      message({ type: "append", from: "a", to: "b", term: 2, index: 2, logTerm: 2, entries: [entry(3, 2)] }),
    );
    const ready = flush(b);
    expect(ready.messages.map((m) => [m.type, m.reject, m.index, m.rejectHint])).toEqual([
      ["appendResponse", true, 5, 2],
      ["appendResponse", true, 2, 2],
    ]);
    expect(ready.entries).toEqual([]);
    expect(b.raft.log.lastIndex()).toBe(2);
  });

  it("§5.3 after a rejection the leader backs up to the follower's hint, one probe at a time", () => {
    const old = [1, 2, 3, 4, 5].map((index) => entry(index, 1));
    const leader = startLeader(["a", "b", "c"], {
      entries: old,
      hard: { term: 1, vote: null, commit: 0, damagedUpTo: 0 },
    });
    const first = appendsTo(flush(leader), "b");
    expect([first[0]!.index, first[0]!.logTerm, indexes(first[0])]).toEqual([5, 1, [6]]);
    expect(leader.raft.propose(bytes("more")).ok).toBe(true);
    expect(appendsTo(flush(leader), "b")).toEqual([]); // probe: one append out until it is answered
    leader.raft.step(
      message({ type: "appendResponse", from: "b", to: "a", term: 2, index: 5, reject: true, rejectHint: 2 }),
    );
    const retry = appendsTo(flush(leader), "b");
    expect([retry[0]!.index, retry[0]!.logTerm, indexes(retry[0])]).toEqual([2, 1, [3, 4, 5, 6, 7]]);
    leader.raft.step(
      message({ type: "appendResponse", from: "b", to: "a", term: 2, index: 5, reject: true, rejectHint: 2 }),
    );
    expect(appendsTo(flush(leader), "b")).toEqual([]); // a duplicate rejection is stale
  });

  it("§5.3 a follower deletes a conflicting suffix, and keeps entries that already match", () => {
    const b = start("b", ["a", "b", "c"], {
      entries: [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)],
      hard: { term: 2, vote: null, commit: 1, damagedUpTo: 0 },
    });
    b.raft.step(
      message({
        type: "append",
        from: "a",
        to: "b",
        term: 2,
        index: 1,
        logTerm: 1,
        entries: [entry(2, 1), entry(3, 2)],
      }),
    );
    const ready = flush(b);
    expect(ready.entries.map((e) => `${e.index}:${e.term}`)).toEqual(["3:2"]); // 2 matched: not rewritten
    expect(ready.messages.map((m) => [m.reject, m.index])).toEqual([[false, 3]]);
    expect([b.store.group(group).lastIndex(), b.store.group(group).term(3)]).toEqual([3, 2]);
    // A delayed, older append must not cut the log back: its entries match.
    b.raft.step(
      message({ type: "append", from: "a", to: "b", term: 2, index: 1, logTerm: 1, entries: [entry(2, 1)] }),
    );
    expect(flush(b).entries).toEqual([]);
    expect(b.raft.log.lastIndex()).toBe(3);
  });

  it("§5.3 a follower's commit index follows the leader's, up to the last entry it knows matches", () => {
    const b = start("b", ["a", "b", "c"], { hard: { term: 1, vote: null, commit: 0, damagedUpTo: 0 } });
    b.raft.step(
      message({
        type: "append",
        from: "a",
        to: "b",
        term: 1,
        entries: [entry(1, 1), entry(2, 1), entry(3, 1)],
        commit: 5,
      }),
    );
    const ready = flush(b);
    expect(b.raft.log.committed).toBe(3); // not 5: it holds only 3 of the leader's entries
    expect(ready.committedEntries.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(ready.hardState?.commit).toBe(3);
    b.raft.step(message({ type: "heartbeat", from: "a", to: "b", term: 1, commit: 2 }));
    expect(b.raft.log.committed).toBe(3); // never decreases

    // Entries past the append are unverified (a stale leader's, maybe): the commit stops before them.
    const c = start("c", ["a", "b", "c"], {
      entries: [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)],
      hard: { term: 2, vote: null, commit: 0, damagedUpTo: 0 },
    });
    c.raft.step(
      message({
        type: "append",
        from: "a",
        to: "c",
        term: 2,
        index: 1,
        logTerm: 1,
        entries: [entry(2, 1)],
        commit: 4,
      }),
    );
    expect([c.raft.log.committed, c.raft.log.lastIndex()]).toEqual([2, 4]);
  });

  it("§5.3 the leader brings a divergent follower's log into agreement with its own (Figure 7)", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    h.elect("a");
    h.node("a").propose(bytes("x0"));
    h.stabilize();
    h.isolate("a");
    h.node("a").propose(bytes("stale1")); // appended in term 1 by a leader nobody hears
    h.node("a").propose(bytes("stale2"));
    h.stabilize();
    for (
      let i = 0;
      i < 4 * electionTicks && h.node("b").role !== "leader" && h.node("c").role !== "leader";
      i++
    ) {
      h.tick("b");
      h.tick("c");
      h.stabilize();
    }
    const leader = h.node("b").role === "leader" ? h.node("b") : h.node("c");
    expect(leader.propose(bytes("fresh")).ok).toBe(true);
    h.stabilize();
    h.heal();
    for (let i = 0; i < 3 * electionTicks; i++) {
      h.tickAll();
      h.stabilize();
    }
    expect(leader.role).toBe("leader");
    expect(logOf(h, "a")).toEqual(logOf(h, leader.id));
    expect(logOf(h, "a").join()).not.toContain("stale");
    expect(h.appliedData("a")).toEqual(["x0", "fresh"]);
  });
});

describe("commitment (§5.4.2, §3.6.2)", () => {
  it("§5.4.2 a leader never commits an entry of an earlier term by counting replicas (Figure 8)", () => {
    // a's log holds index 2 from term 2, uncommitted; it now leads term 4 with its empty entry at 3.
    const voters = ["a", "b", "c", "d", "e"];
    const leader = startLeader(voters, {
      entries: [entry(1, 1), entry(2, 2)],
      hard: { term: 3, vote: null, commit: 1, damagedUpTo: 0 },
    });
    flush(leader);
    expect([leader.raft.term, leader.raft.log.lastIndex()]).toEqual([4, 3]);
    ack(leader, "b", 2);
    ack(leader, "c", 2); // index 2 is now on a, b and c: a majority, yet not safe to commit
    expect(leader.raft.log.committed).toBe(1);
    ack(leader, "b", 3);
    expect(leader.raft.log.committed).toBe(1);
    ack(leader, "c", 3); // an entry of term 4 on a majority commits it and everything before it
    expect(leader.raft.log.committed).toBe(3);
    expect(flush(leader).committedEntries.map((e) => `${e.index}:${e.term}`)).toEqual(["2:2", "3:4"]);
  });

  it("§10.2.1 the leader counts its own copy toward commit only once it is persisted (advance)", () => {
    const leader = replicatingLeader();
    leader.raft.propose(bytes("x"));
    const ready = leader.raft.ready();
    ack(leader, "b", 2); // b has it, the leader has not persisted it: no quorum yet
    expect(leader.raft.log.committed).toBe(1);
    leader.store.append(group, ready.entries);
    leader.raft.advance(ready);
    expect(leader.raft.log.committed).toBe(2);

    const other = replicatingLeader();
    other.raft.propose(bytes("y"));
    other.raft.ready();
    ack(other, "b", 2);
    ack(other, "c", 2); // two followers are a quorum of three without the leader
    expect(other.raft.log.committed).toBe(2);
  });

  it("a Ready must be synced for entries, a term or a vote, but not for a commit index alone (persisted lazily)", () => {
    const leader = replicatingLeader();
    leader.raft.propose(bytes("x"));
    const withEntry = flush(leader);
    expect(withEntry.entries).toHaveLength(1);
    expect(withEntry.mustSync).toBe(true);
    ack(leader, "b", 2);
    const commitOnly = flush(leader);
    expect(commitOnly.hardState?.commit).toBe(2);
    expect(commitOnly.committedEntries.map((e) => e.index)).toEqual([2]);
    expect(commitOnly.mustSync).toBe(false);

    const follower = start("b", ["a", "b", "c"]);
    flush(follower);
    follower.raft.step(message({ type: "heartbeat", from: "a", to: "b", term: 5 }));
    const newTerm = flush(follower);
    expect(newTerm.hardState?.term).toBe(5);
    expect(newTerm.mustSync).toBe(true);
  });
});

describe("flow control (§10.2)", () => {
  function proposeRounds(leader: Replica, rounds: number, size: number): Message[] {
    const appends: Message[] = [];
    for (let round = 0; round < rounds; round++) {
      expect(leader.raft.propose(new Uint8Array(size)).ok).toBe(true);
      appends.push(...appendsTo(flush(leader), "b"));
    }
    return appends;
  }

  it("§10.2 in replicate state appends are pipelined, at most maxInflightMessages unacknowledged", () => {
    const leader = replicatingLeader({ maxInflightMessages: 3 });
    expect(proposeRounds(leader, 5, 1).map(indexes)).toEqual([[2], [3], [4]]);
    ack(leader, "b", 2); // one slot frees: everything not yet sent goes in one append
    expect(appendsTo(flush(leader), "b").map(indexes)).toEqual([[5, 6]]);
  });

  it("§10.2 in replicate state the entry bytes in flight are bounded by maxInflightBytes", () => {
    const leader = replicatingLeader({ maxInflightBytes: 10 });
    expect(proposeRounds(leader, 5, 4).map(indexes)).toEqual([[2], [3], [4]]); // 4 + 4 + 4 >= 10
    ack(leader, "b", 4);
    expect(appendsTo(flush(leader), "b").map(indexes)).toEqual([[5, 6]]);
  });

  it("§10.2 an append carries at most maxMessageBytes of entries (data and encoding), and always at least one", () => {
    // Each entry counts its data plus entryEncodingBytesMax (32): 36, 36, 36, 52, 36 bytes.
    const leader = replicatingLeader({ maxMessageBytes: 80 });
    for (const size of [4, 4, 4, 20, 4]) leader.raft.propose(new Uint8Array(size));
    expect(appendsTo(flush(leader), "b").map(indexes)).toEqual([[2, 3]]);
    ack(leader, "b", 3);
    expect(appendsTo(flush(leader), "b").map(indexes)).toEqual([[4], [5], [6]]);
  });

  it("§10.2 many tiny entries: their encoding counts, so an append never outgrows the transport's frame", () => {
    const leader = replicatingLeader({ maxMessageBytes: 330 });
    for (let index = 0; index < 25; index++) leader.raft.propose(new Uint8Array(1));
    // 33 bytes each: 10 per append, although their data alone is 1 byte each.
    expect(appendsTo(flush(leader), "b").map((entries) => indexes(entries).length)).toEqual([10]);
  });

  it("§10.2 in probe state the leader sends one append at a time, then pipelines once it matches", () => {
    const leader = startLeader(["a", "b", "c"]);
    expect(appendsTo(flush(leader), "b").map(indexes)).toEqual([[1]]);
    expect(proposeRounds(leader, 3, 1)).toEqual([]);
    ack(leader, "b", 1);
    expect(appendsTo(flush(leader), "b").map(indexes)).toEqual([[2, 3, 4]]);
    expect(proposeRounds(leader, 2, 1).map(indexes)).toEqual([[5], [6]]);
  });

  it("§10.2 appends that carry no entries take no in-flight slot (maxInflightMessages 1 keeps committing)", () => {
    const h = new RaftHarness({
      voters: ["a", "b", "c"],
      config: { quiesce: false, maxInflightMessages: 1 },
    });
    h.elect("a");
    for (const data of ["x", "y", "z"]) {
      expect(h.node("a").propose(bytes(data)).ok).toBe(true);
      h.stabilize();
    }
    for (const id of ["a", "b", "c"]) expect(h.appliedData(id)).toEqual(["x", "y", "z"]);
  });
});

describe("proposal errors", () => {
  it("a follower refuses a proposal with NotLeader, naming the leader it knows", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    expect(h.node("b").propose(bytes("x"))).toEqual({ ok: false, error: { tag: "NotLeader", leader: null } });
    h.elect("a");
    expect(h.node("b").propose(bytes("x"))).toEqual({ ok: false, error: { tag: "NotLeader", leader: "a" } });
    expect(h.node("b").log.lastIndex()).toBe(1);
  });

  it("a proposal over maxEntryBytes is TooLarge; past maxUncommittedBytes the leader is Overloaded until commit", () => {
    // Each entry also costs entryOverheadBytes, so that empty proposals cannot pile up unbounded.
    const leader = replicatingLeader({ maxEntryBytes: 8, maxUncommittedBytes: 12 + 2 * entryOverheadBytes });
    expect(leader.raft.propose(new Uint8Array(9))).toEqual({
      ok: false,
      error: { tag: "TooLarge", bytes: 9, limitBytes: 8 },
    });
    expect(leader.raft.propose(new Uint8Array(8))).toMatchObject({ ok: true, index: 2, term: 1 });
    expect(leader.raft.propose(new Uint8Array(5))).toEqual({
      ok: false,
      error: {
        tag: "Overloaded",
        uncommittedBytes: 8 + entryOverheadBytes,
        limitBytes: 12 + 2 * entryOverheadBytes,
      },
    });
    expect(leader.raft.propose(new Uint8Array(4)).ok).toBe(true); // exactly at the limit
    flush(leader);
    ack(leader, "b", 3);
    expect(leader.raft.log.committed).toBe(3);
    expect(leader.raft.propose(new Uint8Array(8))).toMatchObject({ ok: true, index: 4 });
  });
});

it("§5.3 every replica applies the same committed entries, in log order, once", () => {
  const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
  h.elect("a");
  const proposed: string[] = [];
  for (let i = 0; i < 30; i++) {
    proposed.push(`m${i}`);
    expect(h.node("a").propose(bytes(`m${i}`)).ok).toBe(true);
    if (i % 3 === 0) h.stabilize();
    if (i === 10) h.crash("c");
    if (i === 20) h.restart("c");
  }
  h.stabilize();
  for (const id of ["a", "b", "c"]) expect(h.appliedData(id)).toEqual(proposed);
});
