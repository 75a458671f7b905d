// `neuron certs`: makes the cluster CA and issues router and client certificates into a
// directory: ca.pem/ca.key, <id>.pem/<id>.key. Refuses to overwrite files unless --force.
import { X509Certificate } from "node:crypto";
import { access, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  checkIdentityId,
  createCertificateAuthority,
  issueCertificate,
  type PeerIdentity,
} from "../axon/index.ts";
import { integerOption, type Parsed, parse, stringOption, UsageError } from "./args.ts";

export const certsHelp = `Usage:
  neuron certs init [--dir DIR] [--days N] [--force]
      Make a cluster CA: DIR/ca.pem and DIR/ca.key (keep ca.key secret).
  neuron certs issue (--router ID | --client ID) [--dir DIR] [--days N] [--force]
      Issue a certificate signed by DIR/ca.pem: DIR/ID.pem and DIR/ID.key.
      The identity (router or client, and ID) is what peers see; a router's ID must
      match the id in its router.toml.

Options:
  --dir DIR    where the files go (default: certs)
  --days N     lifetime in days (default: 3650 for the CA, 825 for others)
  --force      overwrite existing files
`;

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function writeOut(files: Record<string, string>, force: boolean): Promise<void> {
  if (!force) {
    for (const path of Object.keys(files)) {
      if (await exists(path)) throw new UsageError(`neuron certs: ${path} exists; use --force to overwrite`);
    }
  }
  for (const [path, content] of Object.entries(files)) {
    await writeFile(path, content, { mode: path.endsWith(".key") ? 0o600 : 0o644 });
  }
}

export async function certsCommand(args: readonly string[], out: (line: string) => void): Promise<void> {
  const [first, ...others] = args;
  // `neuron certs --help`: no subcommand, only options.
  const sub = first?.startsWith("-") ? undefined : first;
  const rest = sub === undefined ? args : others;
  const parsed: Parsed = parse(`certs ${sub ?? ""}`.trim(), rest, {
    dir: { type: "string" },
    days: { type: "string" },
    force: { type: "boolean" },
    router: { type: "string" },
    client: { type: "string" },
  });
  if (parsed.values.help === true || sub === undefined) {
    out(certsHelp);
    if (sub === undefined && parsed.values.help !== true)
      throw new UsageError("neuron certs: say init or issue");
    return;
  }
  if (parsed.positionals.length > 0)
    throw new UsageError(`neuron certs ${sub}: unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  const dir = stringOption(parsed, "dir", "certs")!;
  const force = parsed.values.force === true;
  await mkdir(dir, { recursive: true });

  if (sub === "init") {
    if (parsed.values.router !== undefined || parsed.values.client !== undefined) {
      throw new UsageError("neuron certs init: --router and --client belong to `neuron certs issue`");
    }
    const days = integerOption("certs init", parsed, "days", 3650, 1, 36_500);
    const ca = await createCertificateAuthority("Neuron cluster CA", { days });
    await writeOut({ [join(dir, "ca.pem")]: ca.cert, [join(dir, "ca.key")]: ca.key }, force);
    out(`cluster CA written to ${join(dir, "ca.pem")} (key: ${join(dir, "ca.key")}, keep it secret)`);
    return;
  }
  if (sub === "issue") {
    const router = stringOption(parsed, "router");
    const client = stringOption(parsed, "client");
    if ((router === undefined) === (client === undefined)) {
      throw new UsageError("neuron certs issue: give exactly one of --router ID or --client ID");
    }
    const identity: PeerIdentity =
      router !== undefined ? { role: "router", id: router } : { role: "client", id: client! };
    const problem = checkIdentityId(identity.id);
    if (problem !== undefined) throw new UsageError(`neuron certs issue: ${problem}`);
    const days = integerOption("certs issue", parsed, "days", 825, 1, 36_500);
    let ca: { cert: string; key: string };
    try {
      ca = {
        cert: await readFile(join(dir, "ca.pem"), "utf8"),
        key: await readFile(join(dir, "ca.key"), "utf8"),
      };
      new X509Certificate(ca.cert);
    } catch (error) {
      throw new UsageError(
        `neuron certs issue: cannot read the CA in ${dir} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); run \`neuron certs init --dir ${dir}\` first`,
      );
    }
    const pair = await issueCertificate(ca, identity, { days });
    await writeOut(
      { [join(dir, `${identity.id}.pem`)]: pair.cert, [join(dir, `${identity.id}.key`)]: pair.key },
      force,
    );
    out(`${identity.role} certificate for ${identity.id} written to ${join(dir, `${identity.id}.pem`)}`);
    return;
  }
  throw new UsageError(`neuron certs: unknown subcommand ${JSON.stringify(sub)}; say init or issue`);
}
