import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PartitionMap } from "./partition-map.ts";

const at = (port: number) => ({ host: "127.0.0.1", port });

describe("partition map", () => {
  it("a leader learned later replaces the earlier one, and forgetting a router forgets only its partitions", () => {
    const map = new PartitionMap(8);
    expect(map.learn(1, "r1", at(1))).toBe(true);
    expect(map.learn(2, "r1", at(1))).toBe(true);
    expect(map.learn(3, "r2", at(2))).toBe(true);
    expect(map.learn(2, "r2", at(2))).toBe(true);
    expect([map.leaderOf(1), map.leaderOf(2), map.leaderOf(3)]).toEqual(["r1", "r2", "r2"]);
    map.forget("r2");
    expect([map.leaderOf(1), map.leaderOf(2), map.leaderOf(3)]).toEqual(["r1", undefined, undefined]);
    expect(map.addressOf("r2")).toBeUndefined();
    expect(map.addressOf("r1")).toEqual(at(1));
  });

  it("refuses partitions outside 0..65535 and a router past routersMax", () => {
    const map = new PartitionMap(1);
    for (const partition of [-1, 65_536, 1.5, Number.NaN])
      expect(map.learn(partition, "r1", at(1))).toBe(false);
    expect(map.learn(65_535, "r1", at(1))).toBe(true);
    expect(map.learn(7, "r2", at(2))).toBe(false);
    expect(map.leaderOf(7)).toBeUndefined();
    // Once r1 leads nothing, another router fits.
    map.forget("r1");
    expect(map.learn(7, "r2", at(2))).toBe(true);
  });

  it("agrees with a plain reference under any mix of learn and forget", () => {
    const routers = ["r1", "r2", "r3", "r4"];
    const operation = fc.oneof(
      fc.record({
        kind: fc.constant("learn" as const),
        partition: fc.integer({ min: 0, max: 20 }),
        router: fc.constantFrom(...routers),
      }),
      fc.record({ kind: fc.constant("forget" as const), router: fc.constantFrom(...routers) }),
    );
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 100 }), (operations) => {
        const map = new PartitionMap(3);
        const reference = new Map<number, string>();
        for (const op of operations) {
          if (op.kind === "forget") {
            map.forget(op.router);
            for (const [partition, router] of reference)
              if (router === op.router) reference.delete(partition);
            continue;
          }
          // A router that leads nothing here yet fits only while fewer than routersMax do.
          const holders = new Set(reference.values());
          const fits = holders.has(op.router) || holders.size < 3;
          expect(map.learn(op.partition, op.router, at(1))).toBe(fits);
          if (fits) reference.set(op.partition, op.router);
        }
        expect(map.size).toBe(reference.size);
        for (let partition = 0; partition <= 20; partition++)
          expect(map.leaderOf(partition)).toBe(reference.get(partition));
        for (const router of routers)
          expect(map.partitionsLedBy(router)).toBe(
            [...reference.values()].filter((r) => r === router).length,
          );
      }),
    );
  });
});
