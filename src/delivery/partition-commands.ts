// The commands of a partition's Raft log, and their bytes. The partition leader encodes a
// command and proposes it; every replica decodes the committed entry and applies it
// (partition-state.ts). The log is the persistent stream, so these bytes are stored for as long
// as the stream is retained, and are read back by routers of later versions.
//
// Layout: u8 format version (1) | u8 command kind | the Avro (avsc) record of that kind.
// Kind numbers are part of the stored format: never reuse or renumber one; add fields only with
// a new format version.
//
// Invariants: `decodePartitionCommand(encodePartitionCommand(c))` gives back `c`; decode never
// throws, and everything it accepts passes the same checks that encode asserts (`problemOf`),
// so a replica never applies a command its leader could not have written.
//
// Traps:
// - avsc reads a map's block count without bounding it by the bytes left: a forged count could
//   spin for minutes. Headers use the bounded reader of src/wire/avro-bounded.ts, which throws
//   BoundExceeded past `headersMax` (reported as TooLarge).
// - avsc's `long` gives imprecise numbers past 2^53 and `boolean` reads any non-zero byte as
//   true; longs are checked after decoding. A non-canonical encoding that decodes to a valid
//   command is accepted: every replica sees the same bytes, so they still agree.
// - A new format version must not be proposed before every replica can decode it: an old
//   replica would apply the entry as malformed while the new ones store it, and diverge.
// - Publish, the command of every persistent message, is encoded and decoded by hand with the
//   wire's Avro primitives (src/wire/hot-frames.ts): avsc's generic path was a tenth of a
//   leader's CPU per message. The bytes (for well-formed strings) and what is accepted are
//   avsc's: the tests hold the hand path to `avscPublish`, the reference.
import avro from "avsc";
import { checkTopic, isValidTopic } from "../partitions/index.ts";
import {
  AvroReader,
  BoundExceeded,
  boundedStringMapType,
  type Headers,
  headersBytes,
  headersMax,
  longBytes,
  utf8Length,
  writeHeaders,
  writeLong,
  writeString,
} from "../wire/index.ts";

export const partitionCommandVersion = 1;
/** The longest producer id, in UTF-8 bytes: a client picks it, a UUID's text takes 36. */
export const producerIdMaxBytes = 64;
/** The longest router id, in UTF-8 bytes (as Raft node ids, src/raft/configuration.ts). */
export const routerIdMaxBytes = 255;
/** The largest sequence: avsc's largest `long` (2^53 - 2; it refuses longs it cannot hold exactly). */
export const sequenceMax = 9_007_199_254_740_990;

export type TopicKind = "persistent" | "ephemeral";

/** A persistent message. Its offset in the stream is the index of the entry that stores it. */
export interface PublishCommand {
  readonly kind: "Publish";
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly headers: Headers;
  /** 1..producerIdMaxBytes bytes of UTF-8. */
  readonly producerId: string;
  /**
   * The producer's sequence on this topic: an integer in 1..sequenceMax. A client numbers its
   * publishes 1, 2, 3... separately on each topic (ephemeral topics share the partition but
   * never reach the log, so a sequence per partition would have gaps).
   */
  readonly sequence: number;
  /**
   * The highest sequence of this producer on this topic that the client had seen acknowledged
   * (so known stored) when it sent this publish; 0 if none. An integer in 0..sequence - 1.
   * A partition that forgot the producer (never saw it, or evicted it) stores only
   * ackedSequence + 1 next: anything later could overtake an earlier publish still in flight.
   */
  readonly ackedSequence: number;
}
export interface DeclareTopicCommand {
  readonly kind: "DeclareTopic";
  readonly topic: string;
  readonly topicKind: TopicKind;
}
/** Router `router` has local subscribers to `topic` (on) or no longer (off). */
export interface InterestCommand {
  readonly kind: "Interest";
  readonly router: string;
  readonly topic: string;
  readonly on: boolean;
}
/** Removes every interest of `router` (it died or left). */
export interface DropRouterCommand {
  readonly kind: "DropRouter";
  readonly router: string;
}
export type PartitionCommand = PublishCommand | DeclareTopicCommand | InterestCommand | DropRouterCommand;

/** Why bytes are not a command (or a snapshot, partition-state.ts). */
export interface PartitionDecodeError {
  readonly tag: "Malformed" | "UnsupportedVersion" | "TooLarge";
  readonly message: string;
}
export type PartitionCommandDecode =
  | { readonly ok: true; readonly command: PartitionCommand }
  | { readonly ok: false; readonly error: PartitionDecodeError };

function record(name: string, fields: { name: string; type: unknown }[]): avro.Type {
  return avro.Type.forSchema({ type: "record", name, fields } as avro.Schema, { registry: {} });
}

/** The topic kinds, in Avro enum order (stored by index: append only). */
export const topicKinds: readonly TopicKind[] = ["persistent", "ephemeral"];
export const topicKindSchema = { type: "enum", name: "TopicKind", symbols: [...topicKinds] };

