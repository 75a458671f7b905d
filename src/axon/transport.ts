// The Transport port: how a router or client opens mutually authenticated links. Three
// implementations pass one compliance suite (transport-compliance.test.ts): TLS over TCP
// (tls.ts, the default), QUIC (quic.ts) and the in-memory one over the simulated network
// (src/sim/memory-transport.ts).
//
// A transport only moves bytes and proves identities; everything above the bytes (framing,
// batching, the Hello handshake, keepalive, Goodbye) is `FramedLink` (link.ts), shared by all
// three, so they cannot drift apart in behaviour.
import type { EncodeResult, ErrorCode, Frame, Hello } from "../wire/index.ts";
import type { AxonError } from "./errors.ts";
import type { PeerIdentity, Role } from "./identity.ts";

export type TransportKind = "tls" | "quic" | "memory";

export interface Address {
  readonly host: string;
  readonly port: number;
}

/** PEM strings: the cluster CA certificate, this endpoint's certificate and its private key. */
export interface Credentials {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface LinkHandler {
  /** A frame from the peer (never Hello, Ping or Pong: the link answers those itself). */
  frame(frame: Frame): void;
  /** The link is closed, locally or by the peer; called exactly once, after the last frame. */
  closed(reason: AxonError): void;
}

export interface Link {
  readonly transport: TransportKind;
  /** Who the peer is, from its certificate (never from anything it says). */
  readonly peer: PeerIdentity;
  /** The peer's Hello: its agent and the limits it enforces. */
  readonly peerHello: Hello;
  readonly remoteAddress: string;
  /** Starts delivering frames to `handler`; frames that arrived before are delivered first. */
  start(handler: LinkHandler): void;
  /** Queues a frame for the next batched write. Fails only if the frame is over the limit. */
  send(frame: Frame): EncodeResult;
  /**
   * Writes what is queued now rather than after this turn of the event loop: for a sender
   * about to do a long synchronous step (the Raft shell before staging its fsync).
   */
  flush(): void;
  /** Bytes queued and not yet taken by the network. */
  readonly bufferedBytes: number;
  /** False while `bufferedBytes` is over the link's high-water mark. */
  readonly writable: boolean;
  /** Resolves once the link is writable again (or closed). */
  whenWritable(): Promise<void>;
  /** Sends Goodbye with this reason, flushes, and closes. Idempotent. */
  close(code?: ErrorCode, message?: string): void;
  readonly closed: boolean;
  /** Round-trip time of the last keepalive ping, in ms, if one was answered. */
  readonly rttMs: number | undefined;
}

export interface RefusedConnection {
  readonly remoteAddress: string;
  readonly reason: string;
}

export interface ListenOptions {
  readonly address: Address;
  readonly credentials: Credentials;
  readonly hello: Hello;
  /** Certificate roles this listener accepts; others are refused with NotAuthorized. */
  readonly acceptRoles: readonly Role[];
  /** A new link whose handshake completed. Call `link.start()` at once. */
  accept(link: Link): void;
  /** A connection refused before it became a link: bad certificate, wrong role, bad Hello. */
  refused?(event: RefusedConnection): void;
}

export interface Listener {
  /** The bound address (the real port when 0 was asked for). */
  readonly address: Address;
  /**
   * Stops accepting new links at once; links already open stay open. Resolves when the
   * listener's resources are released: at once for TLS, after its links have ended for QUIC
   * (they share its UDP socket). So close the links too, and do not await this first.
   */
  close(): Promise<void>;
}

export interface ConnectOptions {
  readonly address: Address;
  readonly credentials: Credentials;
  readonly hello: Hello;
  /** The role the peer's certificate must have. */
  readonly expectRole: Role;
  /** If given, the id the peer's certificate must have. */
  readonly expectId?: string;
  /** Deadline for connect plus handshake; default 5000 ms. */
  readonly timeoutMs?: number;
}

export interface Transport {
  readonly kind: TransportKind;
  listen(options: ListenOptions): Promise<Listener>;
  /** Resolves with an open link after the handshake; rejects with an AxonFailure. */
  connect(options: ConnectOptions): Promise<Link>;
}
