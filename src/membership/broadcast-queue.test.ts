// The broadcast queue (SWIM §4.1): retransmit budget, replacement, packet filling, pruning, and
// the tiered implementation against a plain sort-and-scan reference.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BroadcastQueue, retransmitLimit } from "./broadcast-queue.ts";

const bytes = (length: number, fill = 1) => new Uint8Array(length).fill(fill);

describe("SWIM §4.1 dissemination budget", () => {
  it("retransmits retransmitMult * ceil(log10(N + 1)) times, growing with log N", () => {
    expect(retransmitLimit(4, 1)).toBe(4);
    expect(retransmitLimit(4, 9)).toBe(4);
    expect(retransmitLimit(4, 10)).toBe(8);
    expect(retransmitLimit(4, 99)).toBe(8);
    expect(retransmitLimit(4, 100)).toBe(12);
    expect(retransmitLimit(4, 10_000)).toBe(20);
  });

  it("sends each broadcast exactly transmitLimit times, then forgets it", () => {
    const queue = new BroadcastQueue(16);
    queue.enqueue("a", bytes(10));
    let sent = 0;
    for (let round = 0; round < 10; round++) sent += queue.take(100, 10, 3).length;
    expect(sent).toBe(3);
    expect(queue.has("a")).toBe(false);
  });

  it("keeps one broadcast per member: newer news replaces older", () => {
    const queue = new BroadcastQueue(16);
    queue.enqueue("a", bytes(10, 1));
    queue.take(100, 10, 5);
    queue.enqueue("a", bytes(10, 2));
    expect(queue.size).toBe(1);
    expect(queue.transmitsOf("a")).toBe(0);
    expect(queue.take(100, 10, 5)).toEqual([bytes(10, 2)]);
  });

  it("fills a packet with the least-sent first, largest that fits, within bytes and count", () => {
    const queue = new BroadcastQueue(16);
    queue.enqueue("old", bytes(5, 9));
    queue.take(100, 10, 10); // "old" now sent once
    queue.enqueue("small", bytes(10, 1));
    queue.enqueue("big", bytes(40, 2));
    queue.enqueue("huge", bytes(80, 3));
    // 60 bytes: "huge" does not fit; "big" (40) then "small" (10), then "old" (5): 55 bytes.
    expect(queue.take(60, 10, 10).map((entry) => entry.length)).toEqual([40, 10, 5]);
    // The count cap: "huge" has been sent least, so it goes alone.
    expect(queue.take(1000, 1, 10).map((entry) => entry.length)).toEqual([80]);
    expect(queue.take(0, 10, 10)).toEqual([]);
  });

  it("drops the most-sent broadcasts first when over capacity", () => {
    const queue = new BroadcastQueue(2);
    queue.enqueue("a", bytes(10));
    queue.take(100, 10, 10);
    queue.enqueue("b", bytes(10));
    queue.enqueue("c", bytes(10));
    expect(queue.size).toBe(2);
    expect(queue.has("a")).toBe(false);
    expect(queue.prunedCount).toBe(1);
  });
});

/** The plain reference: sort the whole queue, scan it greedily (what memberlist's tiers amount to). */
class ReferenceQueue {
  private entries: { key: string; bytes: Uint8Array; transmits: number; serial: number }[] = [];
  private serial = 0;
  private readonly capacityValue: number;
  constructor(capacity: number) {
    this.capacityValue = capacity;
  }
  private sorted() {
    return [...this.entries].sort(
      (a, b) => a.transmits - b.transmits || b.bytes.length - a.bytes.length || b.serial - a.serial,
    );
  }
  enqueue(key: string, bytes: Uint8Array): void {
    this.entries = this.entries.filter((entry) => entry.key !== key);
    this.entries.push({ key, bytes, transmits: 0, serial: ++this.serial });
    const keep = this.sorted().slice(0, this.capacityValue);
    this.entries = this.entries.filter((entry) => keep.includes(entry));
  }
  take(budget: number, countMax: number, limit: number): Uint8Array[] {
    const taken: Uint8Array[] = [];
    const finished = new Set<unknown>();
    let free = budget;
    for (const entry of this.sorted()) {
      if (taken.length >= countMax) break;
      if (entry.bytes.length > free) continue;
      taken.push(entry.bytes);
      free -= entry.bytes.length;
      entry.transmits++;
      if (entry.transmits >= limit) finished.add(entry);
    }
    this.entries = this.entries.filter((entry) => !finished.has(entry));
    return taken;
  }
  keys(): string[] {
    return this.sorted().map((entry) => `${entry.key}:${entry.transmits}`);
  }
}

describe("BroadcastQueue against the sort-and-scan reference", () => {
  it("takes the same broadcasts, in the same order, and keeps the same ones", () => {
    const operation = fc.oneof(
      fc.record({
        kind: fc.constant("enqueue" as const),
        key: fc.constantFrom("a", "b", "c", "d", "e", "f", "g"),
        size: fc.integer({ min: 1, max: 60 }),
      }),
      fc.record({
        kind: fc.constant("take" as const),
        budget: fc.integer({ min: 0, max: 150 }),
        count: fc.integer({ min: 0, max: 4 }),
        limit: fc.integer({ min: 1, max: 5 }),
      }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(operation, { maxLength: 60 }),
        (capacity, operations) => {
          const queue = new BroadcastQueue(capacity);
          const reference = new ReferenceQueue(capacity);
          let tag = 0;
          for (const step of operations) {
            if (step.kind === "enqueue") {
              const bytes = bytes_(step.size, ++tag);
              queue.enqueue(step.key, bytes);
              reference.enqueue(step.key, bytes);
            } else {
              expect(queue.take(step.budget, step.count, step.limit)).toEqual(
                reference.take(step.budget, step.count, step.limit),
              );
            }
            const keys = reference.keys();
            expect(queue.size).toBe(keys.length);
            for (const key of keys) {
              const [name, transmits] = key.split(":");
              expect(queue.transmitsOf(name!)).toBe(Number(transmits));
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

/** `length` bytes whose first byte tells them apart. */
function bytes_(length: number, tag: number): Uint8Array {
  const out = new Uint8Array(length);
  out[0] = tag & 0xff;
  if (length > 1) out[1] = tag >> 8;
  return out;
}
