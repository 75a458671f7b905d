// A request for a partition's leader to send again the stored messages of one topic with
// offsets in (after, through]: how a subscriber's router fills a gap in a topic's stream, and
// how a resumed subscription catches up. It is read from the log by the leader, never
// appended to it, so its bytes start with a marker no partition command starts with (those
// start with their format version, 1).
import avro from "avsc";
import { isValidTopic } from "../partitions/index.ts";

export const replayRequestMarker = 0xff;

export interface ReplayRequest {
  readonly topic: string;
  /** Messages after this offset (0: from the start). */
  readonly after: number;
  /** ...up to this one (inclusive). */
  readonly through: number;
  /** 0: fills the router's stream of the topic; n: answers catch-up `n` of that router. */
  readonly replay: number;
  /** Send nothing: only answer the topic's last stored offset (a quiet feed checks its tail). */
  readonly probe: boolean;
}

const replayType = avro.Type.forSchema({
  type: "record",
  name: "ReplayRequest",
  fields: [
    { name: "topic", type: "string" },
    { name: "after", type: "long" },
    { name: "through", type: "long" },
    { name: "replay", type: "long" },
    { name: "probe", type: "boolean" },
  ],
});

const isCount = (value: number) => Number.isSafeInteger(value) && value >= 0;

export function encodeReplayRequest(request: ReplayRequest): Buffer {
  return Buffer.concat([Buffer.from([replayRequestMarker]), replayType.toBuffer(request)]);
}

export function isReplayRequest(bytes: Uint8Array): boolean {
  return bytes.length > 0 && bytes[0] === replayRequestMarker;
}

/** The request, or why the bytes are not one. Never throws. */
export function decodeReplayRequest(
  bytes: Uint8Array,
): { readonly ok: true; readonly request: ReplayRequest } | { readonly ok: false; readonly message: string } {
  if (!isReplayRequest(bytes)) return { ok: false, message: "not a replay request" };
  let decoded: { value: unknown; offset: number };
  const body = Buffer.from(bytes.buffer, bytes.byteOffset + 1, bytes.length - 1);
  try {
    decoded = replayType.decode(body, 0);
  } catch (error) {
    return { ok: false, message: `replay request does not decode: ${(error as Error).message}` };
  }
  if (decoded.offset !== body.length)
    return { ok: false, message: "replay request is truncated or too long" };
  const request = decoded.value as ReplayRequest;
  if (!isValidTopic(request.topic)) return { ok: false, message: "replay request names an invalid topic" };
  if (
    !(isCount(request.after) && isCount(request.through) && isCount(request.replay)) ||
    request.through < request.after
  ) {
    return { ok: false, message: "replay request offsets must satisfy 0 <= after <= through" };
  }
  return {
    ok: true,
    request: {
      topic: request.topic,
      after: request.after,
      through: request.through,
      replay: request.replay,
      probe: request.probe,
    },
  };
}
