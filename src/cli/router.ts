// `neuron router --config FILE`: runs one router until SIGTERM or SIGINT.
// On start it prints one JSON line to stdout, {"event":"ready",...} with the bound addresses
// (tests and scripts wait for it); everything else goes to the log on stderr.
import { formatAddress } from "../axon/index.ts";
import { ConfigError, createLog, type LogLevel, loadRouterConfig, Router } from "../router/index.ts";
import { parse, stringOption, UsageError } from "./args.ts";

export const routerHelp = `Usage:
  neuron router --config FILE [--log-level debug|info|warn|error]

Runs a router. FILE is TOML (see router.example.toml in the repository):
  id, region, data_dir, seeds, [listen] clients (clients_quic, gossip, metrics),
  [tls] ca, cert, key, [gossip] keys (with listen.gossip).
Stops cleanly on SIGTERM or SIGINT: clients are told to reconnect elsewhere.
`;

const levels: readonly LogLevel[] = ["debug", "info", "warn", "error"];

export async function routerCommand(
  args: readonly string[],
  out: (line: string) => void,
): Promise<number | "running"> {
  const parsed = parse("router", args, {
    config: { type: "string", short: "c" },
    "log-level": { type: "string" },
  });
  if (parsed.values.help === true) {
    out(routerHelp);
    return 0;
  }
  if (parsed.positionals.length > 0)
    throw new UsageError(`neuron router: unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  const path = stringOption(parsed, "config");
  if (path === undefined) throw new UsageError("neuron router: --config FILE is required");
  const level = stringOption(parsed, "log-level", "info") as LogLevel;
  if (!levels.includes(level))
    throw new UsageError(`neuron router: --log-level must be one of ${levels.join(", ")}`);
  const log = createLog((line) => process.stderr.write(line), level);

  let router: Router;
  try {
    const config = await loadRouterConfig(path);
    router = await Router.start(config, { log, onDrained: () => stop("drained") });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`neuron router: bad config ${path}: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const addresses: Record<string, string> = {};
  for (const [name, address] of Object.entries(router.addresses)) {
    if (address !== undefined) addresses[name] = formatAddress(address);
  }
  log.info("router ready", { id: router.config.id, region: router.config.region, ...addresses });
  out(JSON.stringify({ event: "ready", id: router.config.id, pid: process.pid, ...addresses }));
  function stop(signal: string): void {
    log.info("stopping", { signal });
    void router.stop().then(() => {
      log.info("router stopped", { id: router.config.id });
      process.exit(0);
    });
  }
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  return "running";
}
