// GroupRequests, one rule a test: a request is handled here if this router leads the group,
// else forwarded to the leader it knows and retried (a NotLeader hint at once, at most three
// redirects before a pause; NoLeader and a broken link after a pause that a leadership change
// ends early) until the deadline; a broken link's router is avoided next time; a removed
// replica does not trust its node; forwards and forwarded requests are bounded; stop() ends
// waiting forwards.
//
// The ports are fakes: `multi` hands out plain nodes (role, leader, configuration), `links`
// records frames and refuses peers marked down, and the test answers forwards by calling
// answered() (or an auto-responder does, a microtask later, as a real link would). Time is a
// SimClock moved by hand; microtasks are settled, never slept on. Requests are tracked rather
// than awaited, so a broken rule fails an assertion instead of hanging the test.
import { describe, expect, it } from "vitest";
import type { LinkRaftTransport, MeshFrame, MultiRaft } from "../raft/index.ts";
import { driveUntil, SimClock, settleMicrotasks } from "../sim/index.ts";
import type { GroupId } from "../storage/index.ts";
import type { Forward, ForwardResult } from "../wire/index.ts";
import { done, doneAt, failed, type Outcome } from "./outcome.ts";
import { GroupRequests, type GroupRequestsOptions } from "./requests.ts";

const self = "a";
const group: GroupId = 7;
const otherGroup: GroupId = 8;

/** What GroupRequests reads of a RaftNode. */
interface FakeNode {
  role: "leader" | "follower" | "candidate";
  leader: string | null;
  configuration: { voters: string[]; learners: string[] };
}

function node(role: FakeNode["role"], leader: string | null, voters = [self, "b", "c"]): FakeNode {
  return { role, leader, configuration: { voters, learners: [] } };
}

class FakeMulti {
  readonly nodes = new Map<GroupId, FakeNode>();
  group(id: GroupId): FakeNode | undefined {
    return this.nodes.get(id);
  }
}

interface Sent {
  readonly peer: string;
  readonly frame: MeshFrame;
}

class FakeLinks {
  /** Frames accepted, in order. */
  readonly sent: Sent[] = [];
  /** Peers a frame was refused to (no link). */
  readonly refused: string[] = [];
  readonly down = new Set<string>();
  /** If set, answers each Forward a microtask later (undefined: no answer). */
  respond: ((peer: string, frame: Forward) => Outcome | undefined) | undefined;
  /** Auto-answers stop after this many forwards, so a broken limit cannot spin forever. */
  respondMax = 20;
  requests: GroupRequests | undefined;

  sendFrame(peer: string, frame: MeshFrame): boolean {
    if (this.down.has(peer)) {
      this.refused.push(peer);
      return false;
    }
    this.sent.push({ peer, frame });
    const respond = this.respond;
    if (frame.kind === "Forward" && respond !== undefined && this.forwards().length <= this.respondMax) {
      queueMicrotask(() => {
        const outcome = respond(peer, frame);
        if (outcome !== undefined) this.requests!.answered(peer, result(frame.requestId, outcome));
      });
    }
    return true;
  }

  forwards(): { peer: string; frame: Forward }[] {
    const out: { peer: string; frame: Forward }[] = [];
    for (const { peer, frame } of this.sent) if (frame.kind === "Forward") out.push({ peer, frame });
    return out;
  }

  results(): { peer: string; frame: ForwardResult }[] {
    const out: { peer: string; frame: ForwardResult }[] = [];
    for (const { peer, frame } of this.sent) if (frame.kind === "ForwardResult") out.push({ peer, frame });
    return out;
  }

  lastForward(): { peer: string; frame: Forward } {
    const forwards = this.forwards();
    expect(forwards.length).toBeGreaterThan(0);
    return forwards[forwards.length - 1]!;
  }
}

/** The ForwardResult a peer sends for `outcome`. */
function result(requestId: number, outcome: Outcome): ForwardResult {
  return {
    kind: "ForwardResult",
    requestId,
    ok: outcome.ok,
    code: outcome.ok ? "Internal" : outcome.code,
    message: outcome.ok ? "" : outcome.message,
    leader: outcome.ok ? "" : (outcome.leader ?? ""),
    offset: outcome.ok ? (outcome.offset ?? 0) : 0,
  };
}

