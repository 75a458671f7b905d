// Membership: SWIM + Lifeguard as a pure core (core.ts), its codec, config and view events.
// The router consumes the view as a stream of ViewEvents from `MembershipCore.takeOutput()`.
export { LocalHealth } from "./awareness.ts";
export { BroadcastQueue, retransmitLimit } from "./broadcast-queue.ts";
export {
  aliveMessageBytesMax,
  decodePacket,
  decodePushPull,
  encodeMessage,
  encodePacket,
  encodePushPull,
  type MemberRecord,
  type Message,
  membershipProtocolVersion,
  messagesPerPacketMax,
  type PushPull,
} from "./codec.ts";
export {
  checkMembershipConfig,
  defaultLanConfig,
  defaultWanConfig,
  type MembershipConfig,
  packetBudgetBytesMin,
} from "./config.ts";
export {
  type JoinResult,
  MembershipCore,
  type MembershipCoreOptions,
  type MembershipOutput,
  type MembershipStats,
  type OutboundPacket,
  outputPacketsMax,
  type PushPullAnswer,
  type PushPullRequest,
  type PushPullResult,
  pushPullIntervalScaledMs,
  seedsMax,
  type UpdateSelfResult,
} from "./core.ts";
export {
  type DropReason,
  dropReasons,
  type JoinError,
  type MembershipConfigError,
  type MembershipDecodeError,
  type PushPullError,
  type UpdateSelfError,
} from "./errors.ts";
export {
  addressesMax,
  checkAddress,
  checkMemberId,
  checkMemberInfo,
  memberId,
  metadataBytesMax,
  metadataKeysMax,
} from "./member-info.ts";
export { suspicionTimeoutAfterMs, suspicionTimeoutMs } from "./suspicion.ts";
export type { Member, MemberId, MemberInfo, MemberState, ViewEvent, ViewEventKind } from "./types.ts";
