import avro from "avsc";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  activationReplicasMax,
  type ControllerCommand,
  controllerCommandProblem,
  decodeControllerCommand,
  encodeControllerCommand,
  routerIdMaxBytes,
} from "./controller-commands.ts";
import {
  type ControllerApplyResult,
  ControllerState,
  controllerGroup,
  controllerVotersTarget,
  routersMax,
} from "./controller-state.ts";
import type { PartitionId } from "./partition.ts";

const p = (partition: number) => partition as PartitionId;
const addRouter = (router: string): ControllerCommand => ({ kind: "AddRouter", router });
const removeRouter = (router: string): ControllerCommand => ({ kind: "RemoveRouter", router });
const setDraining = (router: string, draining: boolean): ControllerCommand => ({
  kind: "SetDraining",
  router,
  draining,
});
const activate = (partition: number, replicas: string[]): ControllerCommand => ({
  kind: "ActivatePartition",
  partition: p(partition),
  replicas,
});

/** Applies commands at indexes 1, 2, ... (or after the state's applied index). */
function applyAll(state: ControllerState, commands: readonly (ControllerCommand | Uint8Array)[]) {
  return commands.map((command) =>
    state.apply(
      state.appliedIndex + 1,
      command instanceof Uint8Array ? command : encodeControllerCommand(command),
    ),
  );
}

function stateOf(commands: readonly (ControllerCommand | Uint8Array)[]): ControllerState {
  const state = new ControllerState();
  applyAll(state, commands);
  return state;
}

function restored(bytes: Uint8Array): ControllerState {
  const result = ControllerState.restore(bytes);
  if (!result.ok) throw new Error(`restore failed: ${JSON.stringify(result.error)}`);
  return result.state;
}

const idArb = fc.oneof(
  fc.constantFrom("r1", "r2", "r3", "r4", "r5", "é-ü", "路由器"),
  fc.string({ minLength: 1, maxLength: 20, unit: "grapheme" }),
);
const commandArb: fc.Arbitrary<ControllerCommand> = fc.oneof(
  idArb.map(addRouter),
  idArb.map(removeRouter),
  fc.tuple(idArb, fc.boolean()).map(([id, draining]) => setDraining(id, draining)),
  fc
    .tuple(
      // A few partitions often (second activations), any partition sometimes.
      fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 65_535 })),
      fc.uniqueArray(idArb, { minLength: 1, maxLength: activationReplicasMax }),
    )
    .map(([partition, replicas]) => activate(partition, replicas)),
);

