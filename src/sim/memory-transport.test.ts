// FramedLinks over the memory transport, with the SimClock run by hand: no real timer, no
// sleep (real timers are faked and never advanced, so anything that needed one would hang and
// fail). The same seed replays the same bytes at the same virtual times; faults reach the
// links as a TCP stack would report them. The full behaviour contract is the compliance
// suite (src/axon/transport-compliance.test.ts), which also runs over this transport.
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  type AxonError,
  type Credentials,
  createCertificateAuthority,
  issueCertificate,
  type Link,
  type Validity,
} from "../axon/index.ts";
import type { Frame, Hello } from "../wire/index.ts";
import { SimClock } from "./clock.ts";
import { driveThrough, driveUntil, driveUntilIdle } from "./drive.ts";
import { memoryTransport } from "./memory-transport.ts";
import { SimNetwork, type SimNetworkConfig } from "./network.ts";
import { SeededRandom } from "./random.ts";
import { formatTraceEvent } from "./trace.ts";

// Fixed validity and a fixed simulated wall clock: nothing here reads the real time.
const validity: Validity = {
  notBefore: new Date(Date.UTC(2029, 0, 1)),
  notAfter: new Date(Date.UTC(2031, 0, 1)),
};
const wallStartMs = Date.UTC(2030, 0, 1);

const hello: Hello = {
  kind: "Hello",
  agent: "sim",
  frameMaxBytes: 1 << 20,
  payloadMaxBytes: (1 << 20) - 1024,
};

let router: Credentials;
let client: Credentials;

beforeAll(async () => {
  // Key generation needs real webcrypto: done once, outside the simulated world.
  const ca = await createCertificateAuthority("Sim cluster CA", validity);
  router = { ca: ca.cert, ...(await issueCertificate(ca, { role: "router", id: "r1" }, validity)) };
  client = { ca: ca.cert, ...(await issueCertificate(ca, { role: "client", id: "c1" }, validity)) };
});

afterEach(() => {
  vi.useRealTimers();
});

function recorder(clock: SimClock, link: Link) {
  const frames: { atMs: number; frame: Frame }[] = [];
  const record = { frames, closed: undefined as AxonError | undefined };
  link.start({
    frame: (frame) => frames.push({ atMs: clock.nowMs(), frame }),
    closed: (reason) => {
      record.closed = reason;
    },
  });
  return record;
}

/** A client at 10.0.0.1 linked to a router at 10.0.0.2 on a fresh simulated world. */
async function linked(seed: number, config: Partial<SimNetworkConfig> = {}) {
  const clock = new SimClock({ wallStartMs });
  const network = new SimNetwork({ clock, random: new SeededRandom(seed), config });
  const accepted: Link[] = [];
  const listener = await driveThrough(
    clock,
    memoryTransport({ network, host: "10.0.0.2" }).listen({
      address: { host: "10.0.0.2", port: 7401 },
      credentials: router,
      hello,
      acceptRoles: ["client"],
      accept: (link) => accepted.push(link),
    }),
  );
  const link = await driveThrough(
    clock,
    memoryTransport({ network, host: "10.0.0.1" }).connect({
      address: listener.address,
      credentials: client,
      hello,
      expectRole: "router",
      expectId: "r1",
    }),
  );
  await driveUntil(clock, () => accepted.length === 1);
  const atClient = recorder(clock, link);
  const atServer = recorder(clock, accepted[0]!);
  return { clock, network, listener, link, accepted: accepted[0]!, atClient, atServer };
}

/** Frames both ways over 5 virtual seconds (so keepalive pings interleave), then a close. */
async function conversation(seed: number) {
  vi.useFakeTimers();
  const world = await linked(seed, { pipeDelayMinMs: 1, pipeDelayMaxMs: 20, pipeSplitProbability: 0.5 });
  const { clock, link, accepted, atClient, atServer } = world;
  const count = 50;
  for (let index = 1; index <= count; index++) {
    clock.schedule(index * 100, () => {
      link.send({
        kind: "Publish",
        requestId: index,
        topic: "orders",
        payload: Buffer.alloc(index * 7, index),
        headers: {},
        producerId: "c1",
        sequence: index,
        ackedSequence: 0,
      });
      if (index % 5 === 0) accepted.send({ kind: "Ack", throughRequestId: index });
    });
  }
  await driveUntil(clock, () => atServer.frames.length === count && atClient.frames.length === count / 5);
  const rttMs = link.rttMs;
  link.close("ShuttingDown", "conversation over");
  await driveUntil(clock, () => atServer.closed !== undefined);
  await world.listener.close();
  await driveUntilIdle(clock);
  return {
    trace: world.network.trace().map(formatTraceEvent),
    digest: world.network.traceDigest,
    atServer: atServer.frames,
    atClient: atClient.frames,
    serverClosed: atServer.closed,
    rttMs,
    endMs: clock.nowMs(),
    pipesAlive: world.network.pipeCountAlive,
  };
}

