// The TOML config of one harness router (format: src/router/config.ts, router.example.toml).
// Every listener binds 127.0.0.1 port 0, so tests never collide on ports; the ready line says
// what was bound. Only `seeds` changes between lives of one router (the gossip addresses of the
// routers alive at that start, since they may have moved).
// Trap: `extra` is appended after the [tls] section, so it may only add tables the harness does
// not write ([limits], ...); a top-level key there would land inside the last table, and a
// second [listen], [gossip] or [tls] is a TOML error (the router exits with code 2 and says so).
import type { CredentialFiles } from "./certificates.ts";

export interface RouterConfigSpec {
  readonly id: string;
  readonly region: string;
  readonly dataDir: string;
  /** Gossip addresses ("host:port") of routers to join through; [] for the first router. */
  readonly seeds: readonly string[];
  /** The cluster's gossip key (base64, `neuron keygen`). */
  readonly gossipKey: string;
  readonly tls: CredentialFiles;
  /** TOML appended at the end (tables only; see the trap above). */
  readonly extra: string;
}

const quote = (text: string) => JSON.stringify(text);

export function routerConfigToml(spec: RouterConfigSpec): string {
  return [
    `# Written by harness/router-config.ts for router ${spec.id}.`,
    `id = ${quote(spec.id)}`,
    `region = ${quote(spec.region)}`,
    `data_dir = ${quote(spec.dataDir)}`,
    `seeds = [${spec.seeds.map(quote).join(", ")}]`,
    "",
    "[listen]",
    `clients = "127.0.0.1:0"`,
    `links = "127.0.0.1:0"`,
    `gossip = "127.0.0.1:0"`,
    `metrics = "127.0.0.1:0"`,
    "",
    "[gossip]",
    `keys = [${quote(spec.gossipKey)}]`,
    "",
    "[tls]",
    `ca = ${quote(spec.tls.ca)}`,
    `cert = ${quote(spec.tls.cert)}`,
    `key = ${quote(spec.tls.key)}`,
    "",
    spec.extra,
    "",
  ].join("\n");
}
