// Leader transfer (thesis §3.10), install-snapshot (Raft §7, thesis §5.3) and read-index (thesis
// §6.4), one test each, named after the rule. Groups run in RaftHarness, where time passes only
// through tick(); the snapshot receiver rules are checked on a single core stepped by hand.
import { describe, expect, it } from "vitest";
import { type Entry, type HardState, MemoryStore, type NodeId } from "../storage/index.ts";
import { defaultRaftConfig } from "./config.ts";
import { RaftNode } from "./core.ts";
import { bytes, RaftHarness } from "./harness.sim.ts";
import { RaftLog } from "./raft-log.ts";
import { emptyMessage, type Message, type Ready } from "./types.ts";

const electionTicks = defaultRaftConfig.electionTicks;
const heartbeatTicks = defaultRaftConfig.heartbeatTicks;

function harness(voters: NodeId[], learners: NodeId[] = []): RaftHarness {
  return new RaftHarness({ voters, learners, config: { quiesce: false } });
}

function runRounds(h: RaftHarness, rounds: number, ids?: NodeId[]): void {
  for (let i = 0; i < rounds; i++) {
    for (const id of ids ?? [...h.nodes.keys()]) if (!h.down.has(id)) h.tick(id);
    h.stabilize();
  }
}

/** Messages `from` sent to `to` since position `mark` of `h.sent`. */
function sentSince(h: RaftHarness, mark: number, from: NodeId, to: NodeId): Message["type"][] {
  return h.sent.slice(mark).flatMap((m) => (m.from === from && m.to === to ? [m.type] : []));
}

describe("leader transfer (§3.10)", () => {
  it("§3.10 an up-to-date target gets timeoutNow at once and wins inside the others' leases", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    const mark = h.sent.length;
    expect(h.node("a").transferLeadership("b")).toBeNull();
    h.stabilize();
    expect(sentSince(h, mark, "a", "b")[0]).toBe("timeoutNow");
    expect([h.node("b").role, h.node("b").term]).toEqual(["leader", 2]);
    expect([h.node("a").role, h.node("a").leader, h.node("c").leader]).toEqual(["follower", "b", "b"]);
  });

  it("§3.10 a lagging target is caught up first, and only then gets timeoutNow", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    h.cut.add("a->c");
    h.node("a").propose(bytes("x"));
    h.stabilize();
    h.heal();
    const mark = h.sent.length;
    h.node("a").transferLeadership("c");
    h.stabilize();
    const toC = sentSince(h, mark, "a", "c");
    expect(toC[0]).toBe("append");
    expect(toC.indexOf("timeoutNow")).toBeGreaterThan(toC.indexOf("append"));
    expect(h.node("c").role).toBe("leader");
    h.node("c").propose(bytes("y"));
    h.stabilize();
    for (const id of ["a", "b", "c"]) expect(h.appliedData(id)).toEqual(["x", "y"]);
  });

  it("§3.10 proposals are refused while a transfer is under way", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    h.isolate("c");
    h.node("a").transferLeadership("c");
    expect(h.node("a").propose(bytes("x"))).toEqual({ ok: false, error: { tag: "Transferring", to: "c" } });
    expect(h.node("a").proposeConfigChange({ type: "addLearner", node: "d" })).toEqual({
      ok: false,
      error: { tag: "Transferring", to: "c" },
    });
  });

  it("§3.10 a transfer that does not finish within an election timeout is aborted", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    h.isolate("c");
    h.node("a").transferLeadership("c");
    runRounds(h, electionTicks - 1, ["a", "b"]);
    expect(h.node("a").propose(bytes("x")).ok).toBe(false);
    runRounds(h, 1, ["a", "b"]);
    expect([h.node("a").role, h.node("a").term]).toEqual(["leader", 1]);
    expect(h.node("a").propose(bytes("x")).ok).toBe(true);
  });

  it("§3.10 only a leader transfers, and only to a voter", () => {
    const h = harness(["a", "b", "c"], ["l"]);
    h.elect("a");
    expect(h.node("b").transferLeadership("c")).toEqual({ tag: "NotLeader", leader: "a" });
    expect(h.node("a").transferLeadership("l")).toMatchObject({ tag: "InvalidConfigChange" });
    expect(h.node("a").transferLeadership("a")).toBeNull();
    expect(h.node("a").propose(bytes("x")).ok).toBe(true); // neither started a transfer
  });
});

