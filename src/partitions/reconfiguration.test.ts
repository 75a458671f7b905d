import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyConfigChange, quorumOf } from "../raft/index.ts";
import {
  planReconfiguration,
  type ReconfigurationInput,
  type ReconfigurationStep,
  type ReplicaProgress,
  reconfigurationChange,
} from "./reconfiguration.ts";

/**
 * A group as its leader sees it. Every replica holds the committed log unless `match` says
 * otherwise; `dead` routers are dead for membership and unreachable for Raft; `cut` routers
 * are alive for membership but unreachable for Raft.
 */
class Group {
  voters: string[];
  learners: string[];
  leader: string;
  commit = 10;
  readonly match = new Map<string, number>();
  readonly dead = new Set<string>();
  readonly cut = new Set<string>();

  constructor(voters: string[], learners: string[] = [], leader = voters[0]!) {
    this.voters = [...voters].sort();
    this.learners = [...learners].sort();
    this.leader = leader;
    for (const id of [...voters, ...learners]) this.match.set(id, this.commit);
  }

  input(target: string[], extra: Partial<ReconfigurationInput> = {}): ReconfigurationInput {
    const progress = new Map<string, ReplicaProgress>();
    for (const id of [...this.voters, ...this.learners]) {
      if (id === this.leader) continue;
      progress.set(id, {
        match: this.match.get(id) ?? 0,
        active: !this.dead.has(id) && !this.cut.has(id),
      });
    }
    return {
      self: this.leader,
      configuration: { voters: this.voters, learners: this.learners },
      changePending: false,
      commitIndex: this.commit,
      progress,
      target,
      isAlive: (id) => !this.dead.has(id),
      catchUpLagMax: 0,
      ...extra,
    };
  }

  plan(target: string[], extra: Partial<ReconfigurationInput> = {}): ReconfigurationStep {
    return planReconfiguration(this.input(target, extra));
  }

  /** Applies a step the way the leader's Raft would. */
  apply(step: ReconfigurationStep): void {
    if (step.kind === "transferLeadership") {
      this.leader = step.to;
      return;
    }
    const change = reconfigurationChange(step);
    if (change === null) return;
    if (change.type === "addLearner") this.match.set(change.node, 0);
    const next = applyConfigChange({ voters: this.voters, learners: this.learners }, change);
    this.voters = [...next.voters];
    this.learners = [...next.learners];
  }

  catchUp(id: string): void {
    this.match.set(id, this.commit);
  }

  /** Plans with `target`, applies each step, catching every live replica up after each. */
  run(target: string[], extra: Partial<ReconfigurationInput> = {}, stepsMax = 20): ReconfigurationStep[] {
    const steps: ReconfigurationStep[] = [];
    for (let count = 0; count < stepsMax; count++) {
      const step = this.plan(target, extra);
      if (step.kind === "none") return steps;
      steps.push(step);
      this.apply(step);
      for (const id of [...this.voters, ...this.learners]) if (!this.dead.has(id)) this.catchUp(id);
    }
    throw new Error(`no convergence after ${stepsMax} steps: ${JSON.stringify(steps)}`);
  }
}

const addLearner = (router: string) => ({ kind: "addLearner", router });
const promote = (router: string) => ({ kind: "promote", router });
const remove = (router: string) => ({ kind: "remove", router });
const transfer = (to: string) => ({ kind: "transferLeadership", to });
const none = { kind: "none" };

