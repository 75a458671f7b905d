// Raft between routers over axon links (TLS by default, or QUIC): one link per router pair
// carries every group they share (DESIGN.md: one axon per router pair). A batch leaves as
// RaftBatch frames: first its heartbeats and heartbeat responses alone (a few bytes per
// group), then its other messages, split so that every frame fits both ends' limits. Links
// are dialled on first use and re-dialled after a break, at most once per `redialMs`; links
// the peer dials in are used the same way.
//
// Invariants:
// - A batch is accepted only if its `from` is the id in the peer's certificate and its `to` is
//   us (a router cannot speak for another); anything else closes the link with a reason and
//   changes nothing.
// - Every frame fits min(peer's frameMaxBytes, ours) with a margin. A message that cannot fit
//   even alone is dropped, counted (`droppedOversized`) and reported (`oversized`); it is
//   never sent for the peer to refuse, which would close the link and lose everything else.
// - At most one open link per peer. When both routers dial at once, each keeps the link
//   dialled by the router with the smaller id and closes the other (`preferred`), so both
//   ends converge on the same link without a message about it.
// - Sending never blocks: while a link has more than `bufferedBytesMax` queued, data frames
//   are dropped (Raft re-sends them); the heartbeat frame is always queued, and ahead of its
//   batch's data. So a heartbeat waits behind at most `bufferedBytesMax` plus one frame of
//   earlier data, never behind a long queue of appends.
// Traps: delivery is best effort and ordered only within one link; one batch can arrive as
// several, its heartbeats first (the order `fromBatch` gives them anyway).
import {
  type Address,
  AxonFailure,
  type Credentials,
  type Link,
  type Listener,
  type Transport,
} from "../axon/index.ts";
import type { Clock } from "../ports/index.ts";
import type { GroupId, NodeId } from "../storage/index.ts";
import type { Deliver, Forward, ForwardResult } from "../wire/index.ts";
import { frameHeaderBytes, type Hello } from "../wire/index.ts";
import { batchIsEmpty, type RaftBatch } from "./batch.ts";
import { decodeRaftBatch, encodeRaftBatch } from "./batch-codec.ts";
import { assert } from "./errors.ts";
import type { RaftTransport } from "./multi-raft.ts";
import type { Message, MessageType } from "./types.ts";

/** A frame's bytes besides its RaftBatch payload: the header, and the payload's Avro length (≤ 5 bytes). */
const frameOverheadBytes = frameHeaderBytes + 5;
/** Kept free below the limit, so a miscount of a few bytes never makes a frame the peer refuses. */
const frameMarginBytes = 64;
/** Most bytes Avro spends on an array's item count (a long); a split batch has two arrays in use at most. */
const arrayCountBytesMax = 10;
/** Most bytes of one encoded Beat (batch-codec.ts: an int, three longs, a boolean). */
const beatBytesMax = 5 + 10 + 10 + 10 + 1;
/** Most bytes of one encoded BeatResponse (an int, two longs). */
const beatResponseBytesMax = 5 + 10 + 10;

/** A message no frame on the link can carry, even alone: dropped, counted and reported. */
export interface LinkRaftOversized {
  readonly peer: NodeId;
  readonly group: GroupId;
  readonly type: MessageType;
  /** Its RaftBatch payload when sent alone. */
  readonly bytes: number;
  /** The largest RaftBatch payload a frame on this link carries. */
  readonly limitBytes: number;
  /** The sentence for the log: what was dropped, why, and what to change. */
  readonly message: string;
}

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
  /**
   * Told of each message dropped as oversized (also counted in `droppedOversized`), for the
   * router's log. Raft re-sends what was lost, so one stuck message is reported again each time.
   */
  readonly oversized?: (drop: LinkRaftOversized) => void;
  /**
   * The router's own frames on these links (forwarded requests, their results, deliveries),
   * already checked to come from `peer`. Without it, such frames close the link.
   */
  readonly frame?: (peer: NodeId, frame: MeshFrame) => void;
  /** The link to `peer` closed: requests waiting on it will not be answered. */
  readonly linkClosed?: (peer: NodeId) => void;
  /** Queued bytes on a link past which data frames are dropped. Default 4 MiB. */
  readonly bufferedBytesMax?: number;
  /** Least time between two dials of one peer, ms. Default 200. */
  readonly redialMs?: number;
}

