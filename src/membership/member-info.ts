// Limits and validation of what a member says about itself (MemberInfo). Everything decoded
// from the wire passes `checkMemberInfo` before it reaches the view; what this router says
// about itself passes it at construction and on `updateSelf`.
//
// The limits are chosen so the largest possible Alive message (about 1,060 bytes, measured by
// codec.ts as `aliveMessageBytesMax`) fits one UDP datagram together with a ping after the
// encryption overhead (config.ts checks it).
// Trap: the id pattern is a copy of axon's `identityIdPattern` (src/axon/identity.ts): that
// module imports node:crypto, which a pure core may not load. member-info.test.ts checks that
// the two patterns stay equal.
import type { MemberId, MemberInfo } from "./types.ts";

/** Member ids: 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit. */
export const memberIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Region names: 1-32 characters, same alphabet as ids ("eu-west", "us-east-1"). */
export const regionPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;
/** Names of extra addresses: lower-case, 1-16 characters ("links", "clients"). */
export const addressNamePattern = /^[a-z][a-z0-9_-]{0,15}$/;
/** Longest "host:port", in characters (ASCII): a bracketed IPv6 with port is at most 47. */
export const addressMaxChars = 64;
/** Named addresses per member besides the gossip address. */
export const addressesMax = 4;
/** Metadata keys per member. */
export const metadataKeysMax = 16;
/** Metadata keys and values together, in UTF-8 bytes. */
export const metadataBytesMax = 512;

/** "host:port" as axon's parseAddress reads it (copied: axon's module is not pure). */
const addressPattern = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/;

/** Why `text` is not a member id, or undefined. */
export function checkMemberId(text: string): string | undefined {
  return memberIdPattern.test(text)
    ? undefined
    : `member id ${JSON.stringify(text.slice(0, 80))} must be 1-64 characters of letters, digits, ".", "_" or "-", starting with a letter or digit`;
}

/** Brands a checked id. Throws on a bad id: callers check input first (programmer error). */
export function memberId(text: string): MemberId {
  const problem = checkMemberId(text);
  if (problem !== undefined) throw new Error(problem);
  return text as MemberId;
}

/** Why `text` is not a "host:port" address within the limits, or undefined. */
export function checkAddress(text: string): string | undefined {
  if (text.length > addressMaxChars) {
    return `address ${JSON.stringify(text.slice(0, 80))} is longer than ${addressMaxChars} characters`;
  }
  const match = addressPattern.exec(text);
  if (match === null) return `${JSON.stringify(text)} is not "host:port" (IPv6 as "[::1]:7400")`;
  if (Number(match[3]) > 65_535) return `port in ${JSON.stringify(text)} is above 65535`;
  return undefined;
}

function entriesOf(record: Readonly<Record<string, string>>): [string, string][] {
  const entries: [string, string][] = [];
  for (const key in record) entries.push([key, record[key]!]);
  return entries;
}

/** Why `info` breaks a limit or a format rule, or undefined. */
export function checkMemberInfo(info: MemberInfo): string | undefined {
  const idProblem = checkMemberId(info.id);
  if (idProblem !== undefined) return idProblem;
  if (!regionPattern.test(info.region)) {
    return `region ${JSON.stringify(info.region.slice(0, 80))} of ${info.id} must be 1-32 characters of letters, digits, ".", "_" or "-"`;
  }
  const gossipProblem = checkAddress(info.gossipAddress);
  if (gossipProblem !== undefined) return `gossip address of ${info.id}: ${gossipProblem}`;
  const addresses = entriesOf(info.addresses);
  if (addresses.length > addressesMax) {
    return `${info.id} has ${addresses.length} named addresses; the limit is ${addressesMax}`;
  }
  for (const [name, address] of addresses) {
    if (!addressNamePattern.test(name)) {
      return `address name ${JSON.stringify(name.slice(0, 40))} of ${info.id} must be 1-16 characters of a-z, 0-9, "_" or "-", starting with a letter`;
    }
    const problem = checkAddress(address);
    if (problem !== undefined) return `address ${name} of ${info.id}: ${problem}`;
  }
  const metadata = entriesOf(info.metadata);
  if (metadata.length > metadataKeysMax) {
    return `${info.id} has ${metadata.length} metadata keys; the limit is ${metadataKeysMax}`;
  }
  let bytes = 0;
  for (const [key, value] of metadata) {
    if (key.length === 0) return `${info.id} has an empty metadata key`;
    bytes += Buffer.byteLength(key) + Buffer.byteLength(value);
  }
  if (bytes > metadataBytesMax) {
    return `metadata of ${info.id} is ${bytes} bytes; the limit is ${metadataBytesMax}`;
  }
  if (!(Number.isSafeInteger(info.version) && info.version >= 0)) {
    return `version of ${info.id} must be a non-negative safe integer, got ${info.version}`;
  }
  return undefined;
}

/** A copy of a string record with a null prototype (so "__proto__" is an ordinary key). */
export function plainRecord(record: Readonly<Record<string, string>>): Record<string, string> {
  const copy: Record<string, string> = Object.create(null);
  for (const key in record) copy[key] = record[key]!;
  return copy;
}

function sameRecord(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  let count = 0;
  for (const key in a) {
    if (!Object.hasOwn(b, key) || b[key] !== a[key]) return false;
    count++;
  }
  for (const _ in b) count--;
  return count === 0;
}

/** Whether two announcements say the same thing (id, region, addresses, metadata, version). */
export function sameInfo(a: MemberInfo, b: MemberInfo): boolean {
  return (
    a.id === b.id &&
    a.region === b.region &&
    a.gossipAddress === b.gossipAddress &&
    a.version === b.version &&
    sameRecord(a.addresses, b.addresses) &&
    sameRecord(a.metadata, b.metadata)
  );
}

/** The MemberInfo part of anything that has it, copied into a fresh, frozen object. */
export function infoOf(info: MemberInfo): MemberInfo {
  return Object.freeze({
    id: info.id,
    region: info.region,
    gossipAddress: info.gossipAddress,
    addresses: Object.freeze(plainRecord(info.addresses)),
    metadata: Object.freeze(plainRecord(info.metadata)),
    version: info.version,
  });
}
