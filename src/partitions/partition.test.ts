import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { partitionCount, partitionOf, partitionOfBytes } from "./index.ts";

describe("partition function (DESIGN.md: xxh3_64(topic) >>> 48)", () => {
  // Vectors checked against `xxhsum -H3`: orders a88ccdc9fa4974fb, sensors/eu-west/temp
  // 17e718c189759cd7, chat.room.12345 411eda4706ddf439.
  it.each([
    ["orders", 43148],
    ["sensors/eu-west/temp", 6119],
    ["chat.room.12345", 16670],
  ])("maps %s to partition %d", (topic, partition) => {
    expect(partitionOf(topic)).toBe(partition);
    expect(partitionOfBytes(new TextEncoder().encode(topic))).toBe(partition);
  });

  it("always lands in [0, 65536) and agrees between string and byte input", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 64 }), (topic) => {
        const partition = partitionOf(topic);
        expect(Number.isInteger(partition)).toBe(true);
        expect(partition).toBeGreaterThanOrEqual(0);
        expect(partition).toBeLessThan(partitionCount);
        expect(partitionOfBytes(new TextEncoder().encode(topic))).toBe(partition);
      }),
    );
  });
});
