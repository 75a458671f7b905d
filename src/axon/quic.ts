// QUIC links (@matrixai/quic 2.0.9 over quiche 0.18), the optional transport. A link is one
// QUIC connection carrying one bidirectional stream, opened by the listener; `QuicChannel`
// wraps that stream as a ByteChannel and `FramedLink` (link.ts) does the rest, as for TLS.
//
// Invariants:
// - Authentication is ours, after the handshake, with the same checks and wording as tls.ts:
//   both sides request certificates (verifyPeer) and accept any during the handshake (a
//   permissive verifyCallback), then check the peer with `verifyPeerCertificate`; a refusal is
//   a Goodbye(NotAuthorized, reason) as the only frame on the stream.
// - The listener opens the stream, so each side holds its stream through public events only:
//   the listener right after the connection event, the dialer by `EventQUICConnectionStream`,
//   which arrives a network round trip after its connect resolves. (A stream the dialer opened
//   can reach the listener before the listener's connection event, and would be missed.)
//   Stream limits enforce it: the listener accepts no peer streams, the dialer exactly one.
// - Every socket is ours (a shared QUICSocket), so we can size its receive buffer, and we stop
//   it: the dialer's once its connection stopped, the listener's in `Listener.close()`.
//
// Traps of the library (DESIGN.md), each handled here:
// - The dialer's connect resolves before the listener's TLS refusal (a missing client
//   certificate) arrives as an error event: the dialer keeps listening until the stream opens.
// - Every close, a clean one too, is an error event; code 0 from the application is clean.
// - `maxIdleTimeout` defaults to never: a peer that vanished mid-handshake would be kept forever.
// - A reset stream or a closed connection rejects pending reads and writes with plain Errors.
// - The default 208 KB UDP receive buffer drops packets in bursts: we ask for 4 MB.
// - A listener's handler that throws (an "internal" error, such as a UDP send refused by the
//   firewall) becomes an `EventError`, and with no listener for it an uncaught exception.
// - The library logs every event to stderr unless given a silent logger.
import { createHmac, randomBytes, randomFillSync, timingSafeEqual } from "node:crypto";
import { isIPv4 } from "node:net";
import Logger, { LogLevel } from "@matrixai/logger";
import {
  QUICClient,
  type QUICClientConfigInput,
  type QUICConnection,
  QUICServer,
  type QUICServerConfigInput,
  type QUICServerCrypto,
  QUICSocket,
  type QUICStream,
  errors as quicErrors,
  events as quicEvents,
  native as quicNative,
} from "@matrixai/quic";
import { type Clock, systemClock } from "../ports/index.ts";
import { type AxonError, AxonFailure } from "./errors.ts";
import { expectationProblem, type PeerIdentity, verifyPeerCertificate } from "./identity.ts";
import {
  admit,
  type ByteChannel,
  type ChannelHandler,
  defaultLinkConfig,
  FramedLink,
  type LinkConfig,
  realEnvironment,
  refuseChannel,
} from "./link.ts";
import type { ConnectOptions, Credentials, Link, Listener, ListenOptions, Transport } from "./transport.ts";

export interface QuicConfig {
  /**
   * Largest UDP payload we send, in bytes (library default 1200). 16000 gave ~5x the message
   * rate on loopback (DESIGN.md): the cost is the library's JavaScript per packet. quiche 0.18
   * has no path-MTU discovery, so past ~1350 bytes a real network fragments each datagram:
   * lower this where the MTU is 1500.
   */
  readonly maxSendUdpPayloadBytes: number;
  /** Largest UDP payload we accept, in bytes: 65527, the IPv6 maximum, so any sender fits. */
  readonly maxReceiveUdpPayloadBytes: number;
  /**
   * SO_RCVBUF asked for each socket, in bytes. Linux caps it at net.core.rmem_max (4 MB on
   * these machines) and the 208 KB default drops packets under load.
   */
  readonly receiveBufferBytes: number;
  /**
   * QUIC idle timeout, in ms (library default: never). Longer than the link's idleTimeoutMs, so
   * an open link reports a silent peer in FramedLink's words; this one frees connections that
   * never became links.
   */
  readonly maxIdleTimeoutMs: number;
  /** Deadline for an accepted connection's QUIC handshake, in ms. */
  readonly handshakeTimeoutMs: number;
  /** Bytes taken from the stream per read (library default 4 KiB): fewer, larger reads. */
  readonly readChunkBytes: number;
  /** Most bytes handed to the stream in one write: queued chunks are joined up to this. */
  readonly writeBatchBytes: number;
  /** After `end()`, how long to wait for the peer to close before closing ourselves, in ms. */
  readonly lingerMs: number;
}

