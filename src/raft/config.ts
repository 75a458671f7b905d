// The Raft node's configuration: timers in ticks (one ticker drives every group of a router;
// `tickMs` turns ticks into time) and the flow-control limits (STYLE.md, Limits).
//
// Why these defaults: a region's RTT is well under 10 ms, so a 100 ms heartbeat is 10+ RTTs of
// slack. Election timeouts are drawn from [electionTicks, 2 * electionTicks) ticks, 300-600 ms:
// a dead leader is replaced in well under a second (NATS JetStream uses 4-9 s, Redpanda 1.5 s).
// Pre-vote and check-quorum keep a partitioned replica from disrupting a healthy leader.
// Heartbeats are never queued behind data: the shell sends them in their own coalesced frame
// ahead of appends, and in-flight appends per follower are bounded by bytes and messages.

export interface RaftConfig {
  /** Milliseconds per tick, for the shell's ticker. Default 50. */
  readonly tickMs: number;
  /** Ticks between leader heartbeats. Default 2 (100 ms). Must be < electionTicks. */
  readonly heartbeatTicks: number;
  /** Minimum election timeout in ticks; the actual one is random in [n, 2n). Default 6 (300 ms). */
  readonly electionTicks: number;
  /** Pre-vote (Raft thesis §9.6): a candidate must first learn it could win. Default true. */
  readonly preVote: boolean;
  /** Check-quorum (thesis §6.2): a leader steps down without a quorum's contact. Default true. */
  readonly checkQuorum: boolean;
  /** Most entry bytes in one append message (at least one entry is always sent). Default 1 MiB. */
  readonly maxMessageBytes: number;
  /** Most append messages in flight to one follower (pipelining). Default 64. */
  readonly maxInflightMessages: number;
  /** Most entry bytes in flight to one follower. Default 8 MiB. */
  readonly maxInflightBytes: number;
  /** Most bytes of proposed, uncommitted entries a leader accepts (then Overloaded). Default 64 MiB. */
  readonly maxUncommittedBytes: number;
  /** Most entry bytes handed to the application in one Ready. Default 4 MiB. */
  readonly maxApplyBytes: number;
  /** Largest single proposal. Default 8 MiB (the store's entry limit). */
  readonly maxEntryBytes: number;
  /** Whether an idle group's leader quiesces it (no heartbeats, no timers). Default true. */
  readonly quiesce: boolean;
  /**
   * Most entries a learner may trail the commit index by and still be made a voter (it must
   * hold some of the log). Under a steady write load a streaming learner always trails by the
   * entries in flight, so 0 would never promote it; a few hundred entries are replicated in
   * milliseconds. Default 256.
   */
  readonly promoteLagMaxEntries: number;
}

export const defaultRaftConfig: RaftConfig = {
  tickMs: 50,
  heartbeatTicks: 2,
  electionTicks: 6,
  preVote: true,
  checkQuorum: true,
  maxMessageBytes: 1024 * 1024,
  maxInflightMessages: 64,
  maxInflightBytes: 8 * 1024 * 1024,
  maxUncommittedBytes: 64 * 1024 * 1024,
  maxApplyBytes: 4 * 1024 * 1024,
  maxEntryBytes: 8 * 1024 * 1024,
  quiesce: true,
  promoteLagMaxEntries: 256,
};

/** Returns a description of each invalid field; empty if the config is valid. */
export function checkRaftConfig(config: RaftConfig): string[] {
  const problems: string[] = [];
  const positive = (name: keyof RaftConfig) => {
    const value = config[name];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
      problems.push(`${name} must be a positive integer, got ${String(value)}`);
    }
  };
  for (const name of [
    "tickMs",
    "heartbeatTicks",
    "electionTicks",
    "maxMessageBytes",
    "maxInflightMessages",
    "maxInflightBytes",
    "maxUncommittedBytes",
    "maxApplyBytes",
    "maxEntryBytes",
  ] as const) {
    positive(name);
  }
  if (config.heartbeatTicks >= config.electionTicks) {
    problems.push(
      `heartbeatTicks (${config.heartbeatTicks}) must be below electionTicks (${config.electionTicks})`,
    );
  }
  if (config.maxEntryBytes > config.maxUncommittedBytes) {
    problems.push("maxEntryBytes must not exceed maxUncommittedBytes");
  }
  if (!Number.isSafeInteger(config.promoteLagMaxEntries) || config.promoteLagMaxEntries < 0) {
    problems.push(
      `promoteLagMaxEntries must be a non-negative integer, got ${String(config.promoteLagMaxEntries)}`,
    );
  }
  return problems;
}