describe("planReconfiguration rules", () => {
  it("plans nothing while a configuration change is pending", () => {
    const group = new Group(["a", "b", "c"]);
    expect(group.plan(["a", "b", "d"], { changePending: true })).toEqual(none);
    expect(group.plan(["a", "b", "d"])).toEqual(addLearner("d"));
  });

  it("plans nothing once the target is reached", () => {
    expect(new Group(["a", "b", "c"]).plan(["a", "b", "c"])).toEqual(none);
    expect(new Group(["a", "b", "c"], [], "b").plan(["a", "b", "c"])).toEqual(none);
  });

  it("join sequence {a,b,c} -> {a,b,d}: addLearner d, (catch up), promote d, remove c", () => {
    const group = new Group(["a", "b", "c"]);
    const target = ["a", "b", "d"];
    expect(group.plan(target)).toEqual(addLearner("d"));
    group.apply(addLearner("d") as ReconfigurationStep);
    // d streams the log: still catching up, nothing to do (c stays while d is not a voter).
    group.match.set("d", 4);
    expect(group.plan(target)).toEqual(none);
    group.catchUp("d");
    expect(group.plan(target)).toEqual(promote("d"));
    group.apply(promote("d") as ReconfigurationStep);
    expect(group.plan(target)).toEqual(remove("c"));
    group.apply(remove("c") as ReconfigurationStep);
    expect(group.plan(target)).toEqual(none);
    expect(group.voters).toEqual(["a", "b", "d"]);
  });

  it("promotes a learner only once it holds the whole committed log, whatever catchUpLagMax", () => {
    const group = new Group(["a", "b", "c"], ["d"]);
    group.match.set("d", group.commit - 1);
    expect(group.plan(["a", "b", "c", "d"], { catchUpLagMax: 5 })).toEqual(none);
    group.catchUp("d");
    expect(group.plan(["a", "b", "c", "d"], { catchUpLagMax: 5 })).toEqual(promote("d"));
  });

  it("promotes a learner trailing the commit index by at most promoteLagMax if it holds some of the log; 0 keeps the strict rule", () => {
    const group = new Group(["a", "b", "c"], ["d"]);
    const target = ["a", "b", "c", "d"];
    group.match.set("d", group.commit - 3);
    expect(group.plan(target, { promoteLagMax: 3 })).toEqual(promote("d"));
    expect(group.plan(target, { promoteLagMax: 2 })).toEqual(none);
    group.match.set("d", 0); // holds nothing: never promoted, however large the allowance
    expect(group.plan(target, { promoteLagMax: 100 })).toEqual(none);
    group.match.set("d", group.commit - 1);
    expect(group.plan(target, { promoteLagMax: 0 })).toEqual(none);
    expect(group.plan(target)).toEqual(none); // the default is 0
    group.catchUp("d");
    expect(group.plan(target, { promoteLagMax: 0 })).toEqual(promote("d"));
  });

  it("does not promote a caught-up learner the leader cannot reach", () => {
    const group = new Group(["a", "b", "c"], ["d"]);
    group.cut.add("d");
    expect(group.plan(["a", "b", "d"])).toEqual(none);
    group.cut.delete("d");
    expect(group.plan(["a", "b", "d"])).toEqual(promote("d"));
  });

  it("removes learners not in the target", () => {
    const group = new Group(["a", "b", "c"], ["e", "x"]);
    expect(group.run(["a", "b", "c"])).toEqual([remove("e"), remove("x")]);
  });

  it("adds one learner at a time: no second catch-up while a target learner catches up", () => {
    const group = new Group(["a"]);
    const target = ["a", "b", "c"];
    expect(group.plan(target)).toEqual(addLearner("b"));
    group.apply(addLearner("b") as ReconfigurationStep);
    expect(group.plan(target)).toEqual(none);
    group.catchUp("b");
    expect(group.plan(target)).toEqual(promote("b"));
    group.apply(promote("b") as ReconfigurationStep);
    expect(group.plan(target)).toEqual(addLearner("c"));
  });

  it("a dead target learner does not block the next catch-up", () => {
    const group = new Group(["a"], ["b"]);
    group.match.set("b", 0);
    group.dead.add("b");
    expect(group.plan(["a", "b", "c"])).toEqual(addLearner("c"));
  });

  it("does not add a dead target router", () => {
    const group = new Group(["a", "b", "c"]);
    group.dead.add("d");
    expect(group.plan(["a", "b", "d"])).toEqual(none);
  });

  it("keeps a live voter outside the target until every target router is a voter", () => {
    const group = new Group(["a", "b", "c"], ["d"]);
    group.match.set("d", 0);
    expect(group.plan(["a", "b", "d"])).toEqual(none);
  });

  it("leader leaving: {a,b,c} led by a, target {b,c,d}: addLearner d, promote d, transfer to b, b removes a", () => {
    const group = new Group(["a", "b", "c"], [], "a");
    expect(group.run(["b", "c", "d"])).toEqual([addLearner("d"), promote("d"), transfer("b"), remove("a")]);
    expect(group.voters).toEqual(["b", "c", "d"]);
    expect(group.leader).toBe("b");
  });

  it("never removes the leader: it transfers to the first up-to-date target voter, target[0] preferred", () => {
    const group = new Group(["a", "b", "c", "d"], [], "a");
    expect(group.plan(["b", "c", "d"])).toEqual(transfer("b"));
    group.match.set("b", 3);
    expect(group.plan(["b", "c", "d"])).toEqual(transfer("c"));
    group.dead.add("c");
    expect(group.plan(["b", "c", "d"])).toEqual(transfer("d"));
    group.cut.add("d");
    expect(group.plan(["b", "c", "d"])).toEqual(none);
  });

  it("removes the other voters outside the target before the leader hands over", () => {
    const group = new Group(["a", "b", "c", "d", "e"], [], "a");
    expect(group.run(["b", "c", "d"])).toEqual([remove("e"), transfer("b"), remove("a")]);
  });

  it("crash: c dead, target {a,b,d}: addLearner d, (catch up), promote d, remove c", () => {
    const group = new Group(["a", "b", "c"]);
    group.dead.add("c");
    expect(group.run(["a", "b", "d"])).toEqual([addLearner("d"), promote("d"), remove("c")]);
    expect(group.voters).toEqual(["a", "b", "d"]);
  });

  it("a dead voter outside the target leaves while its replacement still catches up", () => {
    const group = new Group(["a", "b", "c"], ["d"]);
    group.match.set("d", 0);
    group.dead.add("c");
    expect(group.plan(["a", "b", "d"])).toEqual(remove("c"));
  });

  it("a dead voter leaves only if the voters left hold a quorum of live, up-to-date voters", () => {
    // {a,b,c,e}, e dead, target {a,b,d} with d dead: removing e leaves {a,b,c}; needs 2 up to date.
    const group = new Group(["a", "b", "c", "e"]);
    group.dead.add("e").add("d");
    group.match.set("b", 1);
    group.match.set("c", 1);
    expect(group.plan(["a", "b", "d"])).toEqual(none);
    group.catchUp("c");
    expect(group.plan(["a", "b", "d"])).toEqual(remove("e"));
  });

  it("refuses a removal that would leave fewer up-to-date voters than a quorum", () => {
    const group = new Group(["a", "b", "c", "d"]);
    group.match.set("b", 2);
    group.match.set("c", 2);
    expect(group.plan(["a", "b", "c"])).toEqual(none);
    // Within catchUpLagMax a voter counts as up to date (followers trail by entries in flight).
    expect(group.plan(["a", "b", "c"], { catchUpLagMax: 8 })).toEqual(remove("d"));
    group.catchUp("b");
    expect(group.plan(["a", "b", "c"])).toEqual(remove("d"));
  });

  it("removes dead voters outside the target before live ones", () => {
    const group = new Group(["a", "b", "c", "x", "y"]);
    group.dead.add("y");
    expect(group.run(["a", "b", "c"])).toEqual([remove("y"), remove("x")]);
  });

  it("never removes a target voter, even dead", () => {
    const group = new Group(["a", "b", "c"]);
    group.dead.add("c");
    expect(group.plan(["a", "b", "c"])).toEqual(none);
  });

  it("a replica whose removal has applied no longer plans", () => {
    const group = new Group(["b", "c"], [], "a");
    expect(group.plan(["b", "c"])).toEqual(none);
  });

  it("balances leadership to target[0] only when asked, once the voters are the target", () => {
    const group = new Group(["a", "b", "c"], [], "b");
    expect(group.plan(["a", "b", "c"])).toEqual(none);
    expect(group.plan(["a", "b", "c"], { balanceLeadership: true })).toEqual(transfer("a"));
    group.match.set("a", 0);
    expect(group.plan(["a", "b", "c"], { balanceLeadership: true })).toEqual(none);
    // Moves come first: d must join before leadership moves.
    const moving = new Group(["a", "b", "c"], [], "b");
    expect(moving.run(["d", "b", "c"], { balanceLeadership: true })).toEqual([
      addLearner("d"),
      promote("d"),
      remove("a"),
      transfer("d"),
    ]);
  });

  it("controller: wanted learners are added and kept; a voter leaving the target is demoted", () => {
    const group = new Group(["a", "b", "c"], ["d"]);
    group.dead.add("f");
    expect(group.run(["a", "b", "c"], { learners: ["d", "e", "f"] })).toEqual([addLearner("e")]);
    // c drops out of the voters but stays a member: removed, then added back as a learner.
    expect(group.run(["a", "b", "d"], { learners: ["c", "e"] })).toEqual([
      promote("d"),
      remove("c"),
      addLearner("c"),
    ]);
    expect(group.voters).toEqual(["a", "b", "d"]);
    expect(group.learners).toEqual(["c", "e"]);
  });

  it("maps each step to its Raft change", () => {
    expect(reconfigurationChange(addLearner("d") as ReconfigurationStep)).toEqual({
      type: "addLearner",
      node: "d",
    });
    expect(reconfigurationChange(promote("d") as ReconfigurationStep)).toEqual({
      type: "addVoter",
      node: "d",
    });
    expect(reconfigurationChange(remove("d") as ReconfigurationStep)).toEqual({ type: "remove", node: "d" });
    expect(reconfigurationChange(transfer("d") as ReconfigurationStep)).toBeNull();
    expect(reconfigurationChange({ kind: "none" })).toBeNull();
  });

  it("asserts on a target that is empty or names a replica twice", () => {
    const group = new Group(["a", "b", "c"]);
    expect(() => group.plan([])).toThrow(/no replica/);
    expect(() => group.plan(["a", "a"])).toThrow(/twice/);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: a group driven through random target changes, deaths, cuts, writes and catch-ups,
// one planned step at a time (like Raft single-server changes).

const universe = ["a", "b", "c", "d", "e", "f"];
const routerArb = fc.constantFrom(...universe);
const targetArb = fc.shuffledSubarray(universe, { minLength: 1, maxLength: 4 });

type Action =
  | { readonly type: "target"; readonly target: string[] }
  /** A target near the current voters, as the assignment moves replicas: drop, swap or add one. */
  | {
      readonly type: "move";
      readonly move: "drop" | "swap" | "add";
      readonly at: number;
      readonly router: string;
    }
  | { readonly type: "die" | "revive" | "cut" | "heal" | "catchUp"; readonly router: string }
  | { readonly type: "write"; readonly entries: number; readonly ackers: string[] }
  | { readonly type: "plan" };

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 1, arbitrary: targetArb.map((target) => ({ type: "target", target }) as const) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant("move" as const),
      move: fc.constantFrom("drop", "swap", "add" as const),
      at: fc.nat(),
      router: routerArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constantFrom("die", "revive", "cut", "heal", "catchUp" as const),
      router: routerArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant("write" as const),
      entries: fc.integer({ min: 1, max: 3 }),
      ackers: fc.shuffledSubarray(universe),
    }),
  },
  { weight: 6, arbitrary: fc.constant({ type: "plan" } as const) },
);

