import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SubscriptionTable } from "./index.ts";

describe("subscription table", () => {
  it("matches exactly the subscriptions added and not removed (against a plain model)", () => {
    const operation = fc.record({
      add: fc.boolean(),
      topic: fc.constantFrom("a", "b", "c"),
      subscriber: fc.constantFrom("s1", "s2"),
      id: fc.integer({ min: 1, max: 3 }),
    });
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 60 }), (operations) => {
        const table = new SubscriptionTable<string>();
        const model = new Map<string, string>(); // "subscriber/id" -> topic
        for (const { add, topic, subscriber, id } of operations) {
          const key = `${subscriber}/${id}`;
          if (add && !model.has(key)) {
            table.add(topic, subscriber, id);
            model.set(key, topic);
          } else if (!add) {
            const removed = table.remove(topic, subscriber, id);
            expect(removed).toBe(model.get(key) === topic);
            if (removed) model.delete(key);
          }
        }
        expect(table.size).toBe(model.size);
        for (const topic of ["a", "b", "c"]) {
          const got = table.match(topic).map((entry) => `${entry.subscriber}/${entry.subscriptionId}`);
          const want = [...model].filter(([, t]) => t === topic).map(([key]) => key);
          expect(got.sort()).toEqual(want.sort());
        }
      }),
    );
  });

  it("a fan-out list in hand is not changed by a removal during the loop", () => {
    const table = new SubscriptionTable<string>();
    table.add("t", "s1", 1);
    table.add("t", "s2", 1);
    const seen: string[] = [];
    for (const entry of table.match("t")) {
      table.remove("t", "s2", 1);
      seen.push(entry.subscriber);
    }
    expect(seen).toEqual(["s1", "s2"]);
    expect(table.match("t").map((entry) => entry.subscriber)).toEqual(["s1"]);
    expect(table.topics).toBe(1);
  });
});
