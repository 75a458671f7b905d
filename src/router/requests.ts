// Requests for a Raft group's leader, from wherever they arrive: handled here if this router
// leads the group, else forwarded over the router links to the leader it knows (from its own
// replica of the group, an earlier answer's hint, or the target assignment), and retried
// until the request's deadline when the answer says the leader moved, none is elected yet,
// or a link broke with the outcome unknown.
//
// Retrying is safe because every request is idempotent at the leader: a publish carries its
// producer id and sequence (a retried one is stored once), declaring a topic or an interest
// twice changes nothing, activating an active partition is a no-op.
//
// Invariants: at most `forwardsMax` forwards wait for an answer, and at most `forwardsMax`
// forwarded requests from peers are being handled; each forward ends (answer, link closed,
// or its own timeout). A router answers a forward only for a group it leads; otherwise it
// says who leads it (NotLeader) or that it does not know (NoLeader), and never forwards
// further, so a request crosses at most one link per attempt.
import type { Clock, Timer } from "../ports/index.ts";
import type { LinkRaftTransport, MultiRaft } from "../raft/index.ts";
import type { GroupId } from "../storage/index.ts";
import type { Forward, ForwardResult } from "../wire/index.ts";
import { done, doneAt, failed, isRetriable, type Outcome } from "./outcome.ts";

export interface GroupRequestsOptions {
  readonly id: string;
  readonly clock: Clock;
  readonly multi: MultiRaft;
  readonly links: LinkRaftTransport | undefined;
  /** A request's whole life, ms. */
  readonly deadlineMs: number;
  /** True once the group exists (partitions are activated through the controller first). */
  readonly isActive: (group: GroupId) => boolean;
  readonly activate: (group: GroupId) => Promise<Outcome>;
  /** A router that may lead `group` (it answers with the leader if not), varied by `attempt`. */
  readonly guessLeader: (group: GroupId, attempt: number) => string | null;
  /**
   * Handles a request for a group this router leads, from `origin` (this router or a peer).
   * `decoded`: what the caller of `request` passed along with the command (its decoded form,
   * so the leader need not decode what it just encoded); undefined for a peer's request.
   */
  readonly atLeader: (
    group: GroupId,
    command: Uint8Array,
    origin: string,
    decoded: unknown,
  ) => Promise<Outcome>;
  /** Forwards waiting at once, and forwarded requests handled at once. Default 100,000. */
  readonly forwardsMax?: number;
}

export interface GroupRequestsStats {
  requests: number;
  forwards: number;
  retries: number;
  forwardedToUs: number;
  deadlinesMissed: number;
}

interface PendingForward {
  readonly peer: string;
  readonly settle: (outcome: Outcome) => void;
}

/** Longest wait for one forward's answer before asking again (the request's deadline still holds). */
const forwardTimeoutMs = 3_000;
/** Longest pause between attempts while no leader is known; a leadership change ends it early. */
const retryPauseMs = 50;

export class GroupRequests {
  readonly stats: GroupRequestsStats = {
    requests: 0,
    forwards: 0,
    retries: 0,
    forwardedToUs: 0,
    deadlinesMissed: 0,
  };
  private readonly options: GroupRequestsOptions;
  private readonly forwardsMax: number;
  private readonly pending = new Map<number, PendingForward>();
  private nextRequestId = 1;
  private handling = 0;
  /** Leaders learned from answers, for groups this router does not replicate. Bounded by the group count. */
  private readonly hints = new Map<GroupId, string>();
  private readonly waiters = new Map<GroupId, Set<() => void>>();
  private stopped = false;

  constructor(options: GroupRequestsOptions) {
    this.options = options;
    this.forwardsMax = options.forwardsMax ?? 100_000;
  }

