// Gossip packets and push-pull payloads, encoded with avsc. Pure computation, no I/O.
//
// Packet (one UDP datagram, before the shell's encryption):
//   u8 protocol version | u8 message count | count x (u8 kind | u16 BE body length | Avro body)
// A packet is compound: a probe message plus piggybacked broadcasts (SWIM §4.1). Messages are
// encoded one by one, so the broadcast queue keeps each one's bytes and knows its exact size
// when filling a packet up to the budget.
//
// Push-pull payload (one message each way on a reliable link):
//   u8 protocol version | u8 kind (1 request, 2 reply) | Avro PushPull record
//
// Decoding never throws: every way bytes can be bad is a MembershipDecodeError, and a packet
// is accepted whole or not at all (a structurally bad message condemns its packet). Every
// count is bounded: messages per packet (`messagesPerPacketMax`), map entries and array items
// (src/wire/avro-bounded.ts), string contents (member-info.ts limits, checked after decoding).
// Rules for changing this file: never reuse a kind number; a new field means a new
// `membershipProtocolVersion`.
import avro from "avsc";
import { BoundExceeded, boundedArrayType, boundedStringMapType } from "../wire/index.ts";
import { assert, type MembershipDecodeError } from "./errors.ts";
import {
  addressesMax,
  checkAddress,
  checkMemberId,
  checkMemberInfo,
  metadataKeysMax,
  plainRecord,
} from "./member-info.ts";
import { type MemberId, type MemberInfo, type MemberState, memberStates } from "./types.ts";

export const membershipProtocolVersion = 1;
/** u8 version | u8 message count. */
export const packetHeaderBytes = 2;
/** u8 kind | u16 body length. */
export const messageHeaderBytes = 3;
/** Messages one packet may hold; the count is a u8 and the budget allows far fewer anyway. */
export const messagesPerPacketMax = 64;

/** Direct probe (SWIM §3.1). The receiver acks if it is `targetId`. */
export interface Ping {
  readonly kind: "Ping";
  readonly sequence: number;
  readonly senderId: MemberId;
  readonly targetId: MemberId;
}
/** Ping-req (SWIM §3.1): "probe targetId at targetAddress for me, and nack if it is silent". */
export interface IndirectPing {
  readonly kind: "IndirectPing";
  readonly sequence: number;
  readonly senderId: MemberId;
  readonly targetId: MemberId;
  readonly targetAddress: string;
  /** Ask for a nack if the target is silent (Lifeguard §IV-A uses nacks to judge our own health). */
  readonly wantNack: boolean;
}
/** `memberId` answered probe `sequence` (directly, or relayed by an intermediary). */
export interface Ack {
  readonly kind: "Ack";
  readonly sequence: number;
  readonly memberId: MemberId;
}
/** Intermediary `senderId` got no ack from `memberId` for probe `sequence` in time. */
export interface Nack {
  readonly kind: "Nack";
  readonly sequence: number;
  readonly senderId: MemberId;
  readonly memberId: MemberId;
}
/** A member's own announcement, at an incarnation only it may raise (SWIM §4.2). */
export interface Alive {
  readonly kind: "Alive";
  readonly incarnation: number;
  readonly member: MemberInfo;
}
/** `fromId` suspects `memberId` at `incarnation` (SWIM §4.2). */
export interface Suspect {
  readonly kind: "Suspect";
  readonly incarnation: number;
  readonly memberId: MemberId;
  readonly fromId: MemberId;
}
/** `fromId` declares `memberId` dead at `incarnation`. */
export interface Dead {
  readonly kind: "Dead";
  readonly incarnation: number;
  readonly memberId: MemberId;
  readonly fromId: MemberId;
}
/** `memberId` leaves gracefully; only the member itself originates this. */
export interface Left {
  readonly kind: "Left";
  readonly incarnation: number;
  readonly memberId: MemberId;
}

export type Message = Ping | IndirectPing | Ack | Nack | Alive | Suspect | Dead | Left;
export type MessageKind = Message["kind"];

/** One member's full state, as push-pull carries it. */
export interface MemberRecord {
  readonly incarnation: number;
  readonly state: MemberState;
  readonly member: MemberInfo;
}

export interface PushPull {
  readonly kind: "Request" | "Reply";
  readonly senderId: MemberId;
  /** The sender is joining through this exchange. */
  readonly join: boolean;
  readonly members: readonly MemberRecord[];
}

export type PacketDecode =
  | { readonly ok: true; readonly messages: readonly Message[] }
  | { readonly ok: false; readonly error: MembershipDecodeError };
export type PushPullDecode =
  | { readonly ok: true; readonly pushPull: PushPull }
  | { readonly ok: false; readonly error: MembershipDecodeError };

