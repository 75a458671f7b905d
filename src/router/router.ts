// One router process, composed: config -> data directory lock -> client listeners -> router
// links and the region's Raft groups (region.ts) -> membership -> sessions.
//
// Every request goes to its partition's leader (this router or another, over the links);
// deliveries come back from leaders and go to this router's subscribers (`table`).
//
// Shutdown (SIGTERM): stop accepting, say Goodbye(ShuttingDown) to every client so they
// reconnect elsewhere at once, give links a bounded time to flush, release the lock.
import { mkdir, open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  type Address,
  formatAddress,
  type Link,
  type Listener,
  parseAddress,
  type RefusedConnection,
  type Transport,
  type TransportKind,
  tlsTransport,
} from "../axon/index.ts";
import { SubscriptionTable } from "../delivery/index.ts";
import {
  defaultLanConfig,
  defaultWanConfig,
  type Member,
  memberId,
  type ViewEvent,
} from "../membership/index.ts";
import { Keyring, parseKey, sealOverheadBytes } from "../membership/keyring.ts";
import { MembershipService } from "../membership/service.ts";
import { listenSync } from "../membership/sync.ts";
import { systemClock, systemRandom } from "../ports/index.ts";
import { defaultRaftConfig } from "../raft/index.ts";
import { frameHeaderBytes, type Hello } from "../wire/index.ts";
import { ConfigError, type RouterConfig } from "./config.ts";
import { type FeedSubscriber, LocalDelivery } from "./local-delivery.ts";
import type { Log } from "./log.ts";
import { Region } from "./region.ts";
import { ClientSession, type SessionCounters } from "./session.ts";
import { routerSources, type StatusServer, serveStatus } from "./status.ts";

export const routerVersion = "0.1.0";

/** Room in a frame for everything but the payload: topic (255 B), headers, ids. */
const frameOverheadBytes = 64 * 1024;

export interface RouterOptions {
  readonly log: Log;
  /** The router was drained (neuron drain) and nothing counts on it any more: stop it now. */
  readonly onDrained?: () => void;
  /** Transports by name; tests may swap them. Defaults: TLS; QUIC when configured. */
  readonly transports?: { readonly tls?: Transport; readonly quic?: Transport };
}

export interface ListeningAddresses {
  readonly clients: Address;
  readonly clientsQuic?: Address;
  readonly gossip?: Address;
  readonly metrics?: Address;
  readonly links?: Address;
}

export class Router {
  readonly config: RouterConfig;
  readonly counters: SessionCounters = { published: 0, delivered: 0, refused: 0, slowConsumers: 0 };
  private readonly log: Log;
  private readonly table = new SubscriptionTable<FeedSubscriber>();
  private readonly delivery = new LocalDelivery(this.table, () => this.region!);
  private readonly sessions = new Set<ClientSession>();
  private readonly listeners: Listener[] = [];
  private lockPath: string | undefined;
  private membership: MembershipService | undefined;
  private region: Region | undefined;
  private statusServer: StatusServer | undefined;
  private stopping: Promise<void> | undefined;
  private _addresses: ListeningAddresses | undefined;

  private constructor(config: RouterConfig, log: Log) {
    this.config = config;
    this.log = log;
  }

