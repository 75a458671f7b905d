// Router configuration: a TOML file (DESIGN.md "Interfaces people touch"). Identity, region,
// listen addresses, seeds, certificates and the data directory must be given; everything
// else has the default documented in `defaultLimits`. Loading either returns a complete,
// checked config or one error naming the field: a router never starts half-configured.
// Unknown keys are errors too (a typo such as `payload_max_byte` must not be ignored).
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import {
  type Address,
  type Credentials,
  checkIdentityId,
  describePeer,
  parseAddress,
  verifyPeerCertificate,
} from "../axon/index.ts";
import { parseKey } from "../membership/keyring.ts";

export interface RouterLimits {
  /** Largest message payload a client may publish, in bytes. Default 1 MiB (as NATS). Max 64 MiB. */
  readonly payloadMaxBytes: number;
  /** Subscriptions one client connection may hold. Default 10,000. */
  readonly subscriptionsPerClientMax: number;
  /** Client connections one router accepts. Default 10,000. */
  readonly clientsMax: number;
  /**
   * Bytes queued towards one client before it is cut off as a slow consumer (Goodbye
   * SlowConsumer), so one stuck subscriber cannot make the router grow without bound.
   * Default 64 MiB.
   */
  readonly slowConsumerBytes: number;
}

export const defaultLimits: RouterLimits = {
  payloadMaxBytes: 1024 * 1024,
  subscriptionsPerClientMax: 10_000,
  clientsMax: 10_000,
  slowConsumerBytes: 64 * 1024 * 1024,
};

export interface RouterConfig {
  /** Router id; must match the identity in the router's certificate. */
  readonly id: string;
  /** Region name, e.g. "eu-west". */
  readonly region: string;
  /** Directory for the router's data; created if missing; one router per directory. Relative paths in the file are relative to the file. */
  readonly dataDir: string;
  /** Other routers of the cluster ("host:port" of their link listeners); may be empty. */
  readonly seeds: readonly Address[];
  readonly listen: {
    /** Client connections over TLS. */
    readonly clients: Address;
    /** Client connections over QUIC (optional). */
    readonly clientsQuic?: Address;
    /**
     * Membership gossip: UDP, plus push-pull over TLS on the same TCP port number. Other
     * routers' `seeds` name this address. Without it the router runs alone.
     */
    readonly gossip?: Address;
    /** HTTP: GET /status (JSON: identity, counters, members). */
    readonly metrics?: Address;
    /** Router links: reserved for the region mesh; nothing listens on it yet. */
    readonly links?: Address;
    /**
     * The host other routers and clients should use to reach this one, when the listen
     * addresses bind a wildcard (0.0.0.0 or ::). Default: the gossip bind host.
     */
    readonly advertiseHost?: string;
  };
  /** Gossip settings; present whenever `listen.gossip` is. */
  readonly gossip?: {
    /** Cluster keys (32 bytes, base64); the first seals, all open (rotation: keyring.ts). */
    readonly keys: readonly string[];
    /** Timer profile: "lan" within a region (default) or "wan". */
    readonly profile: "lan" | "wan";
  };
  readonly tls: { readonly caPath: string; readonly certPath: string; readonly keyPath: string };
  readonly credentials: Credentials;
  readonly limits: RouterLimits;
  readonly streams: StreamSettings;
}

/** `[streams]`: how partitions are replicated and how undeclared topics are treated. */
export interface StreamSettings {
  /** Replicas of each partition: 1..7, default 3 (fewer while the cluster has fewer routers). */
  readonly replicationFactor: number;
  /** Undeclared topics starting with one of these are persistent (stored, replicated). */
  readonly persistentPrefixes: readonly string[];
  /** Other undeclared topics: "ephemeral" (default) or "refuse" (UnknownTopic until declared). */
  readonly undeclared: "ephemeral" | "refuse";
}

export class ConfigError extends Error {
  readonly field: string;

  constructor(field: string, message: string) {
    super(field === "" ? message : `${field}: ${message}`);
    this.name = "ConfigError";
    this.field = field;
  }
}

type Table = Record<string, unknown>;

const isWildcard = (host: string) => host === "0.0.0.0" || host === "::";

const isTable = (value: unknown): value is Table =>
  typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);

