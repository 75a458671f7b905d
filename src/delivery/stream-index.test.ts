// The stream index: each stored message names its topic's previous offset (per topic, 0 for the
// first), offsets only move forward, and the skip set remembers at most `skippedMax` entries.
import { describe, expect, it } from "vitest";
import { StreamIndex } from "./stream-index.ts";

describe("StreamIndex", () => {
  it("a stored message names the previous offset of its own topic, 0 for a topic's first", () => {
    const index = new StreamIndex();
    expect(index.stored("orders", 3)).toBe(0);
    expect(index.stored("payments", 4)).toBe(0);
    expect(index.stored("orders", 5)).toBe(3);
    expect(index.stored("payments", 9)).toBe(4);
    expect(index.stored("orders", 12)).toBe(5);
  });

  it("the last offset of a topic is its latest stored message, 0 if none", () => {
    const index = new StreamIndex();
    expect(index.lastOffsetOf("orders")).toBe(0);
    index.stored("orders", 3);
    index.stored("payments", 7);
    index.stored("orders", 8);
    expect(index.lastOffsetOf("orders")).toBe(8);
    expect(index.lastOffsetOf("payments")).toBe(7);
    expect(index.lastOffsetOf("other")).toBe(0);
  });

  it("refuses an offset that is not after the topic's last one, and keeps the last one", () => {
    const index = new StreamIndex();
    index.stored("orders", 5);
    expect(() => index.stored("orders", 5)).toThrow(/offset 5 after 5 on orders/);
    expect(() => index.stored("orders", 4)).toThrow(/offset 4 after 5/);
    expect(() => new StreamIndex().stored("orders", 0)).toThrow(/offset 0 after 0/);
    expect(index.lastOffsetOf("orders")).toBe(5);
    expect(index.stored("payments", 4)).toBe(0); // other topics have their own order
  });

  it("remembers which log entries were skipped, and only those", () => {
    const index = new StreamIndex();
    index.skip(4);
    index.skip(9);
    expect([3, 4, 5, 9, 10].map((entry) => index.wasSkipped(entry))).toEqual([
      false,
      true,
      false,
      true,
      false,
    ]);
    expect(index.skippedForgotten).toBe(0);
  });

  it("remembers at most skippedMax skipped entries and counts the ones it forgets", () => {
    const index = new StreamIndex(2);
    index.skip(1);
    index.skip(2);
    index.skip(3);
    index.skip(4);
    expect([1, 2, 3, 4].map((entry) => index.wasSkipped(entry))).toEqual([true, true, false, false]);
    expect(index.skippedForgotten).toBe(2);
  });
});
