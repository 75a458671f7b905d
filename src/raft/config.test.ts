// The Raft config's validation: the defaults are valid, and promoteLagMaxEntries (how far a
// learner may trail the commit index and still be promoted) may be 0 but never negative.
import { describe, expect, it } from "vitest";
import { checkRaftConfig, defaultRaftConfig } from "./config.ts";

describe("Raft config", () => {
  it("has valid defaults", () => {
    expect(checkRaftConfig(defaultRaftConfig)).toEqual([]);
  });

  it("accepts promoteLagMaxEntries 0: the strict rule, a learner must hold the whole committed log", () => {
    expect(checkRaftConfig({ ...defaultRaftConfig, promoteLagMaxEntries: 0 })).toEqual([]);
  });

  it("refuses a negative or fractional promoteLagMaxEntries, naming the field and the value", () => {
    expect(checkRaftConfig({ ...defaultRaftConfig, promoteLagMaxEntries: -1 })).toEqual([
      "promoteLagMaxEntries must be a non-negative integer, got -1",
    ]);
    expect(checkRaftConfig({ ...defaultRaftConfig, promoteLagMaxEntries: 2.5 })).toEqual([
      "promoteLagMaxEntries must be a non-negative integer, got 2.5",
    ]);
  });
});
