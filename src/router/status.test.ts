// The status listener over real HTTP on loopback, with fixed sources and a simulated clock for
// the rate sampler (no sleeps): routes, methods, the rates in /status, the metrics text.
import { afterEach, describe, expect, it } from "vitest";
import { SimClock } from "../sim/index.ts";
import { routerMetrics } from "./metrics.ts";
import { type StatusServer, serveStatus } from "./status.ts";

const servers: StatusServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start() {
  const clock = new SimClock();
  const counters = { published: 0, delivered: 0, refused: 0, slowConsumers: 0 };
  const status = () => ({ id: "r1", clients: 2, counters });
  const server = await serveStatus(
    { host: "127.0.0.1", port: 0 },
    {
      status,
      metrics: routerMetrics(status, { processMetrics: false }),
      totals: () => counters,
      clock,
    },
  );
  servers.push(server);
  return { clock, counters, server, base: `http://127.0.0.1:${server.address.port}` };
}

describe("the status listener", () => {
  it("answers GET /status with the router's view and its publish and delivery rates", async () => {
    const { clock, counters, base } = await start();
    counters.published = 50;
    counters.delivered = 150;
    clock.advance(10_000);
    const response = await fetch(`${base}/status`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(await response.json()).toEqual({
      id: "r1",
      clients: 2,
      counters: { published: 50, delivered: 150, refused: 0, slowConsumers: 0 },
      rates: { windowSeconds: 10, publishedPerSecond: 5, deliveredPerSecond: 15 },
    });
  });

  it("answers GET /metrics in Prometheus text format", async () => {
    const { counters, base } = await start();
    counters.published = 12;
    const response = await fetch(`${base}/metrics?x=1`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text).toMatch(/^# HELP neuron_messages_published_total .+$/m);
    expect(text).toMatch(/^neuron_messages_published_total 12$/m);
    expect(text).toMatch(/^neuron_clients 2$/m);
  });

  it("answers 404 naming both routes for other paths, and 405 for other methods", async () => {
    const { base } = await start();
    const missing = await fetch(`${base}/healthz`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toMatch(/GET \/status or GET \/metrics/);
    const posted = await fetch(`${base}/metrics`, { method: "POST", body: "x" });
    expect(posted.status).toBe(405);
    expect(posted.headers.get("allow")).toBe("GET");
    expect(await posted.text()).toMatch(/POST not allowed/);
  });

  it("stops its rate sampler when closed", async () => {
    const { clock, server } = await start();
    expect(clock.pendingTimers).toBe(1);
    await server.close();
    servers.length = 0;
    expect(clock.pendingTimers).toBe(0);
  });
});
