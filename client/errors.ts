// Errors the client library rejects with. Every one has a `code` to switch on and a message
// that says what to do. A router's refusal keeps the router's wire code in `routerCode`.
import type { ErrorCode } from "../src/wire/index.ts";

export type NeuronErrorCode =
  /** A topic name breaks the rules (src/partitions/topic.ts). Nothing was sent. */
  | "InvalidTopic"
  /** A payload over the router's limit. Nothing was sent. */
  | "PayloadTooLarge"
  /** A bad argument: headers, options. Nothing was sent. */
  | "InvalidArgument"
  /** The publish buffer is full and the client was told not to wait, or too many publishers wait. */
  | "BufferFull"
  /** A request did not complete within its deadline. */
  | "Timeout"
  /** The connection broke after the request was sent: it may or may not have taken effect. */
  | "ConnectionLost"
  /** No seed router could be reached (each seed's reason is in the message). */
  | "ConnectFailed"
  /** No such topic: it was never declared and no rule of the routers makes it exist. */
  | "UnknownTopic"
  /** The topic exists with the other kind (persistent or ephemeral). */
  | "TopicKindConflict"
  /** The topic's partition is electing a leader and none took over before the deadline: retry later. */
  | "ElectionInProgress"
  /** The routers could not reach the topic's partition before the deadline (the outcome is unknown). */
  | "Unavailable"
  /** The router refused the request; `routerCode` says why. */
  | "Refused"
  /** The client is closed. */
  | "Closed";

export class NeuronError extends Error {
  readonly code: NeuronErrorCode;
  readonly routerCode: ErrorCode | undefined;

  constructor(code: NeuronErrorCode, message: string, routerCode?: ErrorCode) {
    super(message);
    this.name = "NeuronError";
    this.code = code;
    this.routerCode = routerCode;
  }
}
