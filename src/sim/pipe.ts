// Simulated TCP: a reliable, ordered byte pipe between a dialer and a listener on SimNetwork.
// Each direction is a send buffer (bytes not yet taken by the network) feeding a window of
// bytes in flight; each chunk in flight is delivered at max(previous delivery, taken + delay),
// so a direction never reorders. Nothing is dropped or duplicated. Control items ride the
// same queue, so they keep their place: the dial ("syn", carrying what the dialer presents),
// the listener's answer ("open"), a clean close ("fin") and a reset ("rst").
//
// Invariants: per direction, items are delivered in the order written; `bufferBytes` and
// `flightBytes` count data bytes only, flightBytes <= the window. A chunk whose direction is
// blocked (partition, crashed host) is held (TCP retransmits) and delivered after the heal,
// still in order; the other direction keeps flowing. A pipe cut either way for
// `breakDetectionMs` is broken (TCP needs both ways), and both ends hear why. An end
// reports `closed` exactly once. After `destroy()` the unsent buffer is dropped, bytes in
// flight still arrive, then a reset.
// Traps: events reach an end only through its bound handler; an event before `bind` is a
// programmer error and throws. Callbacks run inside SimClock timers, never inside `write`,
// `end` or `destroy` (those only queue work), so a handler may call them re-entrantly.
import type { Timer } from "../ports/index.ts";
import type { SimClock } from "./clock.ts";
import type { TraceEvent, TraceKind } from "./trace.ts";
import { checksum } from "./trace.ts";

export type PipeErrorCode = "ECONNREFUSED" | "ECONNRESET" | "ETIMEDOUT" | "ENOBUFS";

/** Why a pipe closed other than cleanly; `message` names the pipe and the cause. */
export interface PipeError {
  readonly code: PipeErrorCode;
  readonly message: string;
}

export interface PipeHandler {
  /** Dialer only: the listener took the dial and presents `answer` (e.g. its certificate). */
  opened?(answer: string): void;
  data(chunk: Buffer): void;
  /** The send buffer emptied after a write had to wait in it (as Node's 'drain'). */
  drain(): void;
  /** The pipe closed: `undefined` for a clean close by the peer or a local destroy. Once. */
  closed(error: PipeError | undefined): void;
}

export type PipeEndState = "connecting" | "open" | "closed";

/** One end of a pipe, as its owner sees it. */
export interface PipeEnd {
  readonly pipeId: number;
  readonly localAddress: string;
  readonly remoteAddress: string;
  readonly state: PipeEndState;
  bind(handler: PipeHandler): void;
  /** Queues bytes (copied). Ignored once this end has ended or closed. */
  write(chunk: Uint8Array): void;
  /** Bytes written and not yet taken by the network (waiting for window space). */
  readonly bufferedBytes: number;
  /** Sends the buffered bytes, then a clean close. */
  end(): void;
  /** Drops the unsent buffer and resets the pipe; the peer hears ECONNRESET. */
  destroy(): void;
}

/** What a pipe needs from its network. */
export interface PipeContext {
  readonly clock: SimClock;
  readonly windowBytes: () => number;
  readonly bufferBytesMax: () => number;
  readonly breakDetectionMs: () => number;
  /** A one-way delay for a chunk taken now, ms. */
  readonly delayMs: () => number;
  /** Where to split a chunk of `length` bytes in two, or undefined to keep it whole. */
  readonly splitAt: (length: number) => number | undefined;
  /** Why `from` -> `to` cannot carry packets now (partition or crashed host), or undefined. */
  readonly cut: (from: string, to: string) => string | undefined;
  readonly record: (event: TraceEvent) => void;
  /** The dial reached the listener's address: accept it (or answer with a refusal). */
  readonly arrive: (pipe: Pipe, offer: string) => void;
  /** The pipe is finished: forget it. */
  readonly release: (pipe: Pipe) => void;
}

type Item =
  | { readonly kind: "syn"; readonly offer: string }
  | { readonly kind: "open"; readonly answer: string }
  | { readonly kind: "data"; readonly chunk: Buffer }
  | { readonly kind: "fin" }
  | { readonly kind: "rst"; readonly error: PipeError };

interface InFlight {
  readonly item: Item;
  dueMs: number;
}

/** A FIFO with amortised O(1) shift. */
class Queue<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  unshift(item: T): void {
    if (this.head > 0) this.items[--this.head] = item;
    else this.items.unshift(item);
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++]!;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

const dataBytes = (item: Item): number => (item.kind === "data" ? item.chunk.length : 0);