/** Kind number -> command kind -> Avro record. */
const kinds = [
  {
    number: 1,
    name: "Publish",
    avro: record("Publish", [
      { name: "topic", type: "string" },
      { name: "payload", type: "bytes" },
      { name: "headers", type: boundedStringMapType(headersMax, "headers") },
      { name: "producerId", type: "string" },
      { name: "sequence", type: "long" },
      { name: "ackedSequence", type: "long" },
    ]),
  },
  {
    number: 2,
    name: "DeclareTopic",
    avro: record("DeclareTopic", [
      { name: "topic", type: "string" },
      { name: "topicKind", type: topicKindSchema },
    ]),
  },
  {
    number: 3,
    name: "Interest",
    avro: record("Interest", [
      { name: "router", type: "string" },
      { name: "topic", type: "string" },
      { name: "on", type: "boolean" },
    ]),
  },
  {
    number: 4,
    name: "DropRouter",
    avro: record("DropRouter", [{ name: "router", type: "string" }]),
  },
] as const;
/** The avsc type of Publish: the reference the hand-written path is held to (tests). */
export const avscPublish: avro.Type = kinds[0].avro;
const publishKind = kinds[0].number;

const kindByType = new Map<PartitionCommand["kind"], (typeof kinds)[number]>(
  kinds.map((kind) => [kind.name, kind]),
);
const kindByNumber = new Map<number, (typeof kinds)[number]>(kinds.map((kind) => [kind.number, kind]));

/**
 * Whether `id` is 1..maxBytes bytes of UTF-8. A lone surrogate is refused: it would be written
 * as U+FFFD and read back as another id.
 */
function isValidId(id: string, maxBytes: number): boolean {
  return typeof id === "string" && id.length > 0 && id.isWellFormed() && Buffer.byteLength(id) <= maxBytes;
}

/** Whether `router` is a usable router id: 1..routerIdMaxBytes bytes of well-formed UTF-8. */
export function isValidRouterId(router: string): boolean {
  return isValidId(router, routerIdMaxBytes);
}

/** Whether `producerId` is 1..producerIdMaxBytes bytes of well-formed UTF-8. */
export function isValidProducerId(producerId: string): boolean {
  return isValidId(producerId, producerIdMaxBytes);
}

/** What makes `command` unfit for the log, or undefined if nothing. Shared by encode and decode. */
function problemOf(command: PartitionCommand): string | undefined {
  // The allocation-free check first (every publish passes here twice); the full one, which
  // gives the same verdict (a property test holds it), only to word the problem. Should they
  // ever disagree, the topic is refused.
  if ("topic" in command && !isValidTopic(command.topic)) {
    const check = checkTopic(command.topic);
    return check.ok ? `topic ${JSON.stringify(command.topic)} is not valid` : check.error.message;
  }
  if ("router" in command && !isValidRouterId(command.router)) {
    return `router id must be 1..${routerIdMaxBytes} bytes of well-formed UTF-8`;
  }
  switch (command.kind) {
    case "Publish": {
      if (!isValidProducerId(command.producerId)) {
        return `producer id must be 1..${producerIdMaxBytes} bytes of well-formed UTF-8`;
      }
      if (!Number.isSafeInteger(command.sequence) || command.sequence < 1 || command.sequence > sequenceMax) {
        return `sequence must be an integer in 1..${sequenceMax}, not ${command.sequence}`;
      }
      if (
        !Number.isSafeInteger(command.ackedSequence) ||
        command.ackedSequence < 0 ||
        command.ackedSequence >= command.sequence
      ) {
        return `acked sequence must be an integer in 0..sequence - 1 (${command.sequence - 1}), not ${command.ackedSequence}`;
      }
      if (!(command.payload instanceof Uint8Array)) return "payload must be bytes";
      let count = 0;
      for (const key in command.headers) {
        if (typeof command.headers[key] !== "string") return `header ${JSON.stringify(key)} is not a string`;
        count += 1;
      }
      if (count > headersMax) return `a message holds at most ${headersMax} headers, not ${count}`;
      return undefined;
    }
    case "DeclareTopic":
      return topicKinds.includes(command.topicKind)
        ? undefined
        : `topic kind ${String(command.topicKind)} is unknown`;
    case "Interest":
    case "DropRouter":
      return undefined;
  }
}

/**
 * The bytes of a command. A command that breaks the rules (an invalid topic, a producer id too
 * long, too many headers...) is a programmer error: the leader checks requests before it
 * proposes them, so this throws instead of writing bytes every replica would refuse.
 */
export function encodePartitionCommand(command: PartitionCommand): Uint8Array {
  const problem = problemOf(command);
  if (problem !== undefined) throw new Error(`partition command assertion failed: ${problem}`);
  if (command.kind === "Publish") return encodePublish(command);
  const kind = kindByType.get(command.kind)!;
  const body = kind.avro.toBuffer(command);
  const bytes = Buffer.allocUnsafe(2 + body.length);
  bytes[0] = partitionCommandVersion;
  bytes[1] = kind.number;
  body.copy(bytes, 2);
  return bytes;
}

const malformed = (message: string): PartitionCommandDecode => ({
  ok: false,
  error: { tag: "Malformed", message },
});