describe("install-snapshot (§7)", () => {
  /** Compacts `id`'s log up to what it applied, as the application would after a snapshot. */
  function compact(h: RaftHarness, id: NodeId): number {
    const node = h.node(id);
    const index = node.log.applied;
    const term = node.log.term(index)!;
    h.stores.get(id)!.compact(h.group, {
      meta: { index, term, configuration: node.appliedConfiguration() },
      data: bytes(`state@${index}`),
    });
    return index;
  }

  it("§7 a follower behind the leader's compacted log gets install-snapshot, then catches up", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    h.crash("c");
    for (let i = 0; i < 5; i++) h.node("a").propose(bytes(`m${i}`));
    h.stabilize();
    const index = compact(h, "a");
    expect(index).toBe(6);
    const mark = h.sent.length;
    h.restart("c");
    runRounds(h, 2 * heartbeatTicks);
    expect(sentSince(h, mark, "a", "c")).toContain("snapshot");
    const store = h.stores.get("c")!.group(h.group);
    expect([store.snapshotMeta()?.index, Buffer.from(store.snapshot()!.data).toString()]).toEqual([
      6,
      "state@6",
    ]);
    h.node("a").propose(bytes("after"));
    h.stabilize();
    expect(h.appliedData("c")).toEqual(["after"]); // entries up to 6 came in the snapshot
    expect(h.node("c").log.committed).toBe(h.node("a").log.committed);
  });

  it("§7 a new replica added to a compacted group gets the snapshot, configuration included", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    h.node("a").propose(bytes("m0"));
    h.stabilize();
    compact(h, "a");
    h.addNode("d");
    h.node("a").proposeConfigChange({ type: "addLearner", node: "d" });
    h.stabilize();
    const d = h.node("d");
    expect(d.configuration).toEqual({ voters: ["a", "b", "c"], learners: ["d"] });
    expect(h.stores.get("d")!.group(h.group).snapshotMeta()?.index).toBe(2);
    expect(d.log.lastIndex()).toBe(h.node("a").log.lastIndex());
  });

  describe("the receiver (§7)", () => {
    const group = 7;
    const entries = (terms: number[]): Entry[] =>
      terms.map((term, i) => ({ index: i + 1, term, kind: "normal", data: bytes(`e${i + 1}`) }));

    function follower(log: Entry[], hard: HardState): { raft: RaftNode; store: MemoryStore } {
      const store = new MemoryStore();
      store.compact(group, {
        meta: { index: 0, term: 0, configuration: { voters: ["a", "b", "c"], learners: [] } },
        data: bytes(""),
      });
      store.append(group, log);
      store.setHardState(group, hard);
      const raft = new RaftNode({
        id: "b",
        group,
        log: store.group(group),
        random: { nextInt: () => 0, nextFloat: () => 0 },
      });
      raft.advance(raft.ready());
      return { raft, store };
    }

    function offer(
      { raft, store }: { raft: RaftNode; store: MemoryStore },
      index: number,
      term: number,
    ): Ready {
      const configuration = { voters: ["a", "b", "c"], learners: ["z"] };
      const snapshot = { meta: { index, term, configuration }, data: bytes(`state@${index}`) };
      raft.step({ ...emptyMessage, type: "snapshot", group, from: "a", to: "b", term: 2, snapshot });
      const ready = raft.ready();
      if (ready.snapshot !== null) store.installSnapshot(group, ready.snapshot);
      raft.advance(ready);
      return ready;
    }

    it("§7 a snapshot at or below the commit index is stale: ignored, answered with the commit index", () => {
      const replica = follower(entries([1, 1, 1, 1, 1]), { term: 2, vote: null, commit: 5, damagedUpTo: 0 });
      const { raft, store } = replica;
      const configuration = { voters: ["a", "b", "c"], learners: [] };
      store.compact(group, { meta: { index: 4, term: 1, configuration }, data: bytes("own@4") }); // its own, newer
      const ready = offer(replica, 3, 1);
      expect(ready.snapshot).toBeNull();
      expect([
        raft.log.firstIndex(),
        raft.log.lastIndex(),
        raft.log.committed,
        raft.configuration.learners,
      ]).toEqual([5, 5, 5, []]);
      expect(ready.messages.map((m) => [m.type, m.index, m.reject])).toEqual([["appendResponse", 5, false]]);
    });

    it("§7 a snapshot whose last entry the follower holds only advances its commit index", () => {
      const replica = follower(entries([1, 1, 1, 1, 1]), { term: 2, vote: null, commit: 2, damagedUpTo: 0 });
      const { raft } = replica;
      const ready = offer(replica, 4, 1);
      expect(ready.snapshot).toBeNull();
      expect([raft.log.lastIndex(), raft.log.committed]).toEqual([5, 4]);
      expect(ready.committedEntries.map((e) => e.index)).toEqual([3, 4]);
    });

    it("§7 a snapshot beyond a follower's conflicting log replaces the whole log", () => {
      const replica = follower(entries([1, 1, 1]), { term: 2, vote: null, commit: 1, damagedUpTo: 0 });
      const { raft, store } = replica;
      const ready = offer(replica, 5, 2);
      expect(ready.snapshot?.meta.index).toBe(5);
      expect(ready.messages.map((m) => [m.type, m.index])).toEqual([["appendResponse", 5]]);
      expect([raft.log.lastIndex(), raft.log.committed, raft.log.applied]).toEqual([5, 5, 5]);
      expect(raft.configuration.learners).toEqual(["z"]);
      expect([store.group(group).firstIndex(), store.group(group).lastIndex()]).toEqual([6, 5]);
    });
  });
});

