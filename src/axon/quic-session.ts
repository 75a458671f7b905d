// One QUIC connection as a link's byte channel (@matrixai/quic; quic.ts has the transport and
// the traps of the library this code handles): `QuicSession` owns a connection and frees it
// once, `QuicChannel` wraps its one bidirectional stream as the ByteChannel FramedLink reads
// and writes, and the helpers name the library's events and turn its errors into AxonErrors.
import Logger, { LogLevel } from "@matrixai/logger";
import {
  type QUICClient,
  type QUICConnection,
  type QUICServer,
  type QUICStream,
  errors as quicErrors,
  events as quicEvents,
  native as quicNative,
} from "@matrixai/quic";
import type { AxonError } from "./errors.ts";
import type { ByteChannel, ChannelHandler } from "./link.ts";
import type { QuicConfig } from "./quic.ts";

/** The library's events and errors are plain classes; these are the names we listen for. */
export const eventNames = {
  connectionError: quicEvents.EventQUICConnectionError.name,
  connectionStopped: quicEvents.EventQUICConnectionStopped.name,
  connectionStream: quicEvents.EventQUICConnectionStream.name,
  serverConnection: quicEvents.EventQUICServerConnection.name,
  // `EventError` of @matrixai/events: what a throwing handler becomes (see the traps in quic.ts).
  handlerError: "EventError",
} as const;

export const silentLogger = () => new Logger("quic", LogLevel.SILENT, []);

/**
 * Routes the `EventError`s of `target`. The library's own errors (its "internal" ones) go to
 * `fail`; anything else was thrown by a handler of ours or of the application, a bug that must
 * not pass for a network fault: it is rethrown outside the library, as an uncaught exception,
 * as it would be from a TLS socket's listener. (Throwing here would only loop: the library
 * turns it into another EventError.)
 */
export function routeHandlerErrors(
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

/** Why a connection closed, from the error its close event carries; undefined if clean. */
export function describeClose(error: unknown, where: string, config: QuicConfig): AxonError | undefined {
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

export function describeAlert(code: number): string {
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
export class QuicSession {
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
export class QuicChannel implements ByteChannel {
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

/** An error's message and its cause's: the library wraps the useful part (EADDRINUSE, ...). */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${describeError(error.cause)}` : "";
  return `${error.message === "" ? error.name : error.message}${cause}`;
}
