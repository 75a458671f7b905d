// Every stall a lost message or a quick restart can cause has a way out (found by review and
// fixed): a full in-flight window (etcd's FreeFirstOne), a lost read-index round (heartbeats
// carry the newest round), a learner or damaged replica restarted under a quiesced group (it
// nudges the voters), and a Ready that changes the term (its messages wait for the disk).
import { describe, expect, it } from "vitest";
import { defaultRaftConfig } from "./config.ts";
import { bytes, RaftHarness } from "./harness.sim.ts";

const heartbeatTicks = defaultRaftConfig.heartbeatTicks;
const electionTicks = defaultRaftConfig.electionTicks;

function rounds(h: RaftHarness, count: number): void {
  for (let i = 0; i < count; i++) {
    h.tickAll();
    h.stabilize();
  }
}

describe("lost messages never stall a group", () => {
  it("§10.2 a follower whose whole in-flight window was lost gets appends again after a heartbeat", () => {
    const h = new RaftHarness({
      voters: ["a", "b", "c"],
      config: { quiesce: false, maxInflightMessages: 2 },
    });
    h.elect("a");
    const a = h.node("a");
    a.propose(bytes("m0"));
    h.stabilize(); // c is caught up: the leader pipelines to it (replicate state)
    // Now appends to c vanish; heartbeats still arrive (a one-way loss of data only).
    h.filter = (message) => !(message.to === "c" && message.type === "append");
    for (let i = 1; i < 6; i++) {
      a.propose(bytes(`m${i}`));
      h.stabilize();
    }
    expect(h.appliedData("c")).toEqual(["m0"]);
    h.filter = () => true;
    a.propose(bytes("last"));
    h.stabilize();
    rounds(h, 4 * heartbeatTicks);
    expect(h.appliedData("c")).toEqual(["m0", "m1", "m2", "m3", "m4", "m5", "last"]);
  });

  it("§6.4 a read-index round whose heartbeats were all lost is answered by the next heartbeats", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    h.elect("a");
    const a = h.node("a");
    h.filter = (message) => !(message.type === "heartbeat" && message.context !== 0);
    expect(a.readIndex(42)).toBeNull();
    h.stabilize();
    expect(h.readStates.get("a")).toEqual([]);
    h.filter = () => true;
    rounds(h, heartbeatTicks);
    expect(h.readStates.get("a")).toEqual([{ requestId: 42, index: a.log.committed }]);
  });

  it("a learner restarted under a quiesced group finds its leader (it nudges the voters, which wake)", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], learners: ["d"] });
    h.elect("a");
    h.node("a").propose(bytes("x"));
    h.stabilize();
    rounds(h, heartbeatTicks);
    expect(h.node("a").quiesced).toBe(true);
    h.crash("d");
    const d = h.restart("d");
    expect(d.leader).toBeNull();
    rounds(h, 3 * electionTicks);
    expect(d.leader).toBe("a");
    expect(h.appliedData("d")).toEqual(["x"]);
  });

  it("a damaged leader restarted under a quiesced group is replaced and repaired", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"] });
    h.elect("a");
    h.node("a").propose(bytes("x"));
    h.stabilize();
    rounds(h, heartbeatTicks);
    expect(h.node("b").quiesced).toBe(true);
    h.crash("a");
    const store = h.stores.get("a")!;
    store.truncate(h.group, 2);
    store.setHardState(h.group, { ...store.group(h.group).hardState(), damagedUpTo: 2 });
    const a = h.restart("a");
    rounds(h, 6 * electionTicks);
    const leader = h.leader();
    expect(leader?.id === "b" || leader?.id === "c").toBe(true);
    expect(a.damagedUpTo).toBe(0);
    expect(a.log.lastIndex()).toBeGreaterThanOrEqual(2);
  });

  it("a Ready that changes the term or the vote says its messages must wait for the disk", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    const a = h.node("a");
    for (let i = 0; i < 2 * electionTicks && a.role === "follower"; i++) a.tick();
    const preVote = a.ready();
    expect(preVote.messages.every((m) => m.type === "preVote")).toBe(true);
    expect(preVote.persistBeforeSending).toBe(false);
    a.advance(preVote);
    for (const id of ["b", "c"]) {
      a.step({ ...preVote.messages[0]!, type: "preVoteResponse", from: id, to: "a", reject: false });
    }
    const vote = a.ready();
    expect(vote.messages.every((m) => m.type === "vote")).toBe(true);
    expect(vote.persistBeforeSending).toBe(true);
  });
});
