// The `neuron` command as a person meets it: help, bad arguments, bad configs, certificates.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestPki, type TestPki } from "./support/certs.ts";
import { runCli, stopAll, tempDir, writeCredentials, writeRouterConfig } from "./support/processes.ts";

let pki: TestPki;

beforeAll(async () => {
  pki = await makeTestPki();
});

afterAll(stopAll);

describe("neuron --help", () => {
  it.each([
    [["--help"]],
    [["help"]],
    [["help", "router"]],
    [["router", "--help"]],
    [["certs", "--help"]],
    [["pub", "--help"]],
    [["sub", "-h"]],
    [["members", "--help"]],
    [["keygen", "--help"]],
  ])("neuron %j prints usage and exits 0", async (args) => {
    const result = await runCli(args);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Usage:/);
  });
});

describe("bad command lines exit 2 with a clear message and change nothing", () => {
  it.each([
    [[], /Usage: neuron COMMAND/],
    [["frobnicate"], /unknown command "frobnicate"/],
    [["router"], /--config FILE is required/],
    [["router", "--config"], /--config/],
    [["router", "--config", "x.toml", "--verbose"], /Unknown option '--verbose'/],
    [["router", "--config", "x.toml", "--log-level", "loud"], /--log-level must be one of/],
    [["pub", "orders"], /expected TOPIC and MESSAGE/],
    [["pub", "orders", "m", "--count", "-3"], /--count/],
    [["pub", "orders", "m", "--count", "many"], /--count must be an integer/],
    [["pub", "orders", "m", "--header", "novalue"], /is not KEY=VALUE/],
    [["pub", "orders", "m", "--transport", "carrier-pigeon"], /--transport must be tls or quic/],
    [["sub"], /expected TOPIC/],
    [["certs", "issue"], /exactly one of --router ID or --client ID/],
    [["certs", "issue", "--router", "a b"], /must be 1-64 characters/],
    [["certs", "rotate"], /unknown subcommand "rotate"/],
    [["members", "--router", "127.0.0.1:1"], /cannot reach 127.0.0.1:1\/status/],
    [["keygen", "extra"], /takes no arguments/],
  ])("neuron %j", async (args, message) => {
    const dir = await tempDir();
    const result = await runCli(args, { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stderr + result.stdout).toMatch(message);
  });

  it("pub with an invalid topic is refused before connecting", async () => {
    const result = await runCli(["pub", "bad topic", "m", "--seeds", "127.0.0.1:1"], {
      cwd: await tempDir(),
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/cannot read .*ca.pem|InvalidTopic/);
  });

  it("pub without certificates says how to get them", async () => {
    const result = await runCli(["pub", "orders", "m", "--certs", "nowhere"], { cwd: await tempDir() });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/cannot read nowhere\/ca.pem .*neuron certs issue --client cli/);
  });
});

describe("neuron certs", () => {
  it("makes a CA, issues router and client certificates, and refuses to overwrite", async () => {
    const dir = await tempDir();
    expect((await runCli(["certs", "init", "--dir", "c"], { cwd: dir })).code).toBe(0);
    expect((await runCli(["certs", "issue", "--router", "r1", "--dir", "c"], { cwd: dir })).code).toBe(0);
    expect(
      (await runCli(["certs", "issue", "--client", "app", "--dir", "c", "--days", "7"], { cwd: dir })).code,
    ).toBe(0);
    const again = await runCli(["certs", "init", "--dir", "c"], { cwd: dir });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/c\/ca.pem exists; use --force/);
    const { X509Certificate } = await import("node:crypto");
    const ca = new X509Certificate(await readFile(join(dir, "c/ca.pem")));
    const router = new X509Certificate(await readFile(join(dir, "c/r1.pem")));
    const client = new X509Certificate(await readFile(join(dir, "c/app.pem")));
    expect(router.checkIssued(ca)).toBe(true);
    expect(router.subjectAltName).toContain("URI:urn:neuron:router:r1");
    expect(client.subjectAltName).toContain("URI:urn:neuron:client:app");
    expect(Date.parse(client.validTo) - Date.now()).toBeLessThan(8 * 24 * 3600 * 1000);
  });

  it("issue without a CA says to run init first", async () => {
    const result = await runCli(["certs", "issue", "--client", "x", "--dir", "empty"], {
      cwd: await tempDir(),
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/run `neuron certs init --dir empty` first/);
  });
});

describe("a bad router config stops the router with one message naming the field", () => {
  async function tryConfig(edit: (toml: string) => string, setup?: (dir: string) => Promise<void>) {
    const dir = await tempDir();
    const path = await writeRouterConfig({ id: "r1", dir, pki });
    await setup?.(dir);
    await writeFile(path, edit(await readFile(path, "utf8")));
    const result = await runCli(["router", "--config", path]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    return result.stderr;
  }

  it.each([
    ["missing id", (t: string) => t.replace(/^id = .*$/m, ""), /bad config .*: id: is required/],
    [
      "id of the wrong type",
      (t: string) => t.replace(/^id = .*$/m, "id = 7"),
      /id: expected a non-empty string, got number 7/,
    ],
    ["missing region", (t: string) => t.replace(/^region = .*$/m, ""), /region: is required/],
    [
      "seeds not an array",
      (t: string) => t.replace(/^seeds = .*$/m, 'seeds = "a:1"'),
      /seeds: expected an array/,
    ],
    [
      "a bad seed",
      (t: string) => t.replace(/^seeds = .*$/m, 'seeds = ["nohost"]'),
      /seeds\[0\]: "nohost" is not "host:port"/,
    ],
    [
      "a port out of range",
      (t: string) => t.replace(/clients = ".*"/, 'clients = "127.0.0.1:70000"'),
      /listen.clients: port 70000/,
    ],
    [
      "a listen address of the wrong type",
      (t: string) => t.replace(/clients = ".*"/, "clients = 7402"),
      /listen.clients: expected a non-empty string, got number 7402/,
    ],
    [
      "an unknown key",
      (t: string) => `${t}\n[limits]\npayload_max_byte = 5\n`,
      /limits.payload_max_byte: unknown key/,
    ],
    ["an unknown top-level key", (t: string) => `colour = "blue"\n${t}`, /colour: unknown key/],
    [
      "a limit out of range",
      (t: string) => `${t}\n[limits]\npayload_max_bytes = 0\n`,
      /limits.payload_max_bytes: expected an integer from 1/,
    ],
    [
      "a replication factor out of range",
      (t: string) => `${t}\n[streams]\nreplication_factor = 9\n`,
      /streams.replication_factor: expected an integer from 1/,
    ],
    [
      "an empty persistent prefix",
      (t: string) => `${t}\n[streams]\npersistent_prefixes = [""]\n`,
      /streams.persistent_prefixes\[0\]: expected a non-empty string/,
    ],
    [
      "an unknown undeclared-topic rule",
      (t: string) => `${t}\n[streams]\nundeclared = "store"\n`,
      /streams.undeclared: expected "ephemeral" or "refuse"/,
    ],
    ["not TOML", (t: string) => `${t}\n[[[`, /is not valid TOML/],
    [
      "an unreadable certificate",
      (t: string) => t.replace(/cert = ".*"/, 'cert = "/nonexistent/r1.pem"'),
      /tls.cert: cannot read \/nonexistent\/r1.pem: ENOENT/,
    ],
    ["a missing tls section", (t: string) => t.replace(/\[tls\][\s\S]*$/, ""), /tls: section is required/],
    [
      "gossip without keys",
      (t: string) => t.replace("[listen]", '[listen]\ngossip = "127.0.0.1:0"'),
      /gossip: section with `keys` is required/,
    ],
    [
      "a gossip key that is not 32 bytes",
      (t: string) => t.replace("[listen]", '[gossip]\nkeys = ["c2hvcnQ="]\n[listen]\ngossip = "127.0.0.1:0"'),
      /gossip.keys\[0\]: a gossip key must be 32 bytes of base64/,
    ],
    [
      "a wildcard gossip address without advertise_host",
      (t: string) => t.replace("[listen]", '[listen]\ngossip = "0.0.0.0:0"'),
      /listen.advertise_host: is required when listen.gossip binds 0.0.0.0/,
    ],
  ])("%s", async (_name, edit, message) => {
    expect(await tryConfig(edit)).toMatch(message);
  });

  it("a certificate issued for another router", async () => {
    const stderr = await tryConfig(
      (t) =>
        t
          .replace(/cert = ".*"/, `cert = "${"OTHER"}"`)
          .replace("OTHER", "r2.pem")
          .replace(/key = ".*"/, 'key = "r2.key"'),
      async (dir) => {
        await writeCredentials(dir, "r2", await pki.credentials({ role: "router", id: "r2" }));
      },
    );
    expect(stderr).toMatch(/tls.cert: \/\S*\/r2.pem is for router r2, but this router is router r1/);
  });

  it("a key that does not belong to the certificate", async () => {
    const stderr = await tryConfig(
      (t) => t.replace(/key = ".*"/, 'key = "other.key"'),
      async (dir) => {
        await writeCredentials(dir, "other", await pki.credentials({ role: "router", id: "other" }));
      },
    );
    expect(stderr).toMatch(/tls.key: \/\S*\/other.key is not the key of/);
  });

  it("a missing config file", async () => {
    const result = await runCli(["router", "--config", "/nonexistent/router.toml"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/cannot read config file \/nonexistent\/router.toml: ENOENT/);
  });
});

it("neuron status: bad arguments exit 2 with a clear message; a router not answering exits 1 naming it", async () => {
  const cwd = await tempDir();
  for (const [args, message] of [
    [["status", "--router", "nowhere"], /neuron status: --router: "nowhere" is not "host:port"/],
    [["status", "--router"], /neuron status: .*--router/],
    [["status", "extra"], /neuron status: unexpected argument "extra"/],
    [["status", "--verbose"], /neuron status: Unknown option '--verbose'/],
  ] as const) {
    const result = await runCli(args, { cwd });
    expect(result.code, args.join(" ")).toBe(2);
    expect(result.stderr).toMatch(message);
  }
  const unreachable = await runCli(["status", "--router", "127.0.0.1:1"], { cwd });
  expect(unreachable.code).toBe(1);
  expect(unreachable.stderr).toMatch(/neuron status: cannot get 127\.0\.0\.1:1\/status: ECONNREFUSED/);
  expect(unreachable.stdout).toBe("");
  const help = await runCli(["status", "--help"], { cwd });
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/Usage:\n {2}neuron status \[--router HOST:PORT\] \[--json\]/);
});