export interface LinkRaftTransportStats {
  /** RaftBatch frames queued; a batch over the frame limit takes several. */
  batchesSent: number;
  /** RaftBatch frames received and accepted. */
  batchesReceived: number;
  /** Batches whose heartbeats or messages needed more than one frame. */
  batchesSplit: number;
  /** Batches dropped because no link was up (dial pending or failed), or frames of one if it closed. */
  droppedNoLink: number;
  /** Data frames dropped because the link's queue was over `bufferedBytesMax`. */
  droppedBackpressure: number;
  /** Messages (heartbeats included) dropped because even alone they exceed the frame limit. */
  droppedOversized: number;
  /** Links closed because the peer sent something it must not. */
  linksRefused: number;
  /** Links closed because another link to the same peer was kept (both routers dialled). */
  linksDuplicate: number;
  dials: number;
  dialFailures: number;
}

/** Frames besides Raft's that routers exchange on their links. */
export type MeshFrame = Forward | ForwardResult | Deliver;

/** What this transport knows of one open link. */
interface LinkState {
  readonly peer: NodeId;
  /** Who dialled the link, us or the peer: both ends see the same, so both keep the same link. */
  readonly dialer: NodeId;
  /** Adoption order: of two links one dialer made, the newer wins. */
  readonly sequence: number;
}

