// The simulated network's trace: what was sent, delivered, dropped, duplicated, held, refused
// and broken, at which virtual time. Two runs with the same seed must produce the same trace;
// tests compare traces (or their digests) to prove determinism.
//
// Invariants: events are recorded in the order they happen. The trace keeps the last
// `capacity` events (a ring: memory stays bounded on long runs) but the digest covers every
// event ever recorded, so two long runs can still be compared exactly.
// Trap: the digest is FNV-1a over each event's text form, a fingerprint for equality checks
// and not a cryptographic hash.

export type TraceKind =
  /** A datagram or pipe chunk left its sender (datagrams: after the fault draws). */
  | "sent"
  | "delivered"
  /** Lost: the detail says why (random loss, partition, crashed host, unbound port, queue full). */
  | "dropped"
  /** The network made a second copy of a datagram. */
  | "duplicated"
  /** A pipe chunk reached a partition and waits for it to heal (TCP retransmits). */
  | "held"
  /** A pipe dial: the detail is the dialled address. */
  | "connect"
  /** A listener took a dial. */
  | "accept"
  /** Nothing listens at the dialled address: the dialer gets ECONNREFUSED. */
  | "refused"
  /** The dialer learned its pipe is open. */
  | "opened"
  /** An end of a pipe received its peer's clean close. */
  | "fin"
  /** An end of a pipe received a reset (its peer destroyed the pipe). */
  | "reset"
  /** A pipe broken by a partition, a crash or an overfull buffer: both ends are told. */
  | "broken"
  /** Bytes that reached a pipe end that was already closed. */
  | "discarded";

export interface TraceEvent {
  /** Virtual time, ms. */
  readonly atMs: number;
  readonly kind: TraceKind;
  readonly channel: "datagram" | "pipe";
  /** The datagram's or the pipe's number, counted from 1 in order of creation. */
  readonly id: number;
  readonly from: string;
  readonly to: string;
  readonly bytes: number;
  /** A checksum of the bytes for data events, else the reason. */
  readonly detail: string;
}

/** FNV-1a, 32 bits, as 8 hex digits: a payload fingerprint for the trace. */
export function checksum(bytes: Uint8Array): string {
  let hash = 0x811c9dc5;
  for (let index = 0; index < bytes.length; index++) {
    hash ^= bytes[index]!;
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, "0");
}

/** One line per event, stable across runs: what tests print and compare. */
export function formatTraceEvent(event: TraceEvent): string {
  return `${event.atMs.toFixed(3)} ${event.channel}#${event.id} ${event.kind} ${event.from} -> ${event.to} ${event.bytes}B ${event.detail}`;
}

export class Trace {
  /** Events held. Invariant: ring.length <= capacity; the oldest sits at `next` once full. */
  private readonly ring: TraceEvent[] = [];
  private next = 0;
  private hash = 0x811c9dc5;
  /** Every event recorded since the start, kept or not. */
  count = 0;
  readonly capacity: number;

  constructor(capacity: number) {
    if (!(Number.isInteger(capacity) && capacity >= 0)) {
      throw new Error(`trace capacity must be an integer >= 0, got ${capacity}`);
    }
    this.capacity = capacity;
  }

  record(event: TraceEvent): void {
    this.count += 1;
    const line = formatTraceEvent(event);
    let hash = this.hash;
    for (let index = 0; index < line.length; index++) {
      hash ^= line.charCodeAt(index);
      hash = Math.imul(hash, 0x01000193);
    }
    // Separate events so that "ab"+"c" and "a"+"bc" differ.
    hash ^= 0x0a;
    this.hash = Math.imul(hash, 0x01000193);
    if (this.capacity === 0) return;
    if (this.ring.length < this.capacity) {
      this.ring.push(event);
    } else {
      this.ring[this.next] = event;
      this.next = (this.next + 1) % this.capacity;
    }
  }

  /** The events held, oldest first. */
  events(): TraceEvent[] {
    return [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }

  /** Events recorded but no longer held (the ring overwrote them). */
  get discarded(): number {
    return this.count - this.ring.length;
  }

  /** A fingerprint of every event recorded so far, in order. */
  get digest(): string {
    return `${this.count}:${(this.hash >>> 0).toString(16).padStart(8, "0")}`;
  }
}
