// `neuron status`: the table from fixed JSON, and the whole command against stand-in routers
// (plain HTTP servers on loopback answering fixed /status documents).
import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { controllerGroup } from "../partitions/index.ts";
import { type ClusterReport, formatStatus, statusCommand } from "./status.ts";

function routerStatus(
  id: string,
  fields: {
    role?: string;
    learner?: boolean;
    held: number;
    led: number;
    clients: number;
    rates: [number | null, number | null];
    lag?: Record<string, number>;
  },
) {
  return {
    id,
    clients: fields.clients,
    members: [],
    mesh: {
      roster: ["r1", "r2", "r3"],
      draining: [],
      controllerLeader: "r1",
      partitionsHeld: fields.held,
      partitionsLed: fields.led,
      groups: [
        { group: 4, role: "leader", lag: fields.lag ?? {} },
        ...(fields.role === undefined
          ? []
          : [{ group: controllerGroup, role: fields.role, learner: fields.learner ?? false, lag: {} }]),
      ],
    },
    rates: { windowSeconds: 10, publishedPerSecond: fields.rates[0], deliveredPerSecond: fields.rates[1] },
  };
}

const report: ClusterReport = {
  router: "127.0.0.1:7409",
  id: "r1",
  roster: ["r1", "r2", "r3", "r4"],
  draining: ["r4"],
  controllerLeader: "r1",
  routers: [
    {
      id: "r1",
      state: "alive",
      address: "127.0.0.1:7409",
      status: routerStatus("r1", {
        role: "leader",
        held: 120,
        led: 41,
        clients: 12,
        rates: [1520.456, 3001],
        lag: { r2: 3, r3: 250 },
      }),
    },
    {
      id: "r2",
      state: "alive",
      address: "10.0.0.2:7409",
      status: routerStatus("r2", { role: "follower", held: 118, led: 40, clients: 0, rates: [0, 0] }),
    },
    {
      id: "r3",
      state: "alive",
      address: "10.0.0.3:7409",
      error: "unreachable at 10.0.0.3:7409: no answer within 2000 ms",
    },
    {
      id: "r4",
      state: "alive",
      address: "10.0.0.4:7409",
      status: routerStatus("r4", {
        role: "follower",
        learner: true,
        held: 0,
        led: 0,
        clients: 1,
        rates: [null, null],
      }),
    },
    { id: "r5", state: "dead", address: "10.0.0.5:7409" },
  ],
};

describe("formatStatus", () => {
  it("prints a row per router, notes for the unreachable, then the roster and the controller leader", () => {
    expect(formatStatus(report)).toBe(
      [
        "cluster as router r1 (127.0.0.1:7409) sees it:",
        "ID  STATE        CONTROLLER  HELD  LED  CLIENTS  PUB/S   DELIVER/S  MAX LAG",
        "r1  alive        leader      120   41   12       1520.5  3001.0     250",
        "r2  alive        follower    118   40   0        0.0     0.0        0",
        "r3  unreachable  -           -     -    -        -       -          -",
        "r4  alive        learner     0     0    1        -       -          0",
        "r5  dead         -           -     -    -        -       -          -",
        "note: r3 (alive in r1's view): unreachable at 10.0.0.3:7409: no answer within 2000 ms",
        "",
        "roster (4): r1, r2, r3, r4 (draining)",
        "controller leader: r1",
        "",
      ].join("\n"),
    );
  });

  it("says so when the router knows no roster or leader yet", () => {
    const text = formatStatus({ ...report, roster: [], draining: [], controllerLeader: null, routers: [] });
    expect(text).toMatch(/^roster \(0\): empty$/m);
    expect(text).toMatch(/^controller leader: none known$/m);
  });
});

describe("neuron status against stand-in routers", () => {
  const servers: Server[] = [];

  afterEach(async () => {
    await Promise.all(
      servers.splice(0).map((server) => new Promise((resolve) => server.close(() => resolve(undefined)))),
    );
  });

  async function serve(body: () => unknown): Promise<string> {
    const server = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body()));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no TCP address");
    return `127.0.0.1:${address.port}`;
  }

  it("asks every alive member at its metrics address and shows one that does not answer", async () => {
    const r2 = await serve(() =>
      routerStatus("r2", { role: "follower", held: 7, led: 3, clients: 4, rates: [2, 6] }),
    );
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    const members = [
      { id: "r1", state: "alive", gossip: "127.0.0.1:7", addresses: {} },
      { id: "r2", state: "alive", gossip: "127.0.0.1:8", addresses: { metrics: r2 } },
      { id: "r3", state: "alive", gossip: "127.0.0.1:9", addresses: { metrics: "127.0.0.1:1" } },
      { id: "r4", state: "left", gossip: "127.0.0.1:10", addresses: { metrics: "127.0.0.1:1" } },
    ];
    const r1 = await serve(() => ({
      ...routerStatus("r1", { role: "leader", held: 8, led: 5, clients: 9, rates: [10, 30] }),
      members,
    }));
    const lines: string[] = [];
    const errors: string[] = [];
    const code = await statusCommand(
      ["--router", r1],
      (line) => lines.push(line),
      (line) => errors.push(line),
    );
    expect(code).toBe(0);
    expect(errors).toEqual([]);
    const table = lines.join("\n");
    expect(table).toMatch(/^r1 +alive +leader +8 +5 +9 +10\.0 +30\.0 +0$/m);
    expect(table).toMatch(/^r2 +alive +follower +7 +3 +4 +2\.0 +6\.0 +0$/m);
    expect(table).toMatch(/^r3 +unreachable( +-){7}$/m);
    expect(table).toMatch(/^r4 +left( +-){7}$/m);
    expect(table).toMatch(/^note: r3 \(alive in r1's view\): unreachable at 127\.0\.0\.1:1: ECONNREFUSED$/m);
    expect(table).toMatch(/^roster \(3\): r1, r2, r3$/m);

    lines.length = 0;
    expect(
      await statusCommand(
        ["--router", r1, "--json"],
        (line) => lines.push(line),
        () => {},
      ),
    ).toBe(0);
    const merged = JSON.parse(lines.join("\n")) as ClusterReport;
    expect(
      merged.routers.map((router) => [router.id, router.status !== undefined, router.error ?? null]),
    ).toEqual([
      ["r1", true, null],
      ["r2", true, null],
      ["r3", false, "unreachable at 127.0.0.1:1: ECONNREFUSED"],
      ["r4", false, null],
    ]);
    expect(merged.controllerLeader).toBe("r1");
  });

  it("fails with exit 1 naming the address when the first router does not answer", async () => {
    const errors: string[] = [];
    const code = await statusCommand(
      ["--router", "127.0.0.1:1"],
      () => {},
      (line) => errors.push(line),
    );
    expect(code).toBe(1);
    expect(errors.join("\n")).toMatch(/cannot get 127\.0\.0\.1:1\/status: ECONNREFUSED/);
  });

  it("refuses a malformed --router and stray arguments as usage errors", async () => {
    await expect(
      statusCommand(
        ["--router", "nowhere"],
        () => {},
        () => {},
      ),
    ).rejects.toThrow(/neuron status: --router: "nowhere" is not "host:port"/);
    await expect(
      statusCommand(
        ["extra"],
        () => {},
        () => {},
      ),
    ).rejects.toThrow(/unexpected argument "extra"/);
    await expect(
      statusCommand(
        ["--verbose"],
        () => {},
        () => {},
      ),
    ).rejects.toThrow(/Unknown option '--verbose'/);
  });
});