class World {
  voters: string[];
  learners: string[] = [];
  leader: string | null;
  commit = 0;
  readonly match = new Map<string, number>(universe.map((id) => [id, 0]));
  readonly dead = new Set<string>();
  readonly cut = new Set<string>();
  readonly log: string[] = [];
  readonly lag: number;
  readonly balance: boolean;

  constructor(voters: string[], lag: number, balance: boolean) {
    this.lag = lag;
    this.balance = balance;
    this.voters = [...voters].sort();
    this.leader = voters[0]!;
  }

  reachable(id: string): boolean {
    return !this.dead.has(id) && !this.cut.has(id);
  }

  /** Voters that are live and hold the log up to commit - lag (the leader holds all of it). */
  healthyVoters(): number {
    return this.voters.filter(
      (id) => id === this.leader || (this.reachable(id) && this.match.get(id)! + this.lag >= this.commit),
    ).length;
  }

  hasWorkingQuorum(): boolean {
    return this.healthyVoters() >= quorumOf(this.voters.length);
  }

  /** A dead or cut leader is replaced by the most up-to-date reachable voter, given a quorum. */
  elect(): void {
    if (this.leader !== null && this.reachable(this.leader)) return;
    this.leader = null;
    const candidates = this.voters.filter((id) => this.reachable(id));
    if (candidates.length < quorumOf(this.voters.length)) return;
    candidates.sort((x, y) => this.match.get(y)! - this.match.get(x)! || (x < y ? -1 : 1));
    this.leader = candidates[0]!;
    this.match.set(this.leader, this.commit); // Raft elects a leader holding every committed entry
  }

