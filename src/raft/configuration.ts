// Group membership for Raft: voters and learners, single-server changes (Raft thesis §4.1)
// and their encoding inside "config" log entries.
//
// Invariant: a node is a voter or a learner, never both. A change moves the configuration by
// one server at a time, so any two consecutive majorities overlap (thesis §4.1). The core
// applies a change when the entry is applied, allows one pending change at a time, and none
// before the leader has committed an entry of its own term (the fix to the single-server bug
// found in 2015, thesis errata).
import type { Configuration, NodeId } from "../storage/index.ts";

export type ConfigChangeType = "addVoter" | "addLearner" | "remove";

export interface ConfigChange {
  readonly type: ConfigChangeType;
  readonly node: NodeId;
}

const changeTypes: readonly ConfigChangeType[] = ["addVoter", "addLearner", "remove"];
const nodeIdMaxBytes = 255;

export function encodeConfigChange(change: ConfigChange): Uint8Array {
  const id = Buffer.from(change.node, "utf8");
  const bytes = new Uint8Array(2 + id.length);
  bytes[0] = changeTypes.indexOf(change.type);
  bytes[1] = id.length;
  bytes.set(id, 2);
  return bytes;
}

export function decodeConfigChange(bytes: Uint8Array): ConfigChange | null {
  if (bytes.length < 2) return null;
  const type = changeTypes[bytes[0]!];
  const length = bytes[1]!;
  if (type === undefined || length === 0 || bytes.length !== 2 + length) return null;
  return { type, node: Buffer.from(bytes.subarray(2)).toString("utf8") };
}

/** Why a change cannot apply to `configuration`, or null if it can. */
export function configChangeProblem(configuration: Configuration, change: ConfigChange): string | null {
  if (change.node.length === 0 || Buffer.byteLength(change.node) > nodeIdMaxBytes) {
    return `node id must be 1..${nodeIdMaxBytes} bytes`;
  }
  const isVoter = configuration.voters.includes(change.node);
  const isLearner = configuration.learners.includes(change.node);
  switch (change.type) {
    case "addVoter":
      return isVoter ? `${change.node} is already a voter` : null;
    case "addLearner":
      if (isLearner) return `${change.node} is already a learner`;
      return isVoter ? `${change.node} is a voter; remove it instead of demoting it` : null;
    case "remove":
      if (!isVoter && !isLearner) return `${change.node} is not in the group`;
      return isVoter && configuration.voters.length === 1 ? "cannot remove the last voter" : null;
  }
}

export function applyConfigChange(configuration: Configuration, change: ConfigChange): Configuration {
  const voters = configuration.voters.filter((node) => node !== change.node);
  const learners = configuration.learners.filter((node) => node !== change.node);
  if (change.type === "addVoter") voters.push(change.node);
  if (change.type === "addLearner") learners.push(change.node);
  return { voters: voters.sort(), learners: learners.sort() };
}

/** Votes needed to win among `voterCount` voters. */
export function quorumOf(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}
