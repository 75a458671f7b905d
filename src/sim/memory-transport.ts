// The in-memory Transport (kind "memory"): links over SimNetwork pipes, on virtual time. The
// same FramedLink as TLS and QUIC runs on top (handshake, batching, keepalive, Goodbye), with
// a LinkEnvironment whose clock is the network's SimClock and whose `defer` is a 0 ms timer
// on it, so a simulated cluster's links are as deterministic as the rest of it.
//
// Authentication is real and worded as tls.ts words it: the dial carries the dialer's
// certificate PEM, the listener answers with its own (as TLS's handshake does), and each side
// checks the other with `verifyPeerCertificate` at the simulated wall time; the listener then
// applies `admit` for roles and the dialer `expectationProblem`. As in tls.ts, a refusal is a
// Goodbye(NotAuthorized, reason) as the only frame on the channel (`refuseChannel`), so the
// dialer of a refused client sees the pipe open first, then the refusal: the same order as a
// TLS 1.3 client.
// Traps: the private key is never exercised (no proof of possession); the simulation checks
// what decides admission, not cryptography. `connect` and `listen` return promises: code that
// runs the SimClock by hand must let microtasks run between timers (drive.ts) or a link's
// `accept` callback (a `.then`) will not have happened yet.

import type { ConnectOptions, Link, Listener, ListenOptions, Transport } from "../axon/index.ts";
import {
  type AxonError,
  AxonFailure,
  admit,
  type ByteChannel,
  type ChannelHandler,
  expectationProblem,
  FramedLink,
  type LinkConfig,
  type LinkEnvironment,
  type PeerIdentity,
  refuseChannel,
  verifyPeerCertificate,
} from "../axon/index.ts";
import type { Clock } from "../ports/index.ts";
import type { Hello } from "../wire/index.ts";
import type { SimNetwork } from "./network.ts";
import type { PipeEnd, PipeError, PipeHandler } from "./pipe.ts";
import { formatAddress, parseAddress } from "./reachability.ts";

export interface MemoryTransportOptions {
  readonly network: SimNetwork;
  /** The host this endpoint dials from, and binds to for "0.0.0.0"; default "127.0.0.1". */
  readonly host?: string;
  readonly link?: LinkConfig;
}

/** Links on a simulated clock: `defer` is a 0 ms timer, so it runs in (time, order) sequence. */
export function simEnvironment(clock: Clock): LinkEnvironment {
  return {
    clock,
    defer: (callback) => {
      clock.schedule(0, callback);
    },
  };
}

function axonError(error: PipeError): AxonError {
  return { tag: "ConnectFailed", message: `${error.code}: ${error.message}` };
}

/** A pipe end as a ByteChannel; also the pipe's handler, forwarding to whoever is bound. */
class MemoryChannel implements ByteChannel, PipeHandler {
  private handler: ChannelHandler | undefined;
  private pipeEnd: PipeEnd | undefined;
  /** The dialer's hook for the listener's answer. */
  onOpened: ((answer: string) => void) | undefined;

  attach(pipeEnd: PipeEnd): void {
    this.pipeEnd = pipeEnd;
  }

  get remoteAddress(): string {
    return this.pipeEnd?.remoteAddress ?? "unconnected";
  }

  bind(handler: ChannelHandler): void {
    this.handler = handler;
  }

  write(chunk: Buffer): void {
    this.pipeEnd?.write(chunk);
  }

  get bufferedBytes(): number {
    return this.pipeEnd?.bufferedBytes ?? 0;
  }

  end(): void {
    this.pipeEnd?.end();
  }

  destroy(): void {
    this.pipeEnd?.destroy();
  }

  opened(answer: string): void {
    this.onOpened?.(answer);
  }

  data(chunk: Buffer): void {
    this.handler?.data(chunk);
  }

  drain(): void {
    this.handler?.drain();
  }

  closed(error: PipeError | undefined): void {
    this.handler?.closed(error === undefined ? undefined : axonError(error));
  }
}