/** One direction of a pipe: a send buffer, then a window of items in flight. */
class Direction {
  private readonly buffer = new Queue<Item>();
  private readonly flight = new Queue<InFlight>();
  bufferBytes = 0;
  private flightBytes = 0;
  private lastDueMs = 0;
  private timer: Timer | undefined;
  /** The head met a partition and waits for `resume`. */
  private held = false;

  private readonly pipe: Pipe;
  readonly from: string;
  readonly to: string;
  private readonly context: PipeContext;
  private readonly sender: () => SimPipeEnd | undefined;
  private readonly receiver: () => SimPipeEnd | undefined;

  constructor(
    pipe: Pipe,
    from: string,
    to: string,
    context: PipeContext,
    sender: () => SimPipeEnd | undefined,
    receiver: () => SimPipeEnd | undefined,
  ) {
    this.pipe = pipe;
    this.from = from;
    this.to = to;
    this.context = context;
    this.sender = sender;
    this.receiver = receiver;
  }

  get idle(): boolean {
    return this.buffer.length === 0 && this.flight.length === 0;
  }

  /** Queues an item behind everything written before; control items skip the window. */
  enqueue(item: Item): void {
    this.buffer.push(item);
    this.bufferBytes += dataBytes(item);
    this.pump();
  }

  /** Drops the unsent buffer (a reset); what is in flight still arrives. */
  dropBuffer(): void {
    this.buffer.clear();
    this.bufferBytes = 0;
  }

  /** Drops everything (the pipe is broken). */
  clear(): void {
    this.dropBuffer();
    this.flight.clear();
    this.flightBytes = 0;
    this.timer?.cancel();
    this.timer = undefined;
    this.held = false;
  }

  /** After a heal: a held head is retransmitted now, with a fresh delay. */
  resume(): void {
    if (!this.held) return;
    this.held = false;
    const head = this.flight.peek();
    if (head !== undefined) {
      head.dueMs = Math.max(head.dueMs, this.context.clock.nowMs() + this.context.delayMs());
      this.lastDueMs = Math.max(this.lastDueMs, head.dueMs);
    }
    this.arm();
  }

  /** Moves buffered items into flight while the window has room. */
  private pump(): void {
    const window = this.context.windowBytes();
    for (;;) {
      const head = this.buffer.peek();
      if (head === undefined) break;
      if (head.kind === "data") {
        const room = window - this.flightBytes;
        if (room <= 0) break;
        this.buffer.shift();
        if (head.chunk.length > room) {
          this.buffer.unshift({ kind: "data", chunk: head.chunk.subarray(room) });
          this.take({ kind: "data", chunk: head.chunk.subarray(0, room) });
          this.bufferBytes -= room;
        } else {
          this.take(head);
          this.bufferBytes -= head.chunk.length;
        }
      } else {
        this.buffer.shift();
        this.take(head);
      }
    }
    this.arm();
  }

  private take(item: Item): void {
    if (item.kind === "data") {
      this.flightBytes += item.chunk.length;
      const split = this.context.splitAt(item.chunk.length);
      if (split !== undefined) {
        this.fly({ kind: "data", chunk: item.chunk.subarray(0, split) });
        this.fly({ kind: "data", chunk: item.chunk.subarray(split) });
        return;
      }
    }
    this.fly(item);
  }

  private fly(item: Item): void {
    const dueMs = Math.max(this.lastDueMs, this.context.clock.nowMs() + this.context.delayMs());
    this.lastDueMs = dueMs;
    this.flight.push({ item, dueMs });
  }

  private arm(): void {
    if (this.timer !== undefined || this.held) return;
    const head = this.flight.peek();
    if (head === undefined) return;
    this.timer = this.context.clock.schedule(head.dueMs - this.context.clock.nowMs(), this.deliverHead);
  }

  private readonly deliverHead = (): void => {
    this.timer = undefined;
    const head = this.flight.peek();
    if (head === undefined) return;
    // Only this direction's reachability holds its traffic: with A -> B blocked, B's bytes
    // still reach A (TCP's acks are what get lost, and `watch` breaks the pipe for that).
    const cut = this.pipe.cutReason(this.from, this.to);
    if (cut !== undefined) {
      this.held = true;
      this.record("held", dataBytes(head.item), cut);
      this.pipe.watch();
      return;
    }
    this.flight.shift();
    this.flightBytes -= dataBytes(head.item);
    this.pump();
    const sender = this.sender();
    if (this.buffer.length === 0 && sender?.needDrain === true) {
      sender.needDrain = false;
      sender.notify((handler) => handler.drain());
    }
    this.deliver(head.item);
    this.pipe.maybeRelease();
  };

