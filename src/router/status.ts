// The router's HTTP listener for people and tools (DESIGN.md: metrics listener): GET /status
// answers JSON with the router's view (identity, clients, counters, members). Read-only; bound
// to the `[listen] metrics` address, loopback by default in the example config.
import { createServer, type Server } from "node:http";
import type { Address } from "../axon/index.ts";

export interface StatusServer {
  readonly address: Address;
  close(): Promise<void>;
}

export async function serveStatus(bind: Address, status: () => unknown): Promise<StatusServer> {
  const server: Server = createServer((request, response) => {
    if (request.method !== "GET" || request.url?.split("?")[0] !== "/status") {
      response.writeHead(404, { "content-type": "text/plain" }).end("not found: try GET /status\n");
      return;
    }
    response
      .writeHead(200, { "content-type": "application/json" })
      .end(`${JSON.stringify(status(), null, 2)}\n`);
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
  return {
    address: { host: bind.host, port: bound.port },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
