// Leader election rules (Raft §5.1, §5.2, §5.4.1; Ongaro's thesis §4.2.3, §6.2, §9.6), one
// test each, named after the rule, in the manner of etcd's raft_paper_test.go. Single cores
// are stepped by hand (their messages are inspected, answers are built by the test); whole
// groups run in RaftHarness, where time passes only through tick().
import { describe, expect, it } from "vitest";
import type { Random } from "../ports/index.ts";
import { SeededRandom } from "../sim/index.ts";
import type { NodeId } from "../storage/index.ts";
import { defaultRaftConfig } from "./config.ts";
import type { RaftNode } from "./core.ts";
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
import type { Ready } from "./types.ts";

const group = 7;
const electionTicks = defaultRaftConfig.electionTicks;

/** A Random whose every draw is `value` (capped below the bound). */
function fixedRandom(value: number): Random {
  return { nextInt: (bound) => Math.min(value, bound - 1), nextFloat: () => 0 };
}

function start(id: NodeId, voters: readonly NodeId[], options: ReplicaOptions = {}): Replica {
  return replica(id, voters, { ...options, config: { quiesce: false, ...options.config } });
}

/** Ticks a follower until it starts a (pre-)election; returns the number of ticks. */
function ticksUntilCampaign(raft: RaftNode): number {
  for (let ticks = 1; ticks <= 4 * electionTicks; ticks++) {
    raft.tick();
    if (raft.role !== "follower") return ticks;
  }
  throw new Error("never campaigned");
}

function voteAnswers(ready: Ready): [string, NodeId, number, boolean][] {
  return ready.messages.map((m) => [m.type, m.to, m.term, m.reject]);
}

describe("election timeouts (§5.2)", () => {
  it("§5.2 a follower campaigns after a randomized timeout in [electionTicks, 2 * electionTicks)", () => {
    const seen = new Set<number>();
    for (let seed = 1; seed <= 60; seed++) {
      const ticks = ticksUntilCampaign(start("a", ["a", "b", "c"], { random: new SeededRandom(seed) }).raft);
      expect(ticks).toBeGreaterThanOrEqual(electionTicks);
      expect(ticks).toBeLessThan(2 * electionTicks);
      seen.add(ticks);
    }
    expect(seen.size).toBe(electionTicks); // every value of the range occurs: it is randomized
  });

  it("§5.2 the timeout is drawn from the injected Random: the same seed gives the same timeouts", () => {
    expect(ticksUntilCampaign(start("a", ["a", "b"], { random: fixedRandom(0) }).raft)).toBe(electionTicks);
    expect(ticksUntilCampaign(start("a", ["a", "b"], { random: fixedRandom(1e9) }).raft)).toBe(
      2 * electionTicks - 1,
    );
    const timeouts = (seed: number) =>
      [1, 2, 3, 4, 5, 6, 7, 8].map((n) =>
        ticksUntilCampaign(start(`n${n}`, [`n${n}`, "x"], { random: new SeededRandom(seed + n) }).raft),
      );
    expect(timeouts(100)).toEqual(timeouts(100));
    expect(timeouts(100)).not.toEqual(timeouts(200));
  });
});

