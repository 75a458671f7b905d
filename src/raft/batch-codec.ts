// The bytes of a RaftBatch: a version byte, then the Avro encoding (avsc) of the batch.
// Messages inside a batch carry no from/to (the batch has them once).
//
// Bad input from the network is never thrown: `decodeRaftBatch` returns a typed error and the
// caller drops the batch, changing nothing. Arrays are read with bounded readers (a forged
// count cannot make avsc spin, src/wire/avro-bounded.ts); what Avro cannot express (safe
// integers, known message types, contiguous entries) is checked after decoding.
import avro from "avsc";
import type { Entry, EntryKind } from "../storage/index.ts";
import { BoundExceeded, boundedArrayType } from "../wire/index.ts";
import type { Beat, BeatResponse, RaftBatch } from "./batch.ts";
import { emptyMessage, type Message, messageTypes } from "./types.ts";

export const raftBatchVersion = 1;
const entryKinds: readonly EntryKind[] = ["normal", "config", "empty"];
/** Bound on every array in a batch: groups per router, entries per message, replicas. */
const itemsMax = 1 << 20;

export type RaftBatchDecodeError =
  | { readonly tag: "UnsupportedVersion"; readonly version: number }
  | { readonly tag: "Truncated"; readonly message: string }
  | { readonly tag: "OverLimit"; readonly message: string }
  | { readonly tag: "Malformed"; readonly message: string };

export type RaftBatchDecode =
  | { readonly ok: true; readonly batch: RaftBatch }
  | { readonly ok: false; readonly error: RaftBatchDecodeError };

function record(name: string, fields: { name: string; type: unknown }[]): avro.Type {
  return avro.Type.forSchema({ type: "record", name, fields } as avro.Schema, { registry: {} });
}

const entryType = record("Entry", [
  { name: "index", type: "long" },
  { name: "term", type: "long" },
  { name: "kind", type: "int" },
  { name: "data", type: "bytes" },
]);
const stringsType = boundedArrayType(avro.Type.forSchema("string"), itemsMax, 1, "replica list");
const snapshotType = record("Snapshot", [
  { name: "index", type: "long" },
  { name: "term", type: "long" },
  { name: "voters", type: stringsType },
  { name: "learners", type: stringsType },
  { name: "data", type: "bytes" },
]);
const messageType = record("RaftMessage", [
  { name: "type", type: "int" },
  { name: "group", type: "int" },
  { name: "term", type: "long" },
  { name: "logTerm", type: "long" },
  { name: "index", type: "long" },
  { name: "entries", type: boundedArrayType(entryType, itemsMax, 4, "entries") },
  { name: "commit", type: "long" },
  { name: "reject", type: "boolean" },
  { name: "rejectHint", type: "long" },
  { name: "lastIndex", type: "long" },
  { name: "snapshot", type: ["null", snapshotType] },
  { name: "context", type: "long" },
  { name: "quiesce", type: "boolean" },
]);
const beatType = record("Beat", [
  { name: "group", type: "int" },
  { name: "term", type: "long" },
  { name: "commit", type: "long" },
  { name: "context", type: "long" },
  { name: "quiesce", type: "boolean" },
]);
const beatResponseType = record("BeatResponse", [
  { name: "group", type: "int" },
  { name: "term", type: "long" },
  { name: "context", type: "long" },
]);
const batchType = record("RaftBatch", [
  { name: "from", type: "string" },
  { name: "to", type: "string" },
  { name: "beats", type: boundedArrayType(beatType, itemsMax, 5, "beats") },
  { name: "beatResponses", type: boundedArrayType(beatResponseType, itemsMax, 3, "beat responses") },
  { name: "messages", type: boundedArrayType(messageType, itemsMax, 13, "messages") },
]);

export function encodeRaftBatch(batch: RaftBatch): Buffer {
  const body = batchType.toBuffer({
    from: batch.from,
    to: batch.to,
    beats: batch.beats,
    beatResponses: batch.beatResponses,
    messages: batch.messages.map((message) => ({
      type: messageTypes.indexOf(message.type),
      group: message.group,
      term: message.term,
      logTerm: message.logTerm,
      index: message.index,
      entries: message.entries.map((entry) => ({
        index: entry.index,
        term: entry.term,
        kind: entryKinds.indexOf(entry.kind),
        data: Buffer.from(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength),
      })),
      commit: message.commit,
      reject: message.reject,
      rejectHint: message.rejectHint,
      lastIndex: message.lastIndex,
      snapshot:
        message.snapshot === null
          ? null
          : {
              index: message.snapshot.meta.index,
              term: message.snapshot.meta.term,
              voters: message.snapshot.meta.configuration.voters,
              learners: message.snapshot.meta.configuration.learners,
              data: Buffer.from(message.snapshot.data),
            },
      context: message.context,
      quiesce: message.quiesce,
    })),
  });
  const bytes = Buffer.allocUnsafe(body.length + 1);
  bytes[0] = raftBatchVersion;
  body.copy(bytes, 1);
  return bytes;
}

