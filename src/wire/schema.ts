// The frames of Neuron's wire protocol, as Avro schemas (avsc), and their TypeScript shapes.
//
// A frame on the wire is: u32 big-endian length of what follows | u8 wire version | u8 kind |
// the Avro encoding of that kind's record. The version is in every frame so a peer speaking
// another version is detected at its first frame, not by misreading one (Thynapse seed).
//
// Rules for changing this file: never reuse a kind number; add fields only with a new wire
// version; error codes are appended, never reordered (they are an Avro enum, encoded by index).
//
// Trap: avsc reads map and array block counts without bounding them by the bytes left, so a
// forged count could make it loop for minutes. `headersType` is the bounded map reader of
// avro-bounded.ts (shared with membership and Raft batches).
import avro from "avsc";
import { boundedStringMapType } from "./avro-bounded.ts";

export const wireVersion = 3;

/** Error codes that cross the wire (in Refusal and Goodbye frames). Append only. */
export const errorCodes = [
  "Internal",
  "MalformedFrame",
  "UnsupportedVersion",
  "FrameTooLarge",
  "PayloadTooLarge",
  "InvalidTopic",
  "UnknownSubscription",
  "DuplicateSubscription",
  "TooManySubscriptions",
  "TooManyHeaders",
  "ShuttingDown",
  "NotAuthorized",
  "ProtocolViolation",
  "SlowConsumer",
  "TooManyClients",
  "NotLeader",
  "NoLeader",
  "UnknownTopic",
  "TopicKindConflict",
  "OutOfOrder",
  "Unavailable",
  "Timeout",
  "LimitReached",
  "UnknownRouter",
  "InvalidArgument",
] as const;
export type ErrorCode = (typeof errorCodes)[number];

/** Message headers: string keys to string values, at most `headersMax` entries. */
export type Headers = Readonly<Record<string, string>>;
export const headersMax = 64;

/** First frame on every link, both ways: who is speaking and the limits it enforces. */
export interface Hello {
  readonly kind: "Hello";
  /** Free text naming the software, e.g. "neuron-router/0.1.0". */
  readonly agent: string;
  readonly frameMaxBytes: number;
  readonly payloadMaxBytes: number;
}
export interface Ping {
  readonly kind: "Ping";
  readonly id: number;
}
export interface Pong {
  readonly kind: "Pong";
  readonly id: number;
}
/** Publish to a topic. `requestId` > 0 and increasing per link; answered by Ack or Refusal. */
export interface Publish {
  readonly kind: "Publish";
  readonly requestId: number;
  readonly topic: string;
  /** Any bytes to send (the encoder copies them); a decoded frame carries its own Buffer. */
  readonly payload: Uint8Array;
  readonly headers: Headers;
  /**
   * Who publishes, and its sequence on this topic (1, 2, ...): a persistent stream stores a
   * retried publish once (src/delivery/partition-state.ts). 1..64 bytes.
   */
  readonly producerId: string;
  readonly sequence: number;
  /**
   * The producer's highest sequence on this topic already acknowledged (0 if none): a leader
   * that does not know the producer (a new partition leader's state always does; an evicted
   * one does not) stores `sequence` only if it directly follows this one.
   */
  readonly ackedSequence: number;
}
export interface Subscribe {
  readonly kind: "Subscribe";
  readonly requestId: number;
  /** Chosen by the subscriber, unique on its link; Message frames carry it back. */
  readonly subscriptionId: number;
  readonly topic: string;
  /**
   * 0: new messages only. n > 0: a persistent topic's messages from offset n on first (a
   * resumed subscription asks for the one after the last it got), then new ones.
   */
  readonly fromOffset: number;
}
export interface Unsubscribe {
  readonly kind: "Unsubscribe";
  readonly requestId: number;
  readonly subscriptionId: number;
}
/** Every request on this link with id <= `throughRequestId` that was not refused succeeded. */
export interface Ack {
  readonly kind: "Ack";
  readonly throughRequestId: number;
}
/** One request failed; sent before the Ack that covers its id. */
export interface Refusal {
  readonly kind: "Refusal";
  readonly requestId: number;
  readonly code: ErrorCode;
  readonly message: string;
}
/** A message delivered to a subscription. */
export interface Message {
  readonly kind: "Message";
  readonly subscriptionId: number;
  readonly topic: string;
  /** Any bytes to send (the encoder copies them); a decoded frame carries its own Buffer. */
  readonly payload: Uint8Array;
  readonly headers: Headers;
  /** Its place in the partition's stream (a Raft log index); 0 for an ephemeral message. */
  readonly offset: number;
}
/** The sender is closing the link, and why. */
export interface Goodbye {
  readonly kind: "Goodbye";
  readonly code: ErrorCode;
  readonly message: string;
}