  private deliver(item: Item): void {
    const receiver = this.receiver();
    switch (item.kind) {
      case "syn":
        this.context.arrive(this.pipe, item.offer);
        return;
      case "open":
        if (receiver === undefined || receiver.state !== "connecting") return;
        receiver.state = "open";
        this.record("opened", 0, "");
        receiver.notify((handler) => handler.opened?.(item.answer));
        return;
      case "data":
        if (receiver === undefined || receiver.state === "closed") {
          this.record("discarded", item.chunk.length, "end closed");
          return;
        }
        this.record("delivered", item.chunk.length, checksum(item.chunk));
        receiver.notify((handler) => handler.data(item.chunk));
        return;
      case "fin":
        if (receiver === undefined || receiver.state === "closed") return;
        this.record("fin", 0, "");
        receiver.state = "closed";
        // As Node with allowHalfOpen false: the peer's end answers a FIN with its own.
        receiver.end();
        receiver.notify((handler) => handler.closed(undefined));
        return;
      case "rst":
        if (receiver === undefined || receiver.state === "closed") return;
        this.record("reset", 0, item.error.message);
        receiver.state = "closed";
        receiver.outgoing.clear();
        receiver.notify((handler) => handler.closed(item.error));
        return;
    }
  }

  record(kind: TraceKind, bytes: number, detail: string): void {
    this.context.record({
      atMs: this.context.clock.nowMs(),
      kind,
      channel: "pipe",
      id: this.pipe.id,
      from: this.from,
      to: this.to,
      bytes,
      detail,
    });
  }
}

class SimPipeEnd implements PipeEnd {
  state: PipeEndState;
  /** A write had to wait in the send buffer; `drain` is owed once it empties. */
  needDrain = false;
  /** This end has queued its FIN (or reset): later writes are ignored. */
  private finished = false;
  private handler: PipeHandler | undefined;
  readonly pipe: Pipe;
  readonly localAddress: string;
  readonly remoteAddress: string;
  /** Set right after construction, once both directions exist. */
  outgoing!: Direction;

  constructor(pipe: Pipe, localAddress: string, remoteAddress: string, state: PipeEndState) {
    this.pipe = pipe;
    this.localAddress = localAddress;
    this.remoteAddress = remoteAddress;
    this.state = state;
  }

  get pipeId(): number {
    return this.pipe.id;
  }

  bind(handler: PipeHandler): void {
    this.handler = handler;
  }

  notify(event: (handler: PipeHandler) => void): void {
    if (this.handler === undefined) {
      throw new Error(`pipe #${this.pipe.id} end ${this.localAddress}: event before bind()`);
    }
    event(this.handler);
  }

  write(chunk: Uint8Array): void {
    if (this.finished || this.state === "closed" || chunk.length === 0) return;
    const limit = this.pipe.context.bufferBytesMax();
    if (this.outgoing.bufferBytes + chunk.length > limit) {
      this.finished = true;
      this.pipe.overflow(this, limit);
      return;
    }
    this.outgoing.record("sent", chunk.length, checksum(chunk));
    this.outgoing.enqueue({ kind: "data", chunk: Buffer.from(chunk) });
    if (this.outgoing.bufferBytes > 0) this.needDrain = true;
  }

  get bufferedBytes(): number {
    return this.outgoing.bufferBytes;
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    this.outgoing.enqueue({ kind: "fin" });
  }

  destroy(): void {
    if (this.state === "closed") return;
    this.finished = true;
    this.outgoing.dropBuffer();
    this.state = "closed";
    this.outgoing.enqueue({
      kind: "rst",
      error: { code: "ECONNRESET", message: `connection reset by ${this.localAddress}` },
    });
    // As Node: 'close' follows destroy() asynchronously, without an error.
    this.pipe.context.clock.schedule(0, () => this.notify((handler) => handler.closed(undefined)));
  }
}

/** A pipe: created by SimNetwork.connect; the listener's end appears when the dial arrives. */
export class Pipe {
  readonly id: number;
  readonly dialerAddress: string;
  readonly listenerAddress: string;
  readonly context: PipeContext;
  readonly dialer: SimPipeEnd;
  listener: SimPipeEnd | undefined;
  private readonly toListener: Direction;
  private readonly toDialer: Direction;
  /** A crash cut this pipe for good (restarting the host does not revive connections). */
  private doomed: string | undefined;
  private breakTimer: Timer | undefined;
  private released = false;

