// `neuron drain ID`: moves every partition replica and leadership off router ID; the router
// stops by itself once nothing counts on it. Clients connected to it reconnect elsewhere and
// send again what was in flight (deduplicated), so a planned drain shows them no error.
import { NeuronError } from "../../client/index.ts";
import { parse, UsageError } from "./args.ts";
import { connectFrom, connectionHelp, connectionOptions } from "./pub-sub.ts";

export const drainHelp = `Usage:
  neuron drain ID [connection options]

Marks router ID draining: the partitions' leaders move its replicas and leaderships to the
other routers, then it stops by itself (exit 0). Returns once the cluster has recorded the drain.

${connectionHelp}`;

export async function drainCommand(args: readonly string[], out: (line: string) => void): Promise<number> {
  const parsed = parse("drain", args, connectionOptions);
  if (parsed.values.help === true) {
    out(drainHelp);
    return 0;
  }
  if (parsed.positionals.length !== 1)
    throw new UsageError("neuron drain: expected one router ID (see neuron drain --help)");
  const [router] = parsed.positionals as [string];
  const client = await connectFrom("drain", parsed);
  try {
    await client.drain(router);
    out(`router ${router} is draining: its replicas and leaderships move away, then it stops`);
    return 0;
  } catch (error) {
    if (error instanceof NeuronError && error.routerCode === "UnknownRouter") {
      throw new UsageError(`neuron drain: no router ${JSON.stringify(router)} in the cluster's roster`);
    }
    throw error;
  } finally {
    await client.close();
  }
}