function describe(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (isTable(value)) return "a table";
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** Reads one table, refusing keys it does not know. */
class TableReader {
  private readonly values: Table;
  private readonly prefix: string;
  private readonly seen = new Set<string>();

  constructor(table: Table, prefix: string) {
    this.values = table;
    this.prefix = prefix;
  }

  field(key: string): string {
    return this.prefix === "" ? key : `${this.prefix}.${key}`;
  }

  private take(key: string): unknown {
    this.seen.add(key);
    return this.values[key];
  }

  string(key: string, required: true): string;
  string(key: string, required: false): string | undefined;
  string(key: string, required: boolean): string | undefined {
    const value = this.take(key);
    if (value === undefined) {
      if (required) throw new ConfigError(this.field(key), "is required");
      return undefined;
    }
    if (typeof value !== "string" || value.length === 0) {
      throw new ConfigError(this.field(key), `expected a non-empty string, got ${describe(value)}`);
    }
    return value;
  }

  address(key: string, required: true): Address;
  address(key: string, required: false): Address | undefined;
  address(key: string, required: boolean): Address | undefined {
    const text = required ? this.string(key, true) : this.string(key, false);
    if (text === undefined) return undefined;
    const parsed = parseAddress(text);
    if (!parsed.ok) throw new ConfigError(this.field(key), parsed.reason);
    return parsed.address;
  }

  integer(key: string, fallback: number, min: number, max: number): number {
    const value = this.take(key);
    if (value === undefined) return fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      throw new ConfigError(
        this.field(key),
        `expected an integer from ${min} to ${max}, got ${describe(value)}`,
      );
    }
    return value;
  }

  section(key: string, required: boolean): TableReader | undefined {
    const value = this.take(key);
    if (value === undefined) {
      if (required) throw new ConfigError(this.field(key), "section is required");
      return undefined;
    }
    if (!isTable(value))
      throw new ConfigError(
        this.field(key),
        `expected a table ([${this.field(key)}]), got ${describe(value)}`,
      );
    return new TableReader(value, this.field(key));
  }

  array(key: string, required = true): unknown[] {
    const value = this.take(key);
    if (value === undefined && !required) return [];
    if (!Array.isArray(value)) {
      throw new ConfigError(
        this.field(key),
        value === undefined ? "is required (use [] for none)" : `expected an array, got ${describe(value)}`,
      );
    }
    return value;
  }

  /** Fails on the first key that was never read. */
  done(): void {
    for (const key of Object.keys(this.values)) {
      if (!this.seen.has(key)) throw new ConfigError(this.field(key), "unknown key");
    }
  }
}

/** Checks a parsed TOML document (no file access). */
export function checkConfigDocument(document: Table): Omit<RouterConfig, "credentials"> {
  const root = new TableReader(document, "");
  const id = root.string("id", true);
  const idProblem = checkIdentityId(id);
  if (idProblem !== undefined) throw new ConfigError("id", idProblem);
  const region = root.string("region", true);
  if (checkIdentityId(region) !== undefined)
    throw new ConfigError(
      "region",
      `region ${JSON.stringify(region)} must be 1-64 letters, digits, ".", "_" or "-"`,
    );
  const dataDir = root.string("data_dir", true);
  const seeds = root.array("seeds").map((seed, index) => {
    const field = `seeds[${index}]`;
    if (typeof seed !== "string") throw new ConfigError(field, `expected "host:port", got ${describe(seed)}`);
    const parsed = parseAddress(seed);
    if (!parsed.ok) throw new ConfigError(field, parsed.reason);
    return parsed.address;
  });

  const listenTable = root.section("listen", true)!;
  const clients = listenTable.address("clients", true);
  const clientsQuic = listenTable.address("clients_quic", false);
  const links = listenTable.address("links", false);
  const gossip = listenTable.address("gossip", false);
  const metrics = listenTable.address("metrics", false);
  const advertiseHost = listenTable.string("advertise_host", false);
  listenTable.done();
  if (gossip !== undefined && isWildcard(gossip.host) && advertiseHost === undefined) {
    throw new ConfigError(
      "listen.advertise_host",
      `is required when listen.gossip binds ${gossip.host}: other routers need an address to reach this one`,
    );
  }

  const gossipTable = root.section("gossip", false);
  let gossipSettings: RouterConfig["gossip"];
  if (gossipTable !== undefined) {
    const keys = gossipTable.array("keys").map((key, index) => {
      const field = gossipTable.field(`keys[${index}]`);
      if (typeof key !== "string")
        throw new ConfigError(field, `expected a base64 key, got ${describe(key)}`);
      try {
        parseKey(key);
      } catch (error) {
        throw new ConfigError(field, (error as Error).message);
      }
      return key;
    });
    if (keys.length === 0)
      throw new ConfigError(
        gossipTable.field("keys"),
        "needs at least one key (make one with `neuron keygen`)",
      );
    const profile = gossipTable.string("profile", false) ?? "lan";
    if (profile !== "lan" && profile !== "wan") {
      throw new ConfigError(
        gossipTable.field("profile"),
        `expected "lan" or "wan", got ${JSON.stringify(profile)}`,
      );
    }
    gossipTable.done();
    gossipSettings = { keys, profile };
  }
  if (gossip !== undefined && gossipSettings === undefined) {
    throw new ConfigError(
      "gossip",
      "section with `keys` is required when listen.gossip is set (gossip is encrypted)",
    );
  }

  const tlsTable = root.section("tls", true)!;
  const tls = {
    caPath: tlsTable.string("ca", true),
    certPath: tlsTable.string("cert", true),
    keyPath: tlsTable.string("key", true),
  };
  tlsTable.done();

  const limitsTable = root.section("limits", false);
  const limits: RouterLimits =
    limitsTable === undefined
      ? defaultLimits
      : {
          payloadMaxBytes: limitsTable.integer(
            "payload_max_bytes",
            defaultLimits.payloadMaxBytes,
            1,
            64 * 1024 * 1024,
          ),
          subscriptionsPerClientMax: limitsTable.integer(
            "subscriptions_per_client_max",
            defaultLimits.subscriptionsPerClientMax,
            1,
            1_000_000,
          ),
          clientsMax: limitsTable.integer("clients_max", defaultLimits.clientsMax, 1, 1_000_000),
          slowConsumerBytes: limitsTable.integer(
            "slow_consumer_bytes",
            defaultLimits.slowConsumerBytes,
            64 * 1024,
            2 ** 40,
          ),
        };
  limitsTable?.done();

  const streamsTable = root.section("streams", false);
  const prefixes = (streamsTable?.array("persistent_prefixes", false) ?? []).map((prefix, index) => {
    if (typeof prefix !== "string" || prefix.length === 0 || Buffer.byteLength(prefix) > 255) {
      throw new ConfigError(
        `streams.persistent_prefixes[${index}]`,
        `expected a non-empty string of at most 255 bytes, got ${describe(prefix)}`,
      );
    }
    return prefix;
  });
  const undeclared = streamsTable?.string("undeclared", false) ?? "ephemeral";
  if (undeclared !== "ephemeral" && undeclared !== "refuse") {
    throw new ConfigError(
      "streams.undeclared",
      `expected "ephemeral" or "refuse", got ${JSON.stringify(undeclared)}`,
    );
  }
  const streams: StreamSettings = {
    replicationFactor: streamsTable?.integer("replication_factor", 3, 1, 7) ?? 3,
    persistentPrefixes: prefixes,
    undeclared,
  };
  streamsTable?.done();
  root.done();

  return {
    id,
    region,
    dataDir,
    seeds,
    listen: {
      clients,
      ...(clientsQuic === undefined ? {} : { clientsQuic }),
      ...(links === undefined ? {} : { links }),
      ...(gossip === undefined ? {} : { gossip }),
      ...(metrics === undefined ? {} : { metrics }),
      ...(advertiseHost === undefined ? {} : { advertiseHost }),
    },
    ...(gossipSettings === undefined ? {} : { gossip: gossipSettings }),
    tls,
    limits,
    streams,
  };
}