function forwardFrame(requestId: number, command = new Uint8Array([1, 2, 3])): Forward {
  return { kind: "Forward", requestId, group, command };
}

interface AtLeaderCall {
  readonly group: GroupId;
  readonly command: Uint8Array;
  readonly origin: string;
  readonly answer: (outcome: Outcome) => void;
  readonly fail: (error: Error) => void;
}

interface Setup {
  readonly clock: SimClock;
  readonly multi: FakeMulti;
  readonly links: FakeLinks;
  readonly requests: GroupRequests;
  readonly atLeaderCalls: AtLeaderCall[];
  readonly activateCalls: GroupId[];
  /** Everything the callbacks saw, in order: "activate", "atLeader". */
  readonly events: string[];
  /** The groups that are active; all are unless a test says otherwise. */
  readonly inactive: Set<GroupId>;
}

interface SetupOptions {
  readonly deadlineMs?: number;
  readonly forwardsMax?: number;
  /** The router guessLeader names for an attempt (default: none). */
  readonly guess?: (attempt: number) => string | null;
  /** atLeader's answer; default: none until the test answers the recorded call. */
  readonly atLeader?: (call: Omit<AtLeaderCall, "answer" | "fail">) => Outcome | undefined;
  readonly activate?: (setup: Setup) => Outcome;
}

function setup(options: SetupOptions = {}): Setup {
  const clock = new SimClock();
  const multi = new FakeMulti();
  const links = new FakeLinks();
  const atLeaderCalls: AtLeaderCall[] = [];
  const activateCalls: GroupId[] = [];
  const events: string[] = [];
  const inactive = new Set<GroupId>();
  const guess = options.guess ?? (() => null);
  const partial: Omit<Setup, "requests"> = {
    clock,
    multi,
    links,
    atLeaderCalls,
    activateCalls,
    events,
    inactive,
  };
  const config: GroupRequestsOptions = {
    id: self,
    clock,
    multi: multi as unknown as MultiRaft,
    links: links as unknown as LinkRaftTransport,
    deadlineMs: options.deadlineMs ?? 10_000,
    ...(options.forwardsMax === undefined ? {} : { forwardsMax: options.forwardsMax }),
    isActive: (id) => !inactive.has(id),
    activate: (id) => {
      activateCalls.push(id);
      events.push("activate");
      return Promise.resolve(options.activate?.(built) ?? done);
    },
    guessLeader: (_id, attempt) => guess(attempt),
    atLeader: (id, command, origin) => {
      events.push("atLeader");
      return new Promise((answer, reject) => {
        atLeaderCalls.push({ group: id, command, origin, answer, fail: reject });
        const outcome = options.atLeader?.({ group: id, command, origin });
        if (outcome !== undefined) answer(outcome);
      });
    },
  };
  const requests = new GroupRequests(config);
  links.requests = requests;
  const built: Setup = { ...partial, requests };
  return built;
}

interface Tracked {
  outcome: Outcome | undefined;
  atMs: number | undefined;
}

/** Starts a request and records its outcome and when it came, without awaiting it. */
function track(s: Setup, command = new Uint8Array([1, 2, 3]), id = group): Tracked {
  const tracked: Tracked = { outcome: undefined, atMs: undefined };
  s.requests.request(id, command).then((outcome) => {
    tracked.outcome = outcome;
    tracked.atMs = s.clock.nowMs();
  });
  return tracked;
}

/** Lets pending work schedule its timers, moves virtual time by `ms`, and lets what it woke run. */
async function advance(s: Setup, ms: number): Promise<void> {
  await settleMicrotasks();
  s.clock.advance(ms);
  await settleMicrotasks();
}

/** Runs timers (settling microtasks between them) until the request settles; bounded. */
async function settle(s: Setup, tracked: Tracked): Promise<Outcome> {
  await driveUntil(s.clock, () => tracked.outcome !== undefined, { maxSteps: 200 });
  return tracked.outcome!;
}

