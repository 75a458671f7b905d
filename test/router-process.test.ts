// Real processes: `neuron router` as a child process, clients over real TLS sockets.
import { connect as tlsConnect } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Client,
  type ClientEvent,
  connect,
  NeuronError,
  type ReceivedMessage,
} from "../client/index.ts";
import { AxonFailure, type Credentials, parseAddress, tlsTransport } from "../src/axon/index.ts";
import { encodeFrame, type Frame, wireVersion } from "../src/wire/index.ts";
import { makeTestPki, type TestPki } from "./support/certs.ts";
import {
  type RouterProcess,
  startRouterProcess,
  stopAll,
  tempDir,
  waitFor,
  writeRouterConfig,
} from "./support/processes.ts";

let pki: TestPki;
let clientCredentials: Credentials;
const clients: Client[] = [];

beforeAll(async () => {
  pki = await makeTestPki();
  clientCredentials = await pki.credentials({ role: "client", id: "app" });
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close();
  await stopAll();
});

afterAll(stopAll);

async function startRouter(id = "r1", options: { port?: number; dir?: string } = {}): Promise<RouterProcess> {
  const dir = options.dir ?? (await tempDir());
  const configPath = await writeRouterConfig({
    id,
    dir,
    pki,
    ...(options.port === undefined ? {} : { port: options.port }),
  });
  return startRouterProcess(id, configPath);
}

async function client(seeds: string[], events?: ClientEvent[]): Promise<Client> {
  const c = await connect({
    seeds,
    ...clientCredentials,
    reconnectBackoffMs: [20, 200],
    ...(events === undefined ? {} : { onEvent: (event: ClientEvent) => events.push(event) }),
  });
  clients.push(c);
  return c;
}

function collect(): {
  messages: ReceivedMessage[];
  texts: () => string[];
  handler: (message: ReceivedMessage) => void;
} {
  const messages: ReceivedMessage[] = [];
  return {
    messages,
    texts: () => messages.map((message) => message.payload.toString()),
    handler: (message) => messages.push(message),
  };
}