  constructor(
    id: number,
    dialerAddress: string,
    listenerAddress: string,
    offer: string,
    context: PipeContext,
  ) {
    this.id = id;
    this.dialerAddress = dialerAddress;
    this.listenerAddress = listenerAddress;
    this.context = context;
    this.dialer = new SimPipeEnd(this, dialerAddress, listenerAddress, "connecting");
    this.toListener = new Direction(
      this,
      dialerAddress,
      listenerAddress,
      context,
      () => this.dialer,
      () => this.listener,
    );
    this.toDialer = new Direction(
      this,
      listenerAddress,
      dialerAddress,
      context,
      () => this.listener,
      () => this.dialer,
    );
    this.dialer.outgoing = this.toListener;
    this.toListener.record("connect", 0, listenerAddress);
    this.toListener.enqueue({ kind: "syn", offer });
  }

  /** The dial arrived and a listener took it: its end, open, with `answer` sent back first. */
  accept(answer: string): PipeEnd {
    const end = new SimPipeEnd(this, this.listenerAddress, this.dialerAddress, "open");
    end.outgoing = this.toDialer;
    this.listener = end;
    this.toListener.record("accept", 0, "");
    this.toDialer.enqueue({ kind: "open", answer });
    return end;
  }

  /** The dial arrived and nothing listens: the dialer hears ECONNREFUSED. */
  refuse(reason: string): void {
    this.toListener.record("refused", 0, reason);
    this.toDialer.enqueue({
      kind: "rst",
      error: { code: "ECONNREFUSED", message: `connect ECONNREFUSED ${this.listenerAddress}: ${reason}` },
    });
  }

  /** Why `from` -> `to` cannot carry packets now, or undefined. Both ways by default: a pipe
   *  needs both (data one way, acknowledgements the other). */
  cutReason(from?: string, to?: string): string | undefined {
    if (this.doomed !== undefined) return this.doomed;
    if (from !== undefined && to !== undefined) return this.context.cut(from, to);
    return (
      this.context.cut(this.dialerAddress, this.listenerAddress) ??
      this.context.cut(this.listenerAddress, this.dialerAddress)
    );
  }

  /** A crash touched one of the ends: the pipe will break, whatever happens next. */
  doom(reason: string): void {
    this.doomed ??= reason;
    this.watch();
  }

  /** Reachability changed: start the break countdown if cut, resume held traffic if not. */
  watch(): void {
    if (this.released) return;
    if (this.cutReason() === undefined) {
      this.toListener.resume();
      this.toDialer.resume();
      return;
    }
    if (this.breakTimer !== undefined) return;
    const detectionMs = this.context.breakDetectionMs();
    this.breakTimer = this.context.clock.schedule(detectionMs, () => {
      this.breakTimer = undefined;
      const reason = this.cutReason();
      if (reason === undefined) {
        this.watch();
        return;
      }
      this.break(
        (end) => ({
          code: "ETIMEDOUT",
          message: `connection ${end.localAddress} -> ${end.remoteAddress} broken: ${reason}, noticed after ${detectionMs} ms`,
        }),
        `${reason}, noticed after ${detectionMs} ms`,
      );
    });
  }

  /** A writer overran its send buffer: a clear error at the writer, a reset at the peer. */
  overflow(writer: SimPipeEnd, limit: number): void {
    this.context.clock.schedule(0, () =>
      this.break(
        (end) =>
          end === writer
            ? {
                code: "ENOBUFS",
                message: `connection ${end.localAddress} -> ${end.remoteAddress}: over ${limit} bytes buffered; the writer ignores backpressure`,
              }
            : {
                code: "ECONNRESET",
                message: `connection reset by ${writer.localAddress} (send buffer overflow)`,
              },
        "send buffer overflow",
      ),
    );
  }

  /** Closes both ends at once with their errors and forgets the pipe. */
  private break(errorFor: (end: SimPipeEnd) => PipeError, reason: string): void {
    if (this.released) return;
    this.toListener.clear();
    this.toDialer.clear();
    this.breakTimer?.cancel();
    this.breakTimer = undefined;
    this.toListener.record("broken", 0, reason);
    const ends = [this.dialer, this.listener].filter(
      (end): end is SimPipeEnd => end !== undefined && end.state !== "closed",
    );
    for (const end of ends) end.state = "closed";
    this.maybeRelease();
    for (const end of ends) end.notify((handler) => handler.closed(errorFor(end)));
  }

  /** Forgets the pipe once both ends are closed and nothing is left to deliver. */
  maybeRelease(): void {
    if (this.released) return;
    const listenerClosed = this.listener === undefined || this.listener.state === "closed";
    if (this.dialer.state !== "closed" || !listenerClosed) return;
    if (!this.toListener.idle || !this.toDialer.idle) return;
    this.released = true;
    this.breakTimer?.cancel();
    this.breakTimer = undefined;
    this.context.release(this);
  }
}
