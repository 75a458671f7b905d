// Membership configuration: every timer, multiplier and bound of the SWIM + Lifeguard core,
// with LAN defaults (one region, one datacenter) and WAN defaults (between regions) written as
// changes from LAN, as memberlist's config.go does.
//
// Where the LAN numbers come from: in a region we want a verdict in a few seconds, since
// SWIM's verdict is what moves replicas (DESIGN.md, "two clocks of failure": Raft heartbeats
// fail over leaders in a few hundred ms without waiting for it), and a verdict that is rarely
// wrong, since a wrong one moves data for nothing. RTT in a region is well under 1 ms; the
// probe timeout covers event-loop and GC stalls, and Lifeguard stretches it on a struggling node.
//
// Measured in the simulator (bench/membership.ts, simulation.test.ts: these cores on a
// simulated network, 1-5 ms one way, p50 / p99 over all crashes of all seeds), with these
// defaults: every live member marks a crash dead in 2.95 / 4.10 s at 100 members, 4.22 / 5.27 s
// at 1,000, 5.62 / 7.02 s at 10,000 (first suspicion ~0.5 s, then the suspicion floor
// 4 * log10(N) * 300 ms once 2 members confirm); a join reaches everyone in 0.22 / 0.38 s,
// 0.33 / 0.45 s, 0.39 / 0.57 s; each member sends 6.7 packets (~90 bytes) a second, plus
// push-pull (75 bytes/s at 100 members, 2.5 KB/s at 10,000). Alternatives at 100 members
// (8 seeds; false positives = healthy members declared dead, 4 seeds x 30 s with 5 members
// whose input is 0.5-3 s late, Lifeguard on; at 300 / 100 / x4 plain SWIM declares all 380):
//   probe / timeout / suspicion   detection p50 / p99   false positives
//   1000 / 500 / x4 (memberlist)   9.7 / 14.8 s          0
//    500 / 200 / x4                4.8 /  6.7 s          0
//    300 / 100 / x4 (default)      3.0 /  3.5 s          2
//    300 / 100 / x5                3.6 /  4.0 s          0
//    300 / 100 / x3                2.5 /  2.8 s          14
//    200 /  80 / x4                2.0 /  2.5 s          6
// 300 / 100 / x4 is the knee: 3x faster than memberlist's LAN profile, and going faster
// multiplies the false positives. Under 10% loss none of them declared anyone dead.
// WAN (below), 50 members, 20-250 ms one way: 3 s / 1 s / x6 detects in 36 / 46 s with no
// false positive under 10% loss or 3 slow members (memberlist's WAN profile, 5 s probes, takes
// 62 s even at 20-150 ms).
// 2 s / 0.7 s / x5 would take 21 / 25 s, also clean in the simulator; but its loss is
// independent per datagram and its RTTs bounded, while WAN paths drop packets in bursts for
// seconds and a wrong WAN verdict moves replicas between regions. The WAN keeps the margin.
//
// Invariant (checkMembershipConfig): 2 * probeTimeoutMs <= probeIntervalMs, so the indirect
// round (ping-req, the intermediary's ping, its ack or its nack after probeTimeoutMs) fits in
// the rest of the probe period; a packet budget holds the largest Alive plus a ping.
import { aliveMessageBytesMax, packetHeaderBytes, probeMessageBytesMax } from "./codec.ts";
import type { MembershipConfigError } from "./errors.ts";

