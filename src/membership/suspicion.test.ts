// Suspicion timeouts (SWIM §4.2, Lifeguard §IV-B) and local health (Lifeguard §IV-A) as formulas.
import { describe, expect, it } from "vitest";
import { LocalHealth } from "./awareness.ts";
import { confirmationsWanted, Suspicion, suspicionTimeoutAfterMs, suspicionTimeoutMs } from "./suspicion.ts";
import type { MemberId } from "./types.ts";

const id = (text: string) => text as MemberId;

describe("SWIM §4.2 suspicion timeout", () => {
  it("is suspicionMult * max(1, log10 N) * probe interval", () => {
    expect(suspicionTimeoutMs(4, 1, 300)).toBe(1200);
    expect(suspicionTimeoutMs(4, 10, 300)).toBe(1200);
    expect(suspicionTimeoutMs(4, 100, 300)).toBe(2400);
    expect(suspicionTimeoutMs(4, 1000, 300)).toBe(3600);
    expect(suspicionTimeoutMs(4, 50, 300)).toBe(Math.floor(4 * Math.log10(50) * 300));
  });
});

describe("Lifeguard §IV-B suspicion with confirmations", () => {
  it("wants suspicionMult - 2 confirmations, or none in a cluster too small to give them", () => {
    expect(confirmationsWanted(4, 10)).toBe(2);
    expect(confirmationsWanted(4, 4)).toBe(2);
    expect(confirmationsWanted(4, 3)).toBe(0);
    expect(confirmationsWanted(6, 5)).toBe(0);
    expect(confirmationsWanted(1, 100)).toBe(0);
  });

  it("shrinks from max to min as log(n + 1) / log(k + 1)", () => {
    const [minMs, maxMs] = [1200, 7200];
    expect(suspicionTimeoutAfterMs(0, 2, minMs, maxMs)).toBe(7200);
    expect(suspicionTimeoutAfterMs(1, 2, minMs, maxMs)).toBe(
      Math.floor(7200 - (6000 * Math.log(2)) / Math.log(3)),
    );
    expect(suspicionTimeoutAfterMs(1, 2, minMs, maxMs)).toBe(3414);
    expect(suspicionTimeoutAfterMs(2, 2, minMs, maxMs)).toBe(1200);
    expect(suspicionTimeoutAfterMs(5, 2, minMs, maxMs)).toBe(1200);
    expect(suspicionTimeoutAfterMs(3, 0, minMs, maxMs)).toBe(7200);
  });

  it("counts each confirmer once, never the first suspecter, and stops at k", () => {
    const suspicion = new Suspicion({ fromId: id("a"), startedMs: 1000, k: 2, minMs: 1200, maxMs: 7200 });
    expect(suspicion.deadlineMs()).toBe(8200);
    expect(suspicion.confirm(id("a"))).toBe(false);
    expect(suspicion.confirm(id("b"))).toBe(true);
    expect(suspicion.confirm(id("b"))).toBe(false);
    expect(suspicion.deadlineMs()).toBe(1000 + 3414);
    expect(suspicion.confirm(id("c"))).toBe(true);
    expect(suspicion.deadlineMs()).toBe(2200);
    expect(suspicion.confirm(id("d"))).toBe(false);
    expect(suspicion.confirmations).toBe(2);
  });
});

describe("Lifeguard §IV-A local health", () => {
  it("stays within [0, max - 1] and multiplies timers by score + 1", () => {
    const health = new LocalHealth(8);
    health.applyDelta(-1);
    expect(health.score).toBe(0);
    expect(health.scale(300)).toBe(300);
    health.applyDelta(3);
    expect(health.scale(300)).toBe(1200);
    health.applyDelta(100);
    expect(health.score).toBe(7);
    expect(health.scale(100)).toBe(800);
  });
});