describe("voting (§5.2, §5.4.1, §9.6)", () => {
  it("§5.2 a candidate votes for itself and persists term and vote in the Ready that sends its requests", () => {
    const a = start("a", ["a", "b", "c"]);
    ticksUntilCampaign(a.raft);
    const preVote = flush(a);
    expect(a.raft.role).toBe("preCandidate");
    expect(preVote.hardState).toBeNull(); // §9.6: the pre-election changes no durable state
    expect(voteAnswers(preVote)).toEqual([
      ["preVote", "b", 1, false],
      ["preVote", "c", 1, false],
    ]);
    a.raft.step(message({ type: "preVoteResponse", from: "b", to: "a", term: 1 }));
    const vote = flush(a);
    expect(a.raft.role).toBe("candidate");
    expect(vote.hardState).toEqual({ term: 1, vote: "a", commit: 0, damagedUpTo: 0 });
    expect(voteAnswers(vote)).toEqual([
      ["vote", "b", 1, false],
      ["vote", "c", 1, false],
    ]);
    expect(a.store.group(group).hardState()).toMatchObject({ term: 1, vote: "a" });
  });

  it("§5.2 a follower grants at most one vote per term, persisted in the Ready carrying the grant", () => {
    const b = start("b", ["a", "b", "c"]);
    b.raft.step(message({ type: "vote", from: "a", to: "b", term: 1 }));
    const granted = flush(b);
    expect(granted.hardState).toMatchObject({ term: 1, vote: "a" });
    expect(voteAnswers(granted)).toEqual([["voteResponse", "a", 1, false]]);
    b.raft.step(message({ type: "vote", from: "c", to: "b", term: 1 }));
    expect(voteAnswers(flush(b))).toEqual([["voteResponse", "c", 1, true]]);
    b.raft.step(message({ type: "vote", from: "a", to: "b", term: 1 })); // a retransmission
    expect(voteAnswers(flush(b))).toEqual([["voteResponse", "a", 1, false]]);
    b.raft.step(message({ type: "vote", from: "c", to: "b", term: 2 })); // a new term, a new vote
    expect(voteAnswers(flush(b))).toEqual([["voteResponse", "c", 2, false]]);
    expect(b.store.group(group).hardState()).toMatchObject({ term: 2, vote: "c" });
  });

  it("§5.4.1 a voter grants only to a candidate whose log is at least as up-to-date as its own", () => {
    // The voter's log ends at index 3, term 2.
    const cases: [index: number, logTerm: number, granted: boolean][] = [
      [2, 2, false], // same last term, shorter
      [3, 2, true], // identical
      [4, 2, true], // same last term, longer
      [5, 1, false], // longer but an older last term
      [1, 3, true], // shorter but a newer last term
    ];
    for (const [index, logTerm, granted] of cases) {
      const voter = start("b", ["a", "b", "c"], {
        entries: [entry(1, 1), entry(2, 2), entry(3, 2)],
        hard: { term: 2, vote: null, commit: 0, damagedUpTo: 0 },
      });
      for (const type of ["preVote", "vote"] as const) {
        voter.raft.step(message({ type, from: "a", to: "b", term: 3, index, logTerm }));
        const [answer] = flush(voter).messages;
        expect({ type, index, logTerm, reject: answer?.reject }).toEqual({
          type,
          index,
          logTerm,
          reject: !granted,
        });
      }
      expect(voter.raft.vote).toBe(granted ? "a" : null);
    }
  });

  it("§9.6 granting a pre-vote changes neither the voter's term nor its vote", () => {
    const b = start("b", ["a", "b", "c"], { hard: { term: 4, vote: "c", commit: 0, damagedUpTo: 0 } });
    b.raft.step(message({ type: "preVote", from: "a", to: "b", term: 5 }));
    const ready = flush(b);
    expect(voteAnswers(ready)).toEqual([["preVoteResponse", "a", 5, false]]);
    expect(ready.hardState).toBeNull();
    expect([b.raft.term, b.raft.vote]).toEqual([4, "c"]);
  });

  it("§9.6 two pre-candidates with equal logs: the larger id wins the tie, so the real vote is not split", () => {
    const a = start("a", ["a", "b", "c"], { random: fixedRandom(0) });
    const c = start("c", ["a", "b", "c"], { random: fixedRandom(0) });
    ticksUntilCampaign(a.raft);
    ticksUntilCampaign(c.raft);
    expect([a.raft.role, c.raft.role]).toEqual(["preCandidate", "preCandidate"]);
    a.raft.step(message({ type: "preVote", from: "c", to: "a", term: 1 }));
    c.raft.step(message({ type: "preVote", from: "a", to: "c", term: 1 }));
    expect(voteAnswers(flush(a)).filter(([type]) => type === "preVoteResponse")).toEqual([
      ["preVoteResponse", "c", 1, false],
    ]);
    expect(voteAnswers(flush(c)).filter(([type]) => type === "preVoteResponse")).toEqual([
      ["preVoteResponse", "a", 0, true],
    ]);
    // A follower (not pre-campaigning) grants either.
    const b = start("b", ["a", "b", "c"]);
    b.raft.step(message({ type: "preVote", from: "a", to: "b", term: 1 }));
    expect(voteAnswers(flush(b))).toEqual([["preVoteResponse", "a", 1, false]]);
  });

  it("a follower told its leader is unreachable stops granting the lease at once, but campaigns a heartbeat later", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"] });
    h.elect("a");
    const b = h.node("b");
    b.leaderUnreachable();
    // Out of lease: b grants c's pre-vote right away.
    b.step(
      message({
        type: "preVote",
        from: "c",
        to: "b",
        term: b.term + 1,
        index: b.log.lastIndex(),
        logTerm: b.log.lastTerm(),
      }),
    );
    expect(voteAnswers(flushHarness(b))).toEqual([["preVoteResponse", "c", b.term + 1, false]]);
    // Its own campaign waits at least heartbeatTicks, at most heartbeatTicks + electionTicks - 1.
    let ticks = 0;
    while (b.role === "follower") {
      b.tick();
      ticks += 1;
    }
    expect(ticks).toBeGreaterThanOrEqual(defaultRaftConfig.heartbeatTicks);
    expect(ticks).toBeLessThan(defaultRaftConfig.heartbeatTicks + electionTicks);
  });

  it("a broken link's verdict (every replica learns it at once) starts the campaign within a heartbeat interval", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const h = new RaftHarness({ voters: ["a", "b", "c"], seed });
      h.elect("a");
      const b = h.node("b");
      b.leaderUnreachable(true);
      let ticks = 0;
      while (b.role === "follower") {
        b.tick();
        ticks += 1;
      }
      expect(ticks).toBeGreaterThanOrEqual(1);
      expect(ticks).toBeLessThanOrEqual(defaultRaftConfig.heartbeatTicks);
    }
  });

  it("§5.2 a candidate wins with a majority of votes and returns to follower on a majority of rejections", () => {
    const voters = ["a", "b", "c", "d", "e"];
    const config = { preVote: false };
    const winner = start("a", voters, { config });
    ticksUntilCampaign(winner.raft);
    flush(winner);
    winner.raft.step(message({ type: "voteResponse", from: "b", to: "a", term: 1 }));
    winner.raft.step(message({ type: "voteResponse", from: "b", to: "a", term: 1 })); // counted once
    expect(winner.raft.role).toBe("candidate");
    winner.raft.step(message({ type: "voteResponse", from: "c", to: "a", term: 1 }));
    expect(winner.raft.role).toBe("leader");

    const loser = start("a", voters, { config });
    ticksUntilCampaign(loser.raft);
    flush(loser);
    for (const from of ["b", "c"])
      loser.raft.step(message({ type: "voteResponse", from, to: "a", term: 1, reject: true }));
    expect(loser.raft.role).toBe("candidate"); // 2 of 5 rejected: still winnable
    loser.raft.step(message({ type: "voteResponse", from: "d", to: "a", term: 1, reject: true }));
    expect([loser.raft.role, loser.raft.term]).toEqual(["follower", 1]);
  });

  it("§5.2 a candidate that hears an append from a leader of its term becomes its follower", () => {
    const a = start("a", ["a", "b", "c"], { config: { preVote: false } });
    ticksUntilCampaign(a.raft);
    flush(a);
    a.raft.step(message({ type: "append", from: "b", to: "a", term: 1 }));
    expect([a.raft.role, a.raft.leader, a.raft.term]).toEqual(["follower", "b", 1]);
  });

  it("§5.2 a group with a single voter elects itself without sending a message", () => {
    const solo = start("a", ["a"]);
    ticksUntilCampaign(solo.raft);
    expect(solo.raft.role).toBe("leader");
    const ready = flush(solo);
    expect(ready.messages).toEqual([]);
    expect(ready.hardState).toMatchObject({ term: 1, vote: "a" });
    expect(solo.raft.log.committed).toBe(1); // its empty entry commits once it persisted it
  });

  it("§5.2 split votes resolve: after a tie the randomized timeouts elect exactly one leader", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c", "d"], config: { preVote: false, quiesce: false } });
    while (h.node("a").role === "follower") h.tick("a");
    while (h.node("c").role === "follower") h.tick("c");
    for (const [x, y] of [
      ["a", "d"],
      ["c", "b"],
    ] as const) {
      h.cut.add(`${x}->${y}`);
      h.cut.add(`${y}->${x}`);
    }
    h.stabilize(); // b votes for a, d for c: two votes each, three needed
    expect([h.node("a").role, h.node("c").role, h.node("b").vote, h.node("d").vote]).toEqual([
      "candidate",
      "candidate",
      "a",
      "c",
    ]);
    h.heal();
    for (let i = 0; i < 10 * electionTicks && h.leader() === null; i++) {
      h.tickAll();
      h.stabilize();
    }
    const leaders = [...h.nodes.values()].filter((node) => node.role === "leader");
    expect(leaders).toHaveLength(1);
    expect(leaders[0]!.term).toBeGreaterThanOrEqual(2);
    for (const node of h.nodes.values()) expect(node.leader).toBe(leaders[0]!.id);
  });
});

