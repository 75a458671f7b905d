// One of the client's links to a router, and the requests it sent on it that wait for an answer.
//
// The router answers a link's requests by a cumulative Ack (every id up to it that was not
// refused succeeded) and a Refusal before the Ack covering its id (wire/schema.ts), and it
// wants ids on a link to increase. So every send takes this link's next id (a request sent
// again on another link gets that link's next id there), and `sent` files the requests by it:
// an Ack settles a prefix. The client (client.ts) owns the requests; this class only keeps
// which of them wait on this link.
import type { Link } from "../src/axon/index.ts";
import type { EncodeResult, Frame } from "../src/wire/index.ts";
import { RequestQueue } from "./request-queue.ts";

/** What a connection needs of a request. */
export interface LinkedRequest {
  /** The frame to send; its requestId is set to this link's id for it on each send. */
  readonly frame: Frame & { requestId: number };
  /** The connection it waits on, if any. Invariant: set iff it is in that connection's `sent`. */
  connection: RouterConnection | undefined;
  /** Its id on `connection`. */
  linkRequestId: number;
  /** Times it was sent, on any link. */
  sends: number;
}

export class RouterConnection {
  readonly link: Link;
  /** The router's id, from its certificate. */
  readonly router: string;
  /** "host:port" it was dialled at. */
  readonly address: string;
  private nextRequestId = 1;
  private readonly sent = new RequestQueue<LinkedRequest>((request) => request.linkRequestId);

  constructor(link: Link, address: string) {
    this.link = link;
    this.router = link.peer.id;
    this.address = address;
  }

  /** Sends `request` with this link's next id; on failure nothing changed here. */
  send(request: LinkedRequest): EncodeResult {
    const id = this.nextRequestId;
    (request.frame as { requestId: number }).requestId = id;
    const result = this.link.send(request.frame);
    if (!result.ok) return result;
    this.nextRequestId = id + 1;
    request.linkRequestId = id;
    request.connection = this;
    request.sends += 1;
    this.sent.push(request);
    return result;
  }

  /** The request this link sent with id `requestId`, if it still waits. */
  get(requestId: number): LinkedRequest | undefined {
    return this.sent.get(requestId);
  }

  /** Requests waiting on this link. */
  get waiting(): number {
    return this.sent.size;
  }

  /** The waiting request with the lowest id. */
  oldest(): LinkedRequest | undefined {
    return this.sent.oldest();
  }

  /** It was answered (or settled otherwise): it no longer waits here. */
  remove(request: LinkedRequest): void {
    if (request.connection !== this) return;
    this.sent.remove(request.linkRequestId);
    request.connection = undefined;
  }

  /** The link closed: every request waiting on it, in the order sent, now waits on none. */
  release(): LinkedRequest[] {
    const released = this.sent.list();
    for (const request of released) this.remove(request);
    return released;
  }
}