  /** Sends `command` to the leader of `group`, retrying until the deadline; `decoded`: see atLeader. */
  async request(group: GroupId, command: Uint8Array, decoded?: unknown): Promise<Outcome> {
    this.stats.requests += 1;
    const { clock, id } = this.options;
    const deadlineMs = clock.nowMs() + this.options.deadlineMs;
    let last: Outcome = failed("NoLeader", `no leader of partition ${group} answered`);
    /** Redirects followed since the last pause: two routers naming each other must not spin. */
    let redirects = 0;
    /** A router that just failed to answer (no link, timeout): not asked again next attempt. */
    let avoid: string | null = null;
    for (let attempt = 0; !this.stopped; attempt++) {
      if (attempt > 0) this.stats.retries += 1;
      const remainingMs = deadlineMs - clock.nowMs();
      if (remainingMs <= 0) break;
      if (!this.options.isActive(group)) {
        const activated = await this.options.activate(group);
        if (!activated.ok && !isRetriable(activated)) return activated;
        if (!this.options.isActive(group)) {
          await this.pause(group, retryPauseMs);
          continue;
        }
      }
      const node = this.replica(group);
      if (node?.role === "leader") {
        last = await this.options.atLeader(group, command, id, decoded);
        if (!isRetriable(last)) return last;
        await this.pause(group, retryPauseMs);
        continue;
      }
      let target = node?.leader ?? this.hints.get(group) ?? null;
      if (target === null || target === avoid) target = this.options.guessLeader(group, attempt);
      if (target === avoid) target = this.options.guessLeader(group, attempt + 1);
      if (target === null || target === id || this.options.links === undefined) {
        await this.pause(group, retryPauseMs);
        continue;
      }
      last = await this.forward(target, group, command, Math.min(remainingMs, forwardTimeoutMs));
      if (!isRetriable(last)) return last;
      avoid = !last.ok && last.code === "Unavailable" ? target : null;
      if (!last.ok && last.code === "NotLeader" && last.leader !== undefined && last.leader !== target) {
        this.hints.set(group, last.leader);
        if (++redirects < 3) continue;
      } else {
        this.hints.delete(group);
      }
      redirects = 0;
      await this.pause(group, retryPauseMs);
    }
    this.stats.deadlinesMissed += 1;
    if (last.ok) return last;
    return failed(last.code, `${last.message} (gave up after ${this.options.deadlineMs} ms)`, last.leader);
  }

  /** A peer's Forward: answered if this router leads the group, else with what it knows. */
  forwarded(peer: string, frame: Forward): void {
    this.stats.forwardedToUs += 1;
    const node = this.options.isActive(frame.group) ? this.replica(frame.group) : undefined;
    if (node?.role !== "leader") {
      const leader = node?.leader ?? this.hints.get(frame.group) ?? this.options.guessLeader(frame.group, 0);
      const known = leader !== null && leader !== this.options.id && leader !== peer;
      this.reply(
        peer,
        frame.requestId,
        known
          ? failed("NotLeader", `${this.options.id} does not lead group ${frame.group}`, leader)
          : failed("NoLeader", `${this.options.id} knows no leader of group ${frame.group}`),
      );
      return;
    }
    if (this.handling >= this.forwardsMax) {
      this.reply(
        peer,
        frame.requestId,
        failed("LimitReached", `${this.options.id} is handling too many requests`),
      );
      return;
    }
    this.handling += 1;
    this.options.atLeader(frame.group, frame.command, peer, undefined).then(
      (outcome) => {
        this.handling -= 1;
        this.reply(peer, frame.requestId, outcome);
      },
      (error: unknown) => {
        this.handling -= 1;
        this.reply(peer, frame.requestId, failed("Internal", (error as Error).message));
      },
    );
  }

  /** A ForwardResult from `peer`. One for a request we did not send to it is ignored. */
  answered(peer: string, frame: ForwardResult): void {
    const pending = this.pending.get(frame.requestId);
    if (pending === undefined || pending.peer !== peer) return;
    this.pending.delete(frame.requestId);
    pending.settle(
      frame.ok
        ? frame.offset === 0
          ? done
          : doneAt(frame.offset)
        : failed(frame.code, frame.message, frame.leader === "" ? undefined : frame.leader),
    );
  }