describe("terms, leases and pre-vote (§5.1, §4.2.3, §6.2, §9.6)", () => {
  it("§5.1 a leader that sees a higher term steps down to follower of that term", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    h.elect("a");
    h.node("a").step(message({ type: "heartbeatResponse", from: "b", to: "a", term: 5 }));
    expect([h.node("a").role, h.node("a").term, h.node("a").leader]).toEqual(["follower", 5, null]);
  });

  it("§5.1 a replica answers a stale leader's append with its newer term, and the stale leader steps down", () => {
    const b = start("b", ["a", "b", "c"], { hard: { term: 3, vote: null, commit: 0, damagedUpTo: 0 } });
    b.raft.step(message({ type: "append", from: "a", to: "b", term: 2 }));
    expect(voteAnswers(flush(b))).toEqual([["appendResponse", "a", 3, false]]);
    expect([b.raft.term, b.raft.leader]).toEqual([3, null]);
  });

  it("§9.6 pre-vote: an isolated replica that rejoins neither raises the term nor disrupts the leader", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    h.elect("a");
    h.isolate("c");
    for (let i = 0; i < 5 * electionTicks; i++) {
      h.tickAll();
      h.stabilize();
    }
    expect([h.node("c").role, h.node("c").term]).toEqual(["preCandidate", 1]);
    h.heal();
    for (let i = 0; i < 3 * electionTicks; i++) {
      h.tickAll();
      h.stabilize();
    }
    expect([h.node("a").role, h.node("a").term]).toEqual(["leader", 1]);
    expect([h.node("c").role, h.node("c").leader, h.node("c").term]).toEqual(["follower", "a", 1]);
  });

  it("§5.1 without pre-vote, a rejoining replica's higher term deposes the leader (what §9.6 prevents)", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false, preVote: false } });
    h.elect("a");
    h.isolate("c");
    for (let i = 0; i < 5 * electionTicks; i++) {
      h.tickAll();
      h.stabilize();
    }
    const isolatedTerm = h.node("c").term;
    expect(isolatedTerm).toBeGreaterThan(2);
    h.heal();
    h.tickAll(defaultRaftConfig.heartbeatTicks); // a's heartbeat meets c's higher term
    h.stabilize();
    expect(h.node("a").role).not.toBe("leader");
    expect(h.node("a").term).toBeGreaterThanOrEqual(isolatedTerm);
  });

  it("§6.2 check-quorum: a leader that hears from no quorum for an election timeout steps down", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    h.elect("a");
    h.isolate("a");
    h.tick("a", electionTicks); // the first check still counts the replies from before the cut
    expect(h.node("a").role).toBe("leader");
    h.tick("a", electionTicks);
    expect([h.node("a").role, h.node("a").term, h.node("a").leader]).toEqual(["follower", 1, null]);
  });

  it("§6.2 check-quorum: a leader still in contact with a quorum keeps its role", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    h.elect("a");
    h.isolate("c");
    for (let i = 0; i < 10 * electionTicks; i++) {
      h.tick("a");
      h.tick("b");
      h.stabilize();
    }
    expect([h.node("a").role, h.node("a").term]).toEqual(["leader", 1]);
  });

  it("§4.2.3 a follower that heard from its leader within electionTicks ignores vote requests", () => {
    // Timeout 2 * electionTicks - 1, so the follower does not campaign while the test ticks it.
    const b = start("b", ["a", "b", "c"], { random: fixedRandom(1e9) });
    b.raft.step(message({ type: "heartbeat", from: "a", to: "b", term: 1 }));
    flush(b);
    for (const type of ["preVote", "vote"] as const) {
      b.raft.step(message({ type, from: "c", to: "b", term: 2 }));
      expect(flush(b).messages).toEqual([]);
    }
    expect([b.raft.term, b.raft.leader]).toEqual([1, "a"]);
    b.raft.tick();
    b.raft.tick(); // still inside the lease
    b.raft.step(message({ type: "vote", from: "c", to: "b", term: 2 }));
    expect(flush(b).messages).toEqual([]);
    for (let i = 2; i < electionTicks; i++) b.raft.tick(); // the lease ends
    b.raft.step(message({ type: "vote", from: "c", to: "b", term: 2 }));
    expect(voteAnswers(flush(b))).toEqual([["voteResponse", "c", 2, false]]);
  });

  it("§4.2.3 a vote request for a leader transfer is granted even inside the lease (§3.10)", () => {
    const b = start("b", ["a", "b", "c"]);
    b.raft.step(message({ type: "heartbeat", from: "a", to: "b", term: 1 }));
    flush(b);
    b.raft.step(message({ type: "vote", from: "c", to: "b", term: 2, context: 1 }));
    expect(voteAnswers(flush(b))).toEqual([["voteResponse", "c", 2, false]]);
    expect([b.raft.term, b.raft.vote]).toEqual([2, "c"]);
  });

  it("§5.2 a leader sends a heartbeat to every follower each heartbeatTicks", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    h.elect("a");
    const a = h.node("a");
    flushHarness(a);
    const heartbeats: string[] = [];
    for (let tick = 1; tick <= 3 * defaultRaftConfig.heartbeatTicks; tick++) {
      a.tick();
      for (const m of flushHarness(a).messages) heartbeats.push(`${tick}:${m.type}:${m.to}`);
    }
    const every = defaultRaftConfig.heartbeatTicks;
    expect(heartbeats).toEqual(
      [every, 2 * every, 3 * every].flatMap((tick) => [`${tick}:heartbeat:b`, `${tick}:heartbeat:c`]),
    );
    expect(a.propose(bytes("still leader")).ok).toBe(true);
  });
});

/** Takes one Ready from a harness node without delivering its messages. */
function flushHarness(node: RaftNode): Ready {
  const ready = node.ready();
  node.advance(ready);
  return ready;
}
