// Partitions: topic names, their validation, and topic -> partition.

export {
  type Assignment,
  assignmentRoutersMax,
  computeAssignment,
  defaultReplicationFactor,
  replicationFactorMax,
} from "./assignment.ts";
export {
  activationReplicasMax,
  type ControllerCommand,
  type ControllerCommandDecode,
  type ControllerCommandError,
  type ControllerCommandKind,
  controllerCommandProblem,
  decodeControllerCommand,
  encodeControllerCommand,
  routerIdProblem,
} from "./controller-commands.ts";
export {
  type ControllerApplyResult,
  type ControllerRestore,
  ControllerState,
  controllerGroup,
  controllerVotersMax,
  controllerVotersTarget,
} from "./controller-state.ts";
export type { TopicError } from "./errors.ts";
export { type PartitionId, partitionCount, partitionOf, partitionOfBytes } from "./partition.ts";
export {
  planReconfiguration,
  type ReconfigurationInput,
  type ReconfigurationStep,
  type ReplicaProgress,
} from "./reconfiguration.ts";
export { checkTopic, isValidTopic, type TopicCheck, topicMaxBytes } from "./topic.ts";