  /** The link to `peer` closed: its forwards will not be answered; their outcome is unknown. */
  linkClosed(peer: string): void {
    for (const [requestId, pending] of this.pending) {
      if (pending.peer !== peer) continue;
      this.pending.delete(requestId);
      pending.settle(failed("Unavailable", `the link to ${peer} closed`));
    }
  }

  /** The group's leader changed here: waiting requests try again now. */
  leaderChanged(group: GroupId, leader: string | null): void {
    if (leader !== null) this.hints.delete(group);
    this.wake(group);
  }

  /**
   * The group applied entries here: requests waiting on it (an out-of-order publish waiting
   * for the one before it, a new leader catching up) try again now rather than after a pause.
   */
  wake(group: GroupId): void {
    const waiters = this.waiters.get(group);
    if (waiters === undefined) return;
    this.waiters.delete(group);
    for (const wake of waiters) wake();
  }

  stop(): void {
    this.stopped = true;
    for (const pending of this.pending.values()) pending.settle(failed("ShuttingDown", "router stopping"));
    this.pending.clear();
    for (const group of [...this.waiters.keys()]) this.leaderChanged(group, null);
  }

  private forward(target: string, group: GroupId, command: Uint8Array, timeoutMs: number): Promise<Outcome> {
    const links = this.options.links!;
    if (this.pending.size >= this.forwardsMax) {
      return Promise.resolve(
        failed("LimitReached", `${this.pending.size} requests already wait for other routers`),
      );
    }
    const requestId = this.nextRequestId++;
    // avsc writes "bytes" only from a Buffer.
    const bytes = Buffer.isBuffer(command)
      ? command
      : Buffer.from(command.buffer, command.byteOffset, command.length);
    if (!links.sendFrame(target, { kind: "Forward", requestId, group, command: bytes })) {
      return Promise.resolve(failed("Unavailable", `no link to ${target} yet`));
    }
    this.stats.forwards += 1;
    return new Promise((resolve) => {
      const timer: Timer = this.options.clock.schedule(timeoutMs, () => {
        if (this.pending.delete(requestId))
          resolve(failed("Unavailable", `${target} did not answer within ${timeoutMs} ms`));
      });
      this.pending.set(requestId, {
        peer: target,
        settle: (outcome) => {
          timer.cancel();
          if (!outcome.ok) return resolve(outcome);
          // It leads the group (a router answers only for groups it leads): remembered for
          // the next request, and named to the client (session.ts).
          if (this.replica(group) === undefined) this.hints.set(group, target);
          resolve(
            outcome.offset === undefined
              ? { ok: true, by: target }
              : { ok: true, offset: outcome.offset, by: target },
          );
        },
      });
    });
  }

  private reply(peer: string, requestId: number, outcome: Outcome): void {
    this.options.links?.sendFrame(peer, {
      kind: "ForwardResult",
      requestId,
      ok: outcome.ok,
      code: outcome.ok ? "Internal" : outcome.code,
      message: outcome.ok ? "" : outcome.message,
      leader: outcome.ok ? "" : (outcome.leader ?? ""),
      offset: outcome.ok ? (outcome.offset ?? 0) : 0,
    });
  }

  /**
   * This router's replica of `group`, if it is one: a replica removed from the group keeps its
   * node, but what it believes (the leader above all) stopped being updated when it left.
   */
  private replica(group: GroupId): ReturnType<MultiRaft["group"]> {
    const node = this.options.multi.group(group);
    if (node === undefined) return undefined;
    const { voters, learners } = node.configuration;
    const id = this.options.id;
    return voters.includes(id) || learners.includes(id) ? node : undefined;
  }

  /** Waits until the group's leadership changes here, or `ms`, whichever comes first. */
  private pause(group: GroupId, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let waiters = this.waiters.get(group);
      if (waiters === undefined) {
        waiters = new Set();
        this.waiters.set(group, waiters);
      }
      const set = waiters;
      const wake = () => {
        timer.cancel();
        set.delete(wake);
        resolve();
      };
      const timer = this.options.clock.schedule(ms, () => {
        set.delete(wake);
        if (set.size === 0 && this.waiters.get(group) === set) this.waiters.delete(group);
        resolve();
      });
      set.add(wake);
    });
  }
}
