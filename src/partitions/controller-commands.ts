// The commands of the controller Raft group (group 65536) and their bytes: a version byte, a
// kind byte, then the Avro encoding (avsc) of that kind's record.
//
// The controller's log holds the cluster's roster (AddRouter, RemoveRouter, SetDraining) and
// the activation of each partition with the replica set it is bootstrapped with
// (ActivatePartition): a Raft group may start from one first configuration only, so that
// configuration is decided once, here, and every replica reads it from the same entry.
//
// Invariants: a decoded command satisfies `controllerCommandProblem` (router ids of 1..255 UTF-8
// bytes, partition in 0..65535, 1..7 distinct replicas); `encodeControllerCommand` asserts the
// same, so a check on write is paired with a check on read (STYLE.md, Errors).
//
// Traps: these bytes come from the log, which a forwarded request from another router fills,
// so `decodeControllerCommand` never throws: it returns a typed error and the caller treats the
// entry as a no-op. avsc reads an array's block count without comparing it with the bytes
// left; the replica list is read with the bounded reader of src/wire/avro-bounded.ts. Kind
// numbers are never reused and fields are added only with a new version: every replica, old
// or new, must decode every entry of the log the same way.
import avro from "avsc";
import { BoundExceeded, boundedArrayType } from "../wire/index.ts";
import { type PartitionId, partitionCount } from "./partition.ts";

export const controllerCommandVersion = 1;
/** Router ids are 1..255 UTF-8 bytes (the Raft node id limit, raft/configuration.ts). */
export const routerIdMaxBytes = 255;
/** Replicas named by an ActivatePartition: a replica set is 3 to 5 routers; 7 leaves room. */
export const activationReplicasMax = 7;

export type ControllerCommand =
  /** Adds a router to the roster (it becomes eligible for partitions unless draining). */
  | { readonly kind: "AddRouter"; readonly router: string }
  /** Removes a router from the roster (left or declared dead by membership). */
  | { readonly kind: "RemoveRouter"; readonly router: string }
  /** A draining router stays a member but the assignment moves every replica off it. */
  | { readonly kind: "SetDraining"; readonly router: string; readonly draining: boolean }
  /** Records the first configuration of a partition's Raft group: every replica a voter. */
  | {
      readonly kind: "ActivatePartition";
      readonly partition: PartitionId;
      readonly replicas: readonly string[];
    };

export type ControllerCommandKind = ControllerCommand["kind"];

export type ControllerCommandError =
  | { readonly tag: "UnsupportedVersion"; readonly message: string; readonly version: number }
  | { readonly tag: "UnknownCommand"; readonly message: string; readonly kindNumber: number }
  | { readonly tag: "Truncated"; readonly message: string }
  | { readonly tag: "OverLimit"; readonly message: string }
  | { readonly tag: "Malformed"; readonly message: string };

export type ControllerCommandDecode =
  | { readonly ok: true; readonly command: ControllerCommand }
  | { readonly ok: false; readonly error: ControllerCommandError };

function record(name: string, fields: { name: string; type: unknown }[]): avro.Type {
  return avro.Type.forSchema({ type: "record", name, fields } as avro.Schema, { registry: {} });
}

// Each replica id takes at least one byte (its length); a valid one at least two.
const replicasType = boundedArrayType(avro.Type.forSchema("string"), activationReplicasMax, 1, "replicas");

/** Kind numbers: append only, never reuse. */
const commandTypes: {
  readonly [K in ControllerCommandKind]: { readonly number: number; readonly type: avro.Type };
} = {
  AddRouter: { number: 1, type: record("AddRouter", [{ name: "router", type: "string" }]) },
  RemoveRouter: { number: 2, type: record("RemoveRouter", [{ name: "router", type: "string" }]) },
  SetDraining: {
    number: 3,
    type: record("SetDraining", [
      { name: "router", type: "string" },
      { name: "draining", type: "boolean" },
    ]),
  },
  ActivatePartition: {
    number: 4,
    type: record("ActivatePartition", [
      { name: "partition", type: "int" },
      { name: "replicas", type: replicasType },
    ]),
  },
};

