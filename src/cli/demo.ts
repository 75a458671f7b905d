// `npm run demo`: a local router with freshly generated certificates, a subscriber and a
// publisher, each a real `neuron` process, and the messages flowing between them. Everything
// lives in .neuron/demo (made anew each run); every process started here is stopped at the end.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createCertificateAuthority, issueCertificate } from "../axon/index.ts";

const cli = new URL("./main.ts", import.meta.url).pathname;
const dir = resolve(".neuron/demo");
const topic = "demo.greetings";
const count = 10;
const children: ChildProcess[] = [];

function start(
  name: string,
  args: string[],
  onLine?: (line: string, stream: "out" | "err") => void,
): ChildProcess {
  const child = spawn(process.execPath, [cli, ...args], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  for (const [stream, source] of [
    ["out", child.stdout],
    ["err", child.stderr],
  ] as const) {
    let buffered = "";
    source.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        process.stdout.write(`${name.padEnd(6)}| ${line}\n`);
        onLine?.(line, stream);
      }
    });
  }
  return child;
}

function waitFor<T>(
  what: string,
  timeoutMs: number,
  register: (done: (value: T) => void) => void,
): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`demo: timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
    register((value) => {
      clearTimeout(timer);
      resolvePromise(value);
    });
  });
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((done) => {
    if (child.exitCode !== null) done(child.exitCode);
    else child.once("exit", (code) => done(code));
  });

async function main(): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, "certs"), { recursive: true });
  console.log(`demo: certificates and config in ${dir}`);
  const ca = await createCertificateAuthority("Neuron demo CA");
  const files: Record<string, string> = { "certs/ca.pem": ca.cert, "certs/ca.key": ca.key };
  for (const identity of [
    { role: "router", id: "r1" },
    { role: "client", id: "demo-sub" },
    { role: "client", id: "demo-pub" },
  ] as const) {
    const pair = await issueCertificate(ca, identity);
    files[`certs/${identity.id}.pem`] = pair.cert;
    files[`certs/${identity.id}.key`] = pair.key;
  }
  files["router.toml"] = [
    'id = "r1"',
    'region = "local"',
    'data_dir = "data/r1"',
    "seeds = []",
    "",
    "[listen]",
    'clients = "127.0.0.1:0"',
    "",
    "[tls]",
    'ca = "certs/ca.pem"',
    'cert = "certs/r1.pem"',
    'key = "certs/r1.key"',
    "",
  ].join("\n");
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);

  console.log("demo: starting router r1 (neuron router --config router.toml)");
  let routerAddress = "";
  const router = await waitFor<ChildProcess>("the router to be ready", 30_000, (done) => {
    const child = start("r1", ["router", "--config", "router.toml"], (line, stream) => {
      if (stream === "out" && line.startsWith('{"event":"ready"')) {
        routerAddress = (JSON.parse(line) as { clients: string }).clients;
        done(child);
      }
    });
  });
  const connection = ["--seeds", routerAddress, "--certs", "certs"];

  console.log(`demo: subscribing to ${topic} (neuron sub ${topic} --count ${count})`);
  const received: string[] = [];
  let subscriber: ChildProcess | undefined;
  await waitFor<void>("the subscription", 30_000, (done) => {
    subscriber = start(
      "sub",
      ["sub", topic, "--count", String(count), "--name", "demo-sub", ...connection],
      (line) => {
        if (line.startsWith("subscribed")) done();
        if (line.startsWith(`[${topic}]`)) received.push(line);
      },
    );
  });

  console.log(
    `demo: publishing ${count} messages (neuron pub ${topic} "hello from Neuron" --count ${count})`,
  );
  const publisher = start("pub", [
    "pub",
    topic,
    "hello from Neuron",
    "--count",
    String(count),
    "--name",
    "demo-pub",
    ...connection,
  ]);
  const publisherCode = await exited(publisher);
  const subscriberCode = await waitFor<number | null>(
    "the subscriber to get every message",
    30_000,
    (done) => {
      void exited(subscriber!).then(done);
    },
  );

  console.log("demo: stopping router r1 (SIGTERM)");
  router.kill("SIGTERM");
  const routerCode = await exited(router);
  const ok = publisherCode === 0 && subscriberCode === 0 && routerCode === 0 && received.length === count;
  console.log(
    ok
      ? `demo: done: ${received.length} of ${count} messages went publisher -> router r1 -> subscriber over mutually authenticated TLS`
      : `demo: FAILED: received ${received.length} of ${count} (publisher exit ${publisherCode}, subscriber ${subscriberCode}, router ${routerCode})`,
  );
  process.exitCode = ok ? 0 : 1;
}

main()
  .catch((error: unknown) => {
    console.error((error as Error).message);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
