// SimNetwork rules, on virtual time run by hand: no real timers, no sleeps. The first cases run
// a seeded fault schedule (loss, duplicates, delays, a partition that heals) over datagrams and
// a pipe at once and check delivery properties and replay; the rest check one rule each.
import { beforeAll, describe, expect, it } from "vitest";
import { SimClock } from "./clock.ts";
import { SimNetwork, type SimNetworkConfig, SimNetworkError } from "./network.ts";
import type { PipeEnd, PipeError, PipeHandler } from "./pipe.ts";
import { SeededRandom } from "./random.ts";

const hostA = "10.0.0.1";
const hostB = "10.0.0.2";

function world(seed: number, config: Partial<SimNetworkConfig> = {}) {
  const clock = new SimClock();
  const network = new SimNetwork({ clock, random: new SeededRandom(seed), config });
  return { clock, network };
}

/** A pipe handler that records what arrives, with virtual times. */
function pipeRecorder(clock: SimClock) {
  const chunks: { atMs: number; bytes: Buffer }[] = [];
  const record = {
    chunks,
    opened: undefined as string | undefined,
    closed: undefined as { error: PipeError | undefined; atMs: number } | undefined,
    drains: 0,
    bytes: () => Buffer.concat(chunks.map((chunk) => chunk.bytes)),
    handler: {
      opened: (answer: string) => {
        record.opened = answer;
      },
      data: (chunk: Buffer) => chunks.push({ atMs: clock.nowMs(), bytes: chunk }),
      drain: () => {
        record.drains += 1;
      },
      closed: (error: PipeError | undefined) => {
        expect(record.closed).toBeUndefined();
        record.closed = { error, atMs: clock.nowMs() };
      },
    } satisfies PipeHandler,
  };
  return record;
}

/** Dials B from A and returns both ends with their recorders, once the pipe is open. */
function openPipe(clock: SimClock, network: SimNetwork, address = `${hostB}:7401`) {
  const atListener = pipeRecorder(clock);
  let listenerEnd: PipeEnd | undefined;
  const listener = network.listen(address, {
    answer: "listener certificate",
    accept: (end, offer) => {
      expect(offer).toBe("dialer certificate");
      end.bind(atListener.handler);
      listenerEnd = end;
    },
  });
  const atDialer = pipeRecorder(clock);
  const dialerEnd = network.connect(hostA, listener.address, "dialer certificate", atDialer.handler);
  clock.runUntil(() => atDialer.opened !== undefined);
  expect(atDialer.opened).toBe("listener certificate");
  return { listener, dialerEnd, listenerEnd: listenerEnd!, atDialer, atListener };
}

const record = (seq: number) => {
  const bytes = Buffer.alloc(8);
  bytes.writeUInt32BE(seq, 0);
  bytes.writeUInt32BE((seq ^ 0xa5a5a5a5) >>> 0, 4);
  return bytes;
};

/** Parses the 8-byte records of `record` out of a byte stream, checking each one's trailer. */
function records(bytes: Buffer): number[] {
  expect(bytes.length % 8).toBe(0);
  const out: number[] = [];
  for (let offset = 0; offset < bytes.length; offset += 8) {
    const seq = bytes.readUInt32BE(offset);
    expect(bytes.readUInt32BE(offset + 4)).toBe((seq ^ 0xa5a5a5a5) >>> 0);
    out.push(seq);
  }
  return out;
}

const partitionFromMs = 500;
const healAtMs = 1500;
const messages = 400;

/**
 * The seeded fault schedule: A and B each send a datagram and a pipe record every 5 ms for
 * 2 s, under 10% loss, 5% duplicates, 1-30 ms datagram delays, 1-20 ms pipe delays with chunk
 * splitting, and a partition between the hosts from 500 ms to 1500 ms (under the 2 s needed
 * to break the pipe).
 */
