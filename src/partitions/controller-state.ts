// The controller's replicated state: the cluster's roster (members, and which of them are
// draining) and the table of activated partitions with the replica set each was created with.
// Every router applies the controller group's committed entries (group 65536) to one of these.
//
// Why a controller: a Raft group may be bootstrapped with one first configuration only. Two
// routers that computed a partition's first configuration from two membership views could
// each bootstrap a different group and elect two leaders. So a partition is activated once,
// through this log, and every replica bootstraps it from the recorded entry; afterwards the
// partition's leader moves it toward the target (reconfiguration.ts, Raft thesis §4).
//
// Invariants: `apply` is deterministic (same entries, same state, on every router) and a
// refusal (noop, unknownRouter, limit, malformed, alreadyActive) changes nothing but
// `appliedIndex`. An activation is never overwritten: the first one for a partition wins.
// `rosterVersion` <= `appliedIndex`. `snapshot()` is canonical: two states that answer every
// query alike give the same bytes, and `restore` accepts only canonical bytes.
//
// Traps: entries are applied in log order, once each (an index not above `appliedIndex` is a
// programmer error and asserts). Bad bytes in an entry are a no-op ("malformed"), never an
// exception: throwing would stop the apply loop on every router at once. An activation may
// name routers outside the roster (it was decided from the proposer's view); it is recorded
// as is. Router ids are interned: 65,536 partitions naming the same few routers share strings.
import avro from "avsc";
import { BoundExceeded, boundedArrayType } from "../wire/index.ts";
import { assignmentRoutersMax } from "./assignment.ts";
import {
  activationReplicasMax,
  type ControllerCommandError,
  decodeControllerCommand,
  routerIdProblem,
} from "./controller-commands.ts";
import { type PartitionId, partitionCount } from "./partition.ts";

/** The Raft group id of the controller: one past the last partition. */
export const controllerGroup = partitionCount;
/**
 * At most this many routers in the roster (AddRouter past it: "limit"): the most the target
 * assignment is computed for (its memory grows with the square of the routers).
 */
export const routersMax = assignmentRoutersMax;
/** Voters of the controller group; every other member is a learner. */
export const controllerVotersMax = 3;
export const controllerSnapshotVersion = 1;

export type ControllerApplyResult =
  | { readonly kind: "added"; readonly router: string }
  | { readonly kind: "removed"; readonly router: string }
  | { readonly kind: "draining"; readonly router: string; readonly draining: boolean }
  | { readonly kind: "activated"; readonly partition: PartitionId; readonly replicas: readonly string[] }
  /** The partition was activated before: `replicas` are the recorded ones, which stand. */
  | { readonly kind: "alreadyActive"; readonly partition: PartitionId; readonly replicas: readonly string[] }
  | { readonly kind: "unknownRouter"; readonly router: string }
  /** Already so: a second AddRouter, or SetDraining to the current value. */
  | { readonly kind: "noop"; readonly reason: string }
  | { readonly kind: "limit"; readonly message: string; readonly limit: number }
  | { readonly kind: "malformed"; readonly error: ControllerCommandError };

export type ControllerSnapshotError =
  | { readonly tag: "UnsupportedVersion"; readonly message: string; readonly version: number }
  | { readonly tag: "Truncated"; readonly message: string }
  | { readonly tag: "OverLimit"; readonly message: string }
  | { readonly tag: "Malformed"; readonly message: string };

export type ControllerRestore =
  | { readonly ok: true; readonly state: ControllerState }
  | { readonly ok: false; readonly error: ControllerSnapshotError };

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`controller state assertion failed: ${message}`);
}

const compareIds = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

// Snapshot: version byte | Avro record. `ids` is the sorted table of every router id the
// state names; members and replicas refer to it by position, so an id is stored once.
const idsMax = routersMax + partitionCount * activationReplicasMax;
function record(name: string, fields: { name: string; type: unknown }[]): avro.Type {
  return avro.Type.forSchema({ type: "record", name, fields } as avro.Schema, { registry: {} });
}
const memberType = record("Member", [
  { name: "id", type: "int" },
  { name: "draining", type: "boolean" },
]);
const activationType = record("Activation", [
  { name: "partition", type: "int" },
  {
    name: "replicas",
    type: boundedArrayType(avro.Type.forSchema("int"), activationReplicasMax, 1, "activation replicas"),
  },
]);
const snapshotType = record("ControllerSnapshot", [
  { name: "appliedIndex", type: "long" },
  { name: "rosterVersion", type: "long" },
  { name: "ids", type: boundedArrayType(avro.Type.forSchema("string"), idsMax, 1, "router ids") },
  { name: "members", type: boundedArrayType(memberType, routersMax, 2, "members") },
  { name: "partitions", type: boundedArrayType(activationType, partitionCount, 2, "partitions") },
]);
interface SnapshotValue {
  appliedIndex: number;
  rosterVersion: number;
  ids: string[];
  members: { id: number; draining: boolean }[];
  partitions: { partition: number; replicas: number[] }[];
}