describe("controller command codec", () => {
  it("round-trips every valid command (property)", () => {
    fc.assert(
      fc.property(commandArb, (command) => {
        const decoded = decodeControllerCommand(encodeControllerCommand(command));
        expect(decoded).toEqual({ ok: true, command });
      }),
      { numRuns: 2000 },
    );
  });

  it("never throws on arbitrary bytes, and whatever decodes is valid (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 1, max: 4 }), (tail, kind) => {
        for (const bytes of [tail, Uint8Array.of(1, kind, ...tail)]) {
          const decoded = decodeControllerCommand(bytes);
          if (decoded.ok) expect(controllerCommandProblem(decoded.command)).toBeNull();
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("refuses a wrong version, an unknown kind, missing or trailing bytes", () => {
    const bytes = encodeControllerCommand(addRouter("r1"));
    const tag = (input: Uint8Array) => {
      const decoded = decodeControllerCommand(input);
      return decoded.ok ? "ok" : decoded.error.tag;
    };
    expect(tag(Uint8Array.of(2, ...bytes.subarray(1)))).toBe("UnsupportedVersion");
    expect(tag(Uint8Array.of(1, 9, ...bytes.subarray(2)))).toBe("UnknownCommand");
    expect(tag(bytes.subarray(0, 1))).toBe("Truncated");
    expect(tag(bytes.subarray(0, bytes.length - 1))).toBe("Truncated");
    expect(tag(Uint8Array.of(...bytes, 0))).toBe("Malformed");
    expect(tag(bytes)).toBe("ok");
  });

  it("refuses router ids that are empty or longer than 255 bytes", () => {
    const body = (id: string) => Uint8Array.of(1, 1, ...avro.Type.forSchema("string").toBuffer(id));
    expect(decodeControllerCommand(body("")).ok).toBe(false);
    expect(decodeControllerCommand(body("é".repeat(128))).ok).toBe(false); // 256 bytes
    expect(decodeControllerCommand(body("x".repeat(routerIdMaxBytes))).ok).toBe(true);
    expect(() => encodeControllerCommand(addRouter(""))).toThrow(/empty/);
    expect(() => encodeControllerCommand(addRouter("\ud800"))).toThrow(/well-formed/);
  });

  it("refuses activations out of range, empty, too long or naming a replica twice", () => {
    const activation = avro.Type.forSchema({
      type: "record",
      name: "ActivatePartition",
      fields: [
        { name: "partition", type: "int" },
        { name: "replicas", type: { type: "array", items: "string" } },
      ],
    });
    const decode = (partition: number, replicas: string[]) => {
      const decoded = decodeControllerCommand(
        Uint8Array.of(1, 4, ...activation.toBuffer({ partition, replicas })),
      );
      return decoded.ok ? "ok" : decoded.error.tag;
    };
    expect(decode(65_535, ["a", "b", "c"])).toBe("ok");
    expect(decode(65_536, ["a"])).toBe("Malformed");
    expect(decode(-1, ["a"])).toBe("Malformed");
    expect(decode(7, [])).toBe("Malformed");
    expect(decode(7, ["a", "b", "a"])).toBe("Malformed");
    expect(decode(7, ["1", "2", "3", "4", "5", "6", "7"])).toBe("ok");
    expect(decode(7, ["1", "2", "3", "4", "5", "6", "7", "8"])).toBe("OverLimit");
    expect(() => encodeControllerCommand(activate(7, []))).toThrow(/1\.\.7 replicas/);
    expect(() => encodeControllerCommand(activate(65_536, ["a"]))).toThrow(/partition/);
  });

  it("refuses a forged array count at once instead of looping (avsc trap)", () => {
    // kind 4, partition 7, then a block count of 2^40 with three bytes behind it.
    const forged = Uint8Array.of(1, 4, 14, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 2, 0x61, 0);
    const started = performance.now();
    const decoded = decodeControllerCommand(forged);
    expect(performance.now() - started).toBeLessThan(50);
    expect(decoded.ok ? "ok" : decoded.error.tag).toBe("OverLimit");
  });
});

describe("ControllerState.apply rules", () => {
  it("AddRouter adds a member once; a second is a noop", () => {
    const state = new ControllerState();
    expect(applyAll(state, [addRouter("r2"), addRouter("r1"), addRouter("r2")])).toEqual([
      { kind: "added", router: "r2" },
      { kind: "added", router: "r1" },
      { kind: "noop", reason: "r2 is already a member" },
    ]);
    expect(state.routers()).toEqual(["r1", "r2"]);
    expect(state.rosterVersion).toBe(2);
    expect(state.appliedIndex).toBe(3);
  });

  it(`AddRouter past ${routersMax} routers is refused with limit and changes nothing`, () => {
    const state = stateOf(Array.from({ length: routersMax }, (_, n) => addRouter(`r${n}`)));
    const before = state.snapshot();
    const [result] = applyAll(state, [addRouter("one-more")]);
    expect(result).toMatchObject({ kind: "limit", limit: routersMax });
    expect(state.routers()).toHaveLength(routersMax);
    expect(state.isMember("one-more")).toBe(false);
    expect(state.rosterVersion).toBe(routersMax);
    // Only appliedIndex moved.
    const [after, earlier] = [restored(state.snapshot()), restored(before)];
    expect(after.appliedIndex).toBe(earlier.appliedIndex + 1);
    expect(after.routers()).toEqual(earlier.routers());
    expect(after.rosterVersion).toBe(earlier.rosterVersion);
  });

  it("RemoveRouter removes a member; an unknown router is refused", () => {
    const state = stateOf([addRouter("r1"), addRouter("r2")]);
    expect(applyAll(state, [removeRouter("r1"), removeRouter("r1")])).toEqual([
      { kind: "removed", router: "r1" },
      { kind: "unknownRouter", router: "r1" },
    ]);
    expect(state.routers()).toEqual(["r2"]);
    expect(state.rosterVersion).toBe(3);
  });

  it("SetDraining marks a member; eligibleRouters leaves it out; same value is a noop", () => {
    const state = stateOf([addRouter("r3"), addRouter("r1"), addRouter("r2")]);
    const results = applyAll(state, [
      setDraining("r2", true),
      setDraining("r2", true),
      setDraining("r9", true),
    ]);
    expect(results.map((result) => result.kind)).toEqual(["draining", "noop", "unknownRouter"]);
    expect(state.isDraining("r2")).toBe(true);
    expect(state.routers()).toEqual(["r1", "r2", "r3"]);
    expect(state.eligibleRouters()).toEqual(["r1", "r3"]);
    expect(state.rosterVersion).toBe(4);
    applyAll(state, [setDraining("r2", false)]);
    expect(state.eligibleRouters()).toEqual(["r1", "r2", "r3"]);
    expect(state.rosterVersion).toBe(7);
  });

  it("ActivatePartition records the first replica set; a later one gets the recorded replicas back", () => {
    const state = stateOf([addRouter("r1"), addRouter("r2"), addRouter("r3")]);
    const results = applyAll(state, [
      activate(43_148, ["r2", "r1", "r3"]),
      activate(43_148, ["r1", "r2", "r4"]),
    ]);
    expect(results).toEqual([
      { kind: "activated", partition: 43_148, replicas: ["r2", "r1", "r3"] },
      { kind: "alreadyActive", partition: 43_148, replicas: ["r2", "r1", "r3"] },
    ]);
    expect(state.replicasAtActivation(p(43_148))).toEqual(["r2", "r1", "r3"]);
    expect(state.replicasAtActivation(p(0))).toBeUndefined();
    expect(state.activePartitions()).toBe(1);
    expect(state.rosterVersion).toBe(3); // activations do not change the roster
  });

  it("ActivatePartition naming routers outside the roster is recorded as is", () => {
    const state = stateOf([addRouter("r1"), activate(5, ["r1", "gone", "never-joined"])]);
    expect(state.replicasAtActivation(p(5))).toEqual(["r1", "gone", "never-joined"]);
    applyAll(state, [removeRouter("r1")]);
    expect(state.replicasAtActivation(p(5))).toEqual(["r1", "gone", "never-joined"]);
  });

  it("malformed bytes are a no-op result, never an exception", () => {
    const state = stateOf([addRouter("r1")]);
    const before = state.snapshot();
    const results = applyAll(state, [
      new Uint8Array(),
      Uint8Array.of(1, 4, 0, 0),
      Uint8Array.of(7, 1, 2, 65),
    ]);
    expect(results.map((result) => result.kind)).toEqual(["malformed", "malformed", "malformed"]);
    expect(results[1]).toMatchObject({ error: { tag: "Malformed" } }); // an empty replica list
    expect(state.appliedIndex).toBe(4);
    expect(state.routers()).toEqual(["r1"]);
    expect(restored(state.snapshot()).rosterVersion).toBe(restored(before).rosterVersion);
  });

  it("asserts that entries are applied in log order, once", () => {
    const state = stateOf([addRouter("r1"), addRouter("r2")]);
    expect(() => state.apply(2, encodeControllerCommand(addRouter("r3")))).toThrow(/assertion/);
    expect(state.apply(10, encodeControllerCommand(addRouter("r3")))).toEqual({
      kind: "added",
      router: "r3",
    });
  });

  it("the controller is the Raft group after the last partition", () => {
    expect(controllerGroup).toBe(65_536);
  });
});

/** A plain reference model of the controller state. */
class Reference {
  readonly members = new Map<string, boolean>();
  readonly activations = new Map<number, readonly string[]>();
  rosterVersion = 0;

  apply(index: number, command: ControllerCommand | null): ControllerApplyResult["kind"] {
    if (command === null) return "malformed";
    switch (command.kind) {
      case "AddRouter":
        if (this.members.has(command.router)) return "noop";
        if (this.members.size >= routersMax) return "limit";
        this.members.set(command.router, false);
        this.rosterVersion = index;
        return "added";
      case "RemoveRouter":
        if (!this.members.delete(command.router)) return "unknownRouter";
        this.rosterVersion = index;
        return "removed";
      case "SetDraining":
        if (!this.members.has(command.router)) return "unknownRouter";
        if (this.members.get(command.router) === command.draining) return "noop";
        this.members.set(command.router, command.draining);
        this.rosterVersion = index;
        return "draining";
      case "ActivatePartition":
        if (this.activations.has(command.partition)) return "alreadyActive";
        this.activations.set(command.partition, [...command.replicas]);
        return "activated";
    }
  }
}

const entryArb: fc.Arbitrary<ControllerCommand | Uint8Array> = fc.oneof(
  { weight: 8, arbitrary: commandArb },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }) },
);

