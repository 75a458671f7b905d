// Push-pull over a reliable, mutually authenticated link (SWIM's anti-entropy, as memberlist
// does it over TCP): a TLS listener on the gossip port's TCP twin, one short connection per
// exchange. The dialer sends one Sync frame, the listener answers with one SyncReply (or a
// Refusal) and the dialer closes. Only router certificates are accepted, so a client
// certificate can never read or feed the member list.
import {
  type Address,
  AxonFailure,
  type Credentials,
  type Link,
  parseAddress,
  type Transport,
  tlsTransport,
} from "../axon/index.ts";
import { type Clock, systemClock } from "../ports/index.ts";
import { frameHeaderBytes, type Hello } from "../wire/index.ts";
import type { SyncChannel, SyncServer } from "./service.ts";

export interface SyncOptions {
  readonly bound: Address;
  readonly credentials: Credentials;
  readonly serve: SyncServer;
  /** How long an accepted connection may take to send its one request, in ms (pushPullTimeoutMs). */
  readonly exchangeTimeoutMs: number;
  /** Largest push-pull payload either way (MembershipConfig.pushPullBytesMax). */
  readonly payloadMaxBytes: number;
  readonly transport?: Transport;
  /** Times each exchange out; default the system clock. */
  readonly clock?: Clock;
  readonly agent: string;
  /** A request that could not be served, for the log. */
  readonly onRefused?: (from: string, reason: string) => void;
}

const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

export async function listenSync(options: SyncOptions): Promise<SyncChannel> {
  const transport = options.transport ?? tlsTransport();
  const clock = options.clock ?? systemClock;
  const hello: Hello = {
    kind: "Hello",
    agent: options.agent,
    frameMaxBytes: options.payloadMaxBytes + 1024 + frameHeaderBytes,
    payloadMaxBytes: options.payloadMaxBytes,
  };
  const open = new Set<Link>();
  const listener = await transport.listen({
    address: options.bound,
    credentials: options.credentials,
    hello,
    acceptRoles: ["router"],
    accept: (link) => {
      open.add(link);
      // One exchange per connection, within the push-pull deadline: a silent or crashed
      // dialer cannot hold a socket.
      const deadline = clock.schedule(options.exchangeTimeoutMs, () =>
        link.close("ProtocolViolation", `no push-pull within ${options.exchangeTimeoutMs} ms`),
      );
      link.start({
        frame: (frame) => {
          if (frame.kind !== "Sync") {
            link.close("ProtocolViolation", `expected Sync, got ${frame.kind}`);
            return;
          }
          const answer = options.serve(link.remoteAddress, frame.payload);
          if (answer.ok) {
            link.send({ kind: "SyncReply", requestId: frame.requestId, payload: asBuffer(answer.reply) });
          } else {
            options.onRefused?.(link.remoteAddress, answer.reason);
            link.send({
              kind: "Refusal",
              requestId: frame.requestId,
              code: "Internal",
              message: answer.reason,
            });
          }
          link.close("ShuttingDown", "push-pull answered");
        },
        closed: () => {
          deadline.cancel();
          open.delete(link);
        },
      });
    },
    refused: (event) => options.onRefused?.(event.remoteAddress, event.reason),
  });

  return {
    async request(to: string, bytes: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
      const parsed = parseAddress(to);
      if (!parsed.ok) throw new Error(parsed.reason);
      const link = await transport.connect({
        address: parsed.address,
        credentials: options.credentials,
        hello,
        expectRole: "router",
        timeoutMs,
      });
      open.add(link);
      return new Promise<Uint8Array>((resolve, reject) => {
        const timer = clock.schedule(timeoutMs, () =>
          finish(new Error(`push-pull with ${to} took over ${timeoutMs} ms`)),
        );
        let settled = false;
        const finish = (outcome: Uint8Array | Error) => {
          // Closing the link calls `closed` again, synchronously: settle only once.
          if (settled) return;
          settled = true;
          timer.cancel();
          open.delete(link);
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome);
          link.close("ShuttingDown", "push-pull done");
        };
        link.start({
          frame: (frame) => {
            if (frame.kind === "SyncReply") finish(Buffer.from(frame.payload));
            else if (frame.kind === "Refusal") finish(new Error(`${to} refused push-pull: ${frame.message}`));
            else finish(new Error(`${to} answered push-pull with ${frame.kind}`));
          },
          closed: (reason) => finish(new AxonFailure(reason)),
        });
        if (!link.send({ kind: "Sync", requestId: 1, payload: asBuffer(bytes) }).ok) {
          finish(new Error(`push-pull request of ${bytes.length} bytes is over the limit`));
        }
      });
    },

    async close(): Promise<void> {
      await listener.close();
      for (const link of open) link.close("ShuttingDown", "membership stopping");
      open.clear();
    },
  };
}