export class ControllerState {
  /** Members of the roster; the value is true while the router drains. */
  private readonly members = new Map<string, boolean>();
  /** Partition -> the replicas it was activated with, in the order recorded. Never overwritten. */
  private readonly activations = new Map<number, readonly string[]>();
  /** Every router id named by an activation, to share one string per id (bounded by them). */
  private readonly interned = new Map<string, string>();
  private sortedMembers: readonly string[] | null = [];
  private sortedEligible: readonly string[] | null = [];
  private applied = 0;
  private roster = 0;

  /** Index of the last entry applied (refusals included). */
  get appliedIndex(): number {
    return this.applied;
  }

  /** Index of the last entry that changed the roster (0: never). Invariant: <= appliedIndex. */
  get rosterVersion(): number {
    return this.roster;
  }

  /** Applies the committed entry at `index` (its bytes are a controller command). */
  apply(index: number, data: Uint8Array): ControllerApplyResult {
    assert(Number.isSafeInteger(index) && index > this.applied, `apply(${index}) after ${this.applied}`);
    this.applied = index;
    const decoded = decodeControllerCommand(data);
    if (!decoded.ok) return { kind: "malformed", error: decoded.error };
    const command = decoded.command;
    switch (command.kind) {
      case "AddRouter": {
        if (this.members.has(command.router)) {
          return { kind: "noop", reason: `${command.router} is already a member` };
        }
        if (this.members.size >= routersMax) {
          return {
            kind: "limit",
            message: `the roster holds ${routersMax} routers already`,
            limit: routersMax,
          };
        }
        this.members.set(command.router, false);
        this.rosterChanged(index);
        return { kind: "added", router: command.router };
      }
      case "RemoveRouter": {
        if (!this.members.has(command.router)) return { kind: "unknownRouter", router: command.router };
        this.members.delete(command.router);
        this.rosterChanged(index);
        return { kind: "removed", router: command.router };
      }
      case "SetDraining": {
        const draining = this.members.get(command.router);
        if (draining === undefined) return { kind: "unknownRouter", router: command.router };
        if (draining === command.draining) {
          return { kind: "noop", reason: `${command.router} is ${draining ? "already" : "not"} draining` };
        }
        this.members.set(command.router, command.draining);
        this.rosterChanged(index);
        return { kind: "draining", router: command.router, draining: command.draining };
      }
      case "ActivatePartition": {
        const recorded = this.activations.get(command.partition);
        if (recorded !== undefined) {
          return { kind: "alreadyActive", partition: command.partition, replicas: recorded };
        }
        // The codec refuses an empty list; the first configuration needs a voter.
        assert(command.replicas.length > 0, "activation without replicas");
        const replicas = Object.freeze(command.replicas.map((id) => this.intern(id)));
        this.activations.set(command.partition, replicas);
        return { kind: "activated", partition: command.partition, replicas };
      }
    }
  }

  /** Members of the roster, sorted. */
  routers(): readonly string[] {
    this.sortedMembers ??= Object.freeze([...this.members.keys()].sort(compareIds));
    return this.sortedMembers;
  }

  isMember(router: string): boolean {
    return this.members.has(router);
  }

  isDraining(router: string): boolean {
    return this.members.get(router) === true;
  }

  /** Members not draining, sorted: the input of the assignment. */
  eligibleRouters(): readonly string[] {
    this.sortedEligible ??= Object.freeze(this.routers().filter((id) => this.members.get(id) === false));
    return this.sortedEligible;
  }

  /** The replicas a partition was activated with (its first configuration), if it was. */
  replicasAtActivation(partition: PartitionId): readonly string[] | undefined {
    return this.activations.get(partition);
  }

  activePartitions(): number {
    return this.activations.size;
  }

  /** Canonical bytes of the whole state (for a Raft snapshot of the controller group). */
  snapshot(): Uint8Array {
    const named = new Set<string>(this.members.keys());
    for (const replicas of this.activations.values()) for (const id of replicas) named.add(id);
    const ids = [...named].sort(compareIds);
    const position = new Map(ids.map((id, at) => [id, at]));
    const value: SnapshotValue = {
      appliedIndex: this.applied,
      rosterVersion: this.roster,
      ids,
      members: this.routers().map((id) => ({ id: position.get(id)!, draining: this.members.get(id)! })),
      partitions: [...this.activations.keys()]
        .sort((a, b) => a - b)
        .map((partition) => ({
          partition,
          replicas: this.activations.get(partition)!.map((id) => position.get(id)!),
        })),
    };
    const body = snapshotType.toBuffer(value);
    const bytes = new Uint8Array(1 + body.length);
    bytes[0] = controllerSnapshotVersion;
    bytes.set(body, 1);
    return bytes;
  }

