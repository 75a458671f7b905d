// Membership rules (thesis §4.1 single-server changes, §4.2.1 learners, §4.2.2 removing the
// leader), one test each, named after the rule. Groups run in RaftHarness, where time passes
// only through tick(); a few rules are checked on a single core stepped by hand.
import { describe, expect, it } from "vitest";
import { type Configuration, MemoryStore, type NodeId } from "../storage/index.ts";
import { defaultRaftConfig, type RaftConfig } from "./config.ts";
import { type ConfigChange, decodeConfigChange, encodeConfigChange } from "./configuration.ts";
import { RaftNode } from "./core.ts";
import { bytes, message, RaftHarness } from "./harness.sim.ts";

const electionTicks = defaultRaftConfig.electionTicks;

function harness(voters: NodeId[], learners: NodeId[] = []): RaftHarness {
  return new RaftHarness({ voters, learners, config: { quiesce: false } });
}

/** Ticks and delivers until `done`, at most `rounds` times. */
function runUntil(h: RaftHarness, done: () => boolean, rounds = 10 * electionTicks): void {
  for (let i = 0; i < rounds && !done(); i++) {
    h.tickAll();
    h.stabilize();
  }
}

function change(type: ConfigChange["type"], node: NodeId): ConfigChange {
  return { type, node };
}

/**
 * a leads voters {a, b, c}; learner d holds the log through index 2 (a's empty entry and
 * "held"), then a commits `lag` more entries ("e1".."e<lag>") that d does not get (a->d is cut).
 */
function learnerBehind(lag: number, config: Partial<RaftConfig>): RaftHarness {
  const h = new RaftHarness({
    voters: ["a", "b", "c"],
    learners: ["d"],
    config: { quiesce: false, ...config },
  });
  h.elect("a");
  h.node("a").propose(bytes("held"));
  h.stabilize();
  h.cut.add("a->d");
  for (let i = 1; i <= lag; i++) h.node("a").propose(bytes(`e${i}`));
  h.stabilize();
  expect(h.node("a").matchIndexes().get("d")).toBe(2);
  expect(h.node("a").log.committed).toBe(2 + lag);
  return h;
}

function configurations(h: RaftHarness, ids: NodeId[]): Configuration[] {
  return ids.map((id) => h.node(id).configuration);
}

describe("learners (§4.2.1)", () => {
  it("§4.2.1 a learner receives and applies committed entries but never campaigns", () => {
    const h = harness(["a", "b", "c"], ["d"]);
    h.elect("a");
    h.node("a").propose(bytes("x"));
    h.stabilize();
    expect(h.appliedData("d")).toEqual(["x"]);
    h.crash("a");
    h.tick("d", 5 * electionTicks);
    expect(h.node("d").role).toBe("follower");
    expect(h.node("d").hasReady()).toBe(false); // not even a pre-vote
  });

  it("§4.2.1 a learner's acknowledgement does not count toward commit", () => {
    const h = harness(["a", "b", "c"], ["d"]);
    h.elect("a");
    h.crash("b");
    h.crash("c");
    const proposal = h.node("a").propose(bytes("y"));
    h.stabilize();
    expect(proposal.ok && h.node("d").log.lastIndex() === proposal.index).toBe(true); // d holds it...
    expect(h.node("a").log.committed).toBe(1); // ...but a and d are not a quorum of {a, b, c}
    expect(h.appliedData("d")).toEqual([]);
  });

  it("§4.2.1 a candidate does not count a learner's vote", () => {
    const store = new MemoryStore();
    store.compact(7, {
      meta: { index: 0, term: 0, configuration: { voters: ["a", "b", "c"], learners: ["d"] } },
      data: bytes(""),
    });
    const a = new RaftNode({
      id: "a",
      group: 7,
      log: store.group(7),
      random: { nextInt: () => 0, nextFloat: () => 0 },
      config: { ...defaultRaftConfig, preVote: false },
    });
    for (let i = 0; i < electionTicks; i++) a.tick();
    expect(a.role).toBe("candidate");
    expect(a.ready().messages.map((m) => m.to)).toEqual(["b", "c"]); // no request to the learner
    a.step(message({ type: "voteResponse", from: "d", to: "a", term: 1 }));
    expect(a.role).toBe("candidate");
    a.step(message({ type: "voteResponse", from: "b", to: "a", term: 1 }));
    expect(a.role).toBe("leader");
  });

  it("§4.1 a learner promoted to voter counts toward commit and may campaign", () => {
    const h = harness(["a", "b"], ["c"]);
    h.elect("a");
    expect(h.node("a").proposeConfigChange(change("addVoter", "c")).ok).toBe(true);
    h.stabilize();
    for (const configuration of configurations(h, ["a", "b", "c"])) {
      expect(configuration).toEqual({ voters: ["a", "b", "c"], learners: [] });
    }
    h.crash("b");
    h.node("a").propose(bytes("x"));
    h.stabilize();
    expect(h.appliedData("a")).toEqual(["x"]); // a and c: a quorum of three
    h.crash("a");
    h.tick("c", 2 * electionTicks);
    expect(h.node("c").role).toBe("preCandidate");
  });
});