export const defaultQuicConfig: QuicConfig = {
  maxSendUdpPayloadBytes: 16_000,
  maxReceiveUdpPayloadBytes: 65_527,
  receiveBufferBytes: 4 * 1024 * 1024,
  maxIdleTimeoutMs: 2 * defaultLinkConfig.idleTimeoutMs,
  handshakeTimeoutMs: 5000,
  readChunkBytes: 64 * 1024,
  writeBatchBytes: 1024 * 1024,
  lingerMs: 2000,
};

export interface QuicTransportOptions {
  readonly clock?: Clock;
  readonly link?: LinkConfig;
  readonly quic?: QuicConfig;
}

/** The ALPN protocol id both sides must offer. */
const applicationProtocol = "neuron-axon/1";

/** The library's events and errors are plain classes; these are the names we listen for. */
const eventNames = {
  connectionError: quicEvents.EventQUICConnectionError.name,
  connectionStopped: quicEvents.EventQUICConnectionStopped.name,
  connectionStream: quicEvents.EventQUICConnectionStream.name,
  serverConnection: quicEvents.EventQUICServerConnection.name,
  // `EventError` of @matrixai/events: what a throwing handler becomes (see the traps above).
  handlerError: "EventError",
} as const;

const silentLogger = () => new Logger("quic", LogLevel.SILENT, []);

/**
 * Routes the `EventError`s of `target`. The library's own errors (its "internal" ones) go to
 * `fail`; anything else was thrown by a handler of ours or of the application, a bug that must
 * not pass for a network fault: it is rethrown outside the library, as an uncaught exception,
 * as it would be from a TLS socket's listener. (Throwing here would only loop: the library
 * turns it into another EventError.)
 */
function routeHandlerErrors(
  target: QUICClient | QUICServer | QUICConnection | QUICStream,
  fail: (error: Error) => void,
) {
  target.addEventListener(eventNames.handlerError, (event: Event) => {
    const error = (event as Event & { detail?: unknown }).detail;
    if (error instanceof quicErrors.ErrorQUIC) return fail(error);
    process.nextTick(() => {
      throw error;
    });
  });
}

/** A QUICSocket whose UDP receive buffer we may size (the dgram socket is protected). */
class TunedSocket extends QUICSocket {
  setReceiveBufferBytes(bytes: number): void {
    this.socket.setRecvBufferSize(bytes);
  }
}

async function startSocket(host: string, port: number, config: QuicConfig): Promise<TunedSocket> {
  const socket = new TunedSocket({ logger: silentLogger() });
  await socket.start({ host, port });
  socket.setReceiveBufferBytes(config.receiveBufferBytes);
  return socket;
}

function stopSocket(socket: QUICSocket): Promise<void> {
  return socket.stop({ force: true }).catch(() => undefined);
}

/** Why a connection closed, from the error its close event carries; undefined if clean. */
function describeClose(error: unknown, where: string, config: QuicConfig): AxonError | undefined {
  // PeerTLS extends Local in this library, so it must be tested first.
  if (error instanceof quicErrors.ErrorQUICConnectionPeerTLS) {
    return {
      tag: "AuthenticationFailed",
      message: `${where} refused the TLS handshake: ${describeAlert(error.data.errorCode)}`,
    };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionLocalTLS) {
    return {
      tag: "AuthenticationFailed",
      message: `TLS handshake with ${where} failed: ${describeAlert(error.data.errorCode)}`,
    };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionLocal) return undefined;
  if (error instanceof quicErrors.ErrorQUICConnectionPeer) {
    const { isApp, errorCode, reason } = error.data;
    if (isApp && errorCode === 0) return undefined;
    const text = Buffer.from(reason).toString("utf8");
    return {
      tag: "ConnectFailed",
      message: `${where} closed the QUIC connection with ${isApp ? "application" : "transport"} code ${errorCode}${text === "" ? "" : `: ${text}`}`,
    };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionIdleTimeout) {
    return { tag: "LinkClosed", message: `no QUIC packets from ${where} for ${config.maxIdleTimeoutMs} ms` };
  }
  return { tag: "ConnectFailed", message: `QUIC connection with ${where}: ${describeError(error)}` };
}