describe("one router, real processes", () => {
  it("delivers published messages to a subscriber, in order, with headers", async () => {
    const router = await startRouter();
    const subscriber = await client([router.clients]);
    const publisher = await client([router.clients]);
    const got = collect();
    await subscriber.subscribe("orders", got.handler);
    for (let index = 0; index < 500; index++) {
      void publisher.publish("orders", `order ${index}`, { headers: { index: String(index) } });
    }
    await publisher.publish("orders", "last");
    await waitFor(() => got.messages.length === 501, "501 messages");
    expect(got.texts()).toEqual([...Array.from({ length: 500 }, (_, index) => `order ${index}`), "last"]);
    expect(got.messages[7]!.headers).toEqual({ index: "7" });
    expect(got.messages[7]!.topic).toBe("orders");
  });

  it("a publish sent right after declaring its topic persistent, without waiting, is stored", async () => {
    const router = await startRouter();
    const publisher = await client([router.clients]);
    const declared = publisher.declareTopic("ledger", "persistent");
    const published = Array.from({ length: 20 }, (_, index) => publisher.publish("ledger", `m${index}`));
    await Promise.all([declared, ...published]);
    const reader = await client([router.clients]);
    const got = collect();
    await reader.subscribe("ledger", got.handler, { from: 1 });
    await waitFor(() => got.messages.length >= 20, "the stored messages replayed");
    expect(got.texts()).toEqual(Array.from({ length: 20 }, (_, index) => `m${index}`));
  });

  it("fans out to many subscribers and not to other topics or unsubscribed ones", async () => {
    const router = await startRouter();
    const subscribers = await Promise.all(Array.from({ length: 5 }, () => client([router.clients])));
    const inboxes = subscribers.flatMap(() => [collect(), collect()]);
    const subscriptions = await Promise.all(
      inboxes.map((inbox, index) => subscribers[Math.floor(index / 2)]!.subscribe("fan.out", inbox.handler)),
    );
    const other = collect();
    await subscribers[0]!.subscribe("fan.other", other.handler);
    await subscriptions[9]!.unsubscribe();
    const publisher = await client([router.clients]);
    for (let index = 0; index < 100; index++) await publisher.publish("fan.out", `m${index}`);
    await waitFor(
      () => inboxes.slice(0, 9).every((inbox) => inbox.messages.length === 100),
      "fan-out to 9 subscriptions",
    );
    for (const inbox of inboxes.slice(0, 9))
      expect(inbox.texts()).toEqual(Array.from({ length: 100 }, (_, index) => `m${index}`));
    expect(inboxes[9]!.messages).toEqual([]);
    expect(other.messages).toEqual([]);
  });

  it("refuses bad input with clear errors and keeps serving", async () => {
    const router = await startRouter();
    const c = await client([router.clients]);
    await expect(c.publish("bad topic", "x")).rejects.toMatchObject({ code: "InvalidTopic" });
    await expect(c.publish("", "x")).rejects.toMatchObject({ code: "InvalidTopic" });
    await expect(c.publish("t", Buffer.alloc(1024 * 1024 + 1))).rejects.toMatchObject({
      code: "PayloadTooLarge",
      message: expect.stringMatching(/1048577 bytes exceeds the router's limit of 1048576/),
    });
    await expect(c.publish("t", "x", { headers: { a: 1 as unknown as string } })).rejects.toMatchObject({
      code: "InvalidArgument",
    });
    await expect(c.subscribe("a..b", () => {})).rejects.toMatchObject({ code: "InvalidTopic" });
    const got = collect();
    await c.subscribe("still.fine", got.handler);
    await c.publish("still.fine", "yes");
    await waitFor(() => got.messages.length === 1, "a message after the refusals");
  });

  it("the router itself refuses what a raw link sends past the client's checks", async () => {
    const router = await startRouter();
    const address = parseAddress(router.clients);
    if (!address.ok) throw new Error(address.reason);
    const link = await tlsTransport().connect({
      address: address.address,
      credentials: clientCredentials,
      hello: { kind: "Hello", agent: "raw", frameMaxBytes: 1 << 24, payloadMaxBytes: 1 << 24 },
      expectRole: "router",
    });
    expect(link.peerHello.payloadMaxBytes).toBe(1024 * 1024);
    const frames: Frame[] = [];
    link.start({ frame: (frame) => frames.push(frame), closed: () => {} });
    link.send({
      kind: "Publish",
      requestId: 1,
      topic: "bad topic",
      payload: Buffer.from("x"),
      headers: {},
      producerId: "p",
      sequence: 1,
      ackedSequence: 0,
    });
    link.send({
      kind: "Publish",
      requestId: 2,
      topic: "t",
      payload: Buffer.alloc(1024 * 1024 + 10),
      headers: {},
      producerId: "p",
      sequence: 1,
      ackedSequence: 0,
    });
    link.send({ kind: "Unsubscribe", requestId: 3, subscriptionId: 99 });
    link.send({ kind: "Subscribe", requestId: 4, subscriptionId: 1, topic: "t", fromOffset: 0 });
    link.send({ kind: "Subscribe", requestId: 5, subscriptionId: 1, topic: "t", fromOffset: 0 });
    link.send({
      kind: "Publish",
      requestId: 6,
      topic: "t",
      payload: Buffer.from("ok"),
      headers: {},
      producerId: "p",
      sequence: 1,
      ackedSequence: 0,
    });
    await waitFor(
      () => frames.some((frame) => frame.kind === "Ack" && frame.throughRequestId === 6),
      "the Ack through 6",
    );
    const refusals = frames.flatMap((frame) =>
      frame.kind === "Refusal" ? [[frame.requestId, frame.code]] : [],
    );
    expect(refusals).toEqual([
      [1, "InvalidTopic"],
      [2, "PayloadTooLarge"],
      [3, "UnknownSubscription"],
      [5, "DuplicateSubscription"],
    ]);
    expect(frames.filter((frame) => frame.kind === "Message")).toHaveLength(1);
    link.close();
  });

  it("a malformed frame closes only that connection, with a reason", async () => {
    const router = await startRouter();
    const good = await client([router.clients]);
    const got = collect();
    await good.subscribe("t", got.handler);
    const address = parseAddress(router.clients);
    if (!address.ok) throw new Error(address.reason);
    const socket = tlsConnect({
      host: address.address.host,
      port: address.address.port,
      ...clientCredentials,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    let received = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
    });
    await new Promise<void>((resolve) => socket.once("secureConnect", () => resolve()));
    socket.write(
      encodeFrame({ kind: "Hello", agent: "raw", frameMaxBytes: 1 << 20, payloadMaxBytes: 1 << 20 }),
    );
    const garbage = Buffer.from([0, 0, 0, 6, wireVersion, 4, 0xff, 0xff, 0xff, 0xff]);
    socket.write(garbage);
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    await closed;
    expect(received.toString("latin1")).toMatch(/MalformedFrame|malformed/);
    await good.publish("t", "after");
    await waitFor(() => got.messages.length === 1, "delivery after the bad connection");
    expect(router.stderr()).toMatch(/client disconnected.*malformed/);
  });

  it("refuses a client whose certificate is from another CA, and says so on both sides", async () => {
    const router = await startRouter();
    const foreign = await pki.foreign({ role: "client", id: "intruder" });
    const attempt = connect({ seeds: [router.clients], ...foreign, reconnectAttemptsMax: 0 });
    await expect(attempt).rejects.toMatchObject({
      code: "ConnectFailed",
      message: expect.stringMatching(/not signed by the cluster CA/),
    });
    await waitFor(
      () => /refused connection.*not signed by the cluster CA/.test(router.stderr()),
      "the router's log of the refusal",
    );
  });

  it("a client fails over to another seed when its router is killed, and resubscribes", async () => {
    const first = await startRouter("r1");
    const second = await startRouter("r2");
    const events: ClientEvent[] = [];
    const c = await client([first.clients, second.clients], events);
    expect(c.router).toBe("r1");
    const got = collect();
    await c.subscribe("failover", got.handler);
    await c.publish("failover", "before");
    await waitFor(() => got.messages.length === 1, "the first message");

    first.signal("SIGKILL");
    await first.exited;
    await waitFor(() => c.router === "r2", "reconnect to r2");
    expect(events.map((event) => event.kind)).toContain("disconnected");
    // The subscription was re-registered on r2: a message published there reaches it.
    const other = await client([second.clients]);
    await waitFor(() => second.stderr().split("client connected").length >= 3, "both clients on r2");
    await c.publish("failover", "after");
    await other.publish("failover", "from another client");
    await waitFor(() => got.messages.length === 3, "messages after the failover");
    expect(got.texts()).toEqual(["before", "after", "from another client"]);
  });

  it("a client reconnects to a restarted router at the same address", async () => {
    const dir = await tempDir();
    const first = await startRouter("r1", { dir });
    const port = Number(first.clients.split(":")[1]);
    const events: ClientEvent[] = [];
    const c = await client([first.clients], events);
    const got = collect();
    await c.subscribe("restart", got.handler);
    first.signal("SIGKILL");
    await first.exited;
    await waitFor(() => events.some((event) => event.kind === "disconnected"), "the client to notice");
    await startRouter("r1", { dir, port });
    await waitFor(() => c.router === "r1", "reconnect to the restarted router");
    await c.publish("restart", "after restart");
    await waitFor(() => got.texts().includes("after restart"), "delivery after the restart");
  });

  it("SIGTERM stops the router cleanly and tells its clients why", async () => {
    const router = await startRouter();
    const events: ClientEvent[] = [];
    await client([router.clients], events);
    router.signal("SIGTERM");
    expect(await router.exited).toEqual({ code: 0, signal: null });
    await waitFor(() => events.some((event) => event.kind === "disconnected"), "the client to hear of it");
    const disconnected = events.find((event) => event.kind === "disconnected");
    expect(disconnected).toMatchObject({
      reason: expect.stringMatching(/ShuttingDown: router r1 is shutting down/),
    });
    expect(router.stderr()).toMatch(/router stopped/);
  });

  it("a second router on the same data directory is refused while the first runs", async () => {
    const dir = await tempDir();
    await startRouter("r1", { dir });
    const configPath = await writeRouterConfig({ id: "r1", dir, pki });
    await expect(startRouterProcess("r1", configPath)).rejects.toThrow(
      /data_dir: .* is in use by another router/,
    );
  });

  it("connect fails with every seed's reason when no router is reachable", async () => {
    const error = await connect({ seeds: ["127.0.0.1:1", "127.0.0.1:2"], ...clientCredentials }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(NeuronError);
    expect((error as NeuronError).code).toBe("ConnectFailed");
    expect((error as NeuronError).message).toMatch(
      /127\.0\.0\.1:1: .*ECONNREFUSED.*127\.0\.0\.1:2: .*ECONNREFUSED/,
    );
    expect(error).not.toBeInstanceOf(AxonFailure);
  });
});

describe("one router over QUIC, real processes", () => {
  it("serves clients over QUIC alongside TLS, and messages cross between them", async () => {
    const dir = await tempDir();
    const router = await startRouterProcess(
      "r1",
      await writeRouterConfig({ id: "r1", dir, pki, quic: true }),
    );
    expect(router.clientsQuic).toMatch(/^127\.0\.0\.1:\d+$/);
    const overQuic = await connect({ seeds: [router.clientsQuic!], ...clientCredentials, transport: "quic" });
    clients.push(overQuic);
    const overTls = await client([router.clients]);
    const got = collect();
    await overQuic.subscribe("mixed", got.handler);
    await overTls.publish("mixed", "tls -> quic");
    await overQuic.publish("mixed", "quic -> quic");
    await waitFor(() => got.messages.length === 2, "two messages over QUIC");
    expect(got.texts()).toEqual(["tls -> quic", "quic -> quic"]);
    await expect(overQuic.publish("mixed", Buffer.alloc(1024 * 1024 + 1))).rejects.toMatchObject({
      code: "PayloadTooLarge",
    });
    router.signal("SIGTERM");
    expect(await router.exited).toEqual({ code: 0, signal: null });
  });
});