function faultSchedule(seed: number) {
  const { clock, network } = world(seed, {
    dropProbability: 0.1,
    duplicateProbability: 0.05,
    datagramDelayMinMs: 1,
    datagramDelayMaxMs: 30,
    pipeDelayMinMs: 1,
    pipeDelayMaxMs: 20,
    pipeSplitProbability: 0.3,
    breakDetectionMs: 2000,
  });
  const datagramsAt = { a: [] as { seq: number; atMs: number }[], b: [] as { seq: number; atMs: number }[] };
  const a = network.bindDatagram(`${hostA}:7400`, (payload) =>
    datagramsAt.a.push({ seq: payload.readUInt32BE(0), atMs: clock.nowMs() }),
  );
  const b = network.bindDatagram(`${hostB}:7400`, (payload) =>
    datagramsAt.b.push({ seq: payload.readUInt32BE(0), atMs: clock.nowMs() }),
  );
  const pipe = openPipe(clock, network);
  const startMs = clock.nowMs();
  for (let seq = 0; seq < messages; seq++) {
    clock.schedule(seq * 5, () => {
      expect(a.send(b.address, record(seq)).ok).toBe(true);
      expect(b.send(a.address, record(seq)).ok).toBe(true);
      pipe.dialerEnd.write(record(seq));
      pipe.listenerEnd.write(record(seq));
    });
  }
  let partition: ReturnType<SimNetwork["partition"]> | undefined;
  clock.schedule(partitionFromMs - startMs, () => {
    partition = network.partition([hostA], [hostB]);
  });
  clock.schedule(healAtMs - startMs, () => network.heal(partition!));
  clock.runUntilIdle();
  return { clock, network, datagramsAt, pipe, trace: network.trace(), stats: network.stats() };
}

describe("SimNetwork under a seeded fault schedule", () => {
  let run: ReturnType<typeof faultSchedule>;
  beforeAll(() => {
    run = faultSchedule(1234);
  });

  it("keeps pipe order in both directions, across chunk splits and a healed partition", () => {
    expect(records(run.pipe.atListener.bytes())).toEqual(Array.from({ length: messages }, (_, seq) => seq));
    expect(records(run.pipe.atDialer.bytes())).toEqual(Array.from({ length: messages }, (_, seq) => seq));
    expect(run.pipe.atDialer.closed).toBeUndefined();
    expect(run.stats.pipeChunksHeld).toBeGreaterThan(0);
    expect(run.stats.pipesBroken).toBe(0);
    expect(run.stats.pipeBytesDelivered).toBe(run.stats.pipeBytesSent);
    expect(
      run.trace.filter((event) => event.channel === "pipe" && event.kind === "delivered").length,
    ).toBeGreaterThan(2 * messages);
  });

  it("delivers nothing across the partition while it lasts", () => {
    const during = (atMs: number) => atMs >= partitionFromMs && atMs < healAtMs;
    expect(run.datagramsAt.a.filter((entry) => during(entry.atMs))).toEqual([]);
    expect(run.datagramsAt.b.filter((entry) => during(entry.atMs))).toEqual([]);
    expect(run.pipe.atListener.chunks.filter((chunk) => during(chunk.atMs))).toEqual([]);
    expect(run.pipe.atDialer.chunks.filter((chunk) => during(chunk.atMs))).toEqual([]);
    expect(run.trace.filter((event) => event.kind === "delivered" && during(event.atMs))).toEqual([]);
    // The schedule really sent during the partition, and the pipe caught up right after it.
    expect(run.stats.datagramsDroppedBy.partition).toBeGreaterThan(0);
    expect(
      run.pipe.atListener.chunks.some((chunk) => chunk.atMs >= healAtMs && chunk.atMs < healAtMs + 25),
    ).toBe(true);
  });

  it("counts every datagram: delivered = sent - dropped + duplicated", () => {
    const { stats } = run;
    expect(stats.datagramsSent).toBe(2 * messages);
    expect(stats.datagramsDroppedBy.loss).toBeGreaterThan(0);
    expect(stats.datagramsDuplicated).toBeGreaterThan(0);
    expect(stats.datagramsDelivered).toBe(
      stats.datagramsSent - stats.datagramsDropped + stats.datagramsDuplicated,
    );
    expect(stats.datagramsDelivered).toBe(run.datagramsAt.a.length + run.datagramsAt.b.length);
    const dropped = Object.values(stats.datagramsDroppedBy).reduce((sum, count) => sum + count, 0);
    expect(dropped).toBe(stats.datagramsDropped);
    expect(run.trace.filter((event) => event.kind === "dropped").length).toBe(stats.datagramsDropped);
  });

  it("reorders datagrams through random delays but invents none", () => {
    const seqs = run.datagramsAt.b.map((entry) => entry.seq);
    expect(seqs.some((seq, index) => index > 0 && seq < seqs[index - 1]!)).toBe(true);
    const counts = new Map<number, number>();
    for (const seq of seqs) counts.set(seq, (counts.get(seq) ?? 0) + 1);
    for (const [seq, count] of counts) {
      expect(seq).toBeLessThan(messages);
      expect(count).toBeLessThanOrEqual(2);
    }
  });

  it("replays exactly from the same seed and differs under another", () => {
    const again = faultSchedule(1234);
    expect(again.trace).toEqual(run.trace);
    expect(again.network.traceDigest).toBe(run.network.traceDigest);
    expect(again.datagramsAt).toEqual(run.datagramsAt);
    const other = faultSchedule(1235);
    expect(other.trace).not.toEqual(run.trace);
    expect(other.network.traceDigest).not.toBe(run.network.traceDigest);
  });
});

