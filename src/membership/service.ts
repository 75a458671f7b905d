// MembershipService: the thin shell around MembershipCore (STYLE.md). It owns the UDP socket
// (node:dgram, IPv4 or IPv6, a 4 MB receive buffer: the 208 KB default lost packets here under
// load), seals and opens every datagram with the cluster keyring, runs the core's one timer
// (`nextDeadlineMs`), starts push-pull exchanges over a reliable channel (sync.ts), and hands
// view changes to the router. Everything it does is: feed an input, drain the output.
//
// Sends are paced: the output is queued and written at most `sendBurstMax` datagrams per
// event-loop turn, so a gossip burst to many members does not overflow the kernel's send
// queue; the queue is bounded (`sendQueueMax`) and overflow is counted, like UDP loss.
//
// Traps: a datagram that fails to open (wrong key, forged, truncated) is dropped and counted
// here, before the core sees it. UDP `send` can fail synchronously or asynchronously (EPERM
// under an output firewall, EHOSTUNREACH): counted, never thrown.
import { createSocket, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";
import { type Address, formatAddress, parseAddress } from "../axon/index.ts";
import { type Clock, type Random, systemClock, systemRandom, type Timer } from "../ports/index.ts";
import type { MembershipConfig } from "./config.ts";
import { MembershipCore, type MembershipStats } from "./core.ts";
import type { Keyring } from "./keyring.ts";
import type { Member, MemberInfo, ViewEvent } from "./types.ts";

/** The reliable channel push-pull runs over (sync.ts implements it with TLS links). */
export interface SyncChannel {
  /** Sends one push-pull request and resolves with the reply, or rejects. */
  request(to: string, bytes: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /** Stops serving requests and closes open exchanges. */
  close(): Promise<void>;
}

/** Serves push-pull requests from other routers: the core's answer, or an error to send back. */
export type SyncServer = (
  from: string,
  bytes: Uint8Array,
) => { ok: true; reply: Uint8Array } | { ok: false; reason: string };

export interface ShellStats {
  readonly datagramsIn: number;
  readonly datagramsOut: number;
  readonly openFailed: number;
  readonly sendFailed: number;
  readonly sendQueueDropped: number;
}

export interface MembershipServiceOptions {
  readonly config: MembershipConfig;
  /** This router's info; `gossipAddress` is filled in from the bound socket if its port is 0. */
  readonly self: Omit<MemberInfo, "gossipAddress">;
  readonly bind: Address;
  /** The host others reach this router at, if `bind.host` is a wildcard. */
  readonly advertiseHost?: string;
  readonly keyring: Keyring;
  /** Makes the push-pull channel once the gossip port is known; `serve` answers requests. */
  readonly sync: (bound: Address, serve: SyncServer) => Promise<SyncChannel>;
  readonly onEvent: (event: ViewEvent) => void;
  readonly clock?: Clock;
  readonly random?: Random;
  /** Datagrams written per event-loop turn. Default 64. */
  readonly sendBurstMax?: number;
  /** Datagrams waiting to be written, at most. Default 10,000. */
  readonly sendQueueMax?: number;
}

const receiveBufferBytes = 4 * 1024 * 1024;

export class MembershipService {
  readonly core: MembershipCore;
  readonly address: Address;
  private readonly socket: Socket;
  private readonly clock: Clock;
  private readonly options: MembershipServiceOptions;
  private channel: SyncChannel | undefined;
  private timer: Timer | undefined;
  private readonly sendQueue: { to: string; bytes: Uint8Array }[] = [];
  private sending = false;
  private stopped = false;
  private readonly counters = {
    datagramsIn: 0,
    datagramsOut: 0,
    openFailed: 0,
    sendFailed: 0,
    sendQueueDropped: 0,
  };

  private constructor(
    options: MembershipServiceOptions,
    socket: Socket,
    address: Address,
    clock: Clock,
    random: Random,
  ) {
    this.options = options;
    this.socket = socket;
    this.address = address;
    this.clock = clock;
    this.core = new MembershipCore({
      config: options.config,
      self: {
        ...options.self,
        gossipAddress: formatAddress({ host: options.advertiseHost ?? address.host, port: address.port }),
      } as MemberInfo,
      random,
      nowMs: clock.nowMs(),
    });
  }

  /**
   * Binds the UDP socket and the push-pull channel on the same port number; rejects if either
   * cannot bind. With port 0, a UDP port whose TCP twin is taken is given up and another tried.
   */
  static async start(options: MembershipServiceOptions): Promise<MembershipService> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await MembershipService.startOnce(options);
      } catch (error) {
        const taken = (error as Error).message.includes("EADDRINUSE");
        if (!(taken && options.bind.port === 0 && attempt < 10)) throw error;
      }
    }
  }

  private static async startOnce(options: MembershipServiceOptions): Promise<MembershipService> {
    const socket = createSocket({
      type: isIPv6(options.bind.host) ? "udp6" : "udp4",
      recvBufferSize: receiveBufferBytes,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(options.bind.port, options.bind.host, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    const bound = socket.address();
    const service = new MembershipService(
      options,
      socket,
      { host: options.bind.host, port: bound.port },
      options.clock ?? systemClock,
      options.random ?? systemRandom,
    );
    try {
      service.channel = await options.sync(service.address, (from, bytes) => service.serveSync(from, bytes));
    } catch (error) {
      socket.close();
      throw error;
    }
    socket.on("message", (datagram, remote) => service.receive(datagram, remote.address, remote.port));
    socket.on("error", () => {
      service.counters.sendFailed += 1;
    });
    service.drain();
    return service;
  }

  members(): Member[] {
    return this.core.members();
  }

  stats(): MembershipStats & ShellStats {
    return { ...this.core.stats(), ...this.counters };
  }

  /** Joins through seeds ("host:port" of their gossip sockets). */
  join(seeds: readonly string[]): void {
    const result = this.core.join(seeds, this.clock.nowMs());
    if (!result.ok) throw new Error(result.error.message);
    this.drain();
  }

  /** Announces a graceful leave and waits (at most `timeoutMs`) for it to spread, then stops. */
  async leave(timeoutMs: number): Promise<void> {
    if (this.stopped) return;
    this.core.leave(this.clock.nowMs());
    this.drain();
    const deadline = this.clock.nowMs() + timeoutMs;
    while (!this.core.leaveComplete() && this.clock.nowMs() < deadline) {
      await new Promise<void>((resolve) => this.clock.schedule(10, resolve));
    }
    await this.stop();
  }

  /** Stops at once: no goodbye (what a crash looks like to the others). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.cancel();
    await this.channel?.close();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  private receive(datagram: Buffer, host: string, port: number): void {
    if (this.stopped) return;
    this.counters.datagramsIn += 1;
    const opened = this.options.keyring.open(datagram);
    if (!opened.ok) {
      this.counters.openFailed += 1;
      return;
    }
    const from = formatAddress({ host, port });
    this.core.receivePacket(from, opened.plaintext, this.clock.nowMs());
    this.drain();
  }

  /** Push-pull state is sealed with the keyring too: a router without the key cannot join. */
  private serveSync(from: string, sealed: Uint8Array): ReturnType<SyncServer> {
    if (this.stopped) return { ok: false, reason: "membership is stopping" };
    const opened = this.options.keyring.open(sealed);
    if (!opened.ok) {
      this.counters.openFailed += 1;
      return {
        ok: false,
        reason: `push-pull state does not open with this cluster's gossip keys (${opened.reason})`,
      };
    }
    const answer = this.core.receivePushPull(from, opened.plaintext, this.clock.nowMs());
    this.drain();
    return answer.ok
      ? { ok: true, reply: this.options.keyring.seal(answer.reply) }
      : { ok: false, reason: answer.error.message };
  }

  /** Drains the core's output and re-arms the timer. Called after every input. */
  private drain(): void {
    if (this.stopped) return;
    const output = this.core.takeOutput();
    for (const packet of output.packets) {
      if (this.sendQueue.length >= (this.options.sendQueueMax ?? 10_000)) this.counters.sendQueueDropped += 1;
      else this.sendQueue.push(packet);
    }
    if (this.sendQueue.length > 0 && !this.sending) {
      this.sending = true;
      setImmediate(this.sendBurst);
    }
    for (const request of output.pushPulls) this.startSync(request.to, request.bytes);
    for (const event of output.events) this.options.onEvent(event);
    this.timer?.cancel();
    this.timer = undefined;
    // Infinity: nothing scheduled (e.g. after leaving); the next input re-arms the timer.
    const deadlineMs = this.core.nextDeadlineMs();
    if (Number.isFinite(deadlineMs)) {
      this.timer = this.clock.schedule(Math.max(0, deadlineMs - this.clock.nowMs()), this.tick);
    }
  }

  private readonly tick = () => {
    if (this.stopped) return;
    this.core.tick(this.clock.nowMs());
    this.drain();
  };

  private readonly sendBurst = () => {
    this.sending = false;
    if (this.stopped) return;
    const burst = this.sendQueue.splice(0, this.options.sendBurstMax ?? 64);
    for (const { to, bytes } of burst) {
      const parsed = parseAddress(to);
      if (!parsed.ok) {
        this.counters.sendFailed += 1;
        continue;
      }
      const target = parsed.address;
      try {
        this.socket.send(this.options.keyring.seal(bytes), target.port, target.host, (error) => {
          if (error) this.counters.sendFailed += 1;
        });
        this.counters.datagramsOut += 1;
      } catch {
        this.counters.sendFailed += 1;
      }
    }
    if (this.sendQueue.length > 0) {
      this.sending = true;
      setImmediate(this.sendBurst);
    }
  };

  private startSync(to: string, bytes: Uint8Array): void {
    const channel = this.channel;
    if (channel === undefined) return;
    channel.request(to, this.options.keyring.seal(bytes), this.options.config.pushPullTimeoutMs).then(
      (sealed) => {
        if (this.stopped) return;
        const opened = this.options.keyring.open(sealed);
        if (opened.ok) this.core.receivePushPullReply(to, opened.plaintext, this.clock.nowMs());
        else {
          this.counters.openFailed += 1;
          this.core.pushPullFailed(to, this.clock.nowMs());
        }
        this.drain();
      },
      () => {
        if (this.stopped) return;
        this.core.pushPullFailed(to, this.clock.nowMs());
        this.drain();
      },
    );
  }
}
