// Bounded buffers, end to end with a real router process: the client's publish window, and
// the router cutting off a subscriber that stops reading.
import { connect as tlsConnect } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Client, connect } from "../client/index.ts";
import { type Credentials, parseAddress } from "../src/axon/index.ts";
import { encodeFrame } from "../src/wire/index.ts";
import { makeTestPki, type TestPki } from "./support/certs.ts";
import { startRouterProcess, stopAll, tempDir, waitFor, writeRouterConfig } from "./support/processes.ts";

let pki: TestPki;
let credentials: Credentials;
const clients: Client[] = [];

beforeAll(async () => {
  pki = await makeTestPki();
  credentials = await pki.credentials({ role: "client", id: "app" });
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close();
  await stopAll();
});

afterAll(stopAll);

async function router(extraToml = "") {
  const dir = await tempDir();
  return startRouterProcess("r1", await writeRouterConfig({ id: "r1", dir, pki, extraToml }));
}

describe("client publish window", () => {
  it("whenFull: reject refuses a publish past maxInFlight with BufferFull, and sends nothing for it", async () => {
    const r = await router();
    const client = await connect({ seeds: [r.clients], ...credentials, maxInFlight: 2, whenFull: "reject" });
    clients.push(client);
    const first = client.publish("t", "1");
    const second = client.publish("t", "2");
    await expect(client.publish("t", "3")).rejects.toMatchObject({ code: "BufferFull" });
    await Promise.all([first, second]);
    await expect(client.publish("t", "4")).resolves.toBeUndefined();
  });

  it("whenFull: wait queues publishers in order, and bounds how many may wait", async () => {
    const r = await router();
    const client = await connect({ seeds: [r.clients], ...credentials, maxInFlight: 1, maxWaiting: 3 });
    clients.push(client);
    const received: string[] = [];
    await client.subscribe("ordered", (message) => received.push(message.payload.toString()));
    const sends = ["a", "b", "c", "d"].map((text) => client.publish("ordered", text));
    await expect(client.publish("ordered", "e")).rejects.toMatchObject({
      code: "BufferFull",
      message: expect.stringMatching(/3 publishers are already waiting/),
    });
    await Promise.all(sends);
    await waitFor(() => received.length === 4, "4 messages");
    expect(received).toEqual(["a", "b", "c", "d"]);
  });

  it("maxPendingBytes bounds the bytes in flight", async () => {
    const r = await router();
    const client = await connect({
      seeds: [r.clients],
      ...credentials,
      maxPendingBytes: 1000,
      whenFull: "reject",
    });
    clients.push(client);
    const first = client.publish("t", Buffer.alloc(600));
    await expect(client.publish("t", Buffer.alloc(600))).rejects.toMatchObject({ code: "BufferFull" });
    await first;
  });

  it("close() rejects waiting and pending publishes with Closed", async () => {
    const r = await router();
    const client = await connect({ seeds: [r.clients], ...credentials, maxInFlight: 1 });
    const pending = [client.publish("t", "1"), client.publish("t", "2")];
    await client.close();
    const results = await Promise.allSettled(pending);
    expect(
      results.some(
        (result) => result.status === "rejected" && (result.reason as { code: string }).code === "Closed",
      ),
    ).toBe(true);
    await expect(client.publish("t", "3")).rejects.toMatchObject({ code: "Closed" });
  });
});

describe("router slow-consumer limit", () => {
  it("cuts off a subscriber that stops reading, and keeps serving the others", async () => {
    const r = await router("[limits]\nslow_consumer_bytes = 65536\n");
    const address = parseAddress(r.clients);
    if (!address.ok) throw new Error(address.reason);
    // A raw subscriber that subscribes and then never reads again.
    const socket = tlsConnect({
      host: address.address.host,
      port: address.address.port,
      ...credentials,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    await new Promise<void>((resolve) => socket.once("secureConnect", () => resolve()));
    socket.write(
      encodeFrame({ kind: "Hello", agent: "stuck", frameMaxBytes: 1 << 20, payloadMaxBytes: 1 << 20 }),
    );
    socket.write(
      encodeFrame({ kind: "Subscribe", requestId: 1, subscriptionId: 1, topic: "flood", fromOffset: 0 }),
    );
    await waitFor(() => /client connected client=app/.test(r.stderr()), "the raw subscriber");
    socket.pause();

    const healthy = await connect({ seeds: [r.clients], ...credentials });
    clients.push(healthy);
    let got = 0;
    await healthy.subscribe("flood", () => {
      got += 1;
    });
    const publisher = await connect({ seeds: [r.clients], ...credentials });
    clients.push(publisher);
    const payload = Buffer.alloc(8 * 1024);
    // Far more than the kernel's socket buffers plus the 64 KiB limit.
    for (let index = 0; index < 2000; index++) await publisher.publish("flood", payload);
    await waitFor(
      () => /client disconnected client=app reason=.*SlowConsumer/.test(r.stderr()),
      "the slow consumer to be cut off",
    );
    await waitFor(() => got === 2000, "the healthy subscriber to get everything");
    socket.destroy();
  });
});