describe("SimNetwork pipes", () => {
  it("a partition longer than breakDetectionMs breaks the pipe, and both ends hear why", () => {
    const { clock, network } = world(1, { breakDetectionMs: 1000 });
    const pipe = openPipe(clock, network);
    const cutAtMs = clock.nowMs();
    network.partition([hostA], [hostB]);
    pipe.dialerEnd.write(Buffer.from("lost in the partition"));
    clock.runUntilIdle();
    for (const side of [pipe.atDialer, pipe.atListener]) {
      expect(side.closed?.atMs).toBe(cutAtMs + 1000);
      expect(side.closed?.error).toMatchObject({
        code: "ETIMEDOUT",
        message: expect.stringMatching(/partition #1/),
      });
    }
    expect(pipe.atListener.chunks).toEqual([]);
    expect(network.stats().pipesBroken).toBe(1);
    expect(network.pipeCountAlive).toBe(0);
  });

  it("a one-way partition blocks only its direction for datagrams, but still breaks pipes", () => {
    const { clock, network } = world(1, { breakDetectionMs: 1000 });
    const got = { a: 0, b: 0 };
    const a = network.bindDatagram(`${hostA}:7400`, () => (got.a += 1));
    const b = network.bindDatagram(`${hostB}:7400`, () => (got.b += 1));
    const pipe = openPipe(clock, network);
    network.partitionOneWay([hostA], [hostB]);
    a.send(b.address, Buffer.from("blocked"));
    b.send(a.address, Buffer.from("passes"));
    pipe.listenerEnd.write(Buffer.from("B to A still flows"));
    clock.runUntilIdle();
    expect(got).toEqual({ a: 1, b: 0 });
    expect(pipe.atDialer.bytes().toString()).toBe("B to A still flows");
    expect(pipe.atDialer.closed?.error?.code).toBe("ETIMEDOUT");
    expect(pipe.atListener.closed?.error?.code).toBe("ETIMEDOUT");
  });

  it("a crashed host loses its sockets and listeners; its pipes break on both ends; restart lets it bind", () => {
    const { clock, network } = world(1, { breakDetectionMs: 500 });
    let received = 0;
    const a = network.bindDatagram(`${hostA}:7400`, () => {});
    const b = network.bindDatagram(`${hostB}:7400`, () => (received += 1));
    const pipe = openPipe(clock, network);
    network.crash(hostB);
    expect(b.closed).toBe(true);
    expect(pipe.listener.closed).toBe(true);
    a.send(`${hostB}:7400`, Buffer.from("to the dead"));
    const late = pipeRecorder(clock);
    network.connect(hostA, `${hostB}:7401`, "dialer certificate", late.handler);
    clock.runUntilIdle();
    expect(received).toBe(0);
    expect(network.stats().datagramsDroppedBy.crashed).toBe(1);
    expect(pipe.atDialer.closed?.error?.message).toMatch(/10\.0\.0\.2 crashed, noticed after 500 ms/);
    expect(pipe.atListener.closed?.error?.code).toBe("ETIMEDOUT");
    expect(late.closed?.error?.code).toBe("ETIMEDOUT");
    expect(() => network.bindDatagram(`${hostB}:7400`, () => {})).toThrow(/ENETDOWN/);
    expect(network.restart(hostB)).toBe(true);
    expect(network.bindDatagram(`${hostB}:7400`, () => {}).address).toBe(`${hostB}:7400`);
  });

  it("dialling an address where nothing listens fails with ECONNREFUSED", () => {
    const { clock, network } = world(1);
    const dialer = pipeRecorder(clock);
    network.connect(hostA, `${hostB}:9`, "offer", dialer.handler);
    clock.runUntilIdle();
    expect(dialer.opened).toBeUndefined();
    expect(dialer.closed?.error).toMatchObject({
      code: "ECONNREFUSED",
      message: expect.stringMatching(/10.0.0.2:9/),
    });
    expect(network.pipeCountAlive).toBe(0);
  });

  it("end delivers what was written, then a clean close; the peer answers with its own", () => {
    const { clock, network } = world(1);
    const pipe = openPipe(clock, network);
    pipe.dialerEnd.write(Buffer.from("last words"));
    pipe.dialerEnd.end();
    pipe.dialerEnd.write(Buffer.from("after end: ignored"));
    clock.runUntilIdle();
    expect(pipe.atListener.bytes().toString()).toBe("last words");
    expect(pipe.atListener.closed).toEqual({ error: undefined, atMs: expect.any(Number) });
    expect(pipe.atDialer.closed).toEqual({ error: undefined, atMs: expect.any(Number) });
    expect(pipe.dialerEnd.state).toBe("closed");
    expect(network.pipeCountAlive).toBe(0);
  });

  it("destroy drops the unsent buffer; bytes in flight still arrive, then ECONNRESET", () => {
    const { clock, network } = world(1, { pipeWindowBytes: 10 });
    const pipe = openPipe(clock, network);
    pipe.dialerEnd.write(Buffer.from("0123456789abcdef"));
    expect(pipe.dialerEnd.bufferedBytes).toBe(6);
    pipe.dialerEnd.destroy();
    clock.runUntilIdle();
    expect(pipe.atListener.bytes().toString()).toBe("0123456789");
    expect(pipe.atListener.closed?.error).toMatchObject({ code: "ECONNRESET" });
    expect(pipe.atDialer.closed).toEqual({ error: undefined, atMs: expect.any(Number) });
    expect(network.pipeCountAlive).toBe(0);
  });

  it("bytes beyond the window wait in the send buffer, and drain fires once it empties", () => {
    const { clock, network } = world(1, { pipeWindowBytes: 1000 });
    const pipe = openPipe(clock, network);
    for (let index = 0; index < 10; index++) pipe.dialerEnd.write(Buffer.alloc(500, index));
    expect(pipe.dialerEnd.bufferedBytes).toBe(4000);
    clock.runUntil(() => pipe.dialerEnd.bufferedBytes === 0);
    expect(pipe.atDialer.drains).toBe(1);
    clock.runUntilIdle();
    expect(pipe.atListener.bytes()).toEqual(
      Buffer.concat(Array.from({ length: 10 }, (_, index) => Buffer.alloc(500, index))),
    );
  });

  it("a writer that overruns its send buffer breaks the pipe: ENOBUFS there, ECONNRESET at the peer", () => {
    const { clock, network } = world(1, { pipeWindowBytes: 100, pipeBufferBytesMax: 1000 });
    const pipe = openPipe(clock, network);
    for (let index = 0; index < 20; index++) pipe.dialerEnd.write(Buffer.alloc(100));
    clock.runUntilIdle();
    expect(pipe.atDialer.closed?.error).toMatchObject({
      code: "ENOBUFS",
      message: expect.stringMatching(/over 1000 bytes buffered/),
    });
    expect(pipe.atListener.closed?.error?.code).toBe("ECONNRESET");
  });

  it("a listener keeps its address until closed; port 0 picks distinct free ports", () => {
    const { network } = world(1);
    const fixed = network.listen(`${hostB}:7401`, { answer: "", accept: () => {} });
    expect(() => network.listen(`${hostB}:7401`, { answer: "", accept: () => {} })).toThrow(/EADDRINUSE/);
    fixed.close();
    expect(network.listen(`${hostB}:7401`, { answer: "", accept: () => {} }).address).toBe(`${hostB}:7401`);
    const first = network.listen(`${hostB}:0`, { answer: "", accept: () => {} }).address;
    const second = network.listen(`${hostB}:0`, { answer: "", accept: () => {} }).address;
    expect(first).toBe(`${hostB}:49152`);
    expect(second).toBe(`${hostB}:49153`);
    expect(() => network.listen("no port", { answer: "", accept: () => {} })).toThrow(SimNetworkError);
  });
});

describe("SimNetwork limits and config", () => {
  it("refuses an oversized datagram with EMSGSIZE and a bad address with EINVAL", () => {
    const { network } = world(1, { datagramBytesMax: 100 });
    const socket = network.bindDatagram(`${hostA}:1`, () => {});
    expect(socket.send(`${hostB}:1`, Buffer.alloc(101))).toMatchObject({ ok: false, reason: /EMSGSIZE/ });
    expect(socket.send("nowhere", Buffer.alloc(1))).toMatchObject({ ok: false, reason: /EINVAL/ });
    socket.close();
    expect(socket.send(`${hostB}:1`, Buffer.alloc(1))).toMatchObject({ ok: false, reason: /closed/ });
  });

  it("drops and counts datagrams past datagramsInFlightMax", () => {
    const { clock, network } = world(1, { datagramsInFlightMax: 3 });
    let received = 0;
    const a = network.bindDatagram(`${hostA}:1`, () => {});
    network.bindDatagram(`${hostB}:1`, () => (received += 1));
    for (let index = 0; index < 5; index++) a.send(`${hostB}:1`, Buffer.alloc(1));
    clock.runUntilIdle();
    expect(received).toBe(3);
    expect(network.stats().datagramsDroppedBy.queueFull).toBe(2);
  });

  it("bounds endpoints and pipes with EMFILE", () => {
    const { clock, network } = world(1, { endpointsMax: 2, pipesMax: 1 });
    network.bindDatagram(`${hostA}:1`, () => {});
    network.listen(`${hostB}:1`, { answer: "", accept: (end) => end.bind(pipeRecorder(clock).handler) });
    expect(() => network.bindDatagram(`${hostA}:2`, () => {})).toThrow(/EMFILE/);
    network.connect(hostA, `${hostB}:1`, "", pipeRecorder(clock).handler);
    expect(() => network.connect(hostA, `${hostB}:1`, "", pipeRecorder(clock).handler)).toThrow(/EMFILE/);
  });

  it("validates its config, at construction and on change", () => {
    expect(() => world(1, { dropProbability: 2 })).toThrow(/dropProbability must be in \[0, 1\]/);
    expect(() => world(1, { pipeDelayMinMs: 5, pipeDelayMaxMs: 1 })).toThrow(
      /pipeDelayMaxMs must be >= pipeDelayMinMs/,
    );
    const { network } = world(1);
    expect(() => network.configure({ pipesMax: 0 })).toThrow(/pipesMax must be an integer >= 1/);
    network.configure({ dropProbability: 0.5 });
    expect(network.config.dropProbability).toBe(0.5);
  });

  it("keeps the last traceMax events, while the digest covers every event", () => {
    const small = world(1, { traceMax: 4 });
    const large = world(1, { traceMax: 1000 });
    for (const { clock, network } of [small, large]) {
      const a = network.bindDatagram(`${hostA}:1`, () => {});
      network.bindDatagram(`${hostB}:1`, () => {});
      for (let index = 0; index < 5; index++) a.send(`${hostB}:1`, Buffer.alloc(index + 1));
      clock.runUntilIdle();
    }
    expect(small.network.trace()).toEqual(large.network.trace().slice(-4));
    expect(small.network.traceDigest).toBe(large.network.traceDigest);
  });
});