async function readPem(field: string, path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(
      field,
      `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

/** Reads the certificate files and checks they fit together and name this router. */
export async function loadCredentials(
  config: Omit<RouterConfig, "credentials">,
  wallMs = Date.now(),
): Promise<Credentials> {
  const ca = await readPem("tls.ca", config.tls.caPath);
  const cert = await readPem("tls.cert", config.tls.certPath);
  const key = await readPem("tls.key", config.tls.keyPath);
  try {
    new X509Certificate(ca);
  } catch {
    throw new ConfigError("tls.ca", `${config.tls.caPath} is not a PEM certificate`);
  }
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch {
    throw new ConfigError("tls.cert", `${config.tls.certPath} is not a PEM certificate`);
  }
  const check = verifyPeerCertificate(cert, ca, wallMs);
  if (!check.ok) throw new ConfigError("tls.cert", `${config.tls.certPath}: ${check.reason}`);
  if (check.identity.role !== "router" || check.identity.id !== config.id) {
    throw new ConfigError(
      "tls.cert",
      `${config.tls.certPath} is for ${describePeer(check.identity)}, but this router is router ${config.id}`,
    );
  }
  let matches = false;
  try {
    matches = certificate.checkPrivateKey(createPrivateKey(key));
  } catch {
    throw new ConfigError("tls.key", `${config.tls.keyPath} is not a PEM private key`);
  }
  if (!matches)
    throw new ConfigError("tls.key", `${config.tls.keyPath} is not the key of ${config.tls.certPath}`);
  return { ca, cert, key };
}

/** Loads and checks a router config file. Throws ConfigError naming the file and field. */
export async function loadRouterConfig(path: string): Promise<RouterConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(
      "",
      `cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  let document: Table;
  try {
    document = parseToml(text) as Table;
  } catch (error) {
    throw new ConfigError(
      "",
      `${path} is not valid TOML: ${(error as Error).message.replace(/\n+/g, " ").trim()}`,
    );
  }
  // Relative paths in the file are relative to the file, not to wherever the router starts.
  const base = dirname(path);
  const checked = checkConfigDocument(document);
  const config = {
    ...checked,
    dataDir: resolve(base, checked.dataDir),
    tls: {
      caPath: resolve(base, checked.tls.caPath),
      certPath: resolve(base, checked.tls.certPath),
      keyPath: resolve(base, checked.tls.keyPath),
    },
  };
  return { ...config, credentials: await loadCredentials(config) };
}
