// `npm run demo`: a 3-router region on this machine, a persistent topic replicated on all three,
// a subscriber (`neuron sub`) and a paced publisher, and the partition's leader killed with
// kill -9 and restarted while messages flow. It prints the story for a person, section by
// section, then a summary, and exits 0 only if every check held: everything acknowledged was
// delivered, nothing twice, in order, every publish acknowledged, every process stopped cleanly.
//
// Everything lives in .neuron/demo, made anew each run: the CA and certificates, the gossip
// key, one config, data dir and log file per router (logs/rN.log; warnings are also shown).
// Every process started here is ended at the end, on failure and on Ctrl-C (demo-processes.ts).
// Traps: membership declares a killed router dead only after its suspicion timeout (~7 s on
// the LAN defaults), and accepts the restarted router's new addresses only after that, so the
// demo waits for "dead" before it restarts the router. A restarted router binds new ports.
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { type Client, connect } from "../../client/index.ts";
import { createCertificateAuthority, issueCertificate } from "../axon/index.ts";
import { generateKey } from "../membership/keyring.ts";
import { partitionOf } from "../partitions/index.ts";
import {
  type Child,
  Children,
  type DemoStatus,
  describeExit,
  fetchStatus,
  type ReadyLine,
  readyLineOf,
} from "./demo-processes.ts";
import { Deliveries, type Gap, longestGapWithin, lostOf, Publisher } from "./demo-traffic.ts";

const dir = resolve(".neuron/demo");
const topic = "demo.orders";
const partition = partitionOf(topic);
const routerIds = ["r1", "r2", "r3"] as const;
const ratePerSecond = 200;
/** Deadline of each wait; the whole demo takes about 20 s. */
const waitTimeoutMs = 30_000;

const startedMs = performance.now();
const nowMs = () => performance.now() - startedMs;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const say = (text: string) => console.log(`${(nowMs() / 1000).toFixed(1).padStart(5)}s  ${text}`);
const section = (title: string) => console.log(`\n== ${title} ${"=".repeat(Math.max(3, 86 - title.length))}`);
const list = (ids: readonly string[]) => [...ids].sort().join(", ");

/** A check of the demo failed: the message says which and what was seen. */
class DemoFailed extends Error {}

interface RouterSlot {
  readonly id: string;
  child: Child | undefined;
  ready: ReadyLine | undefined;
  lives: number;
  readonly log: WriteStream;
}

/** Rejects as soon as a child exits that should not have (a router crashing, the subscriber failing). */
let failNow: (error: DemoFailed) => void = () => {};
const unexpectedExit = new Promise<never>((_, reject) => {
  failNow = reject;
});
const children = new Children(dir, (child, exit) => {
  const log = slots.some((slot) => slot.id === child.name)
    ? `; see ${relative(process.cwd(), dir)}/logs/${child.name}.log`
    : "";
  failNow(
    new DemoFailed(`${child.name} (pid ${child.pid}) stopped unexpectedly: ${describeExit(exit)}${log}`),
  );
});
/** The per-second progress lines run while this is true (stopped in the end, also on failure). */
let ticking = false;
/** The publisher's client, closed at the end (also on failure). */
let publisherClient: Client | undefined;
const slots: RouterSlot[] = [];
const liveRouters = () => slots.filter((slot) => slot.child?.running === true && slot.ready !== undefined);

/** Router warnings shown so far, by "id text", with how often each came again (shown once, counted after). */
const warnings = new Map<string, { id: string; text: string; repeats: number }>();
/** Bound on distinct warnings remembered; past it, new ones are shown but not counted. */
const warningsMax = 1_000;

function showWarning(id: string, text: string): void {
  const seen = warnings.get(`${id} ${text}`);
  if (seen !== undefined) {
    seen.repeats += 1;
    return;
  }
  if (warnings.size < warningsMax) warnings.set(`${id} ${text}`, { id, text, repeats: 0 });
  console.log(`         ${id} | ${text}`);
}

/** Says which router warnings came again (not shown again, to keep the story readable). */
function reportRepeatedWarnings(): void {
  for (const { id, text, repeats } of warnings.values())
    if (repeats > 0)
      console.log(`         ${id} | the warning "${text.slice(0, 60)}..." came ${repeats} more times`);
}

