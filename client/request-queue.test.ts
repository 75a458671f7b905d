import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RequestQueue } from "./request-queue.ts";

// The ring buffer against a plain reference: a Map in insertion (= id) order.
describe("request queue", () => {
  it("behaves like an id-ordered Map under any mix of pushes and removals", () => {
    const operation = fc.oneof(
      fc.record({ kind: fc.constant("push" as const), count: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant("settleOldest" as const), count: fc.integer({ min: 1, max: 40 }) }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.array(operation, { maxLength: 200 }),
        (start, ops) => {
          const queue = new RequestQueue<{ requestId: number }>((request) => request.requestId, 4);
          const reference = new Map<number, { requestId: number }>();
          let next = start;
          for (const op of ops) {
            if (op.kind === "push") {
              for (let index = 0; index < op.count; index++) {
                const request = { requestId: next++ };
                queue.push(request);
                reference.set(request.requestId, request);
              }
            } else if (op.kind === "remove") {
              const ids = [...reference.keys()];
              const id = ids.length === 0 ? next + 5 : ids[op.pick % ids.length]!;
              expect(queue.remove(id)).toBe(reference.get(id));
              reference.delete(id);
              expect(queue.remove(id)).toBeUndefined();
            } else {
              for (let index = 0; index < op.count; index++) {
                const oldest = queue.oldest();
                expect(oldest).toBe(reference.values().next().value);
                if (oldest === undefined) break;
                queue.remove(oldest.requestId);
                reference.delete(oldest.requestId);
              }
            }
            expect(queue.size).toBe(reference.size);
            expect(queue.list()).toEqual([...reference.values()]);
            expect(queue.oldest()).toBe(reference.values().next().value);
            for (const id of [...reference.keys()].slice(0, 3)) expect(queue.get(id)).toBe(reference.get(id));
            expect(queue.get(next)).toBeUndefined();
          }
        },
      ),
    );
  });

  it("refuses an id that does not follow the last one", () => {
    const queue = new RequestQueue<{ requestId: number }>((request) => request.requestId);
    queue.push({ requestId: 7 });
    expect(() => queue.push({ requestId: 9 })).toThrow(/consecutive/);
  });
});
