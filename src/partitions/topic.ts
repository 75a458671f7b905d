// Topic names. A topic is a UTF-8 name of 1..255 bytes made of segments separated by "." or
// "/" (both are common: "chat.room.1", "sensors/eu-west/temp"). Segments may hold letters and
// digits of any script and the marks "-", "_", ":", "=", "@", "+" ... but never whitespace,
// control characters, or the characters reserved for subscription patterns ("*", ">", "#",
// "?"), so that adding wildcards later cannot change what an existing topic name means.
// An empty segment ("a..b", ".a", "a/") is refused: it is almost always a bug in the caller.
//
// `isValidTopic` is the allocation-free check for hot paths (every publish, on the client and
// the router): ASCII names are checked by character code, anything else by `checkTopic`.
// Invariant: isValidTopic(t) === checkTopic(t).ok for every string (a property test holds it).
import type { TopicError } from "./errors.ts";

/** The longest topic, in UTF-8 bytes. Bounded so a topic always fits a frame header cheaply. */
export const topicMaxBytes = 255;

/** Characters reserved for future subscription patterns. */
const reserved = new Set(["*", ">", "#", "?"]);
const separators = new Set([".", "/"]);
/** Whitespace, control and format characters, and unpaired surrogates. */
const forbidden = /[\s\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;

const encoder = new TextEncoder();

export type TopicCheck =
  | { readonly ok: true; readonly bytes: Uint8Array }
  | { readonly ok: false; readonly error: TopicError };

/** Checks a topic name; on success returns its UTF-8 bytes (what the partition hash reads). */
export function checkTopic(topic: string): TopicCheck {
  if (topic.length === 0) {
    return { ok: false, error: { tag: "TopicEmpty", message: "topic is empty" } };
  }
  // Cheap pre-check before encoding: a UTF-16 length above the byte limit is always too long.
  if (topic.length > topicMaxBytes) {
    return tooLong(topic, encoder.encode(topic).length);
  }
  let position = 0;
  let previousWasSeparator = true;
  for (const character of topic) {
    if (reserved.has(character) || forbidden.test(character)) {
      const shown = JSON.stringify(character);
      return {
        ok: false,
        error: {
          tag: "TopicBadCharacter",
          message: `topic ${JSON.stringify(topic)} has the character ${shown} at position ${position}; whitespace, control characters and * > # ? are not allowed`,
          character,
          position,
        },
      };
    }
    const isSeparator = separators.has(character);
    if (isSeparator && previousWasSeparator) {
      return emptySegment(topic);
    }
    previousWasSeparator = isSeparator;
    position += 1;
  }
  if (previousWasSeparator) {
    return emptySegment(topic);
  }
  const bytes = encoder.encode(topic);
  if (bytes.length > topicMaxBytes) {
    return tooLong(topic, bytes.length);
  }
  return { ok: true, bytes };
}

/** Whether `topic` is a valid name, without allocating for ASCII names; same verdict as checkTopic. */
export function isValidTopic(topic: string): boolean {
  const length = topic.length;
  if (length === 0 || length > topicMaxBytes) return false;
  let previousWasSeparator = true;
  for (let index = 0; index < length; index++) {
    const code = topic.charCodeAt(index);
    if (code >= 0x80) return checkTopic(topic).ok;
    // Whitespace and control characters (<= space, DEL) and the reserved * > # ?.
    if (code <= 0x20 || code === 0x7f || code === 0x2a || code === 0x3e || code === 0x23 || code === 0x3f) {
      return false;
    }
    const isSeparator = code === 0x2e || code === 0x2f;
    if (isSeparator && previousWasSeparator) return false;
    previousWasSeparator = isSeparator;
  }
  // All ASCII: the UTF-8 length is the string's length, checked above.
  return !previousWasSeparator;
}

function tooLong(topic: string, bytes: number): TopicCheck {
  return {
    ok: false,
    error: {
      tag: "TopicTooLong",
      message: `topic ${JSON.stringify(topic.slice(0, 40))}... is ${bytes} bytes; the limit is ${topicMaxBytes} bytes of UTF-8`,
      bytes,
      limitBytes: topicMaxBytes,
    },
  };
}

function emptySegment(topic: string): TopicCheck {
  return {
    ok: false,
    error: {
      tag: "TopicEmptySegment",
      message: `topic ${JSON.stringify(topic)} has an empty segment; it may not start or end with "." or "/", or hold two in a row`,
    },
  };
}