export interface MembershipConfig {
  /**
   * ms between the starts of two probes (SWIM's protocol period, §3.1). Each probes one member,
   * round-robin (§4.3). Lifeguard §IV-A multiplies it by (local health + 1). Lower detects
   * sooner at 1 ping + 1 ack per member per period. Limit: 10 ms - 10 min.
   */
  readonly probeIntervalMs: number;
  /**
   * ms to wait for a direct ack before asking `indirectChecks` members to probe (SWIM §3.1);
   * also how long an intermediary waits before it nacks. Should cover the p99 RTT plus a GC
   * or event-loop stall. Multiplied by (local health + 1). Limit: 1 ms - probeIntervalMs / 2.
   */
  readonly probeTimeoutMs: number;
  /**
   * Members asked to probe a target that missed its direct ack (SWIM's k, §3.1). More routes
   * around a lossy path, at k more ping-reqs per missed ack. Limit: 0-16.
   */
  readonly indirectChecks: number;
  /**
   * Suspicion timeout floor = suspicionMult * max(1, log10(N)) * probeIntervalMs (SWIM §4.2),
   * reached once suspicionMult - 2 members confirm independently (Lifeguard §IV-B).
   * Higher gives a slow member longer to refute. Limit: 1-100.
   */
  readonly suspicionMult: number;
  /**
   * The suspicion timeout starts at suspicionMaxTimeoutMult times the floor and shrinks with
   * each confirmation (Lifeguard §IV-B): an isolated prober, whose suspicions nobody confirms,
   * waits the longest. Limit: 1-100.
   */
  readonly suspicionMaxTimeoutMult: number;
  /**
   * Each broadcast is piggybacked retransmitMult * ceil(log10(N + 1)) times (SWIM §4.1), so
   * dissemination keeps up as the cluster grows. Limit: 1-100.
   */
  readonly retransmitMult: number;
  /**
   * ms between gossip rounds: pending broadcasts that found no probe to ride on go to
   * `gossipNodes` random members. Faster than probing, since news should not wait for the next
   * probe. Limit: 1 ms - 10 min.
   */
  readonly gossipIntervalMs: number;
  /** Members each gossip round sends to; 0 disables gossip rounds (piggyback only). Limit: 0-16. */
  readonly gossipNodes: number;
  /**
   * ms after a member is declared dead during which gossip still goes to it, so a member
   * that was only paused hears it and refutes. Limit: 0 - 1 h.
   */
  readonly gossipToTheDeadMs: number;
  /**
   * ms between full state exchanges with one random member over a reliable link (anti-entropy:
   * repairs what gossip missed, and heals a split). Scaled up past 32 members, as memberlist
   * does, so the cluster-wide cost stays flat. Limit: 100 ms - 1 h.
   */
  readonly pushPullIntervalMs: number;
  /**
   * ms a push-pull may take (connect, send, receive) before the shell gives up and reports
   * `pushPullFailed`; the core forgets a push-pull nobody reported after this long.
   * Limit: 10 ms - 10 min.
   */
  readonly pushPullTimeoutMs: number;
  /**
   * Lifeguard's local health multiplier is a score in [0, awarenessMax - 1]; timers are
   * multiplied by (score + 1). 8 lets a struggling member slow its probes to 8x. Limit: 1-64.
   */
  readonly awarenessMax: number;
  /**
   * ms a dead or left member at least stays in the table as a tombstone, so late gossip
   * carrying an old incarnation cannot bring it back. Tombstones are reaped when a probe round
   * wraps (every N probe periods), or at once when the table is full. Limit: 0 - 1 day.
   */
  readonly tombstoneRetentionMs: number;
  /** Members in the table, tombstones included; past it new members are dropped. Limit: 2 - 1,000,000. */
  readonly membersMax: number;
  /**
   * Largest gossip packet (plaintext) this core sends or accepts, in bytes: a 1400-byte UDP
   * payload (fits a 1500-byte Ethernet MTU with IP and UDP headers) minus the shell's
   * encryption overhead (keyring.ts: 29 bytes). Limit: room for the largest Alive and a ping -
   * 65,507 (the largest UDP payload).
   */
  readonly packetBudgetBytes: number;
  /**
   * Largest push-pull payload, in bytes, either way. At ~150 bytes a member, 8 MiB holds
   * ~50,000 members. Past it the state sent is cut (live members first) and counted.
   * Limit: 64 KiB - 256 MiB.
   */
  readonly pushPullBytesMax: number;
  /**
   * Broadcasts waiting to be piggybacked (one per member: newer news replaces older). Past it
   * the most-sent are dropped first. Limit: 16 - 1,000,000.
   */
  readonly broadcastQueueMax: number;
  /** Indirect probes this member runs for others at once; past it ping-reqs are dropped. Limit: 1-10,000. */
  readonly indirectProbesPendingMax: number;
  /**
   * Lifeguard (Dadgar et al., 2018) on top of SWIM. true (the default): local health stretches
   * the probe interval and timeout (§IV-A), intermediaries nack, suspicion timeouts start at
   * suspicionMaxTimeoutMult times the floor and shrink with confirmations (§IV-B), and a ping
   * to a suspect carries the suspicion (§IV-C). false: plain SWIM, for comparison only: fixed
   * timers, no nacks, a fixed suspicion timeout of suspicionMult * max(1, log10 N) * probe
   * interval, no buddy. The simulations measure what it buys (README, membership figures).
   */
  readonly lifeguard: boolean;
}