describe("single-server changes (§4.1, §4.2.2)", () => {
  it("§4.1 a removed voter no longer counts: the smaller group commits without it", () => {
    const before = harness(["a", "b", "c", "d"]);
    before.elect("a");
    before.crash("c");
    before.crash("d");
    before.node("a").propose(bytes("x"));
    before.stabilize();
    expect(before.appliedData("a")).toEqual([]); // 2 of 4 is no quorum

    const h = harness(["a", "b", "c", "d"]);
    h.elect("a");
    h.node("a").proposeConfigChange(change("remove", "d"));
    h.stabilize();
    expect(h.node("a").configuration.voters).toEqual(["a", "b", "c"]);
    // d is still sent to for a grace after its removal applied (so it learns it), then dropped.
    for (let i = 0; i < 2 * defaultRaftConfig.electionTicks; i++) {
      h.tick("a");
      h.stabilize();
    }
    expect([...h.node("a").matchIndexes().keys()].sort()).toEqual(["a", "b", "c"]);
    h.crash("c");
    h.crash("d");
    h.node("a").propose(bytes("x"));
    h.stabilize();
    expect(h.appliedData("a")).toEqual(["x"]); // 2 of 3
  });

  it("§4.2.1 a replica that has not caught up cannot be made a voter; as a learner it catches up, then counts", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    h.node("a").propose(bytes("before"));
    h.stabilize();
    h.addNode("d"); // a new, empty replica that knows the group's first configuration
    expect(h.node("a").proposeConfigChange(change("addVoter", "d"))).toMatchObject({
      ok: false,
      error: { tag: "NotCaughtUp", node: "d", match: 0 },
    });
    h.node("a").proposeConfigChange(change("addLearner", "d"));
    h.stabilize();
    expect(h.node("a").proposeConfigChange(change("addVoter", "d")).ok).toBe(true);
    h.stabilize();
    expect(h.appliedData("d")).toEqual(["before"]);
    expect(h.node("d").configuration.voters).toEqual(["a", "b", "c", "d"]);
    h.crash("c");
    h.cut.add("d->a");
    h.node("a").propose(bytes("after"));
    h.stabilize();
    expect(h.appliedData("a")).toEqual(["before"]); // a and b are 2 of 4: d's ack is needed
    h.heal();
    h.tickAll(defaultRaftConfig.heartbeatTicks);
    h.stabilize();
    expect(h.appliedData("a")).toEqual(["before", "after"]);
  });

  it("§4.2.1 a learner trailing the commit index by at most promoteLagMaxEntries, holding some of the log, can be promoted", () => {
    const h = learnerBehind(3, { promoteLagMaxEntries: 3 });
    expect(h.node("a").proposeConfigChange(change("addVoter", "d")).ok).toBe(true);
    h.heal();
    h.tickAll(defaultRaftConfig.heartbeatTicks);
    h.stabilize();
    for (const configuration of configurations(h, ["a", "b", "c", "d"]))
      expect(configuration).toEqual({ voters: ["a", "b", "c", "d"], learners: [] });
    expect(h.appliedData("d")).toEqual(["held", "e1", "e2", "e3"]);
  });

  it("§4.2.1 a learner trailing the commit index by more than promoteLagMaxEntries has not caught up", () => {
    const h = learnerBehind(4, { promoteLagMaxEntries: 3 });
    const a = h.node("a");
    const last = a.log.lastIndex();
    expect(a.proposeConfigChange(change("addVoter", "d"))).toEqual({
      ok: false,
      error: { tag: "NotCaughtUp", node: "d", match: 2, commit: 6 },
    });
    expect(a.log.lastIndex()).toBe(last);
  });

  it("§4.2.1 a learner holding none of the log has not caught up, however small its lag", () => {
    const h = new RaftHarness({
      voters: ["a", "b", "c"],
      learners: ["d"],
      config: { quiesce: false, promoteLagMaxEntries: 256 },
    });
    h.cut.add("a->d");
    h.elect("a");
    expect(h.node("a").log.committed).toBe(1);
    expect(h.node("a").proposeConfigChange(change("addVoter", "d"))).toEqual({
      ok: false,
      error: { tag: "NotCaughtUp", node: "d", match: 0, commit: 1 },
    });
  });

  it("§4.2.1 with promoteLagMaxEntries 0 a learner must hold the whole committed log", () => {
    const h = learnerBehind(1, { promoteLagMaxEntries: 0 });
    expect(h.node("a").proposeConfigChange(change("addVoter", "d"))).toEqual({
      ok: false,
      error: { tag: "NotCaughtUp", node: "d", match: 2, commit: 3 },
    });
    h.heal();
    h.tickAll(defaultRaftConfig.heartbeatTicks); // the heartbeat's answer brings d up to date
    h.stabilize();
    expect(h.node("a").matchIndexes().get("d")).toBe(3);
    expect(h.node("a").proposeConfigChange(change("addVoter", "d")).ok).toBe(true);
  });

  it("§4.2.2 a leader that removes itself steps down once the change is applied, and the rest elect a leader", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    h.filter = (m) => m.type !== "appendResponse";
    const removal = h.node("a").proposeConfigChange(change("remove", "a"));
    h.stabilize();
    expect(h.node("a").role).toBe("leader"); // not committed yet: still leading
    h.filter = () => true;
    h.tickAll(defaultRaftConfig.heartbeatTicks);
    h.stabilize();
    expect(h.node("a").role).toBe("follower");
    expect(
      removal.ok && h.node("b").log.committed >= removal.index && h.node("c").log.committed >= removal.index,
    ).toBe(true);
    for (const configuration of configurations(h, ["a", "b", "c"]))
      expect(configuration.voters).toEqual(["b", "c"]);
    runUntil(h, () => h.leader() !== null);
    const leader = h.leader()!;
    expect(["b", "c"]).toContain(leader.id);
    leader.propose(bytes("x"));
    h.stabilize();
    expect(h.appliedData(leader.id)).toEqual(["x"]);
    runUntil(h, () => false, 5 * electionTicks);
    expect(h.node("a").role).toBe("follower"); // a non-voter never campaigns
  });

  it("§4.1 only one change may be pending: the next waits until the previous one is applied", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    const first = h.node("a").proposeConfigChange(change("addLearner", "d"));
    expect(first.ok).toBe(true);
    expect(h.node("a").proposeConfigChange(change("addLearner", "e"))).toEqual({
      ok: false,
      error: { tag: "ConfigChangePending", index: first.ok ? first.index : -1 },
    });
    h.stabilize();
    expect(h.node("a").proposeConfigChange(change("addLearner", "e")).ok).toBe(true);
  });

  it("§4.1 a new leader accepts no change until the first entry of its term is applied (thesis errata)", () => {
    const h = harness(["a", "b", "c"]);
    h.filter = (m) => m.type !== "appendResponse";
    h.elect("a"); // a leads, but its empty entry (index 1) cannot commit yet
    const a = h.node("a");
    expect(a.role).toBe("leader");
    expect(a.proposeConfigChange(change("addLearner", "d"))).toEqual({
      ok: false,
      error: { tag: "ConfigChangePending", index: 1 },
    });
    h.filter = () => true;
    h.tickAll(defaultRaftConfig.heartbeatTicks); // the heartbeat's answer makes a resend the entry
    h.stabilize();
    expect(a.log.applied).toBe(1);
    expect(a.proposeConfigChange(change("addLearner", "d")).ok).toBe(true);
  });

  it("§4.1 an invalid change is refused with InvalidConfigChange and appends nothing", () => {
    const h = harness(["a", "b", "c"], ["l"]);
    h.elect("a");
    const a = h.node("a");
    const last = a.log.lastIndex();
    for (const invalid of [
      change("addVoter", "b"), // already a voter
      change("addLearner", "l"), // already a learner
      change("addLearner", "c"), // demotion is not a single-server change here
      change("remove", "z"), // not a member
      change("addVoter", ""), // no id
      change("addVoter", "x".repeat(256)), // id too long to encode
    ]) {
      expect(a.proposeConfigChange(invalid)).toMatchObject({
        ok: false,
        error: { tag: "InvalidConfigChange" },
      });
    }
    expect(a.log.lastIndex()).toBe(last);
    const solo = harness(["a"]);
    solo.elect("a");
    solo.stabilize();
    expect(solo.node("a").proposeConfigChange(change("remove", "a"))).toMatchObject({
      ok: false,
      error: { tag: "InvalidConfigChange", reason: "cannot remove the last voter" },
    });
  });

  it("§4.1 after a restart of every replica, the configuration entries in each log are in force again", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    h.addNode("d");
    h.node("a").proposeConfigChange(change("addLearner", "d"));
    h.stabilize();
    h.node("a").proposeConfigChange(change("addVoter", "d"));
    h.stabilize();
    h.node("a").proposeConfigChange(change("remove", "c"));
    h.stabilize();
    const ids = ["a", "b", "c", "d"];
    for (const id of ids) h.crash(id);
    for (const id of ids) h.restart(id);
    h.stabilize();
    // c was removed by the last entry, which the leader no longer sends it (§4.1): c's own log
    // may not hold it, so only the remaining members are certain to know.
    for (const configuration of configurations(h, ["a", "b", "d"]))
      expect(configuration).toEqual({ voters: ["a", "b", "d"], learners: [] });
    runUntil(h, () => h.leader() !== null);
    expect(["a", "b", "d"]).toContain(h.leader()!.id);
    h.leader()!.propose(bytes("x"));
    h.stabilize();
    for (const id of ["a", "b", "d"]) expect(h.appliedData(id)).toEqual(["x"]);
  });

  it("§4.1 a replica restarted with its applied index rebuilds the configuration without re-applying", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    h.node("a").proposeConfigChange(change("addLearner", "d"));
    h.stabilize();
    const store = h.stores.get("b")!;
    const b = new RaftNode({
      id: "b",
      group: h.group,
      log: store.group(h.group),
      random: { nextInt: () => 0, nextFloat: () => 0 },
      applied: h.node("b").log.applied,
    });
    expect(b.configuration).toEqual({ voters: ["a", "b", "c"], learners: ["d"] });
    expect(b.ready().committedEntries).toEqual([]);
  });
});

