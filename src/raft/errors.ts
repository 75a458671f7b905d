// Errors of the Raft core. Operating errors (a proposal to a follower, a full uncommitted
// buffer, a transfer in progress) are returned as tagged values for the caller to act on: a
// client reroutes on NotLeader, backs off on Overloaded. Broken invariants are programmer
// errors: `assert` throws, and stays on in production (STYLE.md, Errors).
import type { NodeId } from "../storage/index.ts";

export type ProposalError =
  | { readonly tag: "NotLeader"; readonly leader: NodeId | null }
  | { readonly tag: "Transferring"; readonly to: NodeId }
  | { readonly tag: "Overloaded"; readonly uncommittedBytes: number; readonly limitBytes: number }
  | { readonly tag: "TooLarge"; readonly bytes: number; readonly limitBytes: number }
  | { readonly tag: "ConfigChangePending"; readonly index: number }
  | { readonly tag: "InvalidConfigChange"; readonly reason: string }
  /** addVoter of a replica that does not hold the committed log yet (add it as a learner first). */
  | { readonly tag: "NotCaughtUp"; readonly node: NodeId; readonly match: number; readonly commit: number }
  /** The proposal was appended, then leadership was lost or a snapshot covered it: it may or may not commit. */
  | { readonly tag: "OutcomeUnknown"; readonly reason: string };

export type ProposalResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly error: ProposalError };

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`raft assertion failed: ${message}`);
}
