// QUIC links (@matrixai/quic 2.0.9 over quiche 0.18), the optional transport. A link is one
// QUIC connection carrying one bidirectional stream, opened by the listener; `QuicChannel`
// (quic-session.ts) wraps that stream as a ByteChannel and `FramedLink` (link.ts) does the
// rest, as for TLS.
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
// Traps of the library (DESIGN.md), each handled here or in quic-session.ts:
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
  type events as quicEvents,
} from "@matrixai/quic";
import { type Clock, systemClock } from "../ports/index.ts";
import { type AxonError, AxonFailure } from "./errors.ts";
import { expectationProblem, type PeerIdentity, verifyPeerCertificate } from "./identity.ts";
import {
  admit,
  defaultLinkConfig,
  FramedLink,
  type LinkConfig,
  realEnvironment,
  refuseChannel,
} from "./link.ts";
import {
  describeClose,
  describeError,
  eventNames,
  QuicChannel,
  QuicSession,
  routeHandlerErrors,
  silentLogger,
} from "./quic-session.ts";
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
