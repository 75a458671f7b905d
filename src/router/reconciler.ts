// Moves this router's groups toward their targets: the shell around the pure planner
// (partitions/reconfiguration.ts). Every `intervalMs` it looks at the groups this router leads
// whose replicas may differ from the target, and takes one safe step for each (a learner
// added, a caught-up learner promoted, leadership handed over, a replica removed: the seeds'
// join steps, one Raft single-server change at a time).
//
// As the controller's leader it also keeps the roster in step with membership (DESIGN.md: SWIM's
// careful verdict, not Raft's quick one, changes targets): routers membership sees alive join
// the roster, routers it declares dead or left are removed; and it keeps every roster member in
// the controller group (three voters, the rest learners).
//
// Invariant: at most one controller command of each kind per router is in flight, and a group
// has at most one change in flight (the planner plans nothing while one is pending).

import {
  type Assignment,
  type ControllerCommand,
  type ControllerState,
  controllerVotersTarget,
  planReconfiguration,
  type ReconfigurationStep,
} from "../partitions/index.ts";
import type { Clock, Timer } from "../ports/index.ts";
import type { Applied, MultiRaft, RaftNode } from "../raft/index.ts";
import type { GroupId } from "../storage/index.ts";
import type { Log } from "./log.ts";

export interface ReconcilerOptions {
  readonly id: string;
  readonly multi: MultiRaft;
  readonly clock: Clock;
  readonly log: Log;
  readonly controllerGroup: GroupId;
  readonly controller: () => ControllerState;
  readonly assignment: () => Assignment | null;
  readonly isAlive: (router: string) => boolean;
  /** Membership's explicit verdict that a router is dead or left (unknown is not gone). */
  readonly isGone: (router: string) => boolean;
  readonly aliveRouters: () => readonly string[];
  readonly propose: (command: ControllerCommand) => Promise<Applied>;
  /** This router is draining and holds no replica a group counts on any more: it may stop. */
  readonly drained: () => void;
  /** Between two passes, ms. Default 200. */
  readonly intervalMs?: number;
}

export interface ReconcilerStats {
  passes: number;
  steps: number;
  stepsFailed: number;
  rosterChanges: number;
}

export class Reconciler {
  readonly stats: ReconcilerStats = { passes: 0, steps: 0, stepsFailed: 0, rosterChanges: 0 };
  private readonly options: ReconcilerOptions;
  /** Led groups that may not match their target yet. */
  private readonly unsettled = new Set<GroupId>();
  /** Look at every led group on the next pass (the roster changed). */
  private everything = true;
  /** Controller commands in flight, by "kind router". */
  private readonly rosterInFlight = new Set<string>();
  private timer: Timer | null = null;
  private stopped = false;

  constructor(options: ReconcilerOptions) {
    this.options = options;
  }

