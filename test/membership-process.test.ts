// Membership between real router processes on loopback: real UDP gossip sealed with the
// cluster key, push-pull over real TLS, `kill -9`, restart and graceful stop (issue 3, item 5).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateKey } from "../src/membership/keyring.ts";
import { makeTestPki, type TestPki } from "./support/certs.ts";
import {
  type RouterProcess,
  runCli,
  startRouterProcess,
  stopAll,
  tempDir,
  waitFor,
  writeRouterConfig,
} from "./support/processes.ts";

interface StatusMember {
  id: string;
  state: string;
  incarnation: number;
  region: string;
}

let pki: TestPki;
const key = generateKey();

beforeAll(async () => {
  pki = await makeTestPki();
});
afterEach(stopAll);
afterAll(stopAll);

async function start(id: string, dir: string, seeds: string[], port?: number): Promise<RouterProcess> {
  const configPath = await writeRouterConfig({
    id,
    dir,
    pki,
    metrics: true,
    gossip: { key, seeds, ...(port === undefined ? {} : { port }) },
  });
  return startRouterProcess(id, configPath);
}

async function view(router: RouterProcess): Promise<Map<string, StatusMember>> {
  const response = await fetch(`http://${router.metrics}/status`);
  const status = (await response.json()) as { members: StatusMember[] };
  return new Map(status.members.map((member) => [member.id, member]));
}

/** Polls every router's /status until `check` holds for all of them (deadline 30 s). */
async function untilViews(
  routers: RouterProcess[],
  what: string,
  check: (view: Map<string, StatusMember>) => boolean,
) {
  let views: Map<string, StatusMember>[] = [];
  let done = false;
  const deadline = Date.now() + 30_000;
  while (!done) {
    views = await Promise.all(routers.map(view));
    done = views.every(check);
    if (!done && Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(views.map((v) => [...v.values()]))}`);
    }
    if (!done) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return views;
}

describe("membership between five real routers", () => {
  it("join through one seed, detect kill -9, rejoin with a higher incarnation, and see a graceful stop as left", async () => {
    const dir = await tempDir();
    const first = await start("r1", dir, []);
    const routers = [first];
    for (const id of ["r2", "r3", "r4", "r5"]) routers.push(await start(id, dir, [first.gossip!]));
    const ids = ["r1", "r2", "r3", "r4", "r5"];
    await untilViews(routers, "all five alive everywhere", (v) =>
      ids.every((id) => v.get(id)?.state === "alive"),
    );

    // kill -9: the others mark it dead (never "left").
    const victim = routers[2]!;
    const victimPort = Number(victim.gossip!.split(":")[1]);
    const before = (await view(routers[0]!)).get("r3")!.incarnation;
    victim.signal("SIGKILL");
    await victim.exited;
    const survivors = routers.filter((router) => router !== victim);
    await untilViews(survivors, "r3 dead everywhere", (v) => v.get("r3")?.state === "dead");

    // Restart on the same gossip address: it refutes its death with a higher incarnation.
    const restarted = await start("r3", dir, [first.gossip!], victimPort);
    const everyone = [...survivors, restarted];
    const views = await untilViews(everyone, "r3 alive again everywhere", (v) =>
      ids.every((id) => v.get(id)?.state === "alive"),
    );
    for (const v of views) expect(v.get("r3")!.incarnation).toBeGreaterThan(before);

    // A graceful stop is seen as "left".
    const leaving = everyone.find((router) => router.id === "r5")!;
    leaving.signal("SIGTERM");
    expect(await leaving.exited).toEqual({ code: 0, signal: null });
    const remaining = everyone.filter((router) => router !== leaving);
    await untilViews(remaining, "r5 left everywhere", (v) => v.get("r5")?.state === "left");

    // What a person sees.
    const members = await runCli(["members", "--router", first.metrics!]);
    expect(members.code).toBe(0);
    expect(members.stdout).toMatch(/members as router r1 sees them/);
    expect(members.stdout).toMatch(/^r3\s+alive\s+test\s+[1-9]\d*\s+127\.0\.0\.1:\d+$/m);
    expect(members.stdout).toMatch(/^r5\s+left\s+test\s+/m);
    expect(first.stderr()).toMatch(/member dead member=r3/);
  });

  it("a router with another cluster key cannot join: its packets are dropped and counted", async () => {
    const dir = await tempDir();
    const first = await start("r1", dir, []);
    const configPath = await writeRouterConfig({
      id: "r9",
      dir,
      pki,
      metrics: true,
      gossip: { key: generateKey(), seeds: [first.gossip!] },
    });
    const stranger = await startRouterProcess("r9", configPath);
    const deadline = Date.now() + 3000;
    let dropped = 0;
    while (Date.now() < deadline && dropped === 0) {
      const status = (await (await fetch(`http://${first.metrics}/status`)).json()) as {
        membership: { openFailed: number };
      };
      dropped = status.membership.openFailed;
      if (dropped === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(dropped).toBeGreaterThan(0);
    await waitFor(
      () => /refused push-pull .*does not open with this cluster's gossip keys/.test(first.stderr()),
      "the refused push-pull",
    );
    expect([...(await view(first)).keys()]).toEqual(["r1"]);
    expect([...(await view(stranger)).keys()].includes("r1")).toBe(false);
  });
});