const kindByNumber: ReadonlyMap<number, ControllerCommandKind> = new Map(
  (Object.keys(commandTypes) as ControllerCommandKind[]).map((kind) => [commandTypes[kind].number, kind]),
);

/** Why `id` is not a router id (1..255 bytes of well-formed UTF-8), or null. */
export function routerIdProblem(id: string): string | null {
  if (id.length === 0) return "a router id must not be empty";
  if (!id.isWellFormed()) return "a router id must be well-formed Unicode";
  const bytes = Buffer.byteLength(id, "utf8");
  if (bytes > routerIdMaxBytes) return `a router id must be at most ${routerIdMaxBytes} bytes, not ${bytes}`;
  return null;
}

/** Why `command` cannot be proposed (and would not decode), or null. */
export function controllerCommandProblem(command: ControllerCommand): string | null {
  if (command.kind !== "ActivatePartition") return routerIdProblem(command.router);
  const { partition, replicas } = command;
  if (!Number.isInteger(partition) || partition < 0 || partition >= partitionCount) {
    return `partition must be an integer in 0..${partitionCount - 1}, not ${partition}`;
  }
  if (replicas.length === 0 || replicas.length > activationReplicasMax) {
    return `an activation names 1..${activationReplicasMax} replicas, not ${replicas.length}`;
  }
  for (const replica of replicas) {
    const problem = routerIdProblem(replica);
    if (problem !== null) return problem;
  }
  if (new Set(replicas).size !== replicas.length) return "an activation names each replica once";
  return null;
}

/** The entry bytes of a valid command; an invalid one is a programmer error (it throws). */
export function encodeControllerCommand(command: ControllerCommand): Uint8Array {
  const problem = controllerCommandProblem(command);
  if (problem !== null) throw new Error(`controller command assertion failed: ${problem}`);
  const { kind, ...fields } = command;
  const body = commandTypes[kind].type.toBuffer(fields);
  const bytes = new Uint8Array(2 + body.length);
  bytes[0] = controllerCommandVersion;
  bytes[1] = commandTypes[kind].number;
  bytes.set(body, 2);
  return bytes;
}

/** Decodes an entry's bytes; bad bytes give a typed error, never an exception. */
export function decodeControllerCommand(bytes: Uint8Array): ControllerCommandDecode {
  const fail = (error: ControllerCommandError): ControllerCommandDecode => ({ ok: false, error });
  if (bytes.length < 2)
    return fail({ tag: "Truncated", message: "a controller command needs 2 header bytes" });
  const version = bytes[0]!;
  if (version !== controllerCommandVersion) {
    return fail({
      tag: "UnsupportedVersion",
      message: `controller command version ${version} is not supported (this router reads ${controllerCommandVersion})`,
      version,
    });
  }
  const kind = kindByNumber.get(bytes[1]!);
  if (kind === undefined) {
    return fail({
      tag: "UnknownCommand",
      message: `controller command kind ${bytes[1]} is unknown`,
      kindNumber: bytes[1]!,
    });
  }
  const body = Buffer.from(bytes.buffer, bytes.byteOffset + 2, bytes.byteLength - 2);
  let decoded: { value: unknown; offset: number };
  try {
    decoded = commandTypes[kind].type.decode(body, 0);
  } catch (error) {
    if (error instanceof BoundExceeded) return fail({ tag: "OverLimit", message: error.message });
    return fail({ tag: "Malformed", message: `${kind} does not decode: ${(error as Error).message}` });
  }
  if (decoded.offset < 0) return fail({ tag: "Truncated", message: `${kind} is truncated` });
  if (decoded.offset !== body.length) {
    return fail({ tag: "Malformed", message: `${kind} has ${body.length - decoded.offset} trailing bytes` });
  }
  const command = { kind, ...(decoded.value as object) } as ControllerCommand;
  const problem = controllerCommandProblem(command);
  if (problem !== null) return fail({ tag: "Malformed", message: `${kind}: ${problem}` });
  return { ok: true, command };
}