describe("read-index (§6.4)", () => {
  it("§6.4 a read is released only once a quorum acknowledged the heartbeat round it started", () => {
    const h = harness(["a", "b", "c", "d", "e"]);
    h.elect("a");
    h.filter = (m) => m.type !== "heartbeatResponse" || m.from === "b";
    expect(h.node("a").readIndex(1)).toBeNull();
    h.stabilize();
    expect(h.sent.some((m) => m.type === "heartbeat" && m.context !== 0)).toBe(true);
    expect(h.readStates.get("a")).toEqual([]); // a and b: 2 of 5
    h.filter = (m) => m.type !== "heartbeatResponse" || m.from === "b" || m.from === "c";
    h.node("a").readIndex(2);
    h.stabilize(); // a quorum for the second round confirms the first as well
    expect(h.readStates.get("a")).toEqual([
      { requestId: 1, index: 1 },
      { requestId: 2, index: 1 },
    ]);
  });

  it("§6.4 a new leader starts no read round before it commits an entry of its term", () => {
    const h = harness(["a", "b", "c"]);
    h.filter = (m) => m.type !== "appendResponse";
    h.elect("a");
    h.node("a").readIndex(1);
    h.stabilize();
    expect(h.sent.some((m) => m.type === "heartbeat" && m.context !== 0)).toBe(false);
    expect(h.readStates.get("a")).toEqual([]);
    h.filter = () => true;
    runRounds(h, heartbeatTicks);
    expect(h.readStates.get("a")).toEqual([{ requestId: 1, index: 1 }]);
  });

  it("§6.4 a single-voter leader releases reads at once, but only after committing an entry of its term", () => {
    const store = new MemoryStore();
    store.compact(7, {
      meta: { index: 0, term: 0, configuration: { voters: ["a"], learners: ["l"] } },
      data: bytes(""),
    });
    store.append(7, [{ index: 1, term: 1, kind: "normal", data: bytes("x") }]);
    store.setHardState(7, { term: 1, vote: "a", commit: 0, damagedUpTo: 0 }); // commit is persisted lazily
    const a = new RaftNode({
      id: "a",
      group: 7,
      log: store.group(7),
      random: { nextInt: () => 0, nextFloat: () => 0 },
    });
    while (a.role !== "leader") a.tick();
    expect(a.readIndex(9)).toBeNull();
    const released = [];
    for (let i = 0; i < 3; i++) {
      const ready = a.ready();
      store.append(7, ready.entries);
      if (ready.hardState !== null) store.setHardState(7, ready.hardState);
      released.push(...ready.readStates);
      a.advance(ready);
    }
    expect(released).toEqual([{ requestId: 9, index: 2 }]); // not index 0: x may have been acknowledged
  });

  it("§6.4 a leader deposed before a quorum answered releases nothing", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    const held: Message[] = [];
    h.filter = (m) => {
      if (m.type === "heartbeatResponse" && m.context !== 0) held.push(m);
      return m.type !== "heartbeatResponse";
    };
    h.node("a").readIndex(1);
    h.stabilize();
    h.isolate("a");
    runRounds(h, 2 * electionTicks, ["a"]); // check-quorum: a steps down in its own term
    expect([h.node("a").role, h.node("a").term]).toEqual(["follower", 1]);
    expect(held).toHaveLength(2);
    for (const m of held) h.node("a").step(m);
    h.stabilize();
    expect(h.readStates.get("a")).toEqual([]);
  });

  it("§6.4 a leader deposed and elected again never releases a read of its earlier term", () => {
    // Without check-quorum (and so without leases) b and c vote for a again at once.
    const h = new RaftHarness({
      voters: ["a", "b", "c"],
      config: { quiesce: false, preVote: false, checkQuorum: false },
    });
    h.elect("a");
    const a = h.node("a");
    h.filter = (m) => m.type !== "heartbeatResponse";
    a.readIndex(1);
    h.stabilize();
    a.step({ ...emptyMessage, type: "heartbeatResponse", group: h.group, from: "b", to: "a", term: 2 });
    expect([a.role, a.term]).toEqual(["follower", 2]);
    h.filter = () => true;
    h.elect("a"); // term 3
    expect([a.role, a.term]).toEqual(["leader", 3]);
    a.readIndex(2);
    h.stabilize();
    expect(h.readStates.get("a")).toEqual([{ requestId: 2, index: 2 }]);
  });

  it("§6.4 a follower refuses a read with NotLeader", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    expect(h.node("b").readIndex(1)).toEqual({ tag: "NotLeader", leader: "a" });
  });
});

it("§7 a snapshot replaces the state machine: applying resumes after its index, even below what was applied", () => {
  const store = new MemoryStore();
  store.compact(7, {
    meta: { index: 0, term: 0, configuration: { voters: ["a", "b"], learners: [] } },
    data: bytes(""),
  });
  const log = new RaftLog(store.group(7), 0);
  log.append(
    [1, 2, 3, 4, 5].map((index) => ({ index, term: 1, kind: "normal" as const, data: bytes(`e${index}`) })),
  );
  log.commitTo(5);
  log.applied = 5;
  log.discardFrom(3); // a damaged range: committed drops to 2, the state machine has applied 5
  log.restore({
    meta: { index: 4, term: 1, configuration: { voters: ["a", "b"], learners: [] } },
    data: bytes("s"),
  });
  expect([log.applied, log.committed]).toEqual([4, 4]);
});