describe("GroupRequests: where a request goes", () => {
  it("a request for a group this router leads is handled here, with this router as its origin", async () => {
    const s = setup({ atLeader: () => doneAt(4) });
    s.multi.nodes.set(group, node("leader", self));
    const command = new Uint8Array([5, 6]);
    const tracked = track(s, command);
    await settleMicrotasks();
    expect(tracked.outcome).toEqual(doneAt(4));
    expect(s.atLeaderCalls.map(({ group, command, origin }) => ({ group, command, origin }))).toEqual([
      { group, command, origin: self },
    ]);
    expect(s.links.sent).toEqual([]);
  });

  it("a follower forwards to the leader its replica knows, and that leader's ok answer settles the request", async () => {
    const s = setup({ guess: () => "c" });
    s.multi.nodes.set(group, node("follower", "b"));
    // A view into a larger buffer: the frame must carry exactly these bytes.
    const command = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);
    const tracked = track(s, command);
    await settleMicrotasks();
    expect(s.links.forwards()).toHaveLength(1);
    const { peer, frame } = s.links.lastForward();
    expect(peer).toBe("b");
    expect(frame.group).toBe(group);
    expect([...frame.command]).toEqual([1, 2, 3]);
    expect(tracked.outcome).toBeUndefined();
    s.requests.answered("b", result(frame.requestId, doneAt(12)));
    await settleMicrotasks();
    expect(tracked.outcome).toEqual({ ok: true, offset: 12, by: "b" });
    expect(s.atLeaderCalls).toEqual([]);
  });

  it("an ok answer with offset 0 reports no offset", async () => {
    const s = setup();
    s.multi.nodes.set(group, node("follower", "b"));
    const tracked = track(s);
    await settleMicrotasks();
    s.requests.answered("b", result(s.links.lastForward().frame.requestId, done));
    await settleMicrotasks();
    expect(tracked.outcome).toEqual({ ok: true, by: "b" });
  });

  it("the router that answered ok is the next request's first choice for a group this router does not replicate", async () => {
    const s = setup({ guess: (attempt) => ["c", "b"][attempt % 2]! });
    s.links.respond = (peer) => (peer === "b" ? done : failed("NoLeader", "no leader here"));
    const first = track(s);
    await settle(s, first);
    expect(first.outcome).toEqual({ ok: true, by: "b" });
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["c", "b"]);
    const second = track(s);
    await settle(s, second);
    expect(second.outcome).toEqual({ ok: true, by: "b" });
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["c", "b", "b"]);
  });

  it("an answer from another router than the one asked, or for an unknown request id, is ignored", async () => {
    const s = setup();
    s.multi.nodes.set(group, node("follower", "b"));
    const tracked = track(s);
    await settleMicrotasks();
    const { requestId } = s.links.lastForward().frame;
    s.requests.answered("c", result(requestId, doneAt(99)));
    s.requests.answered("b", result(requestId + 100, doneAt(98)));
    await settleMicrotasks();
    expect(tracked.outcome).toBeUndefined();
    s.requests.answered("b", result(requestId, doneAt(5)));
    await settleMicrotasks();
    expect(tracked.outcome).toEqual({ ok: true, offset: 5, by: "b" });
  });

  it("a replica removed from the group does not trust its node's leader", async () => {
    const s = setup({ guess: () => "c" });
    // This router's node still believes b leads, but the configuration no longer holds it.
    s.multi.nodes.set(group, node("follower", "b", ["b", "c", "d"]));
    track(s);
    await settleMicrotasks();
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["c"]);
    // Nor does it name that leader to a peer that asks it.
    s.requests.forwarded("d", forwardFrame(1));
    expect(s.links.results()[0]).toMatchObject({ peer: "d", frame: { code: "NotLeader", leader: "c" } });
  });

  it("a removed replica that still believes it leads does not handle the request", async () => {
    const s = setup({ guess: () => "c", atLeader: () => done });
    s.multi.nodes.set(group, node("leader", self, ["b", "c", "d"]));
    track(s);
    await settleMicrotasks();
    expect(s.atLeaderCalls).toEqual([]);
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["c"]);
  });

  it("an inactive partition is activated first, once, then routed", async () => {
    const s = setup({
      atLeader: () => done,
      activate: (setup) => {
        setup.inactive.delete(group);
        return done;
      },
    });
    s.inactive.add(group);
    s.multi.nodes.set(group, node("leader", self));
    const tracked = track(s);
    await settleMicrotasks();
    expect(tracked.outcome).toEqual(done);
    expect(s.activateCalls).toEqual([group]);
    expect(s.events).toEqual(["activate", "atLeader"]);
  });

  it("an activation that fails for good ends the request with its failure", async () => {
    const refusal = failed("UnknownTopic", "no such topic");
    const s = setup({ activate: () => refusal });
    s.inactive.add(group);
    s.multi.nodes.set(group, node("leader", self));
    const tracked = track(s);
    await settleMicrotasks();
    expect(tracked.outcome).toEqual(refusal);
    expect(s.events).toEqual(["activate"]);
  });
});