  /** Starts a router; rejects with ConfigError (data dir, ports) or the listener's error. */
  static async start(config: RouterConfig, options: RouterOptions): Promise<Router> {
    const router = new Router(config, options.log);
    await router.lockDataDir();
    try {
      const tls = options.transports?.tls ?? tlsTransport();
      const clients = await router.listen(tls, config.listen.clients, "listen.clients");
      let clientsQuic: Address | undefined;
      if (config.listen.clientsQuic !== undefined) {
        const { quicTransport } = await import("../axon/quic.ts");
        clientsQuic = await router.listen(
          options.transports?.quic ?? quicTransport(),
          config.listen.clientsQuic,
          "listen.clients_quic",
        );
      }
      router.region = await router.startRegion(options);
      router.delivery.start();
      if (config.listen.metrics !== undefined) {
        try {
          router.statusServer = await serveStatus(config.listen.metrics, routerSources(router));
        } catch (error) {
          throw new ConfigError(
            "listen.metrics",
            `cannot listen on ${formatAddress(config.listen.metrics)}: ${(error as Error).message}`,
          );
        }
      }
      const gossip = await router.startMembership(clients, {
        ...(clientsQuic === undefined ? {} : { clients_quic: clientsQuic }),
        ...(router.region.linksAddress === undefined ? {} : { links: router.region.linksAddress }),
        ...(router.statusServer === undefined ? {} : { metrics: router.statusServer.address }),
      });
      router._addresses = {
        clients,
        ...(clientsQuic === undefined ? {} : { clientsQuic }),
        ...(gossip === undefined ? {} : { gossip }),
        ...(router.statusServer === undefined ? {} : { metrics: router.statusServer.address }),
        ...(router.region.linksAddress === undefined ? {} : { links: router.region.linksAddress }),
      };
    } catch (error) {
      await router.stop();
      throw error;
    }
    return router;
  }

  get addresses(): ListeningAddresses {
    if (this._addresses === undefined) throw new Error("router is not started");
    return this._addresses;
  }

  get clientCount(): number {
    return this.sessions.size;
  }

  /** The membership view, or only this router when gossip is off. */
  members(): readonly Member[] {
    return this.membership?.members() ?? [];
  }

  /** What GET /status answers. */
  status(): unknown {
    return {
      id: this.config.id,
      region: this.config.region,
      version: routerVersion,
      clients: this.sessions.size,
      subscriptions: this.table.size,
      counters: this.counters,
      members: this.members().map((member) => ({
        id: member.id,
        state: member.state,
        region: member.region,
        incarnation: member.incarnation,
        gossip: member.gossipAddress,
        addresses: member.addresses,
      })),
      membership: this.membership?.stats(),
      mesh: this.region?.status(),
      delivery: this.delivery.stats,
    };
  }

  /** The region's Raft groups on the data directory's store, and the links if configured. */
  private async startRegion(options: RouterOptions): Promise<Region> {
    const config = this.config;
    const linksBind = config.listen.links;
    const gossipOn = config.listen.gossip !== undefined;
    try {
      return await Region.start({
        id: config.id,
        dataDir: config.dataDir,
        founder: config.seeds.length === 0 || !gossipOn,
        ...(linksBind === undefined
          ? {}
          : {
              links: {
                transport: options.transports?.tls ?? tlsTransport(),
                listen: linksBind,
                credentials: config.credentials,
                hello: this.hello(),
              },
            }),
        addressOf: (peer) => this.linksAddressOf(peer),
        isAlive: (router) => this.isAlive(router),
        isGone: (router) => {
          const state = this.membership?.members().find((member) => member.id === router)?.state;
          return state === "dead" || state === "left";
        },
        aliveRouters: () => this.aliveRouters(),
        replicationFactor: config.streams.replicationFactor,
        // An append's entries must fit a link frame (payload limit + frameOverheadBytes).
        raft: {
          ...defaultRaftConfig,
          maxMessageBytes: Math.min(defaultRaftConfig.maxMessageBytes, config.limits.payloadMaxBytes),
        },
        topicRules: {
          persistentPrefixes: config.streams.persistentPrefixes,
          undeclared: config.streams.undeclared,
        },
        clock: systemClock,
        random: systemRandom,
        log: this.log,
        deliver: (message) => this.delivery.receive(message),
        drained: () => options.onDrained?.(),
        rejoined: () => this.delivery.reregister(),
      });
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      const field =
        linksBind !== undefined && /listen|EADDR/.test((error as Error).message)
          ? "listen.links"
          : "data_dir";
      throw new ConfigError(field, (error as Error).message);
    }
  }

  private linksAddressOf(peer: string): Address | null {
    const member = this.membership?.members().find((candidate) => candidate.id === peer);
    const text = member?.addresses.links;
    if (text === undefined) return null;
    const parsed = parseAddress(text);
    return parsed.ok ? parsed.address : null;
  }