/** `promise`, or a DemoFailed naming `what` if it has not settled within `timeoutMs`. */
async function within<T>(what: string, timeoutMs: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new DemoFailed(`timed out after ${seconds(timeoutMs)} waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `probe` every 100 ms until it returns a value; a string or a rejection means "not yet". */
async function until<T>(what: string, probe: () => Promise<T | string>): Promise<T> {
  const deadlineMs = nowMs() + waitTimeoutMs;
  let last = "no answer yet";
  for (;;) {
    try {
      const answer = await probe();
      if (typeof answer !== "string") return answer;
      last = answer;
    } catch (error) {
      last = (error as Error).message;
    }
    if (nowMs() >= deadlineMs)
      throw new DemoFailed(`timed out after ${seconds(waitTimeoutMs)} waiting for ${what} (${last})`);
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 100));
  }
}

const views = () => Promise.all(liveRouters().map((slot) => fetchStatus(slot.ready!.metrics)));
const groupOf = (status: DemoStatus) => status.mesh?.groups.find((group) => group.group === partition);

/** The partition's leader and voters, once every live router agrees on `voters` voters. */
async function replicated(voters: number): Promise<{ leader: string; voters: readonly string[] } | string> {
  const statuses = await views();
  let leader: string | undefined;
  for (const status of statuses) {
    const group = groupOf(status);
    if (group === undefined) return `${status.id} holds no replica of partition ${partition} yet`;
    if (group.voters.length !== voters)
      return `${status.id} sees voters ${list(group.voters)} of partition ${partition}`;
    if (group.role === "leader") leader = status.id;
  }
  if (leader === undefined) return `partition ${partition} has no leader`;
  return { leader, voters: groupOf(statuses[0]!)!.voters };
}

/** The partition with 3 voters everywhere and the same leader for a second (leaders move to their preferred router first). */
function settledPartition(): Promise<{ leader: string; voters: readonly string[] }> {
  let leader: string | undefined;
  let sinceMs = 0;
  return until(`partition ${partition} to have 3 voters on every router and a settled leader`, async () => {
    const now = await replicated(3);
    if (typeof now === "string") {
      leader = undefined;
      return now;
    }
    if (now.leader !== leader) {
      leader = now.leader;
      sinceMs = nowMs();
    }
    return nowMs() - sinceMs >= 1000 ? now : `leader ${now.leader} for less than 1 s`;
  });
}

async function rosterOfEveryone(size: number): Promise<DemoStatus | string> {
  const statuses = await views();
  for (const status of statuses)
    if (status.mesh?.roster.length !== size)
      return `${status.id}'s roster is [${list(status.mesh?.roster ?? [])}]`;
  return statuses[0]!;
}

async function startRouter(slot: RouterSlot, seeds: readonly string[], config: string): Promise<ReadyLine> {
  await writeFile(
    join(dir, `${slot.id}.toml`),
    config.replace("SEEDS", seeds.map((seed) => `"${seed}"`).join(", ")),
  );
  slot.lives += 1;
  slot.ready = undefined;
  let ready: (line: ReadyLine) => void = () => {};
  const readyLine = new Promise<ReadyLine>((resolvePromise) => {
    ready = resolvePromise;
  });
  const child = children.start(slot.id, ["router", "--config", `${slot.id}.toml`], (line, stream) => {
    if (stream === "out") {
      const parsed = readyLineOf(line);
      if (parsed !== undefined) ready(parsed);
      return;
    }
    slot.log.write(`${line}\n`);
    // The log is "time LEVEL message ..."; warnings and errors are part of the story.
    const [, level, rest] = /^\S+ (WARN|ERROR) (.*)$/.exec(line) ?? [];
    if (level !== undefined) showWarning(slot.id, `${level.toLowerCase()}: ${rest}`);
  });
  slot.child = child;
  // A router that stops before its ready line is reported by the children's unexpectedExit.
  const line = await within(`router ${slot.id}'s ready line`, 20_000, readyLine);
  slot.ready = line;
  return line;
}

async function main(): Promise<void> {
  console.log(
    `Neuron demo: a 3-router region, a persistent topic replicated on all three, and its leader killed\n` +
      `with kill -9 and restarted while a publisher and a subscriber carry on.`,
  );

  section("Setup");
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, "certs"), { recursive: true });
  await mkdir(join(dir, "logs"), { recursive: true });
  const ca = await createCertificateAuthority("Neuron demo CA");
  await writeFile(join(dir, "certs/ca.pem"), ca.cert);
  const credentials: Record<string, { cert: string; key: string }> = {};
  for (const identity of [
    ...routerIds.map((id) => ({ role: "router" as const, id })),
    { role: "client" as const, id: "demo-sub" },
    { role: "client" as const, id: "demo-pub" },
  ]) {
    const pair = await issueCertificate(ca, identity);
    credentials[identity.id] = pair;
    await writeFile(join(dir, `certs/${identity.id}.pem`), pair.cert);
    await writeFile(join(dir, `certs/${identity.id}.key`), pair.key, { mode: 0o600 });
  }
  const gossipKey = generateKey();
  const configOf = (id: string) =>
    [
      `id = "${id}"`,
      'region = "local"',
      `data_dir = "data/${id}"`,
      "seeds = [SEEDS]",
      "",
      "[listen]",
      'clients = "127.0.0.1:0"',
      'links = "127.0.0.1:0"',
      'gossip = "127.0.0.1:0"',
      'metrics = "127.0.0.1:0"',
      "",
      "[gossip]",
      `keys = ["${gossipKey}"]`,
      "",
      "[tls]",
      'ca = "certs/ca.pem"',
      `cert = "certs/${id}.pem"`,
      `key = "certs/${id}.key"`,
      "",
      "[streams]",
      `persistent_prefixes = ["demo"]`,
      "",
    ].join("\n");
  for (const id of routerIds)
    slots.push({
      id,
      child: undefined,
      ready: undefined,
      lives: 0,
      log: createWriteStream(join(dir, `logs/${id}.log`)),
    });
  say(
    `in ${relative(process.cwd(), dir) || dir}: a cluster CA, certificates for r1, r2, r3, demo-sub, demo-pub,`,
  );
  say("a gossip key, and one config per router: every listener on 127.0.0.1 port 0,");
  say(
    `[streams] persistent_prefixes = ["demo"]: topic ${topic} is stored on 3 replicas, fsynced before the ack`,
  );

  section("1. Start the region: r1 founds it, r2 and r3 join through r1");
  const [first, ...others] = slots as [RouterSlot, ...RouterSlot[]];
  const describe = (ready: ReadyLine) =>
    `pid ${ready.pid}, clients ${ready.clients}, gossip ${ready.gossip}, status http://${ready.metrics}/status`;
  const firstReady = await startRouter(first, [], configOf(first.id));
  say(`r1 up (seeds = []): ${describe(firstReady)}`);
  await Promise.all(
    others.map(async (slot) => {
      const ready = await startRouter(slot, [firstReady.gossip], configOf(slot.id));
      say(`${slot.id} up (seeds = r1's gossip): ${describe(ready)}`);
    }),
  );
  const formed = await until("every router's roster to hold 3 routers", () => rosterOfEveryone(3));
  say(
    `every router's roster: ${list(formed.mesh!.roster)}; controller leader ${formed.mesh!.controllerLeader}`,
  );

  section(`2. A subscriber and a publisher on ${topic} (partition ${partition})`);
  const allClients = slots.map((slot) => slot.ready!.clients);
  const rotate = (by: number) => [...allClients.slice(by), ...allClients.slice(0, by)];
  const deliveries = new Deliveries(topic, nowMs);
  let subscribed: () => void = () => {};
  const subscribedLine = new Promise<void>((resolvePromise) => {
    subscribed = resolvePromise;
  });
  const subArgs = ["sub", topic, "--name", "demo-sub", "--certs", "certs", "--seeds", rotate(1).join(",")];
  const subscriber = children.start("neuron sub", subArgs, (line, stream) => {
    if (stream === "out") {
      deliveries.line(line);
      return;
    }
    if (line.startsWith("subscribed")) subscribed();
    say(`sub | ${line}`);
  });
  say(`neuron ${subArgs.join(" ")}`);
  await within("the subscriber to subscribe", waitTimeoutMs, subscribedLine);

  const before = await settledPartition();
  say(
    `partition ${partition} (activated by the subscription): voters ${list(before.voters)} on every router, leader ${before.leader}`,
  );

  // The publisher tries the partition's leader first: the kill then also shows a client failing over.
  const leaderClients = slots.find((slot) => slot.id === before.leader)!.ready!.clients;
  const publisherSeeds = [leaderClients, ...allClients.filter((address) => address !== leaderClients)];
  let publisherRouter = "";
  const client: Client = await connect({
    seeds: publisherSeeds,
    ca: ca.cert,
    ...credentials["demo-pub"]!,
    requestTimeoutMs: waitTimeoutMs,
    onEvent: (event) => {
      if (event.kind === "connected") {
        if (publisherRouter !== "") say(`publisher: reconnected, now via router ${event.router}`);
        publisherRouter = event.router;
      } else if (event.kind === "disconnected") {
        say(
          `publisher: lost its router ${publisherRouter} (${event.reason}); unacknowledged publishes will be sent again`,
        );
      }
    },
  });
  publisherClient = client;
  const publisher = new Publisher({ client, topic, ratePerSecond, inFlightMax: 10_000, nowMs });
  publisher.start();
  say(
    `publisher (in-process client, seeds ${publisherSeeds.join(",")}) connected via router ${publisherRouter}: ` +
      `"seq 1", "seq 2", ... at ${ratePerSecond}/s`,
  );

  // Acknowledgements and deliveries per second, and the partition's leader, until stopped.
  ticking = true;
  const ticker = (async () => {
    let acked = publisher.acknowledged;
    let delivered = deliveries.delivered;
    while (ticking) {
      await new Promise((resolvePromise) => setTimeout(resolvePromise, 1000));
      if (!ticking) break;
      const leaders = await Promise.allSettled(
        liveRouters().map(async (slot) => {
          const group = groupOf(await fetchStatus(slot.ready!.metrics));
          return group?.role === "leader" ? slot.id : undefined;
        }),
      );
      const leader = leaders.find((result) => result.status === "fulfilled" && result.value !== undefined);
      const leaderText = leader?.status === "fulfilled" ? `leader ${leader.value}` : "no leader";
      say(
        `  acks ${String(publisher.acknowledged - acked).padStart(4)}/s   deliveries ${String(deliveries.delivered - delivered).padStart(4)}/s` +
          `   (acked ${publisher.acknowledged}, delivered ${deliveries.delivered}, ${leaderText})`,
      );
      acked = publisher.acknowledged;
      delivered = deliveries.delivered;
    }
  })();
  await until("2 s of traffic", async () =>
    publisher.acknowledged >= 2 * ratePerSecond ? true : `${publisher.acknowledged} acknowledged`,
  );

  const leaderNow = await until(`partition ${partition}'s leader`, () => replicated(3));
  const victim = slots.find((slot) => slot.id === leaderNow.leader)!;
  section(`3. kill -9 ${victim.id}, the leader of partition ${partition}`);
  const ackedAtKill = publisher.acknowledged;
  victim.child!.expectExit();
  victim.child!.signal("SIGKILL");
  const killedMs = nowMs();
  say(`kill -9 ${victim.id} (pid ${victim.ready!.pid}); ${ackedAtKill} publishes acknowledged so far`);
  await victim.child!.exited;
  const survivors = liveRouters().map((slot) => slot.id);
  await Promise.all([
    until(`a new leader of partition ${partition}`, async () => {
      const statuses = await views();
      const leader = statuses.find((status) => groupOf(status)?.role === "leader");
      return leader === undefined ? "no leader yet" : { id: leader.id };
    }).then((leader) =>
      say(
        `partition ${partition} elected a new leader: ${leader.id} (${seconds(nowMs() - killedMs)} after the kill)`,
      ),
    ),
    until(`${list(survivors)} to declare ${victim.id} dead`, async () => {
      const statuses = await views();
      for (const status of statuses) {
        const state = status.members.find((member) => member.id === victim.id)?.state;
        if (state !== "dead") return `${status.id} sees ${victim.id} ${state ?? "nowhere"}`;
      }
      return true;
    }).then(() =>
      say(
        `membership: ${list(survivors)} declare ${victim.id} dead (${seconds(nowMs() - killedMs)} after the kill)`,
      ),
    ),
  ]);
  const shrunk = await until(`the roster without ${victim.id} on ${list(survivors)}`, () =>
    rosterOfEveryone(2),
  );
  const shrunkGroup = groupOf(shrunk);
  say(
    `the controller dropped ${victim.id}: roster ${list(shrunk.mesh!.roster)}; ` +
      `partition ${partition}: voters ${list(shrunkGroup?.voters ?? [])}, leader ${shrunkGroup?.leader ?? "none"}`,
  );

  section(`4. Restart ${victim.id}: same data dir, seeded with the gossip addresses of ${list(survivors)}`);
  const seeds = liveRouters().map((slot) => slot.ready!.gossip);
  const restartedMs = nowMs();
  const again = await startRouter(victim, seeds, configOf(victim.id));
  say(`${victim.id} up again (life ${victim.lives}): ${describe(again)}`);
  const rejoined = await until(`${victim.id} back in every roster`, () => rosterOfEveryone(3));
  say(
    `every router's roster: ${list(rejoined.mesh!.roster)} (${seconds(nowMs() - restartedMs)} after the restart)`,
  );
  const after = await settledPartition();
  say(
    `partition ${partition}: voters ${list(after.voters)} again on every router, leader ${after.leader} ` +
      `(${seconds(nowMs() - restartedMs)} after the restart)`,
  );
  const ackedAtRejoin = publisher.acknowledged;
  await until("1 s more of traffic", async () =>
    publisher.acknowledged >= ackedAtRejoin + ratePerSecond ? true : "not yet",
  );
  ticking = false;
  await ticker;

  section("5. Stop: the publisher, then the subscriber, then the routers (SIGTERM)");
  await publisher.stop();
  await client.close();
  say(
    `publisher stopped: ${publisher.published} published, ${publisher.acknowledged} acknowledged, ${publisher.failed} failed`,
  );
  await until("the subscriber to print every acknowledged message", async () => {
    const lost = lostOf(publisher, deliveries);
    return lost === 0 ? true : `${lost} acknowledged messages not printed yet`;
  }).catch((error: Error) => say(`subscriber: ${error.message}`));
  const subscriberExit = await subscriber.stop(10_000);
  say(`neuron sub: ${describeExit(subscriberExit)}, printed ${deliveries.delivered} messages`);
  const routerExits = await Promise.all(
    liveRouters().map(async (slot) => ({ id: slot.id, exit: await slot.child!.stop(10_000) })),
  );
  say(`routers: ${routerExits.map(({ id, exit }) => `${id} ${describeExit(exit)}`).join(", ")}`);

  const lost = lostOf(publisher, deliveries);
  const aroundKill = (gap: Gap | undefined, whole: Gap) =>
    gap === undefined
      ? "none after the kill"
      : `${Math.round(gap.ms)} ms around the kill (ending ${seconds(gap.endMs - killedMs)} after it); ` +
        `${Math.round(whole.ms)} ms at most in the whole run`;
  reportRepeatedWarnings();
  section("Summary");
  const rows: [string, string][] = [
    ["published", String(publisher.published)],
    ["acknowledged", String(publisher.acknowledged)],
    ["failed", String(publisher.failed)],
    ["delivered", `${deliveries.delivered} (printed by neuron sub)`],
    ["lost", `${lost} (acknowledged, never delivered)`],
    ["duplicated", String(deliveries.duplicated)],
    ["out of order", String(deliveries.outOfOrder)],
    [
      "longest ack gap",
      aroundKill(longestGapWithin(publisher.ackTimesMs, killedMs, restartedMs), publisher.longestGap),
    ],
    [
      "longest delivery gap",
      aroundKill(longestGapWithin(deliveries.timesMs, killedMs, restartedMs), deliveries.longestGap),
    ],
    ["took", seconds(nowMs())],
  ];
  for (const [name, value] of rows) console.log(`  ${name.padEnd(22)}${value}`);

  const problems: string[] = [];
  if (publisher.failed > 0)
    problems.push(`${publisher.failed} publishes failed, first: ${publisher.failures[0]}`);
  if (publisher.acknowledged !== publisher.published)
    problems.push(`${publisher.published - publisher.acknowledged} publishes were not acknowledged`);
  if (lost > 0) problems.push(`${lost} acknowledged messages never reached the subscriber`);
  if (deliveries.duplicated > 0) problems.push(`${deliveries.duplicated} messages were delivered twice`);
  if (deliveries.outOfOrder > 0)
    problems.push(`${deliveries.outOfOrder} messages were delivered out of order`);
  if (deliveries.unexpected.length > 0)
    problems.push(`the subscriber printed unexpected lines: ${JSON.stringify(deliveries.unexpected)}`);
  if (subscriberExit.code !== 0) problems.push(`neuron sub ended with ${describeExit(subscriberExit)}`);
  for (const { id, exit } of routerExits)
    if (exit.code !== 0) problems.push(`router ${id} ended with ${describeExit(exit)}`);
  if (problems.length > 0) throw new DemoFailed(problems.join("; "));
  console.log(
    `\ndemo: OK: ${publisher.acknowledged} messages acknowledged and delivered once each, in order, ` +
      `while ${victim.id} was killed and restarted`,
  );
}

let interrupted = false;
process.once("SIGINT", () => {
  interrupted = true;
  console.error("\ndemo: interrupted (Ctrl-C): stopping every process it started");
  children.killAll();
  process.exit(130);
});

try {
  await Promise.race([main(), unexpectedExit]);
  process.exitCode = 0;
} catch (error) {
  if (!interrupted) {
    reportRepeatedWarnings();
    const message = error instanceof DemoFailed ? error.message : ((error as Error).stack ?? String(error));
    console.error(`\ndemo: FAILED: ${message}`);
    console.error(`demo: router logs are in ${relative(process.cwd(), dir)}/logs/`);
    process.exitCode = 1;
  }
} finally {
  ticking = false;
  await publisherClient?.close();
  const running = children.running;
  children.killAll();
  await Promise.all(running.map((child) => child.exited));
  children.release();
  for (const slot of slots) slot.log.end();
  // Polls still running after a failure (one of several waits failed) must not hold the exit.
  process.exit();
}