describe("GroupRequests: retries", () => {
  it("NotLeader naming another router redirects to it at once", async () => {
    const s = setup({ guess: () => "b" });
    const tracked = track(s);
    await settleMicrotasks();
    s.requests.answered("b", result(s.links.lastForward().frame.requestId, failed("NotLeader", "", "c")));
    await settleMicrotasks();
    expect(s.clock.nowMs()).toBe(0);
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["b", "c"]);
    s.requests.answered("c", result(s.links.lastForward().frame.requestId, done));
    await settleMicrotasks();
    expect(tracked.outcome).toEqual({ ok: true, by: "c" });
  });

  it("two routers naming each other are asked at most three times before a pause", async () => {
    const s = setup({ guess: () => "b" });
    s.links.respond = (peer) => failed("NotLeader", `${peer} does not lead`, peer === "b" ? "c" : "b");
    track(s);
    await settleMicrotasks();
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["b", "c", "b"]);
    await advance(s, 49);
    expect(s.links.forwards()).toHaveLength(3);
    await advance(s, 1);
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["b", "c", "b", "c", "b", "c"]);
  });

  it("NoLeader pauses 50 ms before asking again", async () => {
    const s = setup({ guess: () => "b" });
    s.links.respond = () => failed("NoLeader", "no leader yet");
    track(s);
    await settleMicrotasks();
    expect(s.links.forwards()).toHaveLength(1);
    await advance(s, 49);
    expect(s.links.forwards()).toHaveLength(1);
    await advance(s, 1);
    expect(s.links.forwards()).toHaveLength(2);
  });

  it("a leadership change here ends the pause at once", async () => {
    const s = setup({ atLeader: () => done });
    s.multi.nodes.set(group, node("follower", null));
    const tracked = track(s);
    await advance(s, 10);
    s.requests.leaderChanged(otherGroup, "a");
    await settleMicrotasks();
    expect(s.atLeaderCalls).toEqual([]);
    s.multi.nodes.get(group)!.role = "leader";
    s.requests.leaderChanged(group, self);
    await settleMicrotasks();
    expect(s.clock.nowMs()).toBe(10);
    expect(tracked.outcome).toEqual(done);
  });

  it("wake ends the pause at once", async () => {
    const s = setup({ atLeader: () => done });
    s.multi.nodes.set(group, node("follower", null));
    const tracked = track(s);
    await advance(s, 10);
    s.requests.wake(otherGroup);
    s.multi.nodes.get(group)!.role = "leader";
    await settleMicrotasks();
    expect(s.atLeaderCalls).toEqual([]);
    s.requests.wake(group);
    await settleMicrotasks();
    expect(s.clock.nowMs()).toBe(10);
    expect(tracked.outcome).toEqual(done);
  });

  it("a forward over a link that is down is Unavailable, and the next attempt asks another router", async () => {
    const s = setup({ deadlineMs: 100, guess: () => "c" });
    s.multi.nodes.set(group, node("follower", "b"));
    s.links.down.add("b");
    s.links.down.add("c");
    const tracked = track(s);
    await settleMicrotasks();
    expect(s.links.refused).toEqual(["b"]);
    const outcome = await settle(s, tracked);
    expect(s.links.refused).toEqual(["b", "c"]);
    expect(outcome).toMatchObject({ ok: false, code: "Unavailable" });
    expect(!outcome.ok && outcome.message).toMatch(/no link to c/);
  });

  it("a forward whose link closes is Unavailable, and the next attempt asks another router", async () => {
    const s = setup({ deadlineMs: 150, guess: () => "c" });
    s.multi.nodes.set(group, node("follower", "b"));
    const tracked = track(s);
    await settleMicrotasks();
    // Another link closing leaves the forward to b waiting.
    s.requests.linkClosed("c");
    await settleMicrotasks();
    await advance(s, 50);
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["b"]);
    s.requests.linkClosed("b");
    await settleMicrotasks();
    await advance(s, 50);
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["b", "c"]);
    s.requests.linkClosed("c");
    const outcome = await settle(s, tracked);
    expect(outcome).toMatchObject({ ok: false, code: "Unavailable" });
    expect(!outcome.ok && outcome.message).toMatch(/link to c closed/);
  });

  it("a forward not answered within 3 s is Unavailable, and a late answer is ignored", async () => {
    const s = setup({ guess: () => "c" });
    s.multi.nodes.set(group, node("follower", "b"));
    const tracked = track(s);
    await settleMicrotasks();
    const { requestId } = s.links.lastForward().frame;
    await advance(s, 2_999);
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["b"]);
    await advance(s, 1);
    s.requests.answered("b", result(requestId, doneAt(1)));
    await advance(s, 50);
    expect(tracked.outcome).toBeUndefined();
    expect(s.links.forwards().map(({ peer }) => peer)).toEqual(["b", "c"]);
  });

  it("a forward's timeout is cut to the request's deadline and ends it Unavailable", async () => {
    const s = setup({ deadlineMs: 1_000 });
    s.multi.nodes.set(group, node("follower", "b"));
    const tracked = track(s);
    const outcome = await settle(s, tracked);
    expect(s.links.forwards()).toHaveLength(1);
    expect(outcome).toMatchObject({ ok: false, code: "Unavailable" });
    expect(!outcome.ok && outcome.message).toMatch(/b did not answer within 1000 ms/);
  });
});

