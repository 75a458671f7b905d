// `neuron members`: the cluster as one router sees it, from its GET /status, as a table.
// `neuron keygen`: a new gossip key for `[gossip] keys`.
import { generateKey } from "../membership/keyring.ts";
import { parse, stringOption, UsageError } from "./args.ts";

export const membersHelp = `Usage:
  neuron members [--router HOST:PORT] [--json]

Shows each member as the router sees it: id, state, region, incarnation, gossip address.
HOST:PORT is the router's [listen] metrics address (default: $NEURON_STATUS or 127.0.0.1:7409).
`;

export const keygenHelp = `Usage:
  neuron keygen

Prints a new random 32-byte gossip key (base64) for [gossip] keys in router.toml.
Every router of a cluster needs the same keys; the first one listed seals packets.
`;

interface StatusMember {
  readonly id: string;
  readonly state: string;
  readonly region: string;
  readonly incarnation: number;
  readonly gossip: string;
}

export function formatMembers(routerId: string, members: readonly StatusMember[]): string {
  const rows = [["ID", "STATE", "REGION", "INCARNATION", "GOSSIP"]];
  for (const member of [...members].sort((a, b) => a.id.localeCompare(b.id))) {
    rows.push([member.id, member.state, member.region, String(member.incarnation), member.gossip]);
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const lines = rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join("  ")
      .trimEnd(),
  );
  return `members as router ${routerId} sees them:\n${lines.join("\n")}\n`;
}

export async function membersCommand(args: readonly string[], out: (line: string) => void): Promise<number> {
  const parsed = parse("members", args, { router: { type: "string" }, json: { type: "boolean" } });
  if (parsed.values.help === true) {
    out(membersHelp);
    return 0;
  }
  if (parsed.positionals.length > 0)
    throw new UsageError(`neuron members: unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  const router = stringOption(parsed, "router") ?? process.env.NEURON_STATUS ?? "127.0.0.1:7409";
  let response: Response;
  try {
    response = await fetch(`http://${router}/status`, { signal: AbortSignal.timeout(5000) });
  } catch (error) {
    throw new UsageError(
      `neuron members: cannot reach ${router}/status (${(error as Error).message}); is [listen] metrics set?`,
    );
  }
  const status = (await response.json()) as { id: string; members: StatusMember[] };
  out(
    parsed.values.json === true ? JSON.stringify(status.members) : formatMembers(status.id, status.members),
  );
  return 0;
}

export function keygenCommand(args: readonly string[], out: (line: string) => void): number {
  const parsed = parse("keygen", args, {});
  if (parsed.values.help === true) {
    out(keygenHelp);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError("neuron keygen: takes no arguments");
  out(generateKey());
  return 0;
}
