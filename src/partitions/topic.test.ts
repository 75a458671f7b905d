import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkTopic, topicMaxBytes } from "./index.ts";

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
});