describe("GroupRequests: the deadline", () => {
  it("a request that keeps failing gives up at its deadline with the last failure's code", async () => {
    const s = setup({ deadlineMs: 200, guess: () => "b" });
    let answers = 0;
    s.links.respond = () =>
      ++answers < 4 ? failed("Unavailable", "busy") : failed("NoLeader", "no leader yet");
    const tracked = track(s);
    const outcome = await settle(s, tracked);
    expect(tracked.atMs).toBeGreaterThanOrEqual(200);
    expect(s.links.forwards()).toHaveLength(4);
    expect(outcome).toMatchObject({ ok: false, code: "NoLeader" });
    expect(!outcome.ok && outcome.message).toMatch(/no leader yet \(gave up after 200 ms\)/);
    expect(s.requests.stats.deadlinesMissed).toBe(1);
  });

  it("a request that never finds a router to ask gives up NoLeader at its deadline", async () => {
    const s = setup({ deadlineMs: 120 });
    const tracked = track(s);
    const outcome = await settle(s, tracked);
    expect(tracked.atMs).toBeGreaterThanOrEqual(120);
    expect(outcome).toMatchObject({ ok: false, code: "NoLeader" });
    expect(!outcome.ok && outcome.message).toMatch(/gave up after 120 ms/);
  });

  it("a failure that cannot be retried is returned at once", async () => {
    const refusal = failed("UnknownTopic", "no topic orders");
    const s = setup({ guess: () => "b" });
    s.links.respond = () => refusal;
    const tracked = track(s);
    await settleMicrotasks();
    expect(tracked.outcome).toEqual(refusal);
    expect(s.links.forwards()).toHaveLength(1);
    expect(s.requests.stats.retries).toBe(0);
  });

  it("a non-retriable failure at the leader is returned at once", async () => {
    const refusal = failed("TopicKindConflict", "orders is durable");
    const s = setup({ atLeader: () => refusal });
    s.multi.nodes.set(group, node("leader", self));
    const tracked = track(s);
    await settleMicrotasks();
    expect(tracked.outcome).toEqual(refusal);
    expect(s.atLeaderCalls).toHaveLength(1);
  });
});