it("config changes round-trip through their entry encoding; garbage does not decode", () => {
  for (const original of [
    change("addVoter", "router-1"),
    change("addLearner", "ü"),
    change("remove", "x".repeat(255)),
  ]) {
    expect(decodeConfigChange(encodeConfigChange(original))).toEqual(original);
  }
  for (const garbage of [[], [0], [9, 1, 65], [0, 2, 65], [0, 0]])
    expect(decodeConfigChange(new Uint8Array(garbage))).toBeNull();
});

describe("configuration in force vs applied (§4.1, §7)", () => {
  it("§4.1 a change is in force once appended, undone if its entry is replaced; a snapshot records only applied changes", () => {
    const h = harness(["a", "b", "c"]);
    h.elect("a");
    const a = h.node("a");
    h.isolate("a");
    expect(a.proposeConfigChange(change("addLearner", "d")).ok).toBe(true);
    h.stabilize();
    // In force on the leader at once (it would replicate to d), but not applied: a snapshot
    // taken now must not claim d.
    expect(a.configuration).toEqual({ voters: ["a", "b", "c"], learners: ["d"] });
    expect(a.appliedConfiguration()).toEqual({ voters: ["a", "b", "c"], learners: [] });
    // b and c elect a new leader that never saw the change; a rejoins and its entry is replaced.
    for (let i = 0; i < 4 * defaultRaftConfig.electionTicks && h.leader()?.id === "a"; i++) {
      h.tick("b");
      h.tick("c");
      h.stabilize();
    }
    const b = h.leader()!.id === "a" ? null : h.leader()!;
    expect(b).not.toBeNull();
    b!.propose(bytes("after"));
    h.stabilize();
    h.heal();
    for (let i = 0; i < 3 * defaultRaftConfig.heartbeatTicks; i++) {
      h.tickAll();
      h.stabilize();
    }
    expect(a.role).toBe("follower");
    expect(a.configuration).toEqual({ voters: ["a", "b", "c"], learners: [] });
    expect(a.appliedConfiguration()).toEqual({ voters: ["a", "b", "c"], learners: [] });
  });
});

