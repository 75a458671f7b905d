// The nouns of membership: who a member is (MemberInfo, what it says about itself), what we
// believe about it (Member: its state and incarnation), and the view changes the rest of the
// router consumes (ViewEvent).
//
// Invariants: a Member object is never mutated; every change replaces it, so an event or a
// `members()` snapshot stays true to the moment it was taken. A member's incarnation and
// version never go backwards while it stays in the table (SWIM §4.2: only the member itself
// raises its incarnation, by refuting a suspicion or announcing new info).
// Trap: the view includes this router itself (state "alive" until it leaves), so consumers
// computing assignments see the same list on every router.

/** A router id (same rules as axon's identity ids: what its certificate names). */
export type MemberId = string & { readonly __brand: "MemberId" };

export const memberStates = ["alive", "suspect", "dead", "left"] as const;
/**
 * alive: answering probes. suspect: missed a probe and its indirect probes; may still refute
 * (SWIM §4.2). dead: suspicion timed out, or told so by gossip. left: said goodbye itself.
 */
export type MemberState = (typeof memberStates)[number];

/** What a member announces about itself. Limits are in member-info.ts. */
export interface MemberInfo {
  readonly id: MemberId;
  /** The region this router belongs to (DESIGN.md: a LAN pool per region). */
  readonly region: string;
  /** "host:port" of the member's gossip (UDP) socket: where probes and gossip go. */
  readonly gossipAddress: string;
  /** Other named "host:port" addresses, e.g. links, clients. At most `addressesMax`. */
  readonly addresses: Readonly<Record<string, string>>;
  /** Small free-form key/values. At most `metadataKeysMax` keys, `metadataBytesMax` bytes. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Increments each time the member changes its own info. Never goes backwards. */
  readonly version: number;
}

/** What this router believes about a member. Immutable: changes replace the object. */
export interface Member extends MemberInfo {
  readonly state: MemberState;
  /** Raised only by the member itself (SWIM §4.2); orders every claim about it. */
  readonly incarnation: number;
  /** When `state` last changed, on the core's clock (ms). */
  readonly stateChangedMs: number;
}

export const viewEventKinds = ["joined", "suspect", "alive", "dead", "left", "updated"] as const;
/**
 * joined: new, or back after dead/left. suspect: alive -> suspect. alive: suspect -> alive (it
 * refuted). dead: declared failed. left: left gracefully. updated: its info (addresses,
 * metadata, region, version) changed while alive or suspect.
 */
export type ViewEventKind = (typeof viewEventKinds)[number];

/** One change of the view, in the order it happened. `member` is the state after the change. */
export interface ViewEvent {
  readonly kind: ViewEventKind;
  readonly member: Member;
}