function record(name: string, fields: { name: string; type: unknown }[]): avro.Type {
  return avro.Type.forSchema({ type: "record", name, fields } as avro.Schema, { registry: {} });
}

const memberFields = () => [
  { name: "id", type: "string" },
  { name: "region", type: "string" },
  { name: "gossipAddress", type: "string" },
  { name: "addresses", type: boundedStringMapType(addressesMax, "addresses") },
  { name: "metadata", type: boundedStringMapType(metadataKeysMax, "metadata") },
  { name: "version", type: "long" },
];

/** Kind number and Avro type per message. Kind numbers are part of the protocol. */
const messageTypes: Readonly<Record<MessageKind, { readonly number: number; readonly type: avro.Type }>> = {
  Ping: {
    number: 1,
    type: record("Ping", [
      { name: "sequence", type: "long" },
      { name: "senderId", type: "string" },
      { name: "targetId", type: "string" },
    ]),
  },
  IndirectPing: {
    number: 2,
    type: record("IndirectPing", [
      { name: "sequence", type: "long" },
      { name: "senderId", type: "string" },
      { name: "targetId", type: "string" },
      { name: "targetAddress", type: "string" },
      { name: "wantNack", type: "boolean" },
    ]),
  },
  Ack: {
    number: 3,
    type: record("Ack", [
      { name: "sequence", type: "long" },
      { name: "memberId", type: "string" },
    ]),
  },
  Nack: {
    number: 4,
    type: record("Nack", [
      { name: "sequence", type: "long" },
      { name: "senderId", type: "string" },
      { name: "memberId", type: "string" },
    ]),
  },
  Alive: { number: 5, type: record("Alive", [{ name: "incarnation", type: "long" }, ...memberFields()]) },
  Suspect: {
    number: 6,
    type: record("Suspect", [
      { name: "incarnation", type: "long" },
      { name: "memberId", type: "string" },
      { name: "fromId", type: "string" },
    ]),
  },
  Dead: {
    number: 7,
    type: record("Dead", [
      { name: "incarnation", type: "long" },
      { name: "memberId", type: "string" },
      { name: "fromId", type: "string" },
    ]),
  },
  Left: {
    number: 8,
    type: record("Left", [
      { name: "incarnation", type: "long" },
      { name: "memberId", type: "string" },
    ]),
  },
};

const kindByNumber: ReadonlyMap<number, MessageKind> = new Map(
  (Object.keys(messageTypes) as MessageKind[]).map((kind) => [messageTypes[kind].number, kind]),
);

const memberRecordType = record("MemberRecord", [
  { name: "incarnation", type: "long" },
  { name: "state", type: { type: "enum", name: "MemberState", symbols: [...memberStates] } },
  ...memberFields(),
]);

const pushPullKinds = { Request: 1, Reply: 2 } as const;

/** The PushPull record type for a given member bound (each record takes at least 8 bytes). */
function pushPullType(membersMax: number): avro.Type {
  return record("PushPull", [
    { name: "senderId", type: "string" },
    { name: "join", type: "boolean" },
    { name: "members", type: boundedArrayType(memberRecordType, membersMax, 8, "push-pull members") },
  ]);
}
const pushPullTypes = new Map<number, avro.Type>();
function pushPullTypeFor(membersMax: number): avro.Type {
  let type = pushPullTypes.get(membersMax);
  if (type === undefined) {
    if (pushPullTypes.size >= 16) pushPullTypes.clear(); // one or two configs in practice
    type = pushPullType(membersMax);
    pushPullTypes.set(membersMax, type);
  }
  return type;
}

// Worst-case sizes, from the limits in member-info.ts. An Avro long of a safe integer takes at
// most 8 bytes (zigzag of 2^53 is 54 bits, 7 bits a byte); a string is its length (a long: 2
// bytes up to 8191) then its bytes. codec.test.ts encodes a maximal member to check these.
const longBytesMax = 8;
const idBytesMax = 2 + 64;
const addressBytesMax = 2 + 64;
/** kind | length | incarnation, id, region, gossip address, addresses, metadata, version. */
export const aliveMessageBytesMax =
  messageHeaderBytes +
  longBytesMax +
  idBytesMax +
  (1 + 32) +
  addressBytesMax +
  (2 + addressesMax * (1 + 16 + addressBytesMax) + 1) +
  (2 + metadataKeysMax * 2 * 2 + 512 + 1) +
  longBytesMax;
/** The largest probe message: an IndirectPing. */
export const probeMessageBytesMax = messageHeaderBytes + longBytesMax + 2 * idBytesMax + addressBytesMax + 1;

function toAvro(message: Message): unknown {
  if (message.kind !== "Alive") return message;
  return { incarnation: message.incarnation, ...message.member };
}