/** Membership push-pull between routers (src/membership/sync.ts): the sender's state. */
export interface Sync {
  readonly kind: "Sync";
  readonly requestId: number;
  /** The membership codec's push-pull bytes. */
  readonly payload: Uint8Array;
}
/** The answer to a Sync: the receiver's state. */
export interface SyncReply {
  readonly kind: "SyncReply";
  readonly requestId: number;
  readonly payload: Uint8Array;
}

/** Raft messages between two routers (src/raft/batch-codec.ts): every group they share, coalesced. */
export interface RaftBatch {
  readonly kind: "RaftBatch";
  /** The Raft batch codec's bytes. */
  readonly payload: Uint8Array;
}

export type TopicKind = "persistent" | "ephemeral";

/** Declares a topic persistent or ephemeral; a topic keeps its first kind (TopicKindConflict). */
export interface DeclareTopic {
  readonly kind: "DeclareTopic";
  readonly requestId: number;
  readonly topic: string;
  readonly topicKind: TopicKind;
}

/**
 * Router to router: a request for the leader of Raft group `group` (a partition, or the
 * controller), answered by a ForwardResult with the same `requestId`. `command` is the
 * group's command encoding (delivery/partition-commands.ts or partitions/controller-commands.ts).
 */
export interface Forward {
  readonly kind: "Forward";
  readonly requestId: number;
  readonly group: number;
  readonly command: Uint8Array;
}
/**
 * The answer to a Forward: done (`ok`; `code` then means nothing), or why not; `leader` names
 * the group's leader if known ("" if not).
 */
export interface ForwardResult {
  readonly kind: "ForwardResult";
  readonly requestId: number;
  readonly ok: boolean;
  readonly code: ErrorCode;
  readonly message: string;
  readonly leader: string;
  /** An offset the answer reports (an interest: the topic's last; a replay: how far it read); else 0. */
  readonly offset: number;
}
/**
 * Router to router: a message of a topic the receiving router registered interest in, from
 * the partition's leader. `previous` is the topic's stored message before it (0 if none, or
 * for an ephemeral message), so the receiver sees a gap and asks for a replay. `replay` is 0
 * for the live stream, or the id of the replay request it answers.
 */
export interface Deliver {
  readonly kind: "Deliver";
  readonly partition: number;
  readonly offset: number;
  readonly previous: number;
  readonly replay: number;
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly headers: Headers;
}

/**
 * Client to router (an operator's tool): move every partition replica and leadership off
 * router `router`, which then stops by itself. Answered once the cluster has recorded it.
 */
export interface Drain {
  readonly kind: "Drain";
  readonly requestId: number;
  readonly router: string;
}

/**
 * Router to client: where a subscription starts in its topic's stream (the offset of the last
 * stored message it will not get; 0 for an ephemeral topic or an empty one). Sent before any
 * Message of the subscription, so a client that reconnects resumes after it, not "from now".
 */
export interface Subscribed {
  readonly kind: "Subscribed";
  readonly subscriptionId: number;
  readonly offset: number;
}

/**
 * Router to client: partition `partition` is led by router `router`, whose clients' listener
 * (of the transport this link uses) is `address` ("host:port"). Sent after this router passed
 * a request of the client's on to that leader, so the client sends the partition's next
 * requests there itself (client/partition-map.ts). A hint: the router it names forwards
 * whatever it no longer leads.
 */
export interface Leader {
  readonly kind: "Leader";
  readonly partition: number;
  readonly router: string;
  readonly address: string;
}

export type Frame =
  | Hello
  | Ping
  | Pong
  | Publish
  | Subscribe
  | Unsubscribe
  | Ack
  | Refusal
  | Message
  | Goodbye
  | Sync
  | SyncReply
  | RaftBatch
  | DeclareTopic
  | Forward
  | ForwardResult
  | Deliver
  | Drain
  | Subscribed
  | Leader;
export type FrameKind = Frame["kind"];

const errorCodeSchema = { type: "enum", name: "ErrorCode", symbols: [...errorCodes] } as const;

const headersType = boundedStringMapType(headersMax, "headers");

function record(name: string, fields: { name: string; type: unknown }[]) {
  return avro.Type.forSchema({ type: "record", name, fields } as avro.Schema);
}

const headersField = { name: "headers", type: headersType };

