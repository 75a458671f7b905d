// Raft between routers over axon links (TLS by default, or QUIC): one link per router pair
// carries every group they share, each round's messages in one RaftBatch frame (DESIGN.md:
// one axon per router pair). Links are dialled on first use and re-dialled after a break,
// at most once per `redialMs`; links the peer dials in are used the same way.
//
// Invariants: a batch is accepted only if its `from` is the id in the peer's certificate and
// its `to` is us (a router cannot speak for another); anything else closes the link with a
// reason and changes nothing. Sending never blocks: while a link has more than
// `bufferedBytesMax` queued, batches carrying data are dropped (Raft re-sends them), so
// heartbeats never wait behind a long queue of appends.
// Traps: a batch is best effort; delivery order holds only within one link.
import {
  type Address,
  AxonFailure,
  type Credentials,
  type Link,
  type Listener,
  type Transport,
} from "../axon/index.ts";
import type { Clock } from "../ports/index.ts";
import type { NodeId } from "../storage/index.ts";
import type { Hello } from "../wire/index.ts";
import { batchIsEmpty, type RaftBatch } from "./batch.ts";
import { decodeRaftBatch, encodeRaftBatch } from "./batch-codec.ts";
import type { RaftTransport } from "./multi-raft.ts";

export interface LinkRaftTransportOptions {
  readonly id: NodeId;
  readonly transport: Transport;
  readonly credentials: Credentials;
  readonly hello: Hello;
  /** Where other routers dial this one. */
  readonly listen: Address;
  /** Where to dial a peer router (from membership); null if unknown for now. */
  readonly addressOf: (peer: NodeId) => Address | null;
  readonly clock: Clock;
  /** A batch from a peer, already checked. */
  readonly receive: (batch: RaftBatch) => void;
  /** Queued bytes on a link past which batches with data are dropped. Default 4 MiB. */
  readonly bufferedBytesMax?: number;
  /** Least time between two dials of one peer, ms. Default 200. */
  readonly redialMs?: number;
}

export interface LinkRaftTransportStats {
  batchesSent: number;
  batchesReceived: number;
  /** Dropped because no link was up (dial pending or failed). */
  droppedNoLink: number;
  /** Dropped because the link's queue was over `bufferedBytesMax`. */
  droppedBackpressure: number;
  /** Links closed because the peer sent something it must not. */
  linksRefused: number;
  dials: number;
  dialFailures: number;
}

export class LinkRaftTransport implements RaftTransport {
  readonly stats: LinkRaftTransportStats = {
    batchesSent: 0,
    batchesReceived: 0,
    droppedNoLink: 0,
    droppedBackpressure: 0,
    linksRefused: 0,
    dials: 0,
    dialFailures: 0,
  };
  /** The address other routers dial. */
  readonly address: Address;
  private readonly options: LinkRaftTransportOptions;
  private readonly listener: Listener;
  /** The link used to send to each peer. */
  private readonly links = new Map<NodeId, Link>();
  /** Every open link, including a second one when both routers dialled at once. */
  private readonly open = new Set<Link>();
  private readonly lastDialMs = new Map<NodeId, number>();
  private readonly dialing = new Set<NodeId>();
  private closed = false;

  private constructor(options: LinkRaftTransportOptions, listener: Listener) {
    this.options = options;
    this.listener = listener;
    this.address = listener.address;
  }

  static async start(options: LinkRaftTransportOptions): Promise<LinkRaftTransport> {
    let self: LinkRaftTransport | null = null;
    const pending: Link[] = [];
    const listener = await options.transport.listen({
      address: options.listen,
      credentials: options.credentials,
      hello: options.hello,
      acceptRoles: ["router"],
      accept: (link) => {
        if (self === null) pending.push(link);
        else self.adopt(link);
      },
    });
    self = new LinkRaftTransport(options, listener);
    for (const link of pending) self.adopt(link);
    return self;
  }

  send(batch: RaftBatch): void {
    if (this.closed) return;
    const link = this.links.get(batch.to);
    if (link === undefined || link.closed) {
      this.stats.droppedNoLink += 1;
      this.dial(batch.to);
      return;
    }
    const dataFree = batch.messages.length === 0;
    if (!dataFree && link.bufferedBytes > (this.options.bufferedBytesMax ?? 4 * 1024 * 1024)) {
      this.stats.droppedBackpressure += 1;
      return;
    }
    if (batchIsEmpty(batch) && link.bufferedBytes > 0) return; // the queued frames prove liveness
    if (link.send({ kind: "RaftBatch", payload: encodeRaftBatch(batch) }).ok) this.stats.batchesSent += 1;
    else this.stats.droppedBackpressure += 1;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.open) link.close("ShuttingDown", "router stopping");
    this.links.clear();
    await this.listener.close();
  }

  private adopt(link: Link): void {
    const peer = link.peer.id;
    if (this.closed) {
      link.close("ShuttingDown", "router stopping");
      return;
    }
    this.open.add(link);
    const existing = this.links.get(peer);
    if (existing === undefined || existing.closed) this.links.set(peer, link);
    link.start({
      frame: (frame) => {
        if (frame.kind !== "RaftBatch") {
          this.refuse(link, `expected RaftBatch frames, got ${frame.kind}`);
          return;
        }
        const decoded = decodeRaftBatch(frame.payload);
        if (!decoded.ok) {
          this.refuse(link, `bad raft batch: ${decoded.error.tag}`);
          return;
        }
        const batch = decoded.batch;
        if (batch.from !== peer || batch.to !== this.options.id) {
          this.refuse(
            link,
            `batch from ${batch.from} to ${batch.to} on the link of ${peer} to ${this.options.id}`,
          );
          return;
        }
        this.stats.batchesReceived += 1;
        this.options.receive(batch);
      },
      closed: () => {
        this.open.delete(link);
        if (this.links.get(peer) === link) this.links.delete(peer);
      },
    });
  }

  private refuse(link: Link, reason: string): void {
    this.stats.linksRefused += 1;
    link.close("ProtocolViolation", reason);
  }

  private dial(peer: NodeId): void {
    if (this.dialing.has(peer) || this.closed) return;
    const now = this.options.clock.nowMs();
    if (now - (this.lastDialMs.get(peer) ?? Number.NEGATIVE_INFINITY) < (this.options.redialMs ?? 200))
      return;
    const address = this.options.addressOf(peer);
    if (address === null) return;
    this.lastDialMs.set(peer, now);
    this.dialing.add(peer);
    this.stats.dials += 1;
    this.options.transport
      .connect({
        address,
        credentials: this.options.credentials,
        hello: this.options.hello,
        expectRole: "router",
        expectId: peer,
      })
      .then(
        (link) => this.adopt(link),
        (error: unknown) => {
          if (!(error instanceof AxonFailure)) throw error;
          this.stats.dialFailures += 1;
        },
      )
      .finally(() => this.dialing.delete(peer));
  }
}
