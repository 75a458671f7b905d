// FramedLink: a Link over any ordered, reliable byte channel (a TLS socket, a QUIC stream, a
// simulated pipe). It owns everything above the bytes, identically for every transport:
//
// - Handshake: each side sends Hello as its first frame; the link opens when the peer's Hello
//   arrives. A Goodbye or a close before that fails the handshake with the peer's reason.
// - Batching: `send` encodes into a slab (wire/codec.ts); one write per event-loop turn, or
//   sooner when `flushBytes` are pending. Frames keep their order.
// - Keepalive: a Ping every `pingIntervalMs` while idle; a peer silent for `idleTimeoutMs` is
//   declared dead and the link closes (a TCP connection to a crashed host can stay half-open
//   for minutes otherwise).
// - Bad input: a malformed frame closes the link with Goodbye(code, reason); nothing of the
//   frame reaches the handler.
//
// Trap: `handler.closed` must run exactly once and after the last `handler.frame`.
import type { Clock, Timer } from "../ports/index.ts";
import {
  type EncodeResult,
  type ErrorCode,
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameEncoder,
  type Hello,
  type WireError,
} from "../wire/index.ts";
import { type AxonError, AxonFailure } from "./errors.ts";
import { describePeer, type PeerIdentity, type Role } from "./identity.ts";
import type { Link, LinkHandler, TransportKind } from "./transport.ts";

export interface ChannelHandler {
  data(chunk: Buffer): void;
  /** The channel's send buffer drained below its own mark. */
  drain(): void;
  /** The channel closed; `error` says why if it was not a clean close. */
  closed(error: AxonError | undefined): void;
}

/** The byte pipe under a link. Implementations: tls.ts, quic.ts, sim/memory-transport.ts. */
export interface ByteChannel {
  readonly remoteAddress: string;
  bind(handler: ChannelHandler): void;
  write(chunk: Buffer): void;
  /** Bytes written and not yet taken by the network. */
  readonly bufferedBytes: number;
  /** Flushes, then closes. */
  end(): void;
  /** Closes at once, dropping unsent bytes. */
  destroy(): void;
}

export interface LinkConfig {
  /** Flush at once when this many encoded bytes are pending. */
  readonly flushBytes: number;
  /** `writable` turns false above this many buffered bytes. */
  readonly highWaterBytes: number;
  /** Send a Ping after this long without receiving anything. */
  readonly pingIntervalMs: number;
  /** Close the link after this long without receiving anything. Must exceed pingIntervalMs. */
  readonly idleTimeoutMs: number;
  /** Deadline for the peer's Hello. */
  readonly handshakeTimeoutMs: number;
}

export const defaultLinkConfig: LinkConfig = {
  flushBytes: 64 * 1024,
  highWaterBytes: 4 * 1024 * 1024,
  pingIntervalMs: 1000,
  idleTimeoutMs: 5000,
  handshakeTimeoutMs: 5000,
};

export interface LinkEnvironment {
  readonly clock: Clock;
  /** Runs `callback` after the current event-loop turn: setImmediate, or the simulator's. */
  readonly defer: (callback: () => void) => void;
}

export const realEnvironment = (clock: Clock): LinkEnvironment => ({
  clock,
  defer: (callback) => setImmediate(callback),
});

/** Whether a listener admits an authenticated peer, and if not, why. */
export function admit(
  peer: PeerIdentity | undefined,
  acceptRoles: readonly Role[],
): { readonly ok: true; readonly peer: PeerIdentity } | { readonly ok: false; readonly reason: string } {
  if (peer === undefined)
    return { ok: false, reason: "certificate names no Neuron identity (urn:neuron:<role>:<id>)" };
  if (acceptRoles.includes(peer.role)) return { ok: true, peer };
  return {
    ok: false,
    reason: `${describePeer(peer)} may not connect here; this listener accepts ${acceptRoles.join(", ")} certificates`,
  };
}

/** Answers a connection that will not become a link: a Goodbye as its first frame, then close. */
export function refuseChannel(channel: ByteChannel, code: ErrorCode, message: string): void {
  channel.bind({ data() {}, drain() {}, closed() {} });
  channel.write(encodeFrame({ kind: "Goodbye", code, message }));
  channel.end();
}

type State = "handshake" | "open" | "closed";