  /** Where `router` serves clients over `transport`, as it advertises in membership. */
  private clientAddressOf(router: string, transport: TransportKind): string | null {
    const member = this.membership?.members().find((candidate) => candidate.id === router);
    if (member === undefined || !(member.state === "alive" || member.state === "suspect")) return null;
    const name = transport === "quic" ? "clients_quic" : transport === "tls" ? "clients" : undefined;
    return name === undefined ? null : (member.addresses[name] ?? null);
  }

  private isAlive(router: string): boolean {
    if (router === this.config.id) return true;
    const member = this.membership?.members().find((candidate) => candidate.id === router);
    return member !== undefined && (member.state === "alive" || member.state === "suspect");
  }

  private aliveRouters(): readonly string[] {
    if (this.membership === undefined) return [this.config.id];
    return this.membership
      .members()
      .filter((member) => member.state === "alive" || member.state === "suspect")
      .map((member) => member.id);
  }

  /** Starts gossip if configured and joins through the seeds; returns the bound gossip address. */
  /** `others`: more listeners to advertise to the other routers (QUIC clients, links, metrics). */
  private async startMembership(
    clients: Address,
    others: { readonly clients_quic?: Address; readonly links?: Address; readonly metrics?: Address },
  ): Promise<Address | undefined> {
    const bind = this.config.listen.gossip;
    const settings = this.config.gossip;
    if (bind === undefined || settings === undefined) return undefined;
    const membershipConfig = settings.profile === "wan" ? defaultWanConfig : defaultLanConfig;
    const advertiseHost = this.config.listen.advertiseHost ?? bind.host;
    try {
      this.membership = await MembershipService.start({
        config: membershipConfig,
        self: {
          id: memberId(this.config.id),
          region: this.config.region,
          addresses: {
            clients: formatAddress({ host: advertiseHost, port: clients.port }),
            ...Object.fromEntries(
              Object.entries(others).map(([name, address]) => [
                name,
                formatAddress({ host: advertiseHost, port: address.port }),
              ]),
            ),
          },
          metadata: {},
          version: 0,
        },
        bind,
        advertiseHost,
        keyring: new Keyring(settings.keys.map(parseKey)),
        sync: (bound, serve) =>
          listenSync({
            bound,
            credentials: this.config.credentials,
            serve,
            payloadMaxBytes: membershipConfig.pushPullBytesMax + sealOverheadBytes,
            exchangeTimeoutMs: membershipConfig.pushPullTimeoutMs,
            agent: `neuron-router/${routerVersion} ${this.config.id}`,
            onRefused: (from, reason) => this.log.warn("refused push-pull", { from, reason }),
          }),
        onEvent: (event: ViewEvent) => this.memberEvent(event),
      });
    } catch (error) {
      throw new ConfigError(
        "listen.gossip",
        `cannot listen on ${formatAddress(bind)}: ${(error as Error).message}`,
      );
    }
    if (this.config.seeds.length > 0) this.membership.join(this.config.seeds.map(formatAddress));
    return this.membership.address;
  }

  private memberEvent(event: ViewEvent): void {
    const { member } = event;
    const fields = {
      member: member.id,
      region: member.region,
      incarnation: member.incarnation,
      gossip: member.gossipAddress,
    };
    if (event.kind === "dead" || event.kind === "suspect") this.log.warn(`member ${event.kind}`, fields);
    else this.log.info(`member ${event.kind}`, fields);
  }

  private hello(): Hello {
    return {
      kind: "Hello",
      agent: `neuron-router/${routerVersion} ${this.config.id}`,
      frameMaxBytes: this.config.limits.payloadMaxBytes + frameOverheadBytes + frameHeaderBytes,
      payloadMaxBytes: this.config.limits.payloadMaxBytes,
    };
  }

  private async listen(transport: Transport, address: Address, field: string): Promise<Address> {
    let listener: Listener;
    try {
      listener = await transport.listen({
        address,
        credentials: this.config.credentials,
        hello: this.hello(),
        acceptRoles: ["client"],
        accept: (link) => this.accept(link),
        refused: (event: RefusedConnection) =>
          this.log.warn("refused connection", { ...event, transport: transport.kind }),
      });
    } catch (error) {
      throw new ConfigError(
        field,
        `cannot listen on ${address.host}:${address.port}: ${(error as Error).message}`,
      );
    }
    this.listeners.push(listener);
    return listener.address;
  }