  write(entries: number, ackers: string[]): void {
    if (this.leader === null) return;
    const others = ackers.filter(
      (id) => id !== this.leader && this.voters.includes(id) && this.reachable(id),
    );
    const quorum = quorumOf(this.voters.length);
    if (others.length + 1 < quorum) return;
    this.commit += entries;
    for (const id of [this.leader, ...others.slice(0, quorum - 1)]) this.match.set(id, this.commit);
  }

  input(target: readonly string[]): ReconfigurationInput {
    const progress = new Map<string, ReplicaProgress>();
    for (const id of [...this.voters, ...this.learners]) {
      if (id !== this.leader) progress.set(id, { match: this.match.get(id)!, active: this.reachable(id) });
    }
    return {
      self: this.leader!,
      configuration: { voters: this.voters, learners: this.learners },
      changePending: false,
      commitIndex: this.commit,
      progress,
      target,
      isAlive: (id) => !this.dead.has(id),
      catchUpLagMax: this.lag,
      balanceLeadership: this.balance,
    };
  }

  /** Plans one step with `target` and applies it, checking the invariants. */
  step(target: readonly string[]): ReconfigurationStep {
    this.elect();
    if (this.leader === null) return { kind: "none" };
    const leader = this.leader;
    const step = planReconfiguration(this.input(target));
    this.log.push(`${leader}: ${JSON.stringify(step)}`);
    const quorumBefore = this.hasWorkingQuorum();
    const inConfig = (id: string) => this.voters.includes(id) || this.learners.includes(id);
    switch (step.kind) {
      case "none":
        return step;
      case "transferLeadership":
        expect(this.voters).toContain(step.to);
        expect(this.reachable(step.to)).toBe(true);
        this.leader = step.to;
        this.match.set(step.to, this.commit); // the transferee catches up before it campaigns
        break;
      case "addLearner":
        expect(inConfig(step.router)).toBe(false);
        expect(this.dead.has(step.router)).toBe(false);
        this.match.set(step.router, 0);
        break;
      case "promote":
        expect(this.learners).toContain(step.router);
        expect(target).toContain(step.router);
        // Raft refuses addVoter (NotCaughtUp) unless the learner holds the committed log.
        expect(this.match.get(step.router)!).toBeGreaterThanOrEqual(this.commit);
        break;
      case "remove":
        expect(step.router).not.toBe(leader);
        expect(inConfig(step.router)).toBe(true);
        expect(target).not.toContain(step.router);
        break;
    }
    const change = reconfigurationChange(step);
    if (change !== null) {
      const next = applyConfigChange({ voters: this.voters, learners: this.learners }, change);
      this.voters = [...next.voters];
      this.learners = [...next.learners];
    }
    expect(this.voters).toContain(this.leader);
    if (quorumBefore) expect(this.hasWorkingQuorum()).toBe(true);
    return step;
  }
}

