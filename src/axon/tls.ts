// TLS over TCP links (node:tls), the default transport: measured here about 20x the message
// rate of QUIC in Node (DESIGN.md). TLS 1.3 only; both sides present certificates signed by
// the cluster CA.
//
// Trap: with `rejectUnauthorized`, a TLS 1.3 server that refuses a client certificate just
// drops the connection: the client sees a clean end and the server "socket hang up", and
// neither learns why. So neither side lets OpenSSL refuse: both finish the TLS handshake,
// then check the peer (OpenSSL's verdict, `verifyPeerCertificate` for the wording, the
// identity and its role) and, if it fails, send a Goodbye(NotAuthorized, reason) as their
// only frame. Nothing else is sent or read on an unauthenticated connection.
import { createServer, type TLSSocket, connect as tlsConnect } from "node:tls";
import { type Clock, systemClock } from "../ports/index.ts";
import { type AxonError, AxonFailure } from "./errors.ts";
import { expectationProblem, type PeerIdentity, verifyPeerCertificate } from "./identity.ts";
import {
  admit,
  type ByteChannel,
  type ChannelHandler,
  FramedLink,
  type LinkConfig,
  realEnvironment,
  refuseChannel,
} from "./link.ts";
import type { ConnectOptions, Credentials, Link, Listener, ListenOptions, Transport } from "./transport.ts";

export interface TlsTransportOptions {
  readonly clock?: Clock;
  readonly link?: LinkConfig;
}

class TlsChannel implements ByteChannel {
  private readonly socket: TLSSocket;
  private handler: ChannelHandler | undefined;
  private lastError: AxonError | undefined;

  constructor(socket: TLSSocket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => this.handler?.data(chunk));
    socket.on("drain", () => this.handler?.drain());
    socket.on("error", (error) => {
      this.lastError = describeSocketError(error);
    });
    socket.on("close", () => this.handler?.closed(this.lastError));
  }

  get remoteAddress(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  bind(handler: ChannelHandler): void {
    this.handler = handler;
  }

  write(chunk: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(chunk);
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  end(): void {
    this.socket.end();
    // A peer that never reads must not keep the socket forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function describeSocketError(error: Error & { code?: string }): AxonError {
  return { tag: "ConnectFailed", message: `${error.code ?? "error"}: ${error.message}` };
}

/** Checks the peer of a TLS socket whose handshake finished. */
function authenticate(
  socket: TLSSocket,
  ca: string,
): { ok: true; peer: PeerIdentity } | { ok: false; reason: string } {
  const certificate = socket.getPeerX509Certificate();
  const check = verifyPeerCertificate(certificate?.toString(), ca, Date.now());
  if (!check.ok) return check;
  if (!socket.authorized) {
    return { ok: false, reason: `certificate rejected: ${String(socket.authorizationError)}` };
  }
  return { ok: true, peer: check.identity };
}

function tlsOptions(credentials: Credentials) {
  return {
    ca: credentials.ca,
    ...(credentials.cert === "" ? {} : { cert: credentials.cert, key: credentials.key }),
    minVersion: "TLSv1.3" as const,
    // Verification is ours, after the handshake: see the note at the top of this file.
    rejectUnauthorized: false,
  };
}

export function tlsTransport(options: TlsTransportOptions = {}): Transport {
  const environment = realEnvironment(options.clock ?? systemClock);
  const linkOptions = options.link === undefined ? {} : { config: options.link };

  const open = (peer: PeerIdentity, socket: TLSSocket, hello: ListenOptions["hello"]) =>
    FramedLink.open({
      transport: "tls",
      peer,
      channel: new TlsChannel(socket),
      hello,
      environment,
      ...linkOptions,
    });

  return {
    kind: "tls",

    listen(listen: ListenOptions): Promise<Listener> {
      const server = createServer({ ...tlsOptions(listen.credentials), requestCert: true });
      const refused = (socket: TLSSocket, reason: string) =>
        listen.refused?.({ remoteAddress: `${socket.remoteAddress}:${socket.remotePort}`, reason });
      server.on("tlsClientError", (error, socket) => refused(socket, describeSocketError(error).message));
      server.on("secureConnection", (socket: TLSSocket) => {
        socket.setNoDelay(true);
        const authentication = authenticate(socket, listen.credentials.ca);
        const admission = authentication.ok
          ? admit(authentication.peer, listen.acceptRoles)
          : ({ ok: false, reason: authentication.reason } as const);
        if (!admission.ok) {
          refuseChannel(new TlsChannel(socket), "NotAuthorized", admission.reason);
          refused(socket, admission.reason);
          return;
        }
        open(admission.peer, socket, listen.hello).then(listen.accept, (error: AxonFailure) =>
          refused(socket, error.message),
        );
      });
      return new Promise((resolve, reject) => {
        server.once("error", (error) => reject(new AxonFailure(describeSocketError(error))));
        server.listen(listen.address.port, listen.address.host, () => {
          const bound = server.address();
          if (bound === null || typeof bound === "string") throw new Error("TLS server has no TCP address");
          resolve({
            address: { host: listen.address.host, port: bound.port },
            // Stops listening at once; open links are the caller's to close (server.close's
            // callback would wait for every one of them).
            close: async () => {
              server.close();
            },
          });
        });
      });
    },

    connect(connect: ConnectOptions): Promise<Link> {
      return new Promise((resolve, reject) => {
        const timeoutMs = connect.timeoutMs ?? 5000;
        const where = `${connect.address.host}:${connect.address.port}`;
        const socket = tlsConnect({
          ...tlsOptions(connect.credentials),
          host: connect.address.host,
          port: connect.address.port,
          // Identity is the certificate's URI, checked below, not the host name.
          checkServerIdentity: () => undefined,
        });
        socket.setNoDelay(true);
        let settled = false;
        const settle = (outcome: { link: Link } | { error: AxonError }) => {
          if (settled) return;
          settled = true;
          timer.cancel();
          if ("link" in outcome) return resolve(outcome.link);
          socket.destroy();
          reject(new AxonFailure(outcome.error));
        };
        const timer = environment.clock.schedule(timeoutMs, () =>
          settle({
            error: { tag: "HandshakeTimeout", message: `no handshake with ${where} within ${timeoutMs} ms` },
          }),
        );
        socket.once("error", (error) => settle({ error: describeSocketError(error) }));
        socket.once("secureConnect", () => {
          const authentication = authenticate(socket, connect.credentials.ca);
          const problem = authentication.ok
            ? expectationProblem(authentication.peer, connect.expectRole, connect.expectId)
            : `router at ${where}: ${authentication.reason}`;
          if (problem !== undefined || !authentication.ok) {
            refuseChannel(new TlsChannel(socket), "NotAuthorized", problem ?? "");
            return settle({ error: { tag: "AuthenticationFailed", message: problem ?? "" } });
          }
          open(authentication.peer, socket, connect.hello).then(
            (link) => settle({ link }),
            (error: AxonFailure) => settle({ error: error.error }),
          );
        });
      });
    },
  };
}