/** Kind number <-> name <-> Avro record type. Kind numbers are part of the protocol. */
export const frameTypes: Readonly<Record<FrameKind, { readonly number: number; readonly type: avro.Type }>> =
  {
    Hello: {
      number: 1,
      type: record("Hello", [
        { name: "agent", type: "string" },
        { name: "frameMaxBytes", type: "int" },
        { name: "payloadMaxBytes", type: "int" },
      ]),
    },
    Ping: { number: 2, type: record("Ping", [{ name: "id", type: "long" }]) },
    Pong: { number: 3, type: record("Pong", [{ name: "id", type: "long" }]) },
    Publish: {
      number: 4,
      type: record("Publish", [
        { name: "requestId", type: "long" },
        { name: "topic", type: "string" },
        { name: "payload", type: "bytes" },
        headersField,
        { name: "producerId", type: "string" },
        { name: "sequence", type: "long" },
        { name: "ackedSequence", type: "long" },
      ]),
    },
    Subscribe: {
      number: 5,
      type: record("Subscribe", [
        { name: "requestId", type: "long" },
        { name: "subscriptionId", type: "long" },
        { name: "topic", type: "string" },
        { name: "fromOffset", type: "long" },
      ]),
    },
    Unsubscribe: {
      number: 6,
      type: record("Unsubscribe", [
        { name: "requestId", type: "long" },
        { name: "subscriptionId", type: "long" },
      ]),
    },
    Ack: { number: 7, type: record("Ack", [{ name: "throughRequestId", type: "long" }]) },
    Refusal: {
      number: 8,
      type: record("Refusal", [
        { name: "requestId", type: "long" },
        { name: "code", type: errorCodeSchema },
        { name: "message", type: "string" },
      ]),
    },
    Message: {
      number: 9,
      type: record("Message", [
        { name: "subscriptionId", type: "long" },
        { name: "topic", type: "string" },
        { name: "payload", type: "bytes" },
        headersField,
        { name: "offset", type: "long" },
      ]),
    },
    Goodbye: {
      number: 10,
      type: record("Goodbye", [
        { name: "code", type: errorCodeSchema },
        { name: "message", type: "string" },
      ]),
    },
    Sync: {
      number: 11,
      type: record("Sync", [
        { name: "requestId", type: "long" },
        { name: "payload", type: "bytes" },
      ]),
    },
    SyncReply: {
      number: 12,
      type: record("SyncReply", [
        { name: "requestId", type: "long" },
        { name: "payload", type: "bytes" },
      ]),
    },
    RaftBatch: {
      number: 13,
      type: record("RaftBatch", [{ name: "payload", type: "bytes" }]),
    },
    DeclareTopic: {
      number: 14,
      type: record("DeclareTopic", [
        { name: "requestId", type: "long" },
        { name: "topic", type: "string" },
        {
          name: "topicKind",
          type: { type: "enum", name: "TopicKind", symbols: ["persistent", "ephemeral"] },
        },
      ]),
    },
    Forward: {
      number: 15,
      type: record("Forward", [
        { name: "requestId", type: "long" },
        { name: "group", type: "int" },
        { name: "command", type: "bytes" },
      ]),
    },
    ForwardResult: {
      number: 16,
      type: record("ForwardResult", [
        { name: "requestId", type: "long" },
        { name: "ok", type: "boolean" },
        { name: "code", type: errorCodeSchema },
        { name: "message", type: "string" },
        { name: "leader", type: "string" },
        { name: "offset", type: "long" },
      ]),
    },
    Deliver: {
      number: 17,
      type: record("Deliver", [
        { name: "partition", type: "int" },
        { name: "offset", type: "long" },
        { name: "previous", type: "long" },
        { name: "replay", type: "long" },
        { name: "topic", type: "string" },
        { name: "payload", type: "bytes" },
        headersField,
      ]),
    },
    Subscribed: {
      number: 19,
      type: record("Subscribed", [
        { name: "subscriptionId", type: "long" },
        { name: "offset", type: "long" },
      ]),
    },
    Leader: {
      number: 20,
      type: record("Leader", [
        { name: "partition", type: "int" },
        { name: "router", type: "string" },
        { name: "address", type: "string" },
      ]),
    },
    Drain: {
      number: 18,
      type: record("Drain", [
        { name: "requestId", type: "long" },
        { name: "router", type: "string" },
      ]),
    },
  };

/** Kind number -> name, for the decoder. */
export const frameKindByNumber: ReadonlyMap<number, FrameKind> = new Map(
  (Object.keys(frameTypes) as FrameKind[]).map((kind) => [frameTypes[kind].number, kind]),
);