/** The current voters with one replica dropped, swapped for `router`, or `router` added. */
function moved(
  voters: readonly string[],
  move: "drop" | "swap" | "add",
  at: number,
  router: string,
): string[] {
  const target = [...voters];
  const position = at % target.length;
  if (move === "drop" && target.length > 1) target.splice(position, 1);
  if (move === "swap" && !target.includes(router)) target[position] = router;
  if (move === "add" && !target.includes(router)) target.push(router);
  // Rotate so that target[0], the preferred leader, varies too.
  return [...target.slice(position % target.length), ...target.slice(0, position % target.length)];
}

describe("planReconfiguration invariants (property)", () => {
  it("keeps a quorum of live, up-to-date voters, never removes the leader, and converges", () => {
    fc.assert(
      fc.property(
        fc.shuffledSubarray(universe, { minLength: 1, maxLength: 4 }),
        fc.array(actionArb, { maxLength: 120 }),
        targetArb,
        fc.constantFrom(0, 2),
        fc.boolean(),
        (initial, actions, finalTarget, lag, balance) => {
          const world = new World(initial, lag, balance);
          let target: string[] = initial;
          for (const action of actions) {
            switch (action.type) {
              case "target":
                target = action.target;
                break;
              case "move":
                target = moved(world.voters, action.move, action.at, action.router);
                break;
              case "die":
                world.dead.add(action.router);
                break;
              case "revive":
                world.dead.delete(action.router);
                break;
              case "cut":
                world.cut.add(action.router);
                break;
              case "heal":
                world.cut.delete(action.router);
                break;
              case "catchUp":
                if (world.reachable(action.router)) world.match.set(action.router, world.commit);
                break;
              case "write":
                world.elect();
                world.write(action.entries, action.ackers);
                break;
              case "plan":
                world.step(target);
                break;
            }
          }
          // Stable target, every router alive and reachable, replicas catching up: converges.
          world.dead.clear();
          world.cut.clear();
          const stepsMax = 2 * universe.length + 2 * finalTarget.length + 2;
          let steps = 0;
          for (;;) {
            for (const id of universe) world.match.set(id, world.commit);
            const step = world.step(finalTarget);
            if (step.kind === "none") break;
            steps += 1;
            if (steps > stepsMax) throw new Error(`no convergence:\n${world.log.join("\n")}`);
          }
          expect(world.voters).toEqual([...finalTarget].sort());
          expect(world.learners).toEqual([]);
          if (balance) expect(world.leader).toBe(finalTarget[0]);
        },
      ),
      { numRuns: 500 },
    );
  });
});