  private accept(link: Link): void {
    if (this.stopping !== undefined) {
      link.close("ShuttingDown", "router is shutting down");
      return;
    }
    if (this.sessions.size >= this.config.limits.clientsMax) {
      this.log.warn("refused client: too many clients", {
        client: link.peer.id,
        limit: this.config.limits.clientsMax,
      });
      link.close("TooManyClients", `this router serves at most ${this.config.limits.clientsMax} clients`);
      return;
    }
    const session = new ClientSession(
      link,
      this.delivery,
      this.region!,
      this.config.limits,
      this.counters,
      (router, transport) => this.clientAddressOf(router, transport),
      systemClock,
    );
    this.sessions.add(session);
    this.log.info("client connected", {
      client: link.peer.id,
      from: link.remoteAddress,
      transport: link.transport,
    });
    link.start({
      frame: (frame) => session.frame(frame),
      closed: (reason) => {
        session.ended();
        this.sessions.delete(session);
        this.log.info("client disconnected", { client: link.peer.id, reason: reason.message });
      },
    });
  }

  /** Stops the router; idempotent. Clients are told to go elsewhere. */
  stop(graceMs = 2000): Promise<void> {
    this.stopping ??= this.shutdown(graceMs);
    return this.stopping;
  }

  private async shutdown(graceMs: number): Promise<void> {
    // Leave the cluster first, so the others see "left", not "dead". A failure here must not
    // keep clients from their Goodbye or the lock from being released.
    try {
      await this.membership?.leave(Math.min(graceMs, 1000));
    } catch (error) {
      this.log.error("membership did not stop cleanly", { error: (error as Error).message });
    }
    // Stop accepting (a QUIC listener's close resolves only once its links have ended: they
    // share its socket), then say Goodbye to every client before the region stops: requests
    // still in flight are then neither answered nor refused, and the clients send them again
    // through another router (a publish is stored once), so a planned stop shows no error.
    const listenersClosed = Promise.all(this.listeners.map((listener) => listener.close()));
    const links = [...this.sessions].map((session) => session.link);
    for (const link of links) link.close("ShuttingDown", `router ${this.config.id} is shutting down`);
    this.delivery.stop();
    try {
      await this.region?.stop();
      await this.statusServer?.close();
    } catch (error) {
      this.log.error("the region or status server did not stop cleanly", { error: (error as Error).message });
    }
    const deadline = Date.now() + graceMs;
    let closed = false;
    void listenersClosed.then(() => {
      closed = true;
    });
    while (!(closed && links.every((link) => link.bufferedBytes === 0)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    if (this.lockPath !== undefined) await rm(this.lockPath, { force: true });
  }

  /** One router per data directory: a LOCK file holding the pid; a dead holder's lock is taken over. */
  private async lockDataDir(): Promise<void> {
    try {
      await mkdir(this.config.dataDir, { recursive: true });
    } catch (error) {
      throw new ConfigError(
        "data_dir",
        `cannot create ${this.config.dataDir}: ${(error as NodeJS.ErrnoException).code}`,
      );
    }
    const path = join(this.config.dataDir, "LOCK");
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await open(path, "wx");
        await handle.writeFile(`${process.pid}\n`);
        await handle.close();
        this.lockPath = path;
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
          throw new ConfigError("data_dir", `cannot write ${path}: ${(error as NodeJS.ErrnoException).code}`);
        }
        const holder = Number((await readFile(path, "utf8").catch(() => "")).trim());
        if (Number.isInteger(holder) && holder > 0 && processAlive(holder)) {
          throw new ConfigError(
            "data_dir",
            `${this.config.dataDir} is in use by another router (pid ${holder})`,
          );
        }
        await rm(path, { force: true });
      }
    }
    throw new ConfigError("data_dir", `cannot lock ${this.config.dataDir}`);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