/** Encodes one message with its kind and length header. Our own messages are valid by construction. */
export function encodeMessage(message: Message): Buffer {
  const { number, type } = messageTypes[message.kind];
  const body = type.toBuffer(toAvro(message));
  assert(body.length <= 0xffff, `${message.kind} body of ${body.length} bytes does not fit a u16 length`);
  const out = Buffer.allocUnsafe(messageHeaderBytes + body.length);
  out[0] = number;
  out.writeUInt16BE(body.length, 1);
  body.copy(out, messageHeaderBytes);
  return out;
}

/** Joins encoded messages (from encodeMessage) into one packet. */
export function encodePacket(messages: readonly Uint8Array[]): Buffer {
  assert(
    messages.length > 0 && messages.length <= messagesPerPacketMax,
    `a packet holds 1-${messagesPerPacketMax} messages, not ${messages.length}`,
  );
  let length = packetHeaderBytes;
  for (const message of messages) length += message.length;
  const out = Buffer.allocUnsafe(length);
  out[0] = membershipProtocolVersion;
  out[1] = messages.length;
  let offset = packetHeaderBytes;
  for (const message of messages) {
    out.set(message, offset);
    offset += message.length;
  }
  return out;
}

const truncated = (message: string): MembershipDecodeError => ({ tag: "Truncated", message });
const malformed = (message: string): MembershipDecodeError => ({ tag: "Malformed", message });

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** Decodes an Avro body that must fill `body` exactly. */
function decodeBody(
  type: avro.Type,
  body: Buffer,
  what: string,
): { ok: true; value: Record<string, unknown> } | { ok: false; error: MembershipDecodeError } {
  let decoded: { value: unknown; offset: number };
  try {
    decoded = type.decode(body, 0);
  } catch (error) {
    if (error instanceof BoundExceeded) {
      return { ok: false, error: { tag: "OverLimit", message: `${what}: ${error.message}` } };
    }
    return { ok: false, error: malformed(`${what} does not decode: ${(error as Error).message}`) };
  }
  if (decoded.offset < 0) return { ok: false, error: truncated(`${what} is truncated`) };
  if (decoded.offset !== body.length) {
    return { ok: false, error: malformed(`${what} has ${body.length - decoded.offset} trailing bytes`) };
  }
  return { ok: true, value: decoded.value as Record<string, unknown> };
}

const isCount = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0;

function memberInfoOf(value: Record<string, unknown>): MemberInfo {
  return {
    id: value.id as MemberId,
    region: value.region as string,
    gossipAddress: value.gossipAddress as string,
    addresses: plainRecord(value.addresses as Record<string, string>),
    metadata: plainRecord(value.metadata as Record<string, string>),
    version: value.version as number,
  };
}

/** Turns a decoded body into a message after the checks Avro's types cannot express. */
function checkMessage(kind: MessageKind, value: Record<string, unknown>): Message | string {
  for (const field of ["sequence", "incarnation"]) {
    if (field in value && !isCount(value[field]))
      return `${kind} ${field} must be a non-negative safe integer`;
  }
  for (const field of ["senderId", "targetId", "memberId", "fromId"]) {
    if (field in value) {
      const problem = checkMemberId(value[field] as string);
      if (problem !== undefined) return `${kind} ${field}: ${problem}`;
    }
  }
  if (kind === "IndirectPing") {
    const problem = checkAddress(value.targetAddress as string);
    if (problem !== undefined) return `IndirectPing target address: ${problem}`;
  }
  if (kind === "Alive") {
    const member = memberInfoOf(value);
    const problem = checkMemberInfo(member);
    if (problem !== undefined) return `Alive: ${problem}`;
    return { kind, incarnation: value.incarnation as number, member };
  }
  return { ...value, kind } as Message;
}

