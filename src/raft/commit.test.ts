// Property (STYLE.md, Tests 2): the leader's commit index, computed incrementally as
// acknowledgements arrive (core.ts maybeCommit), equals a plain reference over the final match
// vector: the highest index held by a quorum of voters, if that entry is of the leader's term,
// else the commit index it started with (Raft §5.3, §5.4.2; thesis §3.6.2). Learners never count.
import fc from "fast-check";
import { expect, it } from "vitest";
import { MemoryStore } from "../storage/index.ts";
import { defaultRaftConfig } from "./config.ts";
import { quorumOf } from "./configuration.ts";
import { RaftNode } from "./core.ts";
import { emptyMessage } from "./types.ts";

const group = 3;

interface Scenario {
  readonly voterCount: number;
  readonly learnerCount: number;
  readonly term: number;
  /** Terms of the entries before this leader's, non-decreasing, all below `term`. */
  readonly priorTerms: number[];
  readonly initialCommit: number;
  readonly proposals: number;
  /** Whether the leader persisted (advanced) its own new entries. */
  readonly leaderPersisted: boolean;
  /** (follower slot, acknowledged index as a fraction of the last index), in delivery order. */
  readonly acks: [number, number][];
}

const scenario: fc.Arbitrary<Scenario> = fc
  .record({
    voterCount: fc.integer({ min: 1, max: 7 }),
    learnerCount: fc.integer({ min: 0, max: 2 }),
    term: fc.integer({ min: 2, max: 6 }),
    priorTermSeeds: fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 6 }),
    commitFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    proposals: fc.integer({ min: 0, max: 4 }),
    leaderPersisted: fc.boolean(),
    acks: fc.array(fc.tuple(fc.nat(), fc.double({ min: 0, max: 1, noNaN: true })), { maxLength: 20 }),
  })
  .map(({ priorTermSeeds, commitFraction, ...rest }) => {
    const priorTerms = priorTermSeeds.map((seed) => Math.min(seed, rest.term - 1)).sort((x, y) => x - y);
    return { ...rest, priorTerms, initialCommit: Math.floor(commitFraction * priorTerms.length) };
  });

function runLeader(s: Scenario): { committed: number; expected: number } {
  const voters = ["a", ...Array.from({ length: s.voterCount - 1 }, (_, i) => `v${i}`)];
  const learners = Array.from({ length: s.learnerCount }, (_, i) => `l${i}`);
  const followers = [...voters.slice(1), ...learners];
  const store = new MemoryStore();
  store.compact(group, {
    meta: { index: 0, term: 0, configuration: { voters, learners } },
    data: new Uint8Array(0),
  });
  store.append(
    group,
    s.priorTerms.map((term, i) => ({ index: i + 1, term, kind: "normal", data: new Uint8Array(1) })),
  );
  store.setHardState(group, { term: s.term - 1, vote: null, commit: s.initialCommit, damagedUpTo: 0 });
  const leader = new RaftNode({
    id: "a",
    group,
    log: store.group(group),
    random: { nextInt: () => 0, nextFloat: () => 0 },
    config: { ...defaultRaftConfig, preVote: false, quiesce: false },
  });
  while (leader.role === "follower") leader.tick();
  for (const from of voters.slice(1)) {
    if (leader.role === "candidate")
      leader.step({ ...emptyMessage, type: "voteResponse", group, from, to: "a", term: s.term });
  }
  expect([leader.role, leader.term]).toEqual(["leader", s.term]);
  for (let i = 0; i < s.proposals; i++) leader.propose(new Uint8Array(2));
  const ready = leader.ready();
  if (s.leaderPersisted) {
    store.append(group, ready.entries);
    leader.advance(ready);
  }
  const lastIndex = leader.log.lastIndex();
  const acked = new Map<string, number>();
  for (const [slot, fraction] of s.acks) {
    if (followers.length === 0) break;
    const from = followers[slot % followers.length]!;
    const index = Math.floor(fraction * lastIndex);
    acked.set(from, Math.max(acked.get(from) ?? 0, index));
    leader.step({ ...emptyMessage, type: "appendResponse", group, from, to: "a", term: s.term, index });
  }

  // The reference: sort the voters' matches, take the quorum-th highest, check its term.
  const selfMatch = s.leaderPersisted ? lastIndex : s.priorTerms.length;
  const matches = voters.map((id) => (id === "a" ? selfMatch : (acked.get(id) ?? 0))).sort((x, y) => y - x);
  const candidate = matches[quorumOf(voters.length) - 1]!;
  const termAt = (index: number) =>
    index === 0 ? 0 : index <= s.priorTerms.length ? s.priorTerms[index - 1]! : s.term;
  const expected = candidate > s.initialCommit && termAt(candidate) === s.term ? candidate : s.initialCommit;
  return { committed: leader.log.committed, expected };
}

it("§3.6.2 the leader's commit index is the highest index on a quorum of voters, if of its term", () => {
  fc.assert(
    fc.property(scenario, (s) => {
      const { committed, expected } = runLeader(s);
      expect(committed).toBe(expected);
    }),
    { numRuns: 500 },
  );
});

it("§5.4.2 the reference is not vacuous: earlier-term quorums and learner-only acks occur and do not commit", () => {
  // Two fixed cases the random ones must agree with, so the property cannot pass by accident.
  const earlierTerm = runLeader({
    voterCount: 3,
    learnerCount: 1,
    term: 4,
    priorTerms: [1, 2],
    initialCommit: 1,
    proposals: 0,
    leaderPersisted: true,
    acks: [[0, 2 / 3]], // v0 acknowledges index 2 (term 2): a quorum, but not of term 4
  });
  expect(earlierTerm).toEqual({ committed: 1, expected: 1 });
  const learnerOnly: Scenario = {
    voterCount: 3,
    learnerCount: 1,
    term: 2,
    priorTerms: [],
    initialCommit: 0,
    proposals: 1,
    leaderPersisted: true,
    acks: [[2, 1]], // only the learner acknowledges
  };
  expect(runLeader(learnerOnly)).toEqual({ committed: 0, expected: 0 });
  expect(runLeader({ ...learnerOnly, acks: [[1, 1]] })).toEqual({ committed: 2, expected: 2 });
});
