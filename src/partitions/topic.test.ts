import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkTopic, isValidTopic, topicMaxBytes } from "./index.ts";

describe("topic validation", () => {
  it.each(["orders", "sensors/eu-west/temp", "chat.room.12345", "注文.東京", "a", "x".repeat(topicMaxBytes)])(
    "accepts %s",
    (topic) => {
      const check = checkTopic(topic);
      expect(check.ok).toBe(true);
      if (check.ok) expect(new TextDecoder().decode(check.bytes)).toBe(topic);
    },
  );

  it.each([
    ["", "TopicEmpty"],
    ["x".repeat(topicMaxBytes + 1), "TopicTooLong"],
    ["é".repeat(128), "TopicTooLong"],
    ["a b", "TopicBadCharacter"],
    ["a\nb", "TopicBadCharacter"],
    ["a\u0000b", "TopicBadCharacter"],
    ["a\u200bb", "TopicBadCharacter"],
    ["orders.*", "TopicBadCharacter"],
    ["orders.>", "TopicBadCharacter"],
    ["a#", "TopicBadCharacter"],
    ["a..b", "TopicEmptySegment"],
    [".a", "TopicEmptySegment"],
    ["a/", "TopicEmptySegment"],
    ["a./b", "TopicEmptySegment"],
  ])("refuses %j with %s", (topic, tag) => {
    const check = checkTopic(topic);
    expect(check.ok).toBe(false);
    if (!check.ok) {
      expect(check.error.tag).toBe(tag);
      expect(check.error.message.length).toBeGreaterThan(10);
    }
  });

  it("names the offending character and its position", () => {
    const check = checkTopic("abc def");
    expect(check).toMatchObject({
      ok: false,
      error: { tag: "TopicBadCharacter", character: " ", position: 3 },
    });
  });

  it("never throws and accepts only names within the byte limit", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 300 }), (topic) => {
        const check = checkTopic(topic);
        if (check.ok) {
          expect(check.bytes.length).toBeLessThanOrEqual(topicMaxBytes);
          expect(check.bytes.length).toBeGreaterThan(0);
        }
      }),
    );
  });

  it("isValidTopic gives checkTopic's verdict for every string", () => {
    const ascii = fc.string({
      unit: fc.integer({ min: 0, max: 0x7f }).map((code) => String.fromCharCode(code)),
    });
    const nameLike = fc
      .array(
        fc.constantFrom("a", "Z", "0", ".", "/", "-", "_", " ", "*", "#", "é", "東", "\u200b", "\u007f"),
        {
          maxLength: 300,
        },
      )
      .map((parts) => parts.join(""));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 300 }), ascii, nameLike), (topic) => {
        expect(isValidTopic(topic)).toBe(checkTopic(topic).ok);
      }),
      { numRuns: 3000 },
    );
    for (const topic of [
      "x".repeat(topicMaxBytes),
      "x".repeat(topicMaxBytes + 1),
      "é".repeat(128),
      "a",
      "",
    ]) {
      expect(isValidTopic(topic)).toBe(checkTopic(topic).ok);
    }
  });
});