describe("memory transport on virtual time", () => {
  it("two FramedLinks exchange frames in order, with keepalive, and close cleanly", async () => {
    const run = await conversation(99);
    expect(run.atServer.map(({ frame }) => (frame.kind === "Publish" ? frame.requestId : -1))).toEqual(
      Array.from({ length: 50 }, (_, index) => index + 1),
    );
    expect(run.atClient.map(({ frame }) => frame)).toEqual(
      Array.from({ length: 10 }, (_, index) => ({ kind: "Ack", throughRequestId: (index + 1) * 5 })),
    );
    expect(run.serverClosed).toMatchObject({ tag: "PeerClosed", code: "ShuttingDown" });
    // Pings ran on virtual time: a round trip of two 1-20 ms pipe delays.
    expect(run.rttMs).toBeGreaterThanOrEqual(2);
    expect(run.rttMs).toBeLessThanOrEqual(40);
    // The router's link drops the pipe on the Goodbye (as over TLS): the client end hears a reset.
    expect(run.trace.at(-1)).toMatch(
      / pipe#1 reset 10\.0\.0\.2:7401 -> 10\.0\.0\.1:\d+ .*reset by 10\.0\.0\.2:7401$/,
    );
    expect(run.pipesAlive).toBe(0);
  });

  it("the same seed replays the same trace, frames and times; another seed does not", async () => {
    const first = await conversation(99);
    const second = await conversation(99);
    expect(second).toEqual(first);
    const other = await conversation(100);
    expect(other.trace).not.toEqual(first.trace);
    expect(other.digest).not.toBe(first.digest);
  });

  it("a partition silences the link: keepalive closes both ends before TCP would notice", async () => {
    vi.useFakeTimers();
    const { clock, network, atClient, atServer } = await linked(7, { breakDetectionMs: 60_000 });
    const cutAtMs = clock.nowMs();
    network.partition(["10.0.0.1"], ["10.0.0.2"]);
    await driveUntil(clock, () => atClient.closed !== undefined && atServer.closed !== undefined);
    expect(atClient.closed).toMatchObject({
      tag: "LinkClosed",
      message: expect.stringMatching(/router r1 silent for/),
    });
    expect(atServer.closed).toMatchObject({
      tag: "LinkClosed",
      message: expect.stringMatching(/client c1 silent for/),
    });
    // idleTimeoutMs is 5000, checked every pingIntervalMs (1000).
    expect(clock.nowMs() - cutAtMs).toBeGreaterThanOrEqual(5000);
    expect(clock.nowMs() - cutAtMs).toBeLessThan(7000);
  });

  it("a crashed router's links break with a clear error once the crash is noticed", async () => {
    vi.useFakeTimers();
    const { clock, network, atClient } = await linked(7, { breakDetectionMs: 800 });
    const crashAtMs = clock.nowMs();
    network.crash("10.0.0.2");
    await driveUntil(clock, () => atClient.closed !== undefined);
    expect(atClient.closed).toMatchObject({
      tag: "ConnectFailed",
      message: expect.stringMatching(
        /^ETIMEDOUT: connection 10\.0\.0\.1:\d+ -> 10\.0\.0\.2:7401 broken: 10\.0\.0\.2 crashed/,
      ),
    });
    expect(clock.nowMs()).toBe(crashAtMs + 800);
  });

  it("dialling a port where nothing listens fails with ECONNREFUSED, and a silent one times out", async () => {
    vi.useFakeTimers();
    const clock = new SimClock({ wallStartMs });
    const network = new SimNetwork({ clock, random: new SeededRandom(1) });
    const transport = memoryTransport({ network, host: "10.0.0.1" });
    const dial = (host: string, timeoutMs: number) =>
      driveThrough(
        clock,
        transport.connect({
          address: { host, port: 7401 },
          credentials: client,
          hello,
          expectRole: "router",
          timeoutMs,
        }),
      );
    await expect(dial("10.0.0.2", 5000)).rejects.toMatchObject({
      error: {
        tag: "ConnectFailed",
        message: expect.stringMatching(/^ECONNREFUSED: connect ECONNREFUSED 10\.0\.0\.2:7401/),
      },
    });
    network.crash("10.0.0.3");
    await expect(dial("10.0.0.3", 2000)).rejects.toMatchObject({
      error: { tag: "HandshakeTimeout", message: "no handshake with 10.0.0.3:7401 within 2000 ms" },
    });
  });
});