/** The code a Goodbye carries for each way a received frame can be bad. */
const wireErrorCodes: Record<WireError["tag"], ErrorCode> = {
  FrameTooLarge: "FrameTooLarge",
  UnsupportedVersion: "UnsupportedVersion",
  UnknownFrameKind: "MalformedFrame",
  MalformedFrame: "MalformedFrame",
};

export class FramedLink implements Link {
  private state: State = "handshake";
  private readonly encoder: FrameEncoder;
  private readonly decoder: FrameDecoder;
  private handler: LinkHandler | undefined;
  private early: Frame[] = [];
  private flushScheduled = false;
  private lastReceivedMs: number;
  private keepalive: Timer | undefined;
  private pingSentMs: number | undefined;
  private pingId = 0;
  private writableWaiters: (() => void)[] = [];
  private closeReason: AxonError | undefined;
  private handshake: { resolve(link: FramedLink): void; reject(error: AxonFailure): void } | undefined;
  private _peerHello: Hello | undefined;
  rttMs: number | undefined;

  readonly transport: TransportKind;
  readonly peer: PeerIdentity;
  private readonly channel: ByteChannel;
  private readonly config: LinkConfig;
  private readonly environment: LinkEnvironment;

  private constructor(
    transport: TransportKind,
    peer: PeerIdentity,
    channel: ByteChannel,
    config: LinkConfig,
    environment: LinkEnvironment,
    frameMaxBytes: number,
  ) {
    this.transport = transport;
    this.peer = peer;
    this.channel = channel;
    this.config = config;
    this.environment = environment;
    this.encoder = new FrameEncoder(frameMaxBytes);
    this.decoder = new FrameDecoder(frameMaxBytes);
    this.lastReceivedMs = environment.clock.nowMs();
  }

  /**
   * Sends our Hello over an authenticated channel and resolves when the peer's Hello arrives.
   * Rejects with an AxonFailure: the peer's Goodbye, the channel's error, or a timeout.
   */
  static open(options: {
    readonly transport: TransportKind;
    readonly peer: PeerIdentity;
    readonly channel: ByteChannel;
    readonly hello: Hello;
    readonly config?: LinkConfig;
    readonly environment: LinkEnvironment;
  }): Promise<FramedLink> {
    const config = options.config ?? defaultLinkConfig;
    const link = new FramedLink(
      options.transport,
      options.peer,
      options.channel,
      config,
      options.environment,
      options.hello.frameMaxBytes,
    );
    return new Promise((resolve, reject) => {
      link.handshake = { resolve, reject };
      options.channel.bind(link.channelHandler);
      const timer = options.environment.clock.schedule(config.handshakeTimeoutMs, () => {
        if (link.state === "handshake") {
          link.fail({
            tag: "HandshakeTimeout",
            message: `no Hello from ${describePeer(link.peer)} within ${config.handshakeTimeoutMs} ms`,
          });
        }
      });
      link.keepalive = timer;
      link.send(options.hello);
      link.flush();
    });
  }

  get peerHello(): Hello {
    if (this._peerHello === undefined) throw new Error("peerHello read before the handshake completed");
    return this._peerHello;
  }

  get remoteAddress(): string {
    return this.channel.remoteAddress;
  }

  get closed(): boolean {
    return this.state === "closed";
  }

  get bufferedBytes(): number {
    return this.encoder.pendingBytes + this.channel.bufferedBytes;
  }

  get writable(): boolean {
    return this.state !== "closed" && this.bufferedBytes <= this.config.highWaterBytes;
  }

  whenWritable(): Promise<void> {
    if (this.writable || this.state === "closed") return Promise.resolve();
    return new Promise((resolve) => this.writableWaiters.push(resolve));
  }

  start(handler: LinkHandler): void {
    if (this.handler !== undefined) throw new Error("link started twice");
    this.handler = handler;
    const early = this.early;
    this.early = [];
    for (const frame of early) handler.frame(frame);
    if (this.state === "closed" && this.closeReason !== undefined) handler.closed(this.closeReason);
  }

  send(frame: Frame): EncodeResult {
    if (this.state === "closed") {
      return { ok: false, error: { tag: "MalformedFrame", message: "link is closed" } };
    }
    const result = this.encoder.encode(frame);
    if (!result.ok) return result;
    if (this.encoder.pendingBytes >= this.config.flushBytes) {
      this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.environment.defer(this.deferredFlush);
    }
    return result;
  }