function describeAlert(code: number): string {
  const name = (quicNative.CryptoError as unknown as Record<number, string | undefined>)[code];
  const alert = `TLS alert ${code - 0x100}${name === undefined ? "" : ` (${name})`}`;
  return code === quicNative.CryptoError.CertificateRequired
    ? `${alert}: this endpoint presented no certificate`
    : alert;
}

/**
 * One QUIC connection and what must be freed with it. `closing` runs once, on the first close
 * or error event, with the reason (undefined for a clean close); `stopped` resolves when the
 * connection is gone and its socket (the dialer's) is freed.
 */
class QuicSession {
  readonly connection: QUICConnection;
  readonly remoteAddress: string;
  readonly stopped: Promise<void>;
  /** Why the connection closed; undefined while open or after a clean close. */
  reason: AxonError | undefined;
  isClosing = false;
  private subscriber: ((reason: AxonError | undefined) => void) | undefined;
  private closeRequested = false;
  private readonly release: () => Promise<void>;

  constructor(
    connection: QUICConnection,
    config: QuicConfig,
    release: () => Promise<void>,
    afterStopped: () => Promise<void>,
  ) {
    this.connection = connection;
    this.release = release;
    this.remoteAddress = `${connection.remoteHost}:${connection.remotePort}`;
    let markStopped: () => void = () => undefined;
    this.stopped = new Promise((resolve) => {
      markStopped = resolve;
    });
    connection.addEventListener(eventNames.connectionError, (event: Event) =>
      this.closing(
        describeClose((event as quicEvents.EventQUICConnectionError).detail, this.remoteAddress, config),
      ),
    );
    routeHandlerErrors(connection, (error) => this.fail(error));
    connection.addEventListener(
      eventNames.connectionStopped,
      () => {
        this.closing(undefined);
        void afterStopped().finally(markStopped);
      },
      { once: true },
    );
  }

  /** Calls `callback` on close; at once if the connection is already closing. Replaces any other. */
  watch(callback: (reason: AxonError | undefined) => void): void {
    this.subscriber = callback;
    if (this.isClosing) callback(this.reason);
  }

  /** The library failed inside (say a UDP send the kernel refused): close the connection. */
  fail(error: Error): void {
    this.closing({
      tag: "ConnectFailed",
      message: `QUIC error on ${this.remoteAddress}: ${describeError(error)}`,
    });
    this.close();
  }

  /** Closes the connection now (application code 0, streams cancelled). Idempotent. */
  close(): void {
    if (this.closeRequested) return;
    this.closeRequested = true;
    // A failure to stop means it is stopped or stopping already; `stopped` tracks the outcome.
    void this.release().catch(() => undefined);
  }

  private closing(reason: AxonError | undefined): void {
    if (this.isClosing) return;
    this.isClosing = true;
    this.reason = reason;
    this.subscriber?.(reason);
  }
}

/** The link's stream as a ByteChannel. Closing the channel closes the whole connection. */
class QuicChannel implements ByteChannel {
  private readonly session: QuicSession;
  private readonly config: QuicConfig;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private handler: ChannelHandler | undefined;
  private reading = false;
  /** Chunks written and not yet taken by the stream. Invariant: queuedBytes = their total. */
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private pumping = false;
  private ending = false;
  private finished = false;
  private lingerTimer: NodeJS.Timeout | undefined;

  constructor(session: QuicSession, stream: QUICStream, config: QuicConfig) {
    this.session = session;
    this.config = config;
    this.reader = stream.readable.getReader();
    this.writer = stream.writable.getWriter();
    // Both reject when the stream is reset or the connection closes; the read loop reports it.
    this.reader.closed.catch(() => undefined);
    this.writer.closed.catch(() => undefined);
    routeHandlerErrors(stream, (error) => session.fail(error));
    session.watch(() => {
      // The library cancels the stream as it stops the connection, which ends the read loop;
      // if the loop never started, report here.
      if (!this.reading) this.finish(session.reason);
    });
    // Whatever happened to the stream, a stopped connection ends the channel.
    void session.stopped.then(() => this.finish(session.reason));
  }

  get remoteAddress(): string {
    return this.session.remoteAddress;
  }

  bind(handler: ChannelHandler): void {
    this.handler = handler;
    if (!this.reading && !this.finished) {
      this.reading = true;
      void this.readLoop();
    }
  }

  write(chunk: Buffer): void {
    if (this.ending || this.finished) return;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (!this.pumping) void this.pump();
  }

  get bufferedBytes(): number {
    return this.queuedBytes;
  }

