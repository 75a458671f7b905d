// The reconfiguration planner: run by a group's leader (a partition's, or the controller's)
// after each apply and tick, it returns the ONE next safe step that moves the group's
// configuration toward its target replica set, or none. It is pure: the caller proposes the
// step (a Raft single-server change or a leadership transfer), and plans again once it applied.
//
// The steps are the seed's join steps on top of Raft's single-server changes (thesis §4.1):
// a new replica joins as a learner in a catch-up state (§4.2.1) and streams the log or a
// snapshot; once it holds the committed log it is promoted to voter (available); then a
// replica no longer in the target hands over leadership if it had it (§3.10, §4.2.2) and
// leaves. Order of the rules, first match wins:
//   1. nothing while a configuration change is pending (one change at a time, §4.1);
//   2. remove a learner that is in neither the target nor `learners`;
//   3. promote a target learner that holds the committed log and is reachable;
//   4. add a missing, alive target router as a learner, unless a target learner is still
//      catching up (one catch-up at a time: streaming is the expensive part);
//   5. remove a voter outside the target: when every target router is a voter, or when that
//      voter is dead; in both cases only if the voters left still hold a quorum of live,
//      up-to-date voters (dead ones first, then by id; never the leader itself);
//   6. if the leader is outside the target and every target router is a voter, transfer
//      leadership to an up-to-date, reachable target voter (target[0] preferred); the new
//      leader then removes the old one by rule 5;
//   7. add a missing, alive router of `learners` (the controller's non-voting members);
//   8. optionally (`balanceLeadership`), when the voters are exactly the target, hand
//      leadership to target[0] if it is an up-to-date, reachable voter.
//
// Invariants (checked by the property test in reconfiguration.test.ts): a step never lowers
// the number of live, up-to-date voters below a quorum of the voters if it was not below
// before; the leader never removes itself; with a stable target and every router alive and
// caught up, the steps converge to voters = target in a bounded number of steps.
//
// Traps: a promotion must wait until the learner holds the whole committed log: our Raft
// refuses `addVoter` with NotCaughtUp before (thesis §4.2.1: a voter added empty is a member
// the quorum must wait for). A dead target router is not added: membership will change the
// target when it declares the router dead, and a learner added to a dead router would only
// block the next catch-up. Removing the leader is never planned: Raft would let it lead until
// the removal commits and then stop (§4.2.2), a gap a transfer avoids. Raft cannot demote a
// voter to a learner in one change: it is removed, then added back as a learner (rule 7).
import type { ConfigChange } from "../raft/index.ts";
import { quorumOf } from "../raft/index.ts";
import type { Configuration } from "../storage/index.ts";

/** The leader's view of one other replica (etcd's Progress: match index, RecentActive). */
export interface ReplicaProgress {
  /** Highest log index known to be stored on the replica. */
  readonly match: number;
  /** The leader heard from the replica within the last election timeout. */
  readonly active: boolean;
}

export interface ReconfigurationInput {
  /** The leader, which plans. */
  readonly self: string;
  /** The configuration in force (a single-server change takes effect when appended, §4.1). */
  readonly configuration: Configuration;
  /** A configuration entry is appended but not yet applied: plan nothing. */
  readonly changePending: boolean;
  readonly commitIndex: number;
  /** The leader's view of every other replica; a replica missing here is unreachable, match 0. */
  readonly progress: ReadonlyMap<string, ReplicaProgress>;
  /** Target replicas (the voters wanted), distinct, at least one; [0] is the preferred leader. */
  readonly target: readonly string[];
  /** Membership's verdict (false: dead or left). Slow and careful: it changes targets. */
  readonly isAlive: (router: string) => boolean;
  /**
   * Entries a voter may lag behind the commit index and still count as up to date when
   * checking that a removal leaves a quorum (followers always trail by the entries in flight).
   * Promotion ignores it: a learner must hold the whole committed log (NotCaughtUp otherwise).
   */
  readonly catchUpLagMax: number;
  /**
   * Entries a learner may trail the commit index by and still be promoted (the Raft config's
   * promoteLagMaxEntries: under load a streaming learner always trails). Default 0.
   */
  readonly promoteLagMax?: number;
  /** Hand leadership to target[0] once the voters match the target (spreads leaders). */
  readonly balanceLeadership?: boolean;
  /** Routers that should stay in the group as learners (the controller: members not voting). */
  readonly learners?: readonly string[];
}