const malformed = (message: string): RaftBatchDecodeError => ({ tag: "Malformed", message });
const isCount = (value: number) => Number.isSafeInteger(value) && value >= 0;

interface DecodedMessage {
  type: number;
  group: number;
  term: number;
  logTerm: number;
  index: number;
  entries: { index: number; term: number; kind: number; data: Buffer }[];
  commit: number;
  reject: boolean;
  rejectHint: number;
  lastIndex: number;
  snapshot: { index: number; term: number; voters: string[]; learners: string[]; data: Buffer } | null;
  context: number;
  quiesce: boolean;
}

function checkMessage(value: DecodedMessage, from: string, to: string): Message | string {
  const type = messageTypes[value.type];
  if (type === undefined) return `unknown message type ${value.type}`;
  for (const field of [
    "group",
    "term",
    "logTerm",
    "index",
    "commit",
    "rejectHint",
    "lastIndex",
    "context",
  ] as const) {
    if (!isCount(value[field])) return `${type} ${field} must be a non-negative safe integer`;
  }
  const entries: Entry[] = [];
  for (const [position, entry] of value.entries.entries()) {
    const kind = entryKinds[entry.kind];
    if (kind === undefined) return `entry kind ${entry.kind} is unknown`;
    if (!isCount(entry.term) || entry.index !== value.index + 1 + position) {
      return `entries of ${type} must follow index ${value.index} contiguously`;
    }
    entries.push({ index: entry.index, term: entry.term, kind, data: entry.data });
  }
  let snapshot: Message["snapshot"] = null;
  if (value.snapshot !== null) {
    const { index, term, voters, learners, data } = value.snapshot;
    if (!isCount(index) || !isCount(term))
      return "snapshot index and term must be non-negative safe integers";
    if (voters.length === 0 || [...voters, ...learners].some((id) => id.length === 0)) {
      return "snapshot configuration needs voters and non-empty ids";
    }
    snapshot = { meta: { index, term, configuration: { voters, learners } }, data };
  }
  return {
    ...emptyMessage,
    type,
    group: value.group,
    from,
    to,
    term: value.term,
    logTerm: value.logTerm,
    index: value.index,
    entries,
    commit: value.commit,
    reject: value.reject,
    rejectHint: value.rejectHint,
    lastIndex: value.lastIndex,
    snapshot,
    context: value.context,
    quiesce: value.quiesce,
  };
}

export function decodeRaftBatch(bytes: Uint8Array): RaftBatchDecode {
  if (bytes.length === 0) return { ok: false, error: { tag: "Truncated", message: "empty raft batch" } };
  if (bytes[0] !== raftBatchVersion)
    return { ok: false, error: { tag: "UnsupportedVersion", version: bytes[0]! } };
  const body = Buffer.from(bytes.buffer, bytes.byteOffset + 1, bytes.byteLength - 1);
  let decoded: { value: unknown; offset: number };
  try {
    decoded = batchType.decode(body, 0);
  } catch (error) {
    if (error instanceof BoundExceeded)
      return { ok: false, error: { tag: "OverLimit", message: error.message } };
    return { ok: false, error: malformed(`raft batch does not decode: ${(error as Error).message}`) };
  }
  if (decoded.offset < 0)
    return { ok: false, error: { tag: "Truncated", message: "raft batch is truncated" } };
  if (decoded.offset !== body.length) {
    return { ok: false, error: malformed(`raft batch has ${body.length - decoded.offset} trailing bytes`) };
  }
  const value = decoded.value as {
    from: string;
    to: string;
    beats: Beat[];
    beatResponses: BeatResponse[];
    messages: DecodedMessage[];
  };
  if (value.from.length === 0 || value.to.length === 0)
    return { ok: false, error: malformed("raft batch needs from and to") };
  for (const beat of value.beats) {
    if (![beat.group, beat.term, beat.commit, beat.context].every(isCount)) {
      return { ok: false, error: malformed("beat fields must be non-negative safe integers") };
    }
  }
  for (const response of value.beatResponses) {
    if (![response.group, response.term, response.context].every(isCount)) {
      return { ok: false, error: malformed("beat response fields must be non-negative safe integers") };
    }
  }
  const messages: Message[] = [];
  for (const raw of value.messages) {
    const message = checkMessage(raw, value.from, value.to);
    if (typeof message === "string") return { ok: false, error: malformed(message) };
    messages.push(message);
  }
  return {
    ok: true,
    batch: {
      from: value.from,
      to: value.to,
      beats: value.beats.map((beat) => ({ ...beat })),
      beatResponses: value.beatResponses.map((response) => ({ ...response })),
      messages,
    },
  };
}
