// SimClock rules, stepped by hand; a property test checks firing order against a plain sort.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { defaultWallStartMs, SimClock } from "./clock.ts";

describe("SimClock", () => {
  it("timers due at the same instant fire in the order they were scheduled", () => {
    const clock = new SimClock();
    const fired: string[] = [];
    for (const name of ["a", "b", "c", "d"]) clock.schedule(10, () => fired.push(name));
    clock.schedule(5, () => fired.push("early"));
    expect(clock.runUntilIdle()).toBe(5);
    expect(fired).toEqual(["early", "a", "b", "c", "d"]);
  });

  it("fires in (due time, scheduling order) for any schedule and any cancellations", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ delayMs: fc.integer({ min: -5, max: 50 }), cancel: fc.boolean() }), {
          maxLength: 200,
        }),
        (plans) => {
          const clock = new SimClock();
          const fired: number[] = [];
          const timers = plans.map((plan, index) => clock.schedule(plan.delayMs, () => fired.push(index)));
          plans.forEach((plan, index) => {
            if (plan.cancel) timers[index]!.cancel();
          });
          clock.runUntilIdle();
          const expected = plans
            .map((plan, index) => ({ dueMs: Math.max(0, plan.delayMs), index, cancel: plan.cancel }))
            .filter((entry) => !entry.cancel)
            .sort((a, b) => a.dueMs - b.dueMs || a.index - b.index)
            .map((entry) => entry.index);
          expect(fired).toEqual(expected);
        },
      ),
    );
  });

  it("runs each callback at its due time and never moves time backwards", () => {
    const clock = new SimClock();
    const seen: [number, number][] = [];
    clock.schedule(30, () => seen.push([30, clock.nowMs()]));
    clock.schedule(10, () => {
      seen.push([10, clock.nowMs()]);
      clock.schedule(5, () => seen.push([15, clock.nowMs()]));
      clock.schedule(0, () => seen.push([10.5, clock.nowMs()]));
    });
    clock.runUntilIdle();
    expect(seen).toEqual([
      [10, 10],
      [10.5, 10],
      [15, 15],
      [30, 30],
    ]);
    expect(() => clock.advanceTo(29)).toThrow(/before now/);
  });

  it("advance fires exactly the timers due within the window, then lands on the target", () => {
    const clock = new SimClock();
    const fired: number[] = [];
    for (const delayMs of [1, 5, 10, 10.001, 20]) clock.schedule(delayMs, () => fired.push(delayMs));
    expect(clock.advance(10)).toBe(3);
    expect(fired).toEqual([1, 5, 10]);
    expect(clock.nowMs()).toBe(10);
    expect(clock.nextDueMs()).toBe(10.001);
    expect(clock.advance(0)).toBe(0);
    expect(clock.advance(100)).toBe(2);
    expect(clock.nowMs()).toBe(110);
    expect(clock.pendingTimers).toBe(0);
  });

  it("a cancelled timer never fires, and cancelling twice or after firing is harmless", () => {
    const clock = new SimClock();
    const fired: string[] = [];
    const first = clock.schedule(1, () => fired.push("first"));
    const second = clock.schedule(2, () => fired.push("second"));
    clock.schedule(3, () => fired.push("third"));
    second.cancel();
    second.cancel();
    expect(clock.pendingTimers).toBe(2);
    clock.step();
    first.cancel();
    clock.runUntilIdle();
    expect(fired).toEqual(["first", "third"]);
  });

  it("step reports whether a timer fired", () => {
    const clock = new SimClock();
    expect(clock.step()).toBe(false);
    clock.schedule(7, () => {});
    expect(clock.step()).toBe(true);
    expect(clock.nowMs()).toBe(7);
    expect(clock.step()).toBe(false);
  });

  it("runUntil stops as soon as the condition holds, and fails when time runs out", () => {
    const clock = new SimClock();
    let count = 0;
    const tick = () => {
      count += 1;
      clock.schedule(100, tick);
    };
    clock.schedule(100, tick);
    expect(clock.runUntil(() => count === 3)).toBe(3);
    expect(clock.nowMs()).toBe(300);
    expect(() => clock.runUntil(() => false, { maxSteps: 10 })).toThrow(/still false after 10 timers/);
    expect(() => new SimClock().runUntil(() => false)).toThrow(/no timers left/);
  });

  it("runUntilIdle gives up on a timer that reschedules itself forever", () => {
    const clock = new SimClock();
    const tick = () => clock.schedule(0, tick);
    clock.schedule(0, tick);
    expect(() => clock.runUntilIdle({ maxSteps: 1000 })).toThrow(/still pending after 1000 steps/);
    expect(() => clock.advance(1, { maxSteps: 1000 })).toThrow(/still busy after 1000 timers/);
  });

  it("run methods are not re-entrant", () => {
    const clock = new SimClock();
    let caught: unknown;
    clock.schedule(1, () => {
      try {
        clock.step();
      } catch (error) {
        caught = error;
      }
    });
    clock.runUntilIdle();
    expect(String(caught)).toMatch(/called from inside a timer callback/);
  });

  it("a callback that throws stops the run and leaves the clock usable", () => {
    const clock = new SimClock();
    const fired: string[] = [];
    clock.schedule(1, () => {
      throw new Error("boom");
    });
    clock.schedule(2, () => fired.push("after"));
    expect(() => clock.runUntilIdle()).toThrow("boom");
    expect(clock.nowMs()).toBe(1);
    clock.runUntilIdle();
    expect(fired).toEqual(["after"]);
  });

  it("wall time is the start offset plus virtual time", () => {
    expect(new SimClock().wallMs()).toBe(defaultWallStartMs);
    const clock = new SimClock({ wallStartMs: 1_000_000 });
    clock.advance(2500);
    expect(clock.wallMs()).toBe(1_002_500);
    expect(clock.nowMs()).toBe(2500);
  });

  it("negative delays count as zero; non-finite ones are refused", () => {
    const clock = new SimClock();
    clock.advance(5);
    let firedAt: number | undefined;
    clock.schedule(-3, () => {
      firedAt = clock.nowMs();
    });
    clock.runUntilIdle();
    expect(firedAt).toBe(5);
    expect(() => clock.schedule(Number.NaN, () => {})).toThrow(/finite/);
    expect(() => clock.schedule(Number.POSITIVE_INFINITY, () => {})).toThrow(/finite/);
  });

  it("bounds the pending timers", () => {
    const clock = new SimClock({ timersMax: 3 });
    for (let index = 0; index < 3; index++) clock.schedule(index, () => {});
    expect(() => clock.schedule(1, () => {})).toThrow(/more than 3 pending timers/);
    clock.step();
    expect(() => clock.schedule(1, () => {})).not.toThrow();
  });

  it("tells a driver when a timer is scheduled, until it stops listening", () => {
    const clock = new SimClock();
    let calls = 0;
    const stop = clock.onScheduled(() => {
      calls += 1;
    });
    clock.schedule(1, () => {});
    stop();
    clock.schedule(1, () => {});
    expect(calls).toBe(1);
  });
});
