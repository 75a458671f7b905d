// Raft: the consensus core of one group (core.ts) and its parts; the multi-Raft driver that
// runs thousands of groups on one router comes beside it.

export { type Beat, type BeatResponse, fromBatch, type RaftBatch, toBatches } from "./batch.ts";
export {
  decodeRaftBatch,
  encodeRaftBatch,
  type RaftBatchDecode,
  type RaftBatchDecodeError,
} from "./batch-codec.ts";
export { checkRaftConfig, defaultRaftConfig, type RaftConfig } from "./config.ts";
export {
  applyConfigChange,
  type ConfigChange,
  type ConfigChangeType,
  decodeConfigChange,
  encodeConfigChange,
  quorumOf,
} from "./configuration.ts";
export { RaftNode, type RaftNodeOptions } from "./core.ts";
export type { ProposalError, ProposalResult } from "./errors.ts";
export {
  type LinkRaftOversized,
  LinkRaftTransport,
  type LinkRaftTransportOptions,
  type LinkRaftTransportStats,
  type MeshFrame,
} from "./link-transport.ts";
export {
  type Applied,
  MultiRaft,
  type MultiRaftOptions,
  type MultiRaftStats,
  RaftRequestError,
  type RaftTransport,
  type StateMachine,
} from "./multi-raft.ts";
export {
  emptyMessage,
  type Message,
  type MessageType,
  messageTypes,
  type ReadState,
  type Ready,
  type Role,
  type SoftState,
} from "./types.ts";
