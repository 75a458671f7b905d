// Delivery: who gets a message. So far the ephemeral fan-out index of one router; durable
// subscriptions, acks and redelivery join here later.

export {
  type DeclareTopicCommand,
  type DropRouterCommand,
  decodePartitionCommand,
  encodePartitionCommand,
  type InterestCommand,
  isValidProducerId,
  isValidRouterId,
  type PartitionCommand,
  type PartitionCommandDecode,
  type PartitionDecodeError,
  type PublishCommand,
  partitionCommandVersion,
  producerIdMaxBytes,
  routerIdMaxBytes,
  sequenceMax,
  type TopicKind,
  topicKinds,
} from "./partition-commands.ts";
export {
  type ApplyResult,
  defaultPartitionStateLimits,
  PartitionState,
  type PartitionStateLimits,
  type PartitionStateRestore,
  type PartitionStateStats,
  type ProducerState,
  partitionSnapshotVersion,
} from "./partition-state.ts";
export {
  decodeReplayRequest,
  encodeReplayRequest,
  isReplayRequest,
  type ReplayRequest,
} from "./replay-request.ts";
export { StreamIndex } from "./stream-index.ts";
export { type SubscriptionEntry, SubscriptionTable } from "./subscription-table.ts";
