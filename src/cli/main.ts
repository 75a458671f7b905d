// The `neuron` command: one binary, a subcommand each (DESIGN.md), `--help` on every one.
// Exit codes: 0 done, 1 failed while running, 2 bad usage or bad config.
import { NeuronError } from "../../client/index.ts";
import { UsageError } from "./args.ts";
import { certsCommand, certsHelp } from "./certs.ts";
import { drainCommand, drainHelp } from "./drain.ts";
import { keygenCommand, keygenHelp, membersCommand, membersHelp } from "./members.ts";
import { pubCommand, pubHelp, subCommand, subHelp } from "./pub-sub.ts";
import { routerCommand, routerHelp } from "./router.ts";
import { statusCommand, statusHelp } from "./status.ts";

const mainHelp = `neuron: a global message mesh

Usage: neuron COMMAND [options]     (neuron COMMAND --help for details)

Commands:
  router    run a router:                        neuron router --config router.toml
  certs     make a cluster CA, issue certificates: neuron certs init | issue --router ID | --client ID
  pub       publish a message:                   neuron pub TOPIC MESSAGE
  sub       print the messages of a topic:       neuron sub TOPIC
  members   the cluster as a router sees it:     neuron members --router HOST:PORT
  status    every router at a glance:            neuron status --router HOST:PORT
  keygen    a new gossip key:                    neuron keygen
  drain     move everything off a router, stop it: neuron drain ID
  help      this text, or a command's:           neuron help COMMAND
`;

const helps: Record<string, string> = {
  router: routerHelp,
  certs: certsHelp,
  pub: pubHelp,
  sub: subHelp,
  members: membersHelp,
  status: statusHelp,
  keygen: keygenHelp,
  drain: drainHelp,
};

const out = (line: string) => {
  process.stdout.write(line.endsWith("\n") ? line : `${line}\n`);
};
const err = (line: string) => {
  process.stderr.write(line.endsWith("\n") ? line : `${line}\n`);
};

async function main(argv: readonly string[]): Promise<number | "running"> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "--help":
    case "-h":
      out(mainHelp);
      return command === undefined ? 2 : 0;
    case "help": {
      const topic = rest[0];
      if (topic === undefined) {
        out(mainHelp);
        return 0;
      }
      const help = helps[topic];
      if (help === undefined) throw new UsageError(`neuron help: unknown command ${JSON.stringify(topic)}`);
      out(help);
      return 0;
    }
    case "router":
      return routerCommand(rest, out);
    case "certs":
      await certsCommand(rest, out);
      return 0;
    case "pub":
      return pubCommand(rest, out);
    case "sub":
      return subCommand(rest, out);
    case "members":
      return membersCommand(rest, out);
    case "status":
      return statusCommand(rest, out, err);
    case "keygen":
      return keygenCommand(rest, out);
    case "drain":
      return drainCommand(rest, out);
    default:
      throw new UsageError(
        `neuron: unknown command ${JSON.stringify(command)}; commands: ${Object.keys(helps).join(", ")} (neuron --help)`,
      );
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== "running") process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n`);
      process.exitCode = 2;
    } else if (error instanceof NeuronError) {
      process.stderr.write(`neuron: ${error.code}: ${error.message}\n`);
      // Bad input is a usage error; anything else failed while running.
      process.exitCode = ["InvalidTopic", "PayloadTooLarge", "InvalidArgument"].includes(error.code) ? 2 : 1;
    } else {
      process.stderr.write(`neuron: ${(error as Error)?.stack ?? String(error)}\n`);
      process.exitCode = 1;
    }
  },
);
