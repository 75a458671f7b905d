// Errors of membership. Bad input from the network is never thrown: the codec returns a
// `MembershipDecodeError`, and the core drops the packet and counts it under a `DropReason`
// (stats().dropped), changing nothing else. Bad configuration and bad local input (seeds, an
// update of our own info) are returned as typed errors. Broken invariants are programmer
// errors: `assert` throws, and stays on in production (STYLE.md, Errors).

/** Why the codec refused a packet or a push-pull payload. */
export type MembershipDecodeError =
  | {
      readonly tag: "Oversized";
      readonly message: string;
      readonly bytes: number;
      readonly limitBytes: number;
    }
  | { readonly tag: "Truncated"; readonly message: string }
  | { readonly tag: "UnsupportedVersion"; readonly message: string; readonly version: number }
  | { readonly tag: "UnknownKind"; readonly message: string; readonly kind: number }
  | { readonly tag: "OverLimit"; readonly message: string }
  | { readonly tag: "Malformed"; readonly message: string };

/**
 * Why the core dropped a packet or one message of it; each has a counter in stats().dropped.
 *
 * Whole packet (nothing in it is applied): oversized, truncated, unsupportedVersion,
 * unknownKind, overLimit, malformed (the codec's errors), impersonation (a ping, ack, nack
 * or indirect ping claiming to come from this router).
 * One message (the rest of the packet still counts, so one stale rumour never costs a probe):
 * misdirected (a ping for another member, or an indirect ping asking us to probe ourselves),
 * unsolicited (an ack or nack matching no probe of ours), selfAccusation (a member suspected
 * or declared dead by itself), addressConflict (a live member, or this router, announced at
 * another gossip address, or another member at ours), conflictingAlive (two different announcements at one
 * incarnation), versionRegression (a higher incarnation carrying an older version),
 * membersFull (the table is at `membersMax`), indirectBusy (too many indirect probes pending
 * for others), outputFull (the shell did not drain the output), unexpectedReply (a push-pull
 * reply nobody asked for).
 */
export const dropReasons = [
  "oversized",
  "truncated",
  "unsupportedVersion",
  "unknownKind",
  "overLimit",
  "malformed",
  "impersonation",
  "misdirected",
  "unsolicited",
  "selfAccusation",
  "addressConflict",
  "conflictingAlive",
  "versionRegression",
  "membersFull",
  "indirectBusy",
  "outputFull",
  "unexpectedReply",
] as const;
export type DropReason = (typeof dropReasons)[number];

const reasonByTag: Readonly<Record<MembershipDecodeError["tag"], DropReason>> = {
  Oversized: "oversized",
  Truncated: "truncated",
  UnsupportedVersion: "unsupportedVersion",
  UnknownKind: "unknownKind",
  OverLimit: "overLimit",
  Malformed: "malformed",
};

export function dropReasonOf(error: MembershipDecodeError): DropReason {
  return reasonByTag[error.tag];
}

/** One invalid field of a MembershipConfig. */
export interface MembershipConfigError {
  readonly tag: "InvalidMembershipConfig";
  readonly field: string;
  readonly message: string;
}

/** Why `join` sent nothing. */
export type JoinError =
  | { readonly tag: "NoSeeds"; readonly message: string }
  | { readonly tag: "TooManySeeds"; readonly message: string; readonly limit: number }
  | { readonly tag: "InvalidSeed"; readonly message: string; readonly seed: string }
  | { readonly tag: "Leaving"; readonly message: string };

/** Why `updateSelf` changed nothing. */
export type UpdateSelfError =
  | { readonly tag: "InvalidMemberInfo"; readonly message: string }
  | { readonly tag: "Leaving"; readonly message: string };

/** Why a push-pull request or reply was refused (it was also counted under dropped). */
export type PushPullError =
  | MembershipDecodeError
  | { readonly tag: "UnexpectedReply"; readonly message: string }
  | { readonly tag: "Leaving"; readonly message: string };

/** A broken invariant: a bug in this code or in its caller, never bad input. */
export class MembershipAssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MembershipAssertionError";
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new MembershipAssertionError(message);
}