function expectSameQueries(state: ControllerState, other: ControllerState) {
  expect(other.routers()).toEqual(state.routers());
  expect(other.eligibleRouters()).toEqual(state.eligibleRouters());
  expect(other.rosterVersion).toBe(state.rosterVersion);
  expect(other.appliedIndex).toBe(state.appliedIndex);
  expect(other.activePartitions()).toBe(state.activePartitions());
  for (const id of state.routers()) expect(other.isDraining(id)).toBe(state.isDraining(id));
}

describe("ControllerState against a reference model (property)", () => {
  it("answers every query like the reference", () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 60 }), (entries) => {
        const state = new ControllerState();
        const reference = new Reference();
        entries.forEach((entry, position) => {
          const bytes = entry instanceof Uint8Array ? entry : encodeControllerCommand(entry);
          const decoded = decodeControllerCommand(bytes);
          const index = 2 * position + 1; // gaps: config and empty entries do not reach apply
          expect(state.apply(index, bytes).kind).toBe(
            reference.apply(index, decoded.ok ? decoded.command : null),
          );
        });
        expect(state.routers()).toEqual([...reference.members.keys()].sort());
        expect(state.eligibleRouters()).toEqual(
          [...reference.members]
            .filter(([, draining]) => !draining)
            .map(([id]) => id)
            .sort(),
        );
        expect(state.rosterVersion).toBe(reference.rosterVersion);
        expect(state.activePartitions()).toBe(reference.activations.size);
        for (const [partition, replicas] of reference.activations) {
          expect(state.replicasAtActivation(p(partition))).toEqual(replicas);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("ControllerState snapshots", () => {
  it("restore(snapshot()) answers every query alike, and applying on from it matches (property)", () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { maxLength: 40 }),
        fc.array(entryArb, { maxLength: 20 }),
        (before, after) => {
          const whole = stateOf([...before, ...after]);
          const copy = restored(stateOf(before).snapshot());
          applyAll(copy, after);
          expectSameQueries(whole, copy);
          expect(copy.snapshot()).toEqual(whole.snapshot());
          for (const entry of [...before, ...after]) {
            if (entry instanceof Uint8Array || entry.kind !== "ActivatePartition") continue;
            expect(copy.replicasAtActivation(entry.partition)).toEqual(
              whole.replicasAtActivation(entry.partition),
            );
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("is deterministic: the same state reached in another order gives the same bytes", () => {
    const one = stateOf([activate(9, ["x", "a"]), addRouter("b"), activate(2, ["b"]), addRouter("a")]);
    const two = stateOf([activate(2, ["b"]), addRouter("a"), activate(9, ["x", "a"]), addRouter("b")]);
    expect(one.snapshot()).toEqual(two.snapshot());
    expect(stateOf([addRouter("a")]).snapshot()).not.toEqual(stateOf([addRouter("b")]).snapshot());
  });

  it("restores a full state: 1,000 routers and 65,536 partitions", () => {
    const routers = Array.from({ length: routersMax }, (_, n) => `router-${String(n).padStart(4, "0")}`);
    const state = stateOf(routers.map(addRouter));
    for (let partition = 0; partition < 65_536; partition++) {
      const at = (partition * 3) % routersMax;
      state.apply(
        state.appliedIndex + 1,
        encodeControllerCommand(activate(partition, routers.slice(at, at + 3))),
      );
    }
    const bytes = state.snapshot();
    const copy = restored(bytes);
    expect(copy.activePartitions()).toBe(65_536);
    expect(copy.replicasAtActivation(p(65_535))).toEqual(state.replicasAtActivation(p(65_535)));
    expect(copy.snapshot()).toEqual(bytes);
  });

  it("never throws on arbitrary bytes (property)", () => {
    const valid = stateOf([addRouter("r1"), setDraining("r1", true), activate(3, ["r1", "r2"])]).snapshot();
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.nat(valid.length - 1),
        fc.integer({ min: 0, max: 255 }),
        (random, at, value) => {
          const flipped = Uint8Array.from(valid);
          flipped[at] = value;
          for (const bytes of [random, Uint8Array.of(1, ...random), flipped]) {
            const result = ControllerState.restore(bytes);
            // Whatever restores is canonical: its own snapshot gives the same bytes back.
            if (result.ok) expect(result.state.snapshot()).toEqual(bytes);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("refuses another spelling of the same values (a long varint)", () => {
    const bytes = stateOf([addRouter("r1")]).snapshot();
    expect(bytes[1]).toBe(2); // appliedIndex 1, zigzag
    const longer = Uint8Array.of(1, 0x82, 0x00, ...bytes.subarray(2));
    const result = ControllerState.restore(longer);
    expect(result.ok ? "ok" : result.error.message).toMatch(/canonical/);
  });

  describe("refuses bytes that are not a canonical snapshot", () => {
    // The snapshot's schema, written out again: any change to the real one shows up here.
    const schema = avro.Type.forSchema({
      type: "record",
      name: "ControllerSnapshot",
      fields: [
        { name: "appliedIndex", type: "long" },
        { name: "rosterVersion", type: "long" },
        { name: "ids", type: { type: "array", items: "string" } },
        {
          name: "members",
          type: {
            type: "array",
            items: {
              type: "record",
              name: "Member",
              fields: [
                { name: "id", type: "int" },
                { name: "draining", type: "boolean" },
              ],
            },
          },
        },
        {
          name: "partitions",
          type: {
            type: "array",
            items: {
              type: "record",
              name: "Activation",
              fields: [
                { name: "partition", type: "int" },
                { name: "replicas", type: { type: "array", items: "int" } },
              ],
            },
          },
        },
      ],
    });
    const good = {
      appliedIndex: 9,
      rosterVersion: 4,
      ids: ["a", "b", "c"],
      members: [
        { id: 0, draining: false },
        { id: 1, draining: true },
      ],
      partitions: [
        { partition: 1, replicas: [2, 0] },
        { partition: 7, replicas: [1] },
      ],
    };
    const encode = (value: object) => Uint8Array.of(1, ...schema.toBuffer({ ...good, ...value }));
    const restoreTag = (bytes: Uint8Array) => {
      const result = ControllerState.restore(bytes);
      return result.ok ? "ok" : result.error.tag;
    };

    it("accepts the canonical form and gives back the same bytes", () => {
      const state = restored(encode({}));
      expect(state.routers()).toEqual(["a", "b"]);
      expect(state.eligibleRouters()).toEqual(["a"]);
      expect(state.replicasAtActivation(p(1))).toEqual(["c", "a"]);
      expect(state.snapshot()).toEqual(encode({}));
    });

    it.each([
      ["a roster version above the applied index", { rosterVersion: 10 }],
      ["a negative index", { appliedIndex: -1, rosterVersion: -1 }],
      ["unsorted ids", { ids: ["b", "a", "c"] }],
      ["a duplicate id", { ids: ["a", "a", "c"] }],
      ["an empty id", { ids: ["", "b", "c"] }],
      ["an id nothing refers to", { ids: ["a", "b", "c", "d"] }],
      [
        "members out of order",
        {
          members: [
            { id: 1, draining: true },
            { id: 0, draining: false },
          ],
        },
      ],
      [
        "a member naming no id",
        {
          members: [
            { id: 0, draining: false },
            { id: 3, draining: false },
          ],
        },
      ],
      [
        "partitions out of order",
        {
          partitions: [
            { partition: 7, replicas: [1] },
            { partition: 1, replicas: [2, 0] },
          ],
        },
      ],
      ["a partition out of range", { partitions: [{ partition: 65_536, replicas: [2, 1, 0] }] }],
      [
        "a partition without replicas",
        {
          partitions: [
            { partition: 1, replicas: [] },
            { partition: 2, replicas: [2] },
          ],
        },
      ],
      ["a replica named twice", { partitions: [{ partition: 1, replicas: [2, 2] }] }],
    ])("%s", (_, value) => {
      expect(restoreTag(encode(value))).toBe("Malformed");
    });

    it("refuses another version, truncated bytes, trailing bytes and too many replicas", () => {
      const bytes = encode({});
      expect(restoreTag(Uint8Array.of(2, ...bytes.subarray(1)))).toBe("UnsupportedVersion");
      expect(restoreTag(new Uint8Array())).toBe("Truncated");
      expect(restoreTag(bytes.subarray(0, bytes.length - 1))).toBe("Truncated");
      expect(restoreTag(Uint8Array.of(...bytes, 0))).toBe("Malformed");
      expect(
        restoreTag(
          encode({
            ids: ["a", "b", "c"],
            partitions: [{ partition: 1, replicas: [0, 1, 2, 0, 1, 2, 0, 1] }],
          }),
        ),
      ).toBe("OverLimit");
    });
  });
});

describe("controllerVotersTarget", () => {
  it("keeps current voters that are still eligible and fills with the smallest eligible ids", () => {
    expect(controllerVotersTarget([], ["r5", "r2", "r9", "r1"])).toEqual(["r1", "r2", "r5"]);
    expect(controllerVotersTarget(["r9", "r5", "r2"], ["r1", "r2", "r5", "r9"])).toEqual(["r2", "r5", "r9"]);
    expect(controllerVotersTarget(["r9", "gone", "r5"], ["r1", "r2", "r5", "r9"])).toEqual([
      "r1",
      "r5",
      "r9",
    ]);
    expect(controllerVotersTarget(["r1"], ["r2"])).toEqual(["r2"]);
    expect(controllerVotersTarget(["r1", "r2"], [])).toEqual([]);
    expect(controllerVotersTarget(["r4", "r3", "r2", "r1"], ["r1", "r2", "r3", "r4"], 3)).toEqual([
      "r1",
      "r2",
      "r3",
    ]);
  });

  it("holds min(max, eligible) eligible voters, keeps what it can, and ignores input order (property)", () => {
    const idsArb = fc.uniqueArray(fc.constantFrom<string>("a", "b", "c", "d", "e", "f", "g"), {
      maxLength: 7,
    });
    fc.assert(
      fc.property(idsArb, idsArb, fc.integer({ min: 1, max: 5 }), (current, eligible, max) => {
        const voters = controllerVotersTarget(current, eligible, max);
        expect(voters).toHaveLength(Math.min(max, eligible.length));
        expect(voters).toEqual([...voters].sort());
        for (const id of voters) expect(eligible).toContain(id);
        const kept = current.filter((id) => eligible.includes(id));
        expect(voters.filter((id) => kept.includes(id))).toHaveLength(Math.min(max, kept.length));
        const reordered = controllerVotersTarget([...current].reverse(), [...eligible].reverse(), max);
        expect(reordered).toEqual(voters);
      }),
      { numRuns: 1000 },
    );
  });
});