describe("leaving a group (§4.2.2)", () => {
  it("§6.4 a leader that removed itself does not count its own ack toward a read's quorum", () => {
    const h = harness(["a", "b", "c", "d"]);
    h.elect("a");
    const a = h.node("a");
    for (const id of ["c", "d"]) {
      h.cut.add(`a->${id}`);
      h.cut.add(`${id}->a`);
    }
    expect(a.proposeConfigChange(change("remove", "a")).ok).toBe(true);
    h.stabilize();
    // In force on a (voters b, c, d), not committed: a leads on, without a vote of its own.
    expect([a.role, a.configuration.voters]).toEqual(["leader", ["b", "c", "d"]]);
    expect(a.readIndex(9)).toBeNull();
    for (let i = 0; i < 2 * defaultRaftConfig.heartbeatTicks; i++) {
      h.tick("a");
      h.stabilize();
    }
    // Only b answers: one of three voters. Counting a as well would release a stale read.
    expect(h.readStates.get("a")).toEqual([]);
  });

  it("§4.2.2 a removed replica still receives its removal, then stays quiet (no campaigns, no wake-ups)", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"] });
    h.elect("a");
    expect(h.node("a").proposeConfigChange(change("remove", "c")).ok).toBe(true);
    h.stabilize();
    for (let i = 0; i < 2 * defaultRaftConfig.heartbeatTicks; i++) {
      h.tickAll();
      h.stabilize();
    }
    expect(h.node("c").configuration).toEqual({ voters: ["a", "b"], learners: [] });
    const mark = h.sent.length;
    for (let i = 0; i < 10 * defaultRaftConfig.electionTicks; i++) {
      h.tickAll();
      h.stabilize();
    }
    // It answers the leader's grace heartbeats (tickHeartbeat), and asks nothing of anyone.
    const answers = new Set(["heartbeatResponse", "appendResponse"]);
    expect(h.sent.slice(mark).filter((m) => m.from === "c" && !answers.has(m.type))).toEqual([]);
    expect([h.node("a").quiesced, h.node("b").quiesced]).toEqual([true, true]);
  });

  it("§4.2.2 a removed replica cut off while its removal commits and applies still learns it once back, within a grace", () => {
    const h = new RaftHarness({ voters: ["a", "b", "c"], config: { quiesce: false } });
    h.elect("a");
    h.isolate("c");
    expect(h.node("a").proposeConfigChange(change("remove", "c")).ok).toBe(true);
    h.stabilize();
    expect(h.node("a").appliedConfiguration()).toEqual({ voters: ["a", "b"], learners: [] });
    h.heal();
    for (let i = 0; i < 2 * defaultRaftConfig.heartbeatTicks; i++) {
      h.tickAll();
      h.stabilize();
    }
    expect(h.node("c").configuration).toEqual({ voters: ["a", "b"], learners: [] });
    // After the grace nothing goes to it any more.
    for (let i = 0; i < 3 * defaultRaftConfig.electionTicks; i++) {
      h.tick("a");
      h.stabilize();
    }
    const mark = h.sent.length;
    h.tick("a", 2 * defaultRaftConfig.heartbeatTicks);
    h.stabilize();
    expect(h.sent.slice(mark).filter((m) => m.to === "c")).toEqual([]);
    expect(h.sent.slice(mark).some((m) => m.to === "b")).toBe(true);
  });
});