export class LinkRaftTransport implements RaftTransport {
  readonly stats: LinkRaftTransportStats = {
    batchesSent: 0,
    batchesReceived: 0,
    batchesSplit: 0,
    droppedNoLink: 0,
    droppedBackpressure: 0,
    droppedOversized: 0,
    linksRefused: 0,
    linksDuplicate: 0,
    dials: 0,
    dialFailures: 0,
  };
  /** The address other routers dial. */
  readonly address: Address;
  private readonly options: LinkRaftTransportOptions;
  private readonly listener: Listener;
  /** The link used to send to each peer. Invariant: it is open, and the only open link to that peer. */
  private readonly links = new Map<NodeId, Link>();
  /** Every open link (a duplicate only for the instant before `adopt` closes it), for `close()`. */
  private readonly open = new Map<Link, LinkState>();
  /** When each peer was last dialled. Entries older than `redialMs` are pruned at each dial. */
  private readonly lastDialMs = new Map<NodeId, number>();
  /** Peers with a dial in flight; each dial ends (link or failure) within the connect timeout. */
  private readonly dialing = new Set<NodeId>();
  private adopted = 0;
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
        else self.adopt(link, link.peer.id);
      },
    });
    self = new LinkRaftTransport(options, listener);
    for (const link of pending) self.adopt(link, link.peer.id);
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
    if (batchIsEmpty(batch)) {
      if (link.bufferedBytes > 0) return; // the queued frames prove liveness
      this.emit(link, encodeRaftBatch(batch));
      return;
    }
    const payloadMaxBytes =
      Math.min(link.peerHello.frameMaxBytes, this.options.hello.frameMaxBytes) -
      frameOverheadBytes -
      frameMarginBytes;
    if (batch.beats.length > 0 || batch.beatResponses.length > 0)
      this.sendBeats(link, batch, payloadMaxBytes);
    if (batch.messages.length > 0) this.sendMessages(link, batch, payloadMaxBytes);
  }

  /** Writes what every link in use has queued, now (RaftTransport.flush). */
  flush(): void {
    for (const link of this.links.values()) if (!link.closed) link.flush();
  }

  /**
   * Queues one of the router's own frames for `peer`; false if there is no open link (a dial
   * starts) or the frame does not fit the link's limits. A Deliver is also refused while the
   * link's queue is over `bufferedBytesMax` (deliveries are at most once; requests are not
   * dropped, their senders bound how many are in flight).
   */
  sendFrame(peer: NodeId, frame: MeshFrame): boolean {
    if (this.closed) return false;
    const link = this.links.get(peer);
    if (link === undefined || link.closed) {
      this.dial(peer);
      return false;
    }
    if (frame.kind === "Deliver" && link.bufferedBytes > (this.options.bufferedBytesMax ?? 4 * 1024 * 1024)) {
      this.stats.droppedBackpressure += 1;
      return false;
    }
    return link.send(frame).ok;
  }

  /** True if a link to `peer` is open now. */
  connected(peer: NodeId): boolean {
    const link = this.links.get(peer);
    return link !== undefined && !link.closed;
  }

  /** Open links to `peer` and who dialled the one in use (tests and diagnostics). */
  linksTo(peer: NodeId): { readonly open: number; readonly dialledBy: NodeId | null } {
    let open = 0;
    for (const [link, state] of this.open) if (state.peer === peer && !link.closed) open += 1;
    const inUse = this.links.get(peer);
    return { open, dialledBy: inUse === undefined ? null : (this.open.get(inUse)?.dialer ?? null) };
  }

  async close(): Promise<void> {
    this.closed = true;
    // Every link, not only those in use: a QUIC listener's close waits for all of its links.
    for (const link of [...this.open.keys()]) link.close("ShuttingDown", "router stopping");
    this.open.clear();
    this.links.clear();
    await this.listener.close();
  }

  /** The heartbeat frame: never dropped for backpressure; split only if one frame cannot hold them all. */
  private sendBeats(link: Link, batch: RaftBatch, payloadMaxBytes: number): void {
    const beatsOnly: RaftBatch = { ...batch, messages: [] };
    const payload = encodeRaftBatch(beatsOnly);
    if (payload.length <= payloadMaxBytes) {
      this.emit(link, payload);
      return;
    }
    this.stats.batchesSplit += 1;
    const room = payloadMaxBytes - this.envelopeBytes(batch) - arrayCountBytesMax;
    for (const beats of pack(batch.beats, () => beatBytesMax, room))
      this.emitPart(link, { ...beatsOnly, beats, beatResponses: [] }, payloadMaxBytes);
    for (const beatResponses of pack(batch.beatResponses, () => beatResponseBytesMax, room))
      this.emitPart(link, { ...beatsOnly, beats: [], beatResponses }, payloadMaxBytes);
  }

  /** The data frames: one if it fits, else runs of messages sized exactly; dropped under backpressure. */
  private sendMessages(link: Link, batch: RaftBatch, payloadMaxBytes: number): void {
    const bufferedBytesMax = this.options.bufferedBytesMax ?? 4 * 1024 * 1024;
    if (link.bufferedBytes > bufferedBytesMax) {
      this.stats.droppedBackpressure += 1;
      return;
    }
    const dataOnly: RaftBatch = { ...batch, beats: [], beatResponses: [] };
    const payload = encodeRaftBatch(dataOnly);
    if (payload.length <= payloadMaxBytes) {
      this.emit(link, payload);
      return;
    }
    this.stats.batchesSplit += 1;
    // Avro writes a non-empty array as its count, the items, then 0: a batch of n messages is
    // the empty batch plus the count plus each message's bytes, and a message alone is the
    // empty batch plus 1 (the count 1) plus its bytes.
    const envelopeBytes = this.envelopeBytes(batch);
    const bytesOf = (message: Message) =>
      encodeRaftBatch({ ...dataOnly, messages: [message] }).length - envelopeBytes - 1;
    const runs = pack(batch.messages, bytesOf, payloadMaxBytes - envelopeBytes - arrayCountBytesMax);
    for (const [position, messages] of runs.entries()) {
      if (link.bufferedBytes > bufferedBytesMax) {
        this.stats.droppedBackpressure += runs.length - position;
        return;
      }
      this.emitPart(link, { ...dataOnly, messages }, payloadMaxBytes);
    }
  }

  /** Bytes of `batch` with every list empty: its version, from and to, and three empty arrays. */
  private envelopeBytes(batch: RaftBatch): number {
    return encodeRaftBatch({ from: batch.from, to: batch.to, beats: [], beatResponses: [], messages: [] })
      .length;
  }

  /** Sends one run from `pack`; a run of one item over the limit is the item that cannot fit. */
  private emitPart(link: Link, part: RaftBatch, payloadMaxBytes: number): void {
    const payload = encodeRaftBatch(part);
    if (payload.length <= payloadMaxBytes) {
      this.emit(link, payload);
      return;
    }
    const items = part.beats.length + part.beatResponses.length + part.messages.length;
    assert(
      items === 1,
      `a run of ${items} raft items was sized to fit ${payloadMaxBytes} bytes but took ${payload.length}`,
    );
    const [beat] = part.beats;
    const [response] = part.beatResponses;
    const [message] = part.messages;
    const group = beat?.group ?? response?.group ?? message?.group ?? 0;
    const type: MessageType =
      beat !== undefined ? "heartbeat" : response !== undefined ? "heartbeatResponse" : message!.type;
    this.stats.droppedOversized += 1;
    const peerFrameMaxBytes = link.peerHello.frameMaxBytes;
    this.options.oversized?.({
      peer: part.to,
      group,
      type,
      bytes: payload.length,
      limitBytes: payloadMaxBytes,
      message:
        `dropped raft ${type} for group ${group} to ${part.to}: it is ${payload.length} bytes encoded, ` +
        `over the ${payloadMaxBytes} a frame on this link carries (frameMaxBytes: ${part.to} accepts ` +
        `${peerFrameMaxBytes}, ${part.from} accepts ${this.options.hello.frameMaxBytes}), so it can never ` +
        "be delivered; raise frameMaxBytes on both routers above raft maxMessageBytes and maxEntryBytes",
    });
  }

  /** Queues one frame whose payload the caller sized to the link's limits. */
  private emit(link: Link, payload: Buffer): void {
    const result = link.send({ kind: "RaftBatch", payload });
    if (result.ok) {
      this.stats.batchesSent += 1;
      return;
    }
    if (link.closed) {
      this.stats.droppedNoLink += 1;
      return;
    }
    assert(false, `a RaftBatch frame sized to the link's limits was refused: ${result.error.message}`);
  }

  private adopt(link: Link, dialer: NodeId): void {
    const peer = link.peer.id;
    if (this.closed) {
      link.close("ShuttingDown", "router stopping");
      return;
    }
    this.adopted += 1;
    const state: LinkState = { peer, dialer, sequence: this.adopted };
    this.open.set(link, state);
    link.start({
      frame: (frame) => {
        if (frame.kind !== "RaftBatch") {
          const handler = this.options.frame;
          if (
            handler !== undefined &&
            (frame.kind === "Forward" || frame.kind === "ForwardResult" || frame.kind === "Deliver")
          ) {
            handler(peer, frame);
            return;
          }
          this.refuse(link, `a router may not send ${frame.kind} on a router link`);
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
        // The link in use was the only open one to its peer (adopt keeps one), so there is
        // none to promote: the next send dials, or the peer's dial arrives first.
        if (this.links.get(peer) === link) {
          this.links.delete(peer);
          this.options.linkClosed?.(peer);
        }
      },
    });
    // `start` delivers frames that came before it, which may have closed the link.
    if (link.closed) return;
    const inUse = this.links.get(peer);
    if (inUse === undefined) {
      this.links.set(peer, link);
      return;
    }
    const inUseState = this.open.get(inUse);
    assert(inUseState !== undefined && !inUse.closed, "the link in use is open");
    const kept = this.preferred(inUseState, state) === state ? link : inUse;
    const duplicate = kept === link ? inUse : link;
    this.links.set(peer, kept);
    this.stats.linksDuplicate += 1;
    duplicate.close(
      "ShuttingDown",
      `duplicate link between ${this.options.id} and ${peer}: both keep the one ` +
        `${this.open.get(kept)!.dialer} dialled (one link per router pair)`,
    );
  }

  /**
   * Of two open links to one peer, the one both ends keep: the one dialled by the router with
   * the smaller id. Of two the same router dialled, the newer: a router dials only when it has
   * no link to the peer, so it has given the older one up.
   */
  private preferred(a: LinkState, b: LinkState): LinkState {
    // Two dialers are us and the peer, so the smaller dialer is the smaller id.
    if (a.dialer !== b.dialer) return a.dialer < b.dialer ? a : b;
    return a.sequence > b.sequence ? a : b;
  }

  private refuse(link: Link, reason: string): void {
    this.stats.linksRefused += 1;
    link.close("ProtocolViolation", reason);
  }

  private dial(peer: NodeId): void {
    if (this.dialing.has(peer) || this.closed) return;
    const now = this.options.clock.nowMs();
    const redialMs = this.options.redialMs ?? 200;
    if (now - (this.lastDialMs.get(peer) ?? Number.NEGATIVE_INFINITY) < redialMs) return;
    const address = this.options.addressOf(peer);
    if (address === null) return;
    // An entry older than redialMs restricts nothing; dropping those keeps the map to the
    // peers dialled lately, however many peer ids come and go.
    for (const [other, atMs] of this.lastDialMs) if (now - atMs >= redialMs) this.lastDialMs.delete(other);
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
        (link) => {
          this.dialing.delete(peer);
          this.adopt(link, this.options.id);
        },
        (error: unknown) => {
          this.dialing.delete(peer);
          if (!(error instanceof AxonFailure)) throw error;
          this.stats.dialFailures += 1;
        },
      )
      .catch((error: unknown) => {
        // Not an operating error (those are AxonFailures): a bug here or in the transport.
        // Programmer errors stop the process (STYLE.md, Errors), so throw it outside the
        // promise chain, where it is an uncaught exception rather than a rejection to lose.
        queueMicrotask(() => {
          throw error;
        });
      });
  }
}

/**
 * Splits `items` into runs, in order, whose `bytesOf` sum to at most `roomBytes`. An item over
 * `roomBytes` by itself gets a run of its own (the caller drops it if it does not fit).
 */
function pack<T>(items: readonly T[], bytesOf: (item: T) => number, roomBytes: number): T[][] {
  const runs: T[][] = [];
  let run: T[] = [];
  let runBytes = 0;
  for (const item of items) {
    const bytes = bytesOf(item);
    if (run.length > 0 && runBytes + bytes > roomBytes) {
      runs.push(run);
      run = [];
      runBytes = 0;
    }
    run.push(item);
    runBytes += bytes;
  }
  if (run.length > 0) runs.push(run);
  return runs;
}