describe("GroupRequests: forwarded requests", () => {
  it("a router that does not lead the group answers NotLeader with the leader it knows", () => {
    const s = setup();
    s.multi.nodes.set(group, node("follower", "c"));
    s.requests.forwarded("b", forwardFrame(5));
    expect(s.atLeaderCalls).toEqual([]);
    expect(s.links.results()).toEqual([
      {
        peer: "b",
        frame: expect.objectContaining({ requestId: 5, ok: false, code: "NotLeader", leader: "c" }),
      },
    ]);
  });

  it("a router that knows no leader answers NoLeader, never naming the asker or itself", () => {
    let guess: string | null = null;
    const s = setup({ guess: () => guess });
    s.multi.nodes.set(group, node("follower", null));
    for (const guessed of [null, "b", self]) {
      guess = guessed;
      s.requests.forwarded("b", forwardFrame(6));
    }
    expect(
      s.links.results().map(({ peer, frame }) => ({ peer, code: frame.code, leader: frame.leader })),
    ).toEqual([
      { peer: "b", code: "NoLeader", leader: "" },
      { peer: "b", code: "NoLeader", leader: "" },
      { peer: "b", code: "NoLeader", leader: "" },
    ]);
  });

  it("a leader handles a forwarded request and replies with its outcome, offset included", async () => {
    const s = setup();
    s.multi.nodes.set(group, node("leader", self));
    const command = new Uint8Array([4, 4]);
    s.requests.forwarded("b", forwardFrame(8, command));
    s.requests.forwarded("c", forwardFrame(9));
    s.requests.forwarded("d", forwardFrame(10));
    expect(s.atLeaderCalls.map(({ group, command, origin }) => ({ group, command, origin }))).toEqual([
      { group, command, origin: "b" },
      { group, command: new Uint8Array([1, 2, 3]), origin: "c" },
      { group, command: new Uint8Array([1, 2, 3]), origin: "d" },
    ]);
    expect(s.links.results()).toEqual([]);
    s.atLeaderCalls[0]!.answer(doneAt(42));
    s.atLeaderCalls[1]!.answer(failed("UnknownTopic", "no topic orders"));
    s.atLeaderCalls[2]!.fail(new Error("disk on fire"));
    await settleMicrotasks();
    expect(s.links.results()).toEqual([
      {
        peer: "b",
        frame: {
          kind: "ForwardResult",
          requestId: 8,
          ok: true,
          code: "Internal",
          message: "",
          leader: "",
          offset: 42,
        },
      },
      {
        peer: "c",
        frame: expect.objectContaining({
          requestId: 9,
          ok: false,
          code: "UnknownTopic",
          message: "no topic orders",
        }),
      },
      {
        peer: "d",
        frame: expect.objectContaining({
          requestId: 10,
          ok: false,
          code: "Internal",
          message: "disk on fire",
        }),
      },
    ]);
  });

  it("at most forwardsMax forwarded requests are handled at once", async () => {
    const s = setup({ forwardsMax: 2 });
    s.multi.nodes.set(group, node("leader", self));
    s.requests.forwarded("b", forwardFrame(1));
    s.requests.forwarded("b", forwardFrame(2));
    s.requests.forwarded("c", forwardFrame(3));
    expect(s.atLeaderCalls).toHaveLength(2);
    expect(s.links.results()).toEqual([
      { peer: "c", frame: expect.objectContaining({ requestId: 3, ok: false, code: "LimitReached" }) },
    ]);
    s.atLeaderCalls[0]!.answer(done);
    await settleMicrotasks();
    s.requests.forwarded("c", forwardFrame(4));
    expect(s.atLeaderCalls).toHaveLength(3);
  });
});

describe("GroupRequests: bounds and stopping", () => {
  it("at most forwardsMax forwards wait at once", async () => {
    const s = setup({ forwardsMax: 2 });
    s.multi.nodes.set(group, node("follower", "b"));
    const first = track(s);
    track(s);
    const third = track(s);
    await settleMicrotasks();
    expect(s.links.forwards()).toHaveLength(2);
    expect(third.outcome).toMatchObject({ ok: false, code: "LimitReached" });
    s.requests.answered("b", result(s.links.forwards()[0]!.frame.requestId, done));
    await settleMicrotasks();
    expect(first.outcome).toEqual({ ok: true, by: "b" });
    const fourth = track(s);
    await settleMicrotasks();
    expect(s.links.forwards()).toHaveLength(3);
    expect(fourth.outcome).toBeUndefined();
  });

  it("stop settles waiting forwards with ShuttingDown", async () => {
    const s = setup();
    s.multi.nodes.set(group, node("follower", "b"));
    const tracked = track(s);
    await settleMicrotasks();
    expect(tracked.outcome).toBeUndefined();
    s.requests.stop();
    await settleMicrotasks();
    expect(tracked.outcome).toMatchObject({ ok: false, code: "ShuttingDown" });
    expect(tracked.atMs).toBe(0);
    expect(s.clock.pendingTimers).toBe(0);
  });
});