export type ReconfigurationStep =
  | { readonly kind: "none" }
  | { readonly kind: "addLearner"; readonly router: string }
  /** Raft `addVoter` of a learner. */
  | { readonly kind: "promote"; readonly router: string }
  | { readonly kind: "transferLeadership"; readonly to: string }
  | { readonly kind: "remove"; readonly router: string };

const none: ReconfigurationStep = { kind: "none" };

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`reconfiguration assertion failed: ${message}`);
}

const compareIds = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The next safe step toward `input.target`, or none. */
export function planReconfiguration(input: ReconfigurationInput): ReconfigurationStep {
  const { self, configuration, commitIndex, progress, target, isAlive } = input;
  assert(target.length > 0, "the target names no replica");
  assert(new Set(target).size === target.length, `the target names a replica twice: ${target.join(",")}`);
  assert(input.catchUpLagMax >= 0, `catchUpLagMax ${input.catchUpLagMax}`);
  if (input.changePending) return none;
  const voters = new Set(configuration.voters);
  const learners = new Set(configuration.learners);
  // A leader whose removal applied no longer leads (§4.2.2); its successor plans.
  if (!voters.has(self)) return none;
  const inTarget = new Set(target);
  const wantedLearners = new Set((input.learners ?? []).filter((id) => !inTarget.has(id)));

  const reachable = (id: string) => id === self || (isAlive(id) && progress.get(id)?.active === true);
  const match = (id: string) => (id === self ? Number.POSITIVE_INFINITY : (progress.get(id)?.match ?? 0));
  /** May become a voter: Raft's rule (match >= commit), and reachable. */
  const promoteLag = input.promoteLagMax ?? 0;
  const holdsCommitted = (id: string) =>
    reachable(id) && (match(id) >= commitIndex || (match(id) > 0 && match(id) + promoteLag >= commitIndex));
  /** Counts toward a working quorum. */
  const upToDate = (id: string) => reachable(id) && match(id) + input.catchUpLagMax >= commitIndex;

  // 2. Learners nobody wants: cheap and safe to drop (they do not vote).
  for (const id of [...learners].sort(compareIds)) {
    if (!inTarget.has(id) && !wantedLearners.has(id)) return { kind: "remove", router: id };
  }
  // 3. Promote a caught-up target learner (target order: the preferred leader first).
  for (const id of target) {
    if (learners.has(id) && holdsCommitted(id)) return { kind: "promote", router: id };
  }
  // 4. Add a missing target router, one catch-up at a time.
  const catchingUp = target.some((id) => learners.has(id) && isAlive(id));
  if (!catchingUp) {
    for (const id of target) {
      if (!voters.has(id) && !learners.has(id) && isAlive(id)) return { kind: "addLearner", router: id };
    }
  }
  // 5. Remove a voter outside the target, keeping a quorum of live, up-to-date voters.
  const everyTargetVotes = target.every((id) => voters.has(id));
  const leaving = configuration.voters
    .filter((id) => id !== self && !inTarget.has(id) && (everyTargetVotes || !isAlive(id)))
    .sort((a, b) => Number(isAlive(a)) - Number(isAlive(b)) || compareIds(a, b));
  for (const id of leaving) {
    const remaining = configuration.voters.filter((voter) => voter !== id);
    const healthy = remaining.filter(upToDate).length;
    if (healthy >= quorumOf(remaining.length)) return { kind: "remove", router: id };
  }
  // 6. The leader leaves last: it hands over first (§3.10), then its successor removes it.
  if (!inTarget.has(self) && everyTargetVotes) {
    for (const id of target) {
      if (upToDate(id)) return { kind: "transferLeadership", to: id };
    }
  }
  // 7. The controller's learners.
  for (const id of [...wantedLearners].sort(compareIds)) {
    if (!voters.has(id) && !learners.has(id) && isAlive(id)) return { kind: "addLearner", router: id };
  }
  // 8. Leadership balancing, once the voters are the target.
  const preferred = target[0]!;
  if (
    input.balanceLeadership === true &&
    preferred !== self &&
    everyTargetVotes &&
    voters.size === inTarget.size &&
    upToDate(preferred)
  ) {
    return { kind: "transferLeadership", to: preferred };
  }
  return none;
}

/** The Raft configuration change a step proposes; null for none and transfers. */
export function reconfigurationChange(step: ReconfigurationStep): ConfigChange | null {
  switch (step.kind) {
    case "addLearner":
      return { type: "addLearner", node: step.router };
    case "promote":
      return { type: "addVoter", node: step.router };
    case "remove":
      return { type: "remove", node: step.router };
    case "none":
    case "transferLeadership":
      return null;
  }
}