  start(): void {
    const loop = () => {
      if (this.stopped) return;
      this.pass();
      this.timer = this.options.clock.schedule(this.options.intervalMs ?? 200, loop);
    };
    this.timer = this.options.clock.schedule(this.options.intervalMs ?? 200, loop);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  /** The roster or the assignment may have changed: every led group is looked at again. */
  rosterChanged(): void {
    this.everything = true;
  }

  /** This router became the leader of `group` (the controller's own membership is handled apart). */
  led(group: GroupId): void {
    if (group !== this.options.controllerGroup) this.unsettled.add(group);
  }

  private pass(): void {
    this.stats.passes += 1;
    const { multi, controllerGroup } = this.options;
    const controller = multi.group(controllerGroup);
    if (controller?.role === "leader") this.controllerDuties(controller);
    if (this.options.controller().isDraining(this.options.id) && this.holdsNothing()) {
      this.stop();
      this.options.drained();
      return;
    }
    const assignment = this.options.assignment();
    if (assignment === null) return;
    if (this.everything) {
      this.everything = false;
      for (const node of multi.groups()) {
        if (node.role === "leader" && node.group !== controllerGroup) this.unsettled.add(node.group);
      }
    }
    for (const group of this.unsettled) {
      const node = multi.group(group);
      if (node === undefined || node.role !== "leader") {
        this.unsettled.delete(group);
        continue;
      }
      const step = planReconfiguration({
        self: this.options.id,
        configuration: node.configuration,
        changePending: node.configChangePending,
        commitIndex: node.log.committed,
        progress: node.replicaProgress(),
        target: assignment.replicasOf(group),
        isAlive: this.options.isAlive,
        catchUpLagMax: 0,
        promoteLagMax: node.config.promoteLagMaxEntries,
        balanceLeadership: true,
      });
      if (step.kind === "none") {
        if (!node.configChangePending) this.unsettled.delete(group);
        continue;
      }
      this.take(node, step);
    }
  }

  /** Roster in step with membership; every roster member in the controller group. */
  private controllerDuties(node: RaftNode): void {
    const state = this.options.controller();
    const roster = new Set(state.routers());
    for (const router of this.options.aliveRouters()) {
      if (!roster.has(router)) this.rosterCommand({ kind: "AddRouter", router });
    }
    // Only on membership's verdict: a router this one has not heard of yet (a cold start, a
    // view still filling in) is not dead, and removing it would move replicas for nothing.
    for (const router of roster) {
      if (router !== this.options.id && this.options.isGone(router)) {
        this.rosterCommand({ kind: "RemoveRouter", router });
      }
    }
    // Voters among the routers not draining; every live member stays a learner until it leaves.
    const members = state.routers().filter((router) => this.options.isAlive(router));
    const eligible = state.eligibleRouters().filter((router) => this.options.isAlive(router));
    if (eligible.length === 0) return;
    const voters = controllerVotersTarget(node.configuration.voters, eligible);
    const step = planReconfiguration({
      self: this.options.id,
      configuration: node.configuration,
      changePending: node.configChangePending,
      commitIndex: node.log.committed,
      progress: node.replicaProgress(),
      target: voters,
      isAlive: this.options.isAlive,
      catchUpLagMax: 0,
      promoteLagMax: node.config.promoteLagMaxEntries,
      learners: members,
    });
    if (step.kind !== "none") this.take(node, step);
  }

  /** Not a voter of any group (learners of the controller only follow) and leads none. */
  private holdsNothing(): boolean {
    for (const node of this.options.multi.groups()) {
      if (node.role === "leader" || node.configuration.voters.includes(this.options.id)) return false;
    }
    return true;
  }

  private rosterCommand(command: ControllerCommand & { readonly router: string }): void {
    const key = `${command.kind} ${command.router}`;
    if (this.rosterInFlight.has(key)) return;
    this.rosterInFlight.add(key);
    this.stats.rosterChanges += 1;
    this.options.log.info("roster change", { change: command.kind, router: command.router });
    this.options.propose(command).then(
      () => this.rosterInFlight.delete(key),
      (error: unknown) => {
        this.rosterInFlight.delete(key);
        this.options.log.debug("roster change not made", { change: key, error: (error as Error).message });
      },
    );
  }

  private take(node: RaftNode, step: ReconfigurationStep): void {
    const { multi, log } = this.options;
    this.stats.steps += 1;
    const group = node.group;
    if (step.kind === "none") return;
    if (step.kind === "transferLeadership") {
      const refused = multi.transferLeadership(group, step.to);
      if (refused !== null) this.stats.stepsFailed += 1;
      log.debug("leadership handed over", { group, to: step.to });
      return;
    }
    const change =
      step.kind === "addLearner"
        ? ({ type: "addLearner", node: step.router } as const)
        : step.kind === "promote"
          ? ({ type: "addVoter", node: step.router } as const)
          : ({ type: "remove", node: step.router } as const);
    log.debug("replica change", { group, change: change.type, router: change.node });
    multi.proposeConfigChange(group, change).catch((error: unknown) => {
      this.stats.stepsFailed += 1;
      log.debug("replica change not made", { group, change: change.type, error: (error as Error).message });
    });
  }
}
