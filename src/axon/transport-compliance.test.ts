// The transport compliance suite: the same cases over every Transport (js-libp2p's
// interface-compliance-tests are the model). A transport joins by adding a fixture below.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeTestPki, type TestPki } from "../../test/support/certs.ts";
import { memoryTransport, SeededRandom, SimClock, SimNetwork } from "../sim/index.ts";
import type { Frame, Hello, Publish } from "../wire/index.ts";
import {
  type AxonError,
  AxonFailure,
  type Credentials,
  type Link,
  type Listener,
  quicTransport,
  type RefusedConnection,
  type Role,
  type Transport,
  tlsTransport,
} from "./index.ts";

interface Fixture {
  readonly name: string;
  transport(): Transport;
  /** Credentials without a certificate, as this transport can express them. */
  readonly supportsNoCertificate: boolean;
}

/**
 * The memory transport on virtual time. The suite awaits promises and real deadlines, so a
 * driver fires the SimClock's timers on real setImmediate turns, one timer per turn (promise
 * callbacks run in between, as between real timers), jumping straight to the next due one.
 * It sleeps while no timer is pending (once cleanup has closed every link), wakes when one is
 * scheduled, and stops after the file. (Not unref'd: an unref'd immediate lets the event loop
 * block in poll, one real wait per timer.) Simulation tests never use it: nothing real drives
 * their time.
 */
function memoryFixture(): Fixture {
  const clock = new SimClock({ wallStartMs: Date.now() });
  const network = new SimNetwork({
    clock,
    random: new SeededRandom(1),
    config: { pipeSplitProbability: 0.1 },
  });
  let turnQueued = false;
  let stopped = false;
  const wake = () => {
    if (turnQueued || stopped) return;
    turnQueued = true;
    setImmediate(() => {
      turnQueued = false;
      if (stopped) return;
      clock.step();
      if (clock.pendingTimers > 0) wake();
    });
  };
  clock.onScheduled(wake);
  afterAll(() => {
    stopped = true;
  });
  return { name: "memory", transport: () => memoryTransport({ network }), supportsNoCertificate: true };
}

const fixtures: Fixture[] = [
  { name: "tls", transport: () => tlsTransport(), supportsNoCertificate: true },
  // @matrixai/quic can only ask for a client certificate together with BoringSSL's
  // FAIL_IF_NO_PEER_CERT (its `verifyPeer`), so a client without one fails the TLS handshake
  // itself: there is no stream to carry a Goodbye and no connection event on the listener.
  // The dialer still gets an AxonFailure ("certificate required"); see the case below.
  { name: "quic", transport: () => quicTransport(), supportsNoCertificate: false },
  memoryFixture(),
];

const hello = (frameMaxBytes = 1 << 20): Hello => ({
  kind: "Hello",
  agent: "compliance",
  frameMaxBytes,
  payloadMaxBytes: frameMaxBytes - 1024,
});

/** The `sequence`th publish of one producer on topic "t"; its request id is the same number. */
const publish = (sequence: number, payload: Uint8Array): Publish => ({
  kind: "Publish",
  requestId: sequence,
  topic: "t",
  payload,
  headers: {},
  producerId: "compliance",
  sequence,
  ackedSequence: 0,
});