  close(code: ErrorCode = "ShuttingDown", message = "closed"): void {
    if (this.state === "closed") return;
    this.encoder.encode({ kind: "Goodbye", code, message });
    this.flush();
    this.finish({ tag: "LinkClosed", message: `closed locally: ${code}: ${message}` });
    this.channel.end();
  }

  private readonly deferredFlush = () => {
    this.flushScheduled = false;
    this.flush();
  };

  flush(): void {
    const bytes = this.encoder.take();
    if (bytes !== undefined && this.state !== "closed") this.channel.write(bytes);
  }

  private readonly channelHandler: ChannelHandler = {
    data: (chunk) => {
      this.lastReceivedMs = this.environment.clock.nowMs();
      this.decoder.push(chunk, this.sink);
    },
    drain: () => this.wakeWriters(),
    closed: (error) => {
      if (this.state === "closed") return;
      this.fail(error ?? { tag: "LinkClosed", message: `${describePeer(this.peer)} closed the link` }, false);
    },
  };

  private readonly sink = {
    frame: (frame: Frame) => this.receive(frame),
    error: (error: WireError) => this.protocolError(error.message, wireErrorCodes[error.tag], error),
  };

  private receive(frame: Frame): void {
    if (this.state === "closed") return;
    switch (frame.kind) {
      case "Hello":
        if (this.state !== "handshake") {
          this.protocolError("Hello after the handshake", "ProtocolViolation");
          return;
        }
        this._peerHello = frame;
        this.state = "open";
        this.keepalive?.cancel();
        this.scheduleKeepalive();
        this.handshake?.resolve(this);
        this.handshake = undefined;
        return;
      case "Goodbye": {
        const verb = this.state === "handshake" ? "refused" : "closed the link";
        this.fail({
          tag: "PeerClosed",
          code: frame.code,
          message: `${describePeer(this.peer)} ${verb}: ${frame.code}: ${frame.message}`,
        });
        return;
      }
      case "Ping":
        this.send({ kind: "Pong", id: frame.id });
        return;
      case "Pong":
        if (this.pingSentMs !== undefined && frame.id === this.pingId) {
          this.rttMs = this.environment.clock.nowMs() - this.pingSentMs;
          this.pingSentMs = undefined;
        }
        return;
      default:
        if (this.state === "handshake") this.protocolError(`${frame.kind} before Hello`, "ProtocolViolation");
        else if (this.handler === undefined) this.early.push(frame);
        else this.handler.frame(frame);
    }
  }

  private protocolError(message: string, code: ErrorCode, wire?: WireError): void {
    if (this.state === "closed") return;
    this.encoder.encode({ kind: "Goodbye", code, message });
    this.flush();
    this.channel.end();
    this.fail(
      wire === undefined ? { tag: "ProtocolError", message } : { tag: "ProtocolError", message, wire },
      false,
    );
  }

  private scheduleKeepalive(): void {
    this.keepalive = this.environment.clock.schedule(this.config.pingIntervalMs, () => {
      if (this.state !== "open") return;
      const silentMs = this.environment.clock.nowMs() - this.lastReceivedMs;
      if (silentMs >= this.config.idleTimeoutMs) {
        return this.fail({
          tag: "LinkClosed",
          message: `${describePeer(this.peer)} silent for ${Math.round(silentMs)} ms`,
        });
      }
      this.pingId += 1;
      this.pingSentMs = this.environment.clock.nowMs();
      this.send({ kind: "Ping", id: this.pingId });
      this.scheduleKeepalive();
    });
  }

  /** Closes for `reason`; destroys the channel unless `destroyChannel` is false. */
  private fail(reason: AxonError, destroyChannel = true): void {
    if (this.state === "closed") return;
    this.finish(reason);
    if (destroyChannel) this.channel.destroy();
  }

  private finish(reason: AxonError): void {
    const wasHandshake = this.state === "handshake";
    this.state = "closed";
    this.closeReason = reason;
    this.keepalive?.cancel();
    this.decoder.stop();
    this.wakeWriters();
    if (wasHandshake) {
      this.handshake?.reject(new AxonFailure(reason));
      this.handshake = undefined;
      return;
    }
    this.handler?.closed(reason);
  }

  private wakeWriters(): void {
    if (this.writableWaiters.length === 0 || !(this.writable || this.state === "closed")) return;
    const waiters = this.writableWaiters;
    this.writableWaiters = [];
    for (const wake of waiters) wake();
  }
}