const wildcardHosts = new Set(["0.0.0.0", "::", ""]);

export function memoryTransport(options: MemoryTransportOptions): Transport {
  const network = options.network;
  const clock = network.clock;
  const host = options.host ?? "127.0.0.1";
  const environment = simEnvironment(clock);
  const linkOptions = options.link === undefined ? {} : { config: options.link };

  const open = (peer: PeerIdentity, channel: ByteChannel, hello: Hello) =>
    FramedLink.open({ transport: "memory", peer, channel, hello, environment, ...linkOptions });

  return {
    kind: "memory",

    listen(listen: ListenOptions): Promise<Listener> {
      const bindHost = wildcardHosts.has(listen.address.host) ? host : listen.address.host;
      let bound: ReturnType<SimNetwork["listen"]>;
      try {
        bound = network.listen(formatAddress(bindHost, listen.address.port), {
          answer: listen.credentials.cert,
          accept: (end, offer) => {
            const channel = new MemoryChannel();
            channel.attach(end);
            end.bind(channel);
            const refused = (reason: string) =>
              listen.refused?.({ remoteAddress: end.remoteAddress, reason });
            const check = verifyPeerCertificate(offer, listen.credentials.ca, clock.wallMs());
            const admission = check.ok
              ? admit(check.identity, listen.acceptRoles)
              : ({ ok: false, reason: check.reason } as const);
            if (!admission.ok) {
              refuseChannel(channel, "NotAuthorized", admission.reason);
              refused(admission.reason);
              return;
            }
            open(admission.peer, channel, listen.hello).then(listen.accept, (error: AxonFailure) =>
              refused(error.message),
            );
          },
        });
      } catch (error) {
        return Promise.reject(new AxonFailure({ tag: "ConnectFailed", message: (error as Error).message }));
      }
      const port = parseAddress(bound.address)!.port;
      return Promise.resolve({
        address: { host: listen.address.host, port },
        close: () => {
          bound.close();
          return Promise.resolve();
        },
      });
    },

    connect(connect: ConnectOptions): Promise<Link> {
      return new Promise((resolve, reject) => {
        const timeoutMs = connect.timeoutMs ?? 5000;
        const where = formatAddress(connect.address.host, connect.address.port);
        const channel = new MemoryChannel();
        let settled = false;
        const settle = (outcome: { link: Link } | { error: AxonError }, destroy = true) => {
          if (settled) return;
          settled = true;
          timer.cancel();
          if ("link" in outcome) return resolve(outcome.link);
          if (destroy) channel.destroy();
          reject(new AxonFailure(outcome.error));
        };
        const timer = clock.schedule(timeoutMs, () =>
          settle({
            error: { tag: "HandshakeTimeout", message: `no handshake with ${where} within ${timeoutMs} ms` },
          }),
        );
        channel.bind({
          data() {},
          drain() {},
          closed: (error) =>
            settle({ error: error ?? { tag: "ConnectFailed", message: `${where} closed the connection` } }),
        });
        channel.onOpened = (answer) => {
          channel.onOpened = undefined;
          const check = verifyPeerCertificate(answer, connect.credentials.ca, clock.wallMs());
          const problem = check.ok
            ? expectationProblem(check.identity, connect.expectRole, connect.expectId)
            : `router at ${where}: ${check.reason}`;
          if (problem !== undefined || !check.ok) {
            // The Goodbye is on its way; `end` (inside refuseChannel) lets it arrive.
            refuseChannel(channel, "NotAuthorized", problem ?? "");
            return settle({ error: { tag: "AuthenticationFailed", message: problem ?? "" } }, false);
          }
          open(check.identity, channel, connect.hello).then(
            (link) => settle({ link }),
            (error: AxonFailure) => settle({ error: error.error }),
          );
        };
        try {
          channel.attach(network.connect(host, where, connect.credentials.cert, channel));
        } catch (error) {
          settle({ error: { tag: "ConnectFailed", message: (error as Error).message } }, false);
        }
      });
    },
  };
}