/** Defaults for one region (a LAN pool): fast timers, low RTT. */
export const defaultLanConfig: MembershipConfig = Object.freeze({
  probeIntervalMs: 300,
  probeTimeoutMs: 100,
  indirectChecks: 3,
  suspicionMult: 4,
  suspicionMaxTimeoutMult: 6,
  retransmitMult: 4,
  gossipIntervalMs: 100,
  gossipNodes: 3,
  gossipToTheDeadMs: 20_000,
  pushPullIntervalMs: 20_000,
  pushPullTimeoutMs: 5_000,
  awarenessMax: 8,
  tombstoneRetentionMs: 120_000,
  membersMax: 20_000,
  packetBudgetBytes: 1400 - 29,
  pushPullBytesMax: 8 * 1024 * 1024,
  broadcastQueueMax: 4096,
  indirectProbesPendingMax: 64,
  lifeguard: true,
});

/**
 * Defaults for the pool between regions (a WAN pool): RTTs of 50-300 ms and lossier paths, so
 * slower probes with a timeout of ~3x a transcontinental p99, longer suspicion (6), gossip to
 * one more member less often, and rarer full syncs.
 */
export const defaultWanConfig: MembershipConfig = Object.freeze({
  ...defaultLanConfig,
  probeIntervalMs: 3000,
  probeTimeoutMs: 1000,
  suspicionMult: 6,
  gossipIntervalMs: 500,
  gossipNodes: 4,
  gossipToTheDeadMs: 60_000,
  pushPullIntervalMs: 60_000,
  pushPullTimeoutMs: 15_000,
  tombstoneRetentionMs: 300_000,
});

/** Smallest packet budget: the packet header, the largest Alive, and a ping or indirect ping. */
export const packetBudgetBytesMin = packetHeaderBytes + aliveMessageBytesMax + probeMessageBytesMax;

type IntegerField = {
  [K in keyof MembershipConfig]: MembershipConfig[K] extends number ? K : never;
}[keyof MembershipConfig];

const integerRanges: readonly (readonly [IntegerField, number, number, string])[] = [
  ["probeIntervalMs", 10, 600_000, "ms"],
  ["probeTimeoutMs", 1, 600_000, "ms"],
  ["indirectChecks", 0, 16, ""],
  ["suspicionMult", 1, 100, ""],
  ["suspicionMaxTimeoutMult", 1, 100, ""],
  ["retransmitMult", 1, 100, ""],
  ["gossipIntervalMs", 1, 600_000, "ms"],
  ["gossipNodes", 0, 16, ""],
  ["gossipToTheDeadMs", 0, 3_600_000, "ms"],
  ["pushPullIntervalMs", 100, 3_600_000, "ms"],
  ["pushPullTimeoutMs", 10, 600_000, "ms"],
  ["awarenessMax", 1, 64, ""],
  ["tombstoneRetentionMs", 0, 86_400_000, "ms"],
  ["membersMax", 2, 1_000_000, ""],
  ["packetBudgetBytes", packetBudgetBytesMin, 65_507, "bytes"],
  ["pushPullBytesMax", 64 * 1024, 256 * 1024 * 1024, "bytes"],
  ["broadcastQueueMax", 16, 1_000_000, ""],
  ["indirectProbesPendingMax", 1, 10_000, ""],
];

/** Every problem with `config`, one error per field; empty when it is valid. */
export function checkMembershipConfig(config: MembershipConfig): MembershipConfigError[] {
  const errors: MembershipConfigError[] = [];
  const invalid = (field: string, message: string) =>
    errors.push({ tag: "InvalidMembershipConfig", field, message: `membership.${field}: ${message}` });
  for (const [field, min, max, unit] of integerRanges) {
    const value = config[field];
    if (!(Number.isSafeInteger(value) && value >= min && value <= max)) {
      const suffix = unit === "" ? "" : ` ${unit}`;
      invalid(field, `must be an integer from ${min} to ${max}${suffix}, got ${value}`);
    }
  }
  if (typeof config.lifeguard !== "boolean")
    invalid("lifeguard", `must be true or false, got ${config.lifeguard}`);
  if (errors.length === 0 && config.probeTimeoutMs * 2 > config.probeIntervalMs) {
    invalid(
      "probeTimeoutMs",
      `must be at most half of probeIntervalMs (${config.probeIntervalMs} ms), so the indirect probes fit in the probe period; got ${config.probeTimeoutMs}`,
    );
  }
  return errors;
}
