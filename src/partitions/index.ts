// Partitions: topic names, their validation, and topic -> partition.
export type { TopicError } from "./errors.ts";
export { type PartitionId, partitionCount, partitionOf, partitionOfBytes } from "./partition.ts";
export { checkTopic, isValidTopic, type TopicCheck, topicMaxBytes } from "./topic.ts";
