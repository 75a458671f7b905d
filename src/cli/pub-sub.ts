// `neuron pub` and `neuron sub`: the client library from the shell.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Client, connect, NeuronError } from "../../client/index.ts";
import { integerOption, type Parsed, parse, stringOption, UsageError } from "./args.ts";

export const connectionHelp = `Connection options:
  --seeds LIST       routers to try, comma-separated host:port (default: $NEURON_SEEDS or 127.0.0.1:7402)
  --certs DIR        directory with ca.pem and this client's NAME.pem/NAME.key (default: $NEURON_CERTS or certs)
  --name NAME        this client's certificate id (default: $NEURON_CLIENT or cli)
  --transport T      tls (default) or quic
`;

export const pubHelp = `Usage:
  neuron pub TOPIC MESSAGE [--header KEY=VALUE]... [--count N] [connection options]

Publishes MESSAGE to TOPIC (N times, numbered " #1".." #N" when N > 1) and waits for the router's acknowledgement.

${connectionHelp}`;

export const subHelp = `Usage:
  neuron sub TOPIC [--count N] [connection options]

Prints each message on TOPIC as "[TOPIC] MESSAGE" until interrupted, or until N messages arrived.

${connectionHelp}`;

export const connectionOptions = {
  seeds: { type: "string" },
  certs: { type: "string" },
  name: { type: "string" },
  transport: { type: "string" },
} as const;

export async function connectFrom(command: string, parsed: Parsed): Promise<Client> {
  const seeds = (stringOption(parsed, "seeds") ?? process.env.NEURON_SEEDS ?? "127.0.0.1:7402")
    .split(",")
    .filter((seed) => seed !== "");
  const dir = stringOption(parsed, "certs") ?? process.env.NEURON_CERTS ?? "certs";
  const name = stringOption(parsed, "name") ?? process.env.NEURON_CLIENT ?? "cli";
  const transport = stringOption(parsed, "transport", "tls");
  if (transport !== "tls" && transport !== "quic")
    throw new UsageError(`neuron ${command}: --transport must be tls or quic`);
  const read = async (file: string) => {
    try {
      return await readFile(join(dir, file), "utf8");
    } catch (error) {
      throw new UsageError(
        `neuron ${command}: cannot read ${join(dir, file)} (${(error as NodeJS.ErrnoException).code}); issue one with \`neuron certs issue --client ${name} --dir ${dir}\``,
      );
    }
  };
  // One after the other, so the file named in the error is always the first one missing.
  const ca = await read("ca.pem");
  const cert = await read(`${name}.pem`);
  const key = await read(`${name}.key`);
  try {
    return await connect({ seeds, ca, cert, key, transport, reconnectAttemptsMax: 20 });
  } catch (error) {
    if (error instanceof NeuronError && error.code === "InvalidArgument")
      throw new UsageError(`neuron ${command}: ${error.message}`);
    throw error;
  }
}

export async function pubCommand(args: readonly string[], out: (line: string) => void): Promise<number> {
  const parsed = parse("pub", args, {
    ...connectionOptions,
    header: { type: "string", multiple: true },
    count: { type: "string" },
  });
  if (parsed.values.help === true) {
    out(pubHelp);
    return 0;
  }
  if (parsed.positionals.length !== 2)
    throw new UsageError("neuron pub: expected TOPIC and MESSAGE (see neuron pub --help)");
  const [topic, message] = parsed.positionals as [string, string];
  const count = integerOption("pub", parsed, "count", 1, 1, 100_000_000);
  const headers: Record<string, string> = {};
  for (const header of (parsed.values.header as string[] | undefined) ?? []) {
    const at = header.indexOf("=");
    if (at <= 0) throw new UsageError(`neuron pub: --header ${JSON.stringify(header)} is not KEY=VALUE`);
    headers[header.slice(0, at)] = header.slice(at + 1);
  }
  const client = await connectFrom("pub", parsed);
  try {
    const sends: Promise<void>[] = [];
    for (let index = 1; index <= count; index++) {
      sends.push(client.publish(topic, count === 1 ? message : `${message} #${index}`, { headers }));
    }
    await Promise.all(sends);
    out(`published ${count} message${count === 1 ? "" : "s"} to ${topic} via router ${client.router}`);
    return 0;
  } finally {
    await client.close();
  }
}

export async function subCommand(args: readonly string[], out: (line: string) => void): Promise<number> {
  const parsed = parse("sub", args, { ...connectionOptions, count: { type: "string" } });
  if (parsed.values.help === true) {
    out(subHelp);
    return 0;
  }
  if (parsed.positionals.length !== 1)
    throw new UsageError("neuron sub: expected TOPIC (see neuron sub --help)");
  const topic = parsed.positionals[0]!;
  const count = integerOption("sub", parsed, "count", 0, 0, Number.MAX_SAFE_INTEGER);
  const client = await connectFrom("sub", parsed);
  let received = 0;
  return new Promise<number>((resolve, reject) => {
    const finish = (code: number) => {
      void client.close().then(() => resolve(code));
    };
    client
      .subscribe(topic, (message) => {
        received += 1;
        out(`[${message.topic}] ${message.payload.toString("utf8")}`);
        if (count > 0 && received >= count) finish(0);
      })
      .then(() => process.stderr.write(`subscribed to ${topic} via router ${client.router}\n`), reject);
    process.once("SIGINT", () => finish(0));
    process.once("SIGTERM", () => finish(0));
  });
}