  end(): void {
    if (this.ending || this.finished) return;
    this.ending = true;
    if (!this.pumping) void this.pump();
    // The peer closes the connection once it has read our FIN; one that does not read must not
    // keep the connection forever.
    this.lingerTimer = setTimeout(() => this.destroy(), this.config.lingerMs);
    this.lingerTimer.unref();
  }

  destroy(): void {
    // Cancels the stream: a pending write rejects and the pump drops the queue.
    this.session.close();
  }

  private async readLoop(): Promise<void> {
    let streamError: AxonError | undefined;
    for (;;) {
      let result: Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]>>;
      try {
        result = await this.reader.read();
      } catch {
        // A reset stream rejects with a plain Error ("read <code>"); so does a closed
        // connection, whose reason the session holds already.
        streamError = { tag: "LinkClosed", message: `${this.remoteAddress} reset the QUIC stream` };
        break;
      }
      if (result.done) break;
      // Outside the try: an exception from the handler is a bug, not a network fault.
      const chunk = result.value;
      this.handler?.data(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
    this.finish(this.session.reason ?? (this.session.isClosing ? undefined : streamError));
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const chunk = this.takeBatch();
        // Resolves once quiche holds every byte, which waits on the peer's flow-control window.
        await this.writer.write(chunk);
        this.queuedBytes -= chunk.length;
        this.handler?.drain();
      }
      if (this.ending && !this.finished) await this.writer.close();
    } catch {
      // The stream was reset or the connection closed (no write is in flight now): the read
      // loop reports why.
      this.queue = [];
      this.queuedBytes = 0;
    } finally {
      this.pumping = false;
    }
  }

  private takeBatch(): Buffer {
    let count = 0;
    let bytes = 0;
    while (
      count < this.queue.length &&
      (count === 0 || bytes + this.queue[count]!.length <= this.config.writeBatchBytes)
    ) {
      bytes += this.queue[count]!.length;
      count += 1;
    }
    const taken = this.queue.splice(0, count);
    return taken.length === 1 ? taken[0]! : Buffer.concat(taken, bytes);
  }

  /** Reports the close once, after the last data, and makes sure the connection goes. */
  private finish(reason: AxonError | undefined): void {
    if (this.finished) return;
    this.finished = true;
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.handler?.closed(reason);
    this.session.close();
  }
}

/** The peer's certificate chain, checked as tls.ts checks it. */
function authenticate(
  connection: QUICConnection,
  ca: string,
  wallMs: number,
): { ok: true; peer: PeerIdentity } | { ok: false; reason: string } {
  const leaf = connection.getRemoteCertsChain()[0];
  const check = verifyPeerCertificate(leaf === undefined ? undefined : derToPem(leaf), ca, wallMs);
  return check.ok ? { ok: true, peer: check.identity } : check;
}

function derToPem(der: Uint8Array): string {
  const base64 = Buffer.from(der).toString("base64");
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}

function baseConfig(credentials: Credentials, config: QuicConfig) {
  return {
    ca: credentials.ca,
    // Verification is ours, after the handshake: see the note at the top of this file. With
    // verifyPeer the listener asks for a certificate; the callback accepts whatever comes.
    verifyPeer: true,
    verifyCallback: async () => undefined,
    maxIdleTimeout: config.maxIdleTimeoutMs,
    maxSendUdpPayloadSize: config.maxSendUdpPayloadBytes,
    maxRecvUdpPayloadSize: config.maxReceiveUdpPayloadBytes,
    readableChunkSize: config.readChunkBytes,
    initialMaxStreamsUni: 0,
    applicationProtos: [applicationProtocol],
  };
}

/** Retry tokens and connection ids are HMACs under a key that lives as long as the listener. */
function serverCrypto(): QUICServerCrypto {
  const mac = (key: ArrayBuffer, data: ArrayBuffer) =>
    createHmac("sha256", Buffer.from(key)).update(Buffer.from(data)).digest();
  return {
    key: new Uint8Array(randomBytes(32)).buffer,
    ops: {
      sign: async (key, data) => new Uint8Array(mac(key, data)).buffer,
      verify: async (key, data, signature) => {
        const expected = mac(key, data);
        const given = Buffer.from(signature);
        return given.length === expected.length && timingSafeEqual(expected, given);
      },
    },
  };
}

const clientCrypto = {
  ops: {
    randomBytes: async (data: ArrayBuffer) => {
      randomFillSync(new Uint8Array(data));
    },
  },
};

