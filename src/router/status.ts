// The router's HTTP listener for people and tools (DESIGN.md: metrics listener):
// - GET /status answers JSON with the router's view (identity, clients, counters, members,
//   mesh) plus `rates`: publishes and deliveries per second over the last ten seconds.
// - GET /metrics answers the same numbers in Prometheus text format (metrics.ts).
// Read-only; bound to the `[listen] metrics` address, loopback by default in the example config.
// Other paths get 404 naming both routes; other methods 405.
// The rate sampler runs from `serveStatus` until `close()`; its timer never keeps the process
// alive (systemClock unrefs its timers).
import { createServer, type Server } from "node:http";
import type { Address } from "../axon/index.ts";
import { type Clock, systemClock } from "../ports/index.ts";
import { routerMetrics } from "./metrics.ts";
import { RateSampler, type RateTotals } from "./rates.ts";

export interface StatusServer {
  readonly address: Address;
  close(): Promise<void>;
}

export interface StatusSources {
  /** GET /status: the router's view, a JSON object (`rates` is added to it). */
  readonly status: () => unknown;
  /** GET /metrics: Prometheus text, and its content type. */
  readonly metrics: { render(): Promise<string>; readonly contentType: string };
  /** The running totals the rate sampler reads every second: cheap, never the whole status. */
  readonly totals: () => RateTotals;
  /** Default systemClock. */
  readonly clock?: Clock;
}

/** The sources of a router: its status, its metrics read from that status, its counters. */
export function routerSources(router: { status(): unknown; readonly counters: RateTotals }): StatusSources {
  return {
    status: () => router.status(),
    metrics: routerMetrics(() => router.status()),
    totals: () => router.counters,
  };
}

const routes = "GET /status or GET /metrics";

export async function serveStatus(bind: Address, sources: StatusSources): Promise<StatusServer> {
  const sampler = new RateSampler(sources.totals, sources.clock ?? systemClock);
  const server: Server = createServer((request, response) => {
    const path = request.url?.split("?")[0];
    if (path !== "/status" && path !== "/metrics") {
      response.writeHead(404, { "content-type": "text/plain" }).end(`not found: try ${routes}\n`);
      return;
    }
    if (request.method !== "GET") {
      response
        .writeHead(405, { "content-type": "text/plain", allow: "GET" })
        .end(`method ${request.method} not allowed: try ${routes}\n`);
      return;
    }
    if (path === "/status") {
      const status = sources.status();
      const body =
        typeof status === "object" && status !== null ? { ...status, rates: sampler.rates() } : status;
      response
        .writeHead(200, { "content-type": "application/json" })
        .end(`${JSON.stringify(body, null, 2)}\n`);
      return;
    }
    sources.metrics.render().then(
      (text) => response.writeHead(200, { "content-type": sources.metrics.contentType }).end(text),
      (error: unknown) =>
        response
          .writeHead(500, { "content-type": "text/plain" })
          .end(`metrics failed: ${(error as Error)?.message ?? String(error)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(bind.port, bind.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address();
  if (bound === null || typeof bound === "string") throw new Error("status server has no TCP address");
  sampler.start();
  return {
    address: { host: bind.host, port: bound.port },
    close: () =>
      new Promise((resolve) => {
        sampler.stop();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
