// The client library's public shapes: what `connect` takes, what it reports, and what a
// subscriber gets. The behaviour behind them is in client.ts.
import type { Address, Transport } from "../src/axon/index.ts";
import type { Clock, Random } from "../src/ports/index.ts";
import type { Headers } from "../src/wire/index.ts";
import type { NeuronError } from "./errors.ts";

export interface ReceivedMessage {
  readonly topic: string;
  readonly payload: Buffer;
  readonly headers: Headers;
  /** Its place in the partition's stream; 0 for an ephemeral message. */
  readonly offset: number;
}

export type MessageHandler = (message: ReceivedMessage) => void;

export interface Subscription {
  readonly topic: string;
  /** Stops deliveries at once and tells the router. */
  unsubscribe(): Promise<void>;
}

export type ClientEvent =
  | { readonly kind: "connected"; readonly router: string; readonly address: string }
  | { readonly kind: "disconnected"; readonly reason: string }
  /** A link to a partition leader (besides the home router) opened, or closed. */
  | { readonly kind: "leaderLinked"; readonly router: string; readonly address: string }
  | { readonly kind: "leaderUnlinked"; readonly router: string; readonly reason: string }
  | { readonly kind: "reconnecting"; readonly attempt: number; readonly delayMs: number }
  | { readonly kind: "closed"; readonly reason: string }
  | { readonly kind: "handlerError"; readonly error: unknown; readonly topic: string }
  | { readonly kind: "resubscribeFailed"; readonly error: NeuronError; readonly topic: string };

export interface ConnectOptions {
  /** Routers to try, "host:port" or Address; any router of the cluster will do. */
  readonly seeds: readonly (string | Address)[];
  /** PEM: the cluster CA, this client's certificate and its key (`neuron certs issue --client`). */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** "tls" (default) or "quic". */
  readonly transport?: "tls" | "quic";
  /** Unacknowledged or unsent requests at most. Default 65,536. */
  readonly maxInFlight?: number;
  /** Unacknowledged or unsent payload bytes at most. Default 64 MiB. */
  readonly maxPendingBytes?: number;
  /** Callers that may wait for room at once. Default 100,000. */
  readonly maxWaiting?: number;
  /** When the buffer is full: wait for room (default) or reject with BufferFull. */
  readonly whenFull?: "wait" | "reject";
  /** Deadline of a request, from the call to its Ack. Default 10,000 ms. */
  readonly requestTimeoutMs?: number;
  /** Times a request is sent again after its connection broke, within its deadline. Default 5. */
  readonly retriesMax?: number;
  /** Reconnect attempts after a connection breaks before giving up. Default 120. */
  readonly reconnectAttemptsMax?: number;
  /** Backoff between reconnect attempts: doubles from the first value up to the second. Default 50 and 2,000 ms. */
  readonly reconnectBackoffMs?: readonly [number, number];
  /** Per-seed deadline for connect plus handshake. Default 5,000 ms. */
  readonly connectTimeoutMs?: number;
  /**
   * Link to partition leaders the routers name and send their partitions' requests there
   * (default true); false: everything goes through the home router, which forwards.
   */
  readonly directToLeaders?: boolean;
  /** Links to routers at most, the home router's included. Default 16. */
  readonly routerLinksMax?: number;
  /** Status changes and handler errors. */
  readonly onEvent?: (event: ClientEvent) => void;
  /** Test seams. */
  readonly clock?: Clock;
  readonly random?: Random;
  readonly transportImplementation?: Transport;
}

export interface SubscribeOptions {
  /**
   * For a persistent topic: start with the stored messages from this offset (1: from the
   * beginning), then go on with new ones. Default: new messages only.
   */
  readonly from?: number;
}