/** Decodes one packet of at most `budgetBytes` bytes. Never throws. */
export function decodePacket(bytes: Uint8Array, budgetBytes: number): PacketDecode {
  if (bytes.length > budgetBytes) {
    return {
      ok: false,
      error: {
        tag: "Oversized",
        message: `packet of ${bytes.length} bytes exceeds the budget of ${budgetBytes} bytes`,
        bytes: bytes.length,
        limitBytes: budgetBytes,
      },
    };
  }
  if (bytes.length < packetHeaderBytes) {
    return { ok: false, error: truncated(`packet of ${bytes.length} bytes has no header`) };
  }
  const buffer = asBuffer(bytes);
  const version = buffer[0]!;
  if (version !== membershipProtocolVersion) {
    return {
      ok: false,
      error: {
        tag: "UnsupportedVersion",
        message: `membership protocol version ${version} is not supported; this member speaks ${membershipProtocolVersion}`,
        version,
      },
    };
  }
  const count = buffer[1]!;
  if (count === 0) return { ok: false, error: malformed("packet holds no message") };
  if (count > messagesPerPacketMax) {
    return {
      ok: false,
      error: {
        tag: "OverLimit",
        message: `packet holds ${count} messages; the limit is ${messagesPerPacketMax}`,
      },
    };
  }
  const messages: Message[] = [];
  let offset = packetHeaderBytes;
  for (let index = 0; index < count; index++) {
    if (buffer.length - offset < messageHeaderBytes) {
      return { ok: false, error: truncated(`message ${index + 1} of ${count} is cut off in its header`) };
    }
    const kindNumber = buffer[offset]!;
    const kind = kindByNumber.get(kindNumber);
    if (kind === undefined) {
      return {
        ok: false,
        error: { tag: "UnknownKind", message: `unknown message kind ${kindNumber}`, kind: kindNumber },
      };
    }
    const length = buffer.readUInt16BE(offset + 1);
    const start = offset + messageHeaderBytes;
    if (start + length > buffer.length) {
      return {
        ok: false,
        error: truncated(`${kind} says ${length} bytes but ${buffer.length - start} remain`),
      };
    }
    const body = decodeBody(messageTypes[kind].type, buffer.subarray(start, start + length), kind);
    if (!body.ok) return body;
    const message = checkMessage(kind, body.value);
    if (typeof message === "string") return { ok: false, error: malformed(message) };
    messages.push(message);
    offset = start + length;
  }
  if (offset !== buffer.length) {
    return { ok: false, error: malformed(`${buffer.length - offset} bytes follow the last message`) };
  }
  return { ok: true, messages };
}

/** Encodes a push-pull payload. */
export function encodePushPull(pushPull: PushPull, membersMax: number): Buffer {
  const body = pushPullTypeFor(membersMax).toBuffer({
    senderId: pushPull.senderId,
    join: pushPull.join,
    members: pushPull.members.map((entry) => ({
      incarnation: entry.incarnation,
      state: entry.state,
      ...entry.member,
    })),
  });
  const out = Buffer.allocUnsafe(2 + body.length);
  out[0] = membershipProtocolVersion;
  out[1] = pushPullKinds[pushPull.kind];
  body.copy(out, 2);
  return out;
}

/** Bytes one member record takes in a push-pull payload (to cut a payload to its budget). */
export function memberRecordBytes(entry: MemberRecord): number {
  return memberRecordType.toBuffer({ incarnation: entry.incarnation, state: entry.state, ...entry.member })
    .length;
}

/** Decodes a push-pull payload of the `expected` kind. Never throws. */
export function decodePushPull(
  bytes: Uint8Array,
  expected: PushPull["kind"],
  bytesMax: number,
  membersMax: number,
): PushPullDecode {
  if (bytes.length > bytesMax) {
    return {
      ok: false,
      error: {
        tag: "Oversized",
        message: `push-pull of ${bytes.length} bytes exceeds the limit of ${bytesMax} bytes`,
        bytes: bytes.length,
        limitBytes: bytesMax,
      },
    };
  }
  if (bytes.length < 2)
    return { ok: false, error: truncated(`push-pull of ${bytes.length} bytes has no header`) };
  const buffer = asBuffer(bytes);
  const version = buffer[0]!;
  if (version !== membershipProtocolVersion) {
    return {
      ok: false,
      error: {
        tag: "UnsupportedVersion",
        message: `membership protocol version ${version} is not supported; this member speaks ${membershipProtocolVersion}`,
        version,
      },
    };
  }
  if (buffer[1] !== pushPullKinds[expected]) {
    return {
      ok: false,
      error: { tag: "UnknownKind", message: `expected a push-pull ${expected}`, kind: buffer[1]! },
    };
  }
  const body = decodeBody(pushPullTypeFor(membersMax), buffer.subarray(2), `push-pull ${expected}`);
  if (!body.ok) return body;
  const senderProblem = checkMemberId(body.value.senderId as string);
  if (senderProblem !== undefined)
    return { ok: false, error: malformed(`push-pull sender: ${senderProblem}`) };
  const members: MemberRecord[] = [];
  const seen = new Set<string>();
  for (const raw of body.value.members as Record<string, unknown>[]) {
    const member = memberInfoOf(raw);
    const problem = isCount(raw.incarnation)
      ? checkMemberInfo(member)
      : "incarnation must be a non-negative safe integer";
    if (problem !== undefined) return { ok: false, error: malformed(`push-pull member: ${problem}`) };
    if (seen.has(member.id)) return { ok: false, error: malformed(`push-pull lists ${member.id} twice`) };
    seen.add(member.id);
    members.push({ incarnation: raw.incarnation as number, state: raw.state as MemberState, member });
  }
  return {
    ok: true,
    pushPull: {
      kind: expected,
      senderId: body.value.senderId as MemberId,
      join: body.value.join as boolean,
      members,
    },
  };
}