  /** The state whose `snapshot()` gave `bytes`; anything else is a typed error, never a throw. */
  static restore(bytes: Uint8Array): ControllerRestore {
    const fail = (error: ControllerSnapshotError): ControllerRestore => ({ ok: false, error });
    const malformed = (message: string) => fail({ tag: "Malformed", message });
    if (bytes.length === 0) return fail({ tag: "Truncated", message: "empty controller snapshot" });
    if (bytes[0] !== controllerSnapshotVersion) {
      return fail({
        tag: "UnsupportedVersion",
        message: `controller snapshot version ${bytes[0]} is not supported (this router reads ${controllerSnapshotVersion})`,
        version: bytes[0]!,
      });
    }
    const body = Buffer.from(bytes.buffer, bytes.byteOffset + 1, bytes.byteLength - 1);
    let decoded: { value: unknown; offset: number };
    try {
      decoded = snapshotType.decode(body, 0);
    } catch (error) {
      if (error instanceof BoundExceeded) return fail({ tag: "OverLimit", message: error.message });
      return malformed(`controller snapshot does not decode: ${(error as Error).message}`);
    }
    if (decoded.offset < 0) return fail({ tag: "Truncated", message: "controller snapshot is truncated" });
    if (decoded.offset !== body.length) {
      return malformed(`controller snapshot has ${body.length - decoded.offset} trailing bytes`);
    }
    const value = decoded.value as SnapshotValue;
    const { appliedIndex, rosterVersion, ids } = value;
    if (!Number.isSafeInteger(appliedIndex) || !Number.isSafeInteger(rosterVersion)) {
      return malformed("indexes must be safe integers");
    }
    if (rosterVersion < 0 || rosterVersion > appliedIndex) {
      return malformed(`roster version ${rosterVersion} must be in 0..${appliedIndex}`);
    }
    for (const [at, id] of ids.entries()) {
      const problem = routerIdProblem(id);
      if (problem !== null) return malformed(problem);
      if (at > 0 && compareIds(ids[at - 1]!, id) >= 0)
        return malformed("router ids must be sorted and distinct");
    }
    const used = new Uint8Array(ids.length);
    const state = new ControllerState();
    state.applied = appliedIndex;
    state.roster = rosterVersion;
    let previous = -1;
    for (const member of value.members) {
      if (member.id <= previous || member.id >= ids.length) {
        return malformed("members must name known router ids in order, once each");
      }
      previous = member.id;
      used[member.id] = 1;
      state.members.set(ids[member.id]!, member.draining);
    }
    previous = -1;
    for (const { partition, replicas } of value.partitions) {
      if (partition <= previous || partition >= partitionCount) {
        return malformed(`partitions must be in 0..${partitionCount - 1}, in order, once each`);
      }
      previous = partition;
      if (replicas.length === 0) return malformed(`partition ${partition} has no replicas`);
      if (new Set(replicas).size !== replicas.length) {
        return malformed(`partition ${partition} names a replica twice`);
      }
      const named: string[] = [];
      for (const at of replicas) {
        if (at < 0 || at >= ids.length) return malformed(`partition ${partition} names an unknown router`);
        used[at] = 1;
        named.push(state.intern(ids[at]!));
      }
      state.activations.set(partition, Object.freeze(named));
    }
    if (used.includes(0)) return malformed("the id table names a router nothing refers to");
    state.sortedMembers = null;
    state.sortedEligible = null;
    // Avro admits other spellings of the same values (long varints, several array blocks):
    // only the canonical one is accepted, so equal states always have equal bytes.
    if (!Buffer.from(state.snapshot()).equals(bytes))
      return malformed("controller snapshot is not canonical");
    return { ok: true, state };
  }

  private intern(id: string): string {
    const known = this.interned.get(id);
    if (known !== undefined) return known;
    this.interned.set(id, id);
    return id;
  }

  private rosterChanged(index: number): void {
    this.roster = index;
    this.sortedMembers = null;
    this.sortedEligible = null;
  }
}

/**
 * The controller group's voters: the current voters that are still eligible, then the
 * smallest eligible ids, up to min(`max`, eligible). Deterministic and sorted; keeping current
 * voters avoids needless moves of the controller's quorum. The other members are learners.
 */
export function controllerVotersTarget(
  currentVoters: readonly string[],
  eligibleRouters: readonly string[],
  max = controllerVotersMax,
): readonly string[] {
  assert(Number.isSafeInteger(max) && max >= 1, `controller voters max ${max}`);
  const eligible = new Set(eligibleRouters);
  const kept = [...new Set(currentVoters)].filter((id) => eligible.has(id)).sort(compareIds);
  const voters = kept.slice(0, max);
  const chosen = new Set(voters);
  for (const id of [...eligible].sort(compareIds)) {
    if (voters.length >= max) break;
    if (!chosen.has(id)) {
      voters.push(id);
      chosen.add(id);
    }
  }
  return voters.sort(compareIds);
}