function describeStartError(error: unknown, where: string, timeoutMs: number, config: QuicConfig): AxonError {
  if (
    error instanceof quicErrors.ErrorQUICClientCreateTimeout ||
    error instanceof quicErrors.ErrorQUICConnectionStartTimeout
  ) {
    return { tag: "HandshakeTimeout", message: `no QUIC handshake with ${where} within ${timeoutMs} ms` };
  }
  if (error instanceof quicErrors.ErrorQUICConnectionIdleTimeout) {
    // A silent listener: the dialer resends its Initial packet until the idle timeout.
    return {
      tag: "HandshakeTimeout",
      message: `no answer from ${where} for ${config.maxIdleTimeoutMs} ms (QUIC idle timeout)`,
    };
  }
  return (
    describeClose(error, where, config) ?? {
      tag: "ConnectFailed",
      message: `QUIC connect to ${where}: ${describeError(error)}`,
    }
  );
}

/** An error's message and its cause's: the library wraps the useful part (EADDRINUSE, ...). */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${describeError(error.cause)}` : "";
  return `${error.message === "" ? error.name : error.message}${cause}`;
}

export function quicTransport(options: QuicTransportOptions = {}): Transport {
  const clock = options.clock ?? systemClock;
  const environment = realEnvironment(clock);
  const config = options.quic ?? defaultQuicConfig;
  const linkOptions = options.link === undefined ? {} : { config: options.link };

  const open = (peer: PeerIdentity, channel: QuicChannel, hello: ListenOptions["hello"]) =>
    FramedLink.open({ transport: "quic", peer, channel, hello, environment, ...linkOptions });

  return {
    kind: "quic",

    async listen(listen: ListenOptions): Promise<Listener> {
      let socket: TunedSocket;
      try {
        socket = await startSocket(listen.address.host, listen.address.port, config);
      } catch (error) {
        throw new AxonFailure({
          tag: "ConnectFailed",
          message: `cannot listen on UDP ${listen.address.host}:${listen.address.port}: ${describeError(error)}`,
        });
      }
      const serverConfig: QUICServerConfigInput = {
        ...baseConfig(listen.credentials, config),
        key: listen.credentials.key,
        cert: listen.credentials.cert,
        // Dialers open no streams: the listener opens the link's one.
        initialMaxStreamsBidi: 0,
      };
      const server = new QUICServer({
        crypto: serverCrypto(),
        config: serverConfig,
        socket,
        minIdleTimeout: config.handshakeTimeoutMs,
        logger: silentLogger(),
      });
      const sessions = new Set<QuicSession>();
      let closing: Promise<void> | undefined;
      const refused = (remoteAddress: string, reason: string) => listen.refused?.({ remoteAddress, reason });

      const accept = (connection: QUICConnection) => {
        const session = new QuicSession(
          connection,
          config,
          () => connection.stop({ isApp: true, errorCode: 0, force: true }),
          async () => undefined,
        );
        sessions.add(session);
        void session.stopped.then(() => sessions.delete(session));
        if (closing !== undefined) return session.close();
        let stream: QUICStream;
        try {
          stream = connection.newStream("bidi");
        } catch (error) {
          session.close();
          refused(session.remoteAddress, `cannot open the link stream: ${describeError(error)}`);
          return;
        }
        const channel = new QuicChannel(session, stream, config);
        const authentication = authenticate(connection, listen.credentials.ca, clock.wallMs());
        const admission = authentication.ok
          ? admit(authentication.peer, listen.acceptRoles)
          : ({ ok: false, reason: authentication.reason } as const);
        if (!admission.ok) {
          refuseChannel(channel, "NotAuthorized", admission.reason);
          refused(session.remoteAddress, admission.reason);
          return;
        }
        open(admission.peer, channel, listen.hello).then(listen.accept, (error: AxonFailure) =>
          refused(session.remoteAddress, error.message),
        );
      };

      server.addEventListener(eventNames.serverConnection, (event: Event) =>
        accept((event as quicEvents.EventQUICServerConnection).detail),
      );
      // A send the kernel refused (a firewall drop: EPERM) is thrown as an internal error that
      // names the connection by its send id: close that connection. The only other internal
      // error, failing to stop the socket, has no connection to blame.
      routeHandlerErrors(server, (error) => {
        const id = (error as Error & { data?: { id?: unknown } }).data?.id;
        for (const session of sessions) if (session.connection.sendId === id) session.fail(error);
      });
      try {
        await server.start();
      } catch (error) {
        await stopSocket(socket);
        throw new AxonFailure({ tag: "ConnectFailed", message: `QUIC server: ${describeError(error)}` });
      }

      return {
        address: { host: listen.address.host, port: socket.port },
        close: () => {
          closing ??= (async () => {
            // As net.Server.close: refuse new connections at once, resolve when the last
            // existing one is gone, then free the UDP socket.
            socket.unsetServer();
            await Promise.all([...sessions].map((session) => session.stopped));
            await server.stop({ force: true }).catch(() => undefined);
            await stopSocket(socket);
          })();
          return closing;
        },
      };
    },

    connect(connect: ConnectOptions): Promise<Link> {
      const timeoutMs = connect.timeoutMs ?? 5000;
      const where = `${connect.address.host}:${connect.address.port}`;
      return new Promise((resolve, reject) => {
        let settled = false;
        let cancelStart: (() => void) | undefined;
        let session: QuicSession | undefined;
        const settle = (outcome: { link: Link } | { error: AxonError; keepChannel?: boolean }) => {
          if (settled) return;
          settled = true;
          timer.cancel();
          if ("link" in outcome) return resolve(outcome.link);
          cancelStart?.();
          if (outcome.keepChannel !== true) session?.close();
          reject(new AxonFailure(outcome.error));
        };
        const timer = clock.schedule(timeoutMs, () =>
          settle({
            error: { tag: "HandshakeTimeout", message: `no handshake with ${where} within ${timeoutMs} ms` },
          }),
        );

        const start = async () => {
          let socket: TunedSocket;
          try {
            socket = await startSocket(isIPv4(connect.address.host) ? "0.0.0.0" : "::", 0, config);
          } catch (error) {
            return settle({
              error: { tag: "ConnectFailed", message: `QUIC socket: ${describeError(error)}` },
            });
          }
          if (settled) return stopSocket(socket);
          const clientConfig: QUICClientConfigInput = {
            ...baseConfig(connect.credentials, config),
            ...(connect.credentials.cert === ""
              ? {}
              : { cert: connect.credentials.cert, key: connect.credentials.key }),
            // The listener opens exactly one stream: the link's.
            initialMaxStreamsBidi: 1,
          };
          const starting = QUICClient.createQUICClient(
            {
              host: connect.address.host,
              port: connect.address.port,
              socket,
              crypto: clientCrypto,
              config: clientConfig,
              logger: silentLogger(),
            },
            { timer: timeoutMs },
          );
          cancelStart = () => starting.cancel(new Error("connect abandoned"));
          let client: QUICClient;
          try {
            client = await starting;
          } catch (error) {
            await stopSocket(socket);
            return settle({ error: describeStartError(error, where, timeoutMs, config) });
          }
          cancelStart = undefined;
          const connection = client.connection;
          session = new QuicSession(
            connection,
            config,
            () => client.destroy({ isApp: true, errorCode: 0, force: true }),
            async () => {
              await client.destroy().catch(() => undefined);
              await stopSocket(socket);
            },
          );
          routeHandlerErrors(client, (error) => session?.fail(error));
          const current = session;
          if (settled) return current.close();
          // Trap: the listener's TLS refusal (we sent no certificate) arrives after connect
          // resolved, as a close event; so does any close before the listener opens the stream.
          current.watch((reason) =>
            settle({
              error: reason ?? {
                tag: "ConnectFailed",
                message: `${where} closed the QUIC connection before opening the link stream`,
              },
            }),
          );
          const authentication = authenticate(connection, connect.credentials.ca, clock.wallMs());
          let streams = 0;
          connection.addEventListener(eventNames.connectionStream, (event: Event) => {
            const stream = (event as quicEvents.EventQUICConnectionStream).detail;
            streams += 1;
            if (streams > 1 || settled) return stream.cancel(new Error("one stream per link"));
            const channel = new QuicChannel(current, stream, config);
            const problem = authentication.ok
              ? expectationProblem(authentication.peer, connect.expectRole, connect.expectId)
              : `router at ${where}: ${authentication.reason}`;
            if (problem !== undefined || !authentication.ok) {
              refuseChannel(channel, "NotAuthorized", problem ?? "");
              return settle({
                error: { tag: "AuthenticationFailed", message: problem ?? "" },
                keepChannel: true,
              });
            }
            open(authentication.peer, channel, connect.hello).then(
              (link) => settle({ link }),
              (error: AxonFailure) => settle({ error: error.error }),
            );
          });
        };
        start().catch((error: unknown) =>
          settle({
            error: { tag: "ConnectFailed", message: `QUIC connect to ${where}: ${describeError(error)}` },
          }),
        );
      });
    },
  };
}