/** Reads a command from a committed entry. Never throws: bad bytes give a typed error. */
export function decodePartitionCommand(bytes: Uint8Array): PartitionCommandDecode {
  if (bytes.length === 0) return malformed("partition command is empty");
  if (bytes[0] !== partitionCommandVersion) {
    return {
      ok: false,
      error: {
        tag: "UnsupportedVersion",
        message: `partition command format ${bytes[0]} is not supported (this router reads ${partitionCommandVersion})`,
      },
    };
  }
  if (bytes.length < 2) return malformed("partition command has no kind");
  if (bytes[1] === publishKind) return decodePublish(bytes);
  const kind = kindByNumber.get(bytes[1]!);
  if (kind === undefined) return malformed(`partition command kind ${bytes[1]} is unknown`);
  const body = Buffer.from(bytes.buffer, bytes.byteOffset + 2, bytes.byteLength - 2);
  let decoded: { value: unknown; offset: number };
  try {
    decoded = kind.avro.decode(body, 0);
  } catch (error) {
    if (error instanceof BoundExceeded) {
      return { ok: false, error: { tag: "TooLarge", message: `${kind.name}: ${error.message}` } };
    }
    return malformed(`${kind.name} does not decode: ${(error as Error).message}`);
  }
  if (decoded.offset < 0) return malformed(`${kind.name} is truncated`);
  if (decoded.offset !== body.length) {
    return malformed(`${kind.name} has ${body.length - decoded.offset} trailing bytes`);
  }
  const command = toCommand(kind.name, decoded.value as Record<string, unknown>);
  const problem = problemOf(command);
  if (problem !== undefined) return malformed(`${kind.name}: ${problem}`);
  return { ok: true, command };
}

/** Publish's Avro record after the two header bytes, exactly as avsc writes it. */
function encodePublish(command: PublishCommand): Uint8Array {
  const { topic, payload, headers, producerId, sequence, ackedSequence } = command;
  const topicBytes = utf8Length(topic);
  const producerBytes = utf8Length(producerId);
  const size =
    2 +
    longBytes(topicBytes) +
    topicBytes +
    longBytes(payload.byteLength) +
    payload.byteLength +
    headersBytes(headers) +
    longBytes(producerBytes) +
    producerBytes +
    longBytes(sequence) +
    longBytes(ackedSequence);
  const bytes = Buffer.allocUnsafe(size);
  bytes[0] = partitionCommandVersion;
  bytes[1] = publishKind;
  let at = writeString(bytes, 2, topic, topicBytes);
  at = writeLong(bytes, at, payload.byteLength);
  bytes.set(payload, at);
  at = writeHeaders(bytes, at + payload.byteLength, headers);
  at = writeString(bytes, at, producerId, producerBytes);
  at = writeLong(bytes, writeLong(bytes, at, sequence), ackedSequence);
  if (at !== size)
    throw new Error(`partition command assertion failed: Publish wrote ${at} of ${size} bytes`);
  return bytes;
}

/** One reader for every decode: decoding is synchronous, so it is never shared. */
const reader = new AvroReader();

/** decodePartitionCommand for a Publish (bytes[1] is its kind). */
function decodePublish(bytes: Uint8Array): PartitionCommandDecode {
  const buffer = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  reader.reset(buffer, 2, buffer.length);
  const topic = reader.topic();
  const payload = reader.bytes();
  const headers = reader.headers();
  const producerId = reader.string();
  const sequence = reader.longField();
  const ackedSequence = reader.longField();
  if (reader.failed) {
    if (reader.problem.startsWith("more than"))
      return { ok: false, error: { tag: "TooLarge", message: `Publish: ${reader.problem}` } };
    return malformed(
      reader.problem === "truncated" ? "Publish is truncated" : `Publish does not decode: ${reader.problem}`,
    );
  }
  if (reader.position !== buffer.length) {
    return malformed(`Publish has ${buffer.length - reader.position} trailing bytes`);
  }
  const command: PublishCommand = {
    kind: "Publish",
    topic,
    payload,
    headers,
    producerId,
    sequence,
    ackedSequence,
  };
  const problem = problemOf(command);
  if (problem !== undefined) return malformed(`Publish: ${problem}`);
  return { ok: true, command };
}

/** A plain object of the command's own fields (avsc decodes into instances of its record classes). */
function toCommand(kind: PartitionCommand["kind"], value: Record<string, unknown>): PartitionCommand {
  switch (kind) {
    case "Publish":
      return {
        kind,
        topic: value.topic as string,
        payload: value.payload as Uint8Array,
        headers: value.headers as Headers,
        producerId: value.producerId as string,
        sequence: value.sequence as number,
        ackedSequence: value.ackedSequence as number,
      };
    case "DeclareTopic":
      return { kind, topic: value.topic as string, topicKind: value.topicKind as TopicKind };
    case "Interest":
      return { kind, router: value.router as string, topic: value.topic as string, on: value.on as boolean };
    case "DropRouter":
      return { kind, router: value.router as string };
  }
}