/** A link handler that records what it gets and lets a test wait for it. */
function recorder(link: Link) {
  const frames: Frame[] = [];
  let closed: AxonError | undefined;
  const waiters: (() => void)[] = [];
  const notify = () => {
    for (const wake of waiters.splice(0)) wake();
  };
  link.start({
    frame: (frame) => {
      frames.push(frame);
      notify();
    },
    closed: (reason) => {
      closed = reason;
      notify();
    },
  });
  const until = (condition: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000);
      const check = () => {
        if (condition()) {
          clearTimeout(deadline);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  return {
    frames,
    get closed() {
      return closed;
    },
    until,
    untilFrames: (count: number) => until(() => frames.length >= count, `${count} frames`),
    untilClosed: () => until(() => closed !== undefined, "close").then(() => closed!),
  };
}

describe.each(fixtures)("transport compliance: $name", (fixture) => {
  let pki: TestPki;
  let router: Credentials;
  let client: Credentials;
  const cleanups: (() => Promise<void> | void)[] = [];

  beforeAll(async () => {
    pki = await makeTestPki();
    router = await pki.credentials({ role: "router", id: "r1" });
    client = await pki.credentials({ role: "client", id: "c1" });
  });

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function listen(
    options: { credentials?: Credentials; acceptRoles?: Role[]; frameMaxBytes?: number } = {},
  ) {
    const transport = fixture.transport();
    const accepted: Link[] = [];
    const refused: RefusedConnection[] = [];
    const waiters: (() => void)[] = [];
    const listener: Listener = await transport.listen({
      address: { host: "127.0.0.1", port: 0 },
      credentials: options.credentials ?? router,
      hello: hello(options.frameMaxBytes),
      acceptRoles: options.acceptRoles ?? ["client", "router"],
      accept: (link) => {
        accepted.push(link);
        for (const wake of waiters.splice(0)) wake();
      },
      refused: (event) => {
        refused.push(event);
        for (const wake of waiters.splice(0)) wake();
      },
    });
    cleanups.push(async () => {
      for (const link of accepted) link.close();
      await listener.close();
    });
    const until = (condition: () => boolean) =>
      new Promise<void>((resolve, reject) => {
        const deadline = setTimeout(() => reject(new Error("timed out waiting for the listener")), 10_000);
        const check = () => {
          if (condition()) {
            clearTimeout(deadline);
            resolve();
          } else waiters.push(check);
        };
        check();
      });
    return { transport, listener, accepted, refused, until };
  }

  async function dial(
    server: Awaited<ReturnType<typeof listen>>,
    credentials: Credentials = client,
    options: { expectRole?: Role; expectId?: string; frameMaxBytes?: number } = {},
  ): Promise<Link> {
    const link = await fixture.transport().connect({
      address: server.listener.address,
      credentials,
      hello: hello(options.frameMaxBytes),
      expectRole: options.expectRole ?? "router",
      ...(options.expectId === undefined ? {} : { expectId: options.expectId }),
    });
    cleanups.push(() => link.close());
    return link;
  }

  async function refusedDial(
    server: Awaited<ReturnType<typeof listen>>,
    credentials: Credentials,
    options: { expectRole?: Role; expectId?: string } = {},
  ): Promise<AxonFailure> {
    try {
      const link = await dial(server, credentials, options);
      // TLS 1.3: a refused client may complete its handshake first; the refusal then closes it.
      const record = recorder(link);
      const reason = await record.untilClosed();
      return new AxonFailure(reason);
    } catch (error) {
      expect(error).toBeInstanceOf(AxonFailure);
      return error as AxonFailure;
    }
  }

  it("exchanges frames both ways and reports each peer's certificate identity", async () => {
    const server = await listen();
    const link = await dial(server);
    await server.until(() => server.accepted.length === 1);
    const accepted = server.accepted[0]!;
    expect(link.peer).toEqual({ role: "router", id: "r1" });
    expect(accepted.peer).toEqual({ role: "client", id: "c1" });
    expect(link.peerHello.agent).toBe("compliance");
    expect(link.transport).toBe(fixture.name);

    const atServer = recorder(accepted);
    const atClient = recorder(link);
    link.send({ kind: "Subscribe", requestId: 1, subscriptionId: 7, topic: "orders", fromOffset: 0 });
    await atServer.untilFrames(1);
    expect(atServer.frames[0]).toMatchObject({ kind: "Subscribe", subscriptionId: 7, topic: "orders" });
    accepted.send({ kind: "Ack", throughRequestId: 1 });
    await atClient.untilFrames(1);
    expect(atClient.frames[0]).toEqual({ kind: "Ack", throughRequestId: 1 });
  });

  it("keeps order across many batched frames", async () => {
    const server = await listen();
    const link = await dial(server);
    await server.until(() => server.accepted.length === 1);
    const atServer = recorder(server.accepted[0]!);
    const count = 20_000;
    const payload = Buffer.alloc(128, 1);
    for (let index = 1; index <= count; index++) {
      expect(link.send(publish(index, payload)).ok).toBe(true);
      if (!link.writable) await link.whenWritable();
    }
    await atServer.untilFrames(count);
    expect(atServer.frames.map((frame) => (frame.kind === "Publish" ? frame.requestId : -1))).toEqual(
      Array.from({ length: count }, (_, index) => index + 1),
    );
  });

  it("refuses a client certificate from another CA, on both sides", async () => {
    const server = await listen();
    const failure = await refusedDial(server, await pki.foreign({ role: "client", id: "c1" }));
    expect(failure.error).toMatchObject({ tag: "PeerClosed", code: "NotAuthorized" });
    expect(failure.message).toMatch(/not signed by the cluster CA/);
    await server.until(() => server.refused.length === 1);
    expect(server.refused[0]!.reason).toMatch(/not signed by the cluster CA/);
    expect(server.accepted).toEqual([]);
  });

  it("refuses an expired client certificate, on both sides", async () => {
    const server = await listen();
    const failure = await refusedDial(server, await pki.expired({ role: "client", id: "c1" }));
    expect(failure.error).toMatchObject({ tag: "PeerClosed", code: "NotAuthorized" });
    expect(failure.message).toMatch(/certificate has expired/);
    await server.until(() => server.refused.length === 1);
    expect(server.refused[0]!.reason).toMatch(/certificate has expired/);
    expect(server.accepted).toEqual([]);
  });

  it("refuses a client with no certificate", async () => {
    const server = await listen();
    const failure = await refusedDial(server, { ca: pki.ca.cert, cert: "", key: "" });
    expect(failure.message).toMatch(/presented no certificate/);
    if (fixture.supportsNoCertificate) {
      // Both sides learn why.
      expect(failure.error).toMatchObject({ tag: "PeerClosed", code: "NotAuthorized" });
      await server.until(() => server.refused.length === 1);
      expect(server.refused[0]!.reason).toMatch(/presented no certificate/);
    } else {
      // The TLS handshake itself fails (see the fixture): only the dialer can report it.
      expect(failure.error.tag).toBe("AuthenticationFailed");
      expect(server.accepted).toEqual([]);
    }
  });

  it("a client refuses a router whose certificate is from another CA", async () => {
    const server = await listen({ credentials: await pki.foreign({ role: "router", id: "r1" }) });
    const failure = await refusedDial(server, client);
    expect(failure.error.tag).toBe("AuthenticationFailed");
    expect(failure.message).toMatch(/not signed by the cluster CA/);
    await server.until(() => server.refused.length === 1);
    expect(server.refused[0]!.reason).toMatch(
      /client c1 refused: NotAuthorized: .*not signed by the cluster CA/,
    );
  });

  it("refuses a certificate of the wrong role with NotAuthorized, on both sides", async () => {
    const server = await listen({ acceptRoles: ["router"] });
    const failure = await refusedDial(server, client);
    expect(failure.error).toMatchObject({ tag: "PeerClosed", code: "NotAuthorized" });
    expect(failure.message).toMatch(/client c1 may not connect here/);
    await server.until(() => server.refused.length === 1);
    expect(server.refused[0]!.reason).toMatch(/client c1 may not connect here/);
  });

  it("a client refuses a router with another id than expected", async () => {
    const server = await listen();
    const failure = await refusedDial(server, client, { expectId: "r9" });
    expect(failure.error.tag).toBe("AuthenticationFailed");
    expect(failure.message).toMatch(/expected router r9.*router r1/);
  });

  it("a frame over the receiver's limit closes the link with FrameTooLarge on both sides", async () => {
    const server = await listen({ frameMaxBytes: 4096 });
    const link = await dial(server, client, { frameMaxBytes: 1 << 20 });
    await server.until(() => server.accepted.length === 1);
    const atServer = recorder(server.accepted[0]!);
    const atClient = recorder(link);
    link.send(publish(1, Buffer.alloc(10_000)));
    expect(await atServer.untilClosed()).toMatchObject({
      tag: "ProtocolError",
      wire: { tag: "FrameTooLarge" },
    });
    expect(await atClient.untilClosed()).toMatchObject({ tag: "PeerClosed", code: "FrameTooLarge" });
    expect(atServer.frames).toEqual([]);
  });

  it("a Goodbye reaches the peer with its code and reason", async () => {
    const server = await listen();
    const link = await dial(server);
    await server.until(() => server.accepted.length === 1);
    const atServer = recorder(server.accepted[0]!);
    link.close("ShuttingDown", "client leaving");
    expect(await atServer.untilClosed()).toMatchObject({
      tag: "PeerClosed",
      code: "ShuttingDown",
      message: expect.stringMatching(/client leaving/),
    });
    expect(link.closed).toBe(true);
    expect(link.send({ kind: "Ping", id: 1 }).ok).toBe(false);
  });

  it("reports backpressure and recovers when the peer reads", async () => {
    const server = await listen();
    const link = await dial(server);
    await server.until(() => server.accepted.length === 1);
    const atServer = recorder(server.accepted[0]!);
    const payload = Buffer.alloc(60_000);
    let sent = 0;
    while (link.writable) {
      link.send(publish(++sent, payload));
    }
    expect(link.bufferedBytes).toBeGreaterThan(0);
    await link.whenWritable();
    await atServer.untilFrames(sent);
  });
});
