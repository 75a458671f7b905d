// The prober: SWIM's failure detector (§3.1) with Lifeguard's local health (§IV-A) and buddy
// system (§IV-C), for MembershipCore. One probe runs at a time: ping the next member of the
// shuffled round-robin order (§4.3); no ack within the probe timeout -> ping-req through
// `indirectChecks` alive members; no ack by the end of the period -> suspect it. Both timers
// are stretched by local health. It also serves as an intermediary for others' ping-reqs
// (relays): ping the target, relay its ack, or nack after probeTimeoutMs.
//
// Invariants: at most one probe in flight; relays.size <= indirectProbesPendingMax; probes and
// relayed pings share one sequence counter, so a reply's sequence says which it answers.
// Trap: a tick that arrives after the whole probe period (a stalled process) does not condemn
// the target: the indirect round still gets its full window, and the stall counts against our
// own health.
import type { LocalHealth } from "./awareness.ts";
import { type Ack, encodeMessage, type IndirectPing, type Nack, type Ping } from "./codec.ts";
import type { MembershipConfig } from "./config.ts";
import type { DropReason } from "./errors.ts";
import type { MemberId } from "./types.ts";
import type { MembershipView } from "./view.ts";

export interface ProbeCounters {
  probes: number;
  probesFailed: number;
  indirectRounds: number;
  acksRelayed: number;
  nacksSent: number;
  lateReplies: number;
}

export interface ProberOptions {
  readonly config: MembershipConfig;
  readonly view: MembershipView;
  readonly health: LocalHealth;
  /** Sends encoded messages (plus piggybacked broadcasts) in one packet. */
  readonly send: (to: string, messages: Uint8Array[]) => boolean;
  readonly drop: (reason: DropReason) => void;
  /** Counters shared with the core's stats; the prober increments them. */
  readonly counters: ProbeCounters;
  /** When the first probe starts (a random phase, so routers do not probe in lockstep). */
  readonly firstProbeMs: number;
}

interface Probe {
  readonly sequence: number;
  readonly targetId: MemberId;
  readonly targetAddress: string;
  /** The target's incarnation when the probe began: a failed probe suspects that one. */
  readonly targetIncarnation: number;
  readonly timeoutAtMs: number;
  /** Invariant: timeoutAtMs <= endAtMs. */
  endAtMs: number;
  /** Set once the ping-reqs are sent: who was asked. */
  intermediaries: ReadonlySet<MemberId> | undefined;
  /** Intermediaries that nacked (a subset of intermediaries). */
  readonly nacksFrom: Set<MemberId>;
}

/** An indirect probe we run for another member (we are its intermediary). */
interface Relay {
  readonly requesterAddress: string;
  readonly requesterSequence: number;
  readonly targetId: MemberId;
  readonly wantNack: boolean;
  readonly nackAtMs: number;
  readonly expiresAtMs: number;
  nackSent: boolean;
}

export class Prober {
  private readonly config: MembershipConfig;
  private readonly view: MembershipView;
  private readonly health: LocalHealth;
  private readonly send: (to: string, messages: Uint8Array[]) => boolean;
  private readonly drop: (reason: DropReason) => void;
  private readonly counters: ProbeCounters;
  private readonly selfId: MemberId;
  /** Last sequence number issued. */
  private sequence = 0;
  private probe: Probe | undefined;
  private nextProbeMs: number;
  /** Invariant: size <= indirectProbesPendingMax. */
  private readonly relays = new Map<number, Relay>();

  constructor(options: ProberOptions) {
    this.config = options.config;
    this.view = options.view;
    this.health = options.health;
    this.send = options.send;
    this.drop = options.drop;
    this.counters = options.counters;
    this.selfId = options.view.selfId;
    this.nextProbeMs = options.firstProbeMs;
  }

  /** When `tick` must next run for probes and relays. */
  nextDeadlineMs(): number {
    let deadline = Number.POSITIVE_INFINITY;
    if (!this.view.leaving) {
      const probe = this.probe;
      if (probe === undefined) deadline = this.nextProbeMs;
      else deadline = probe.intermediaries === undefined ? probe.timeoutAtMs : probe.endAtMs;
    }
    for (const relay of this.relays.values()) {
      deadline = Math.min(deadline, relay.wantNack && !relay.nackSent ? relay.nackAtMs : relay.expiresAtMs);
    }
    return deadline;
  }

  /** Runs the relay and probe timers due at `nowMs`. */
  tick(nowMs: number): void {
    this.tickRelays(nowMs);
    if (this.view.leaving) this.probe = undefined;
    else this.tickProbe(nowMs);
  }

  private tickProbe(nowMs: number): void {
    const probe = this.probe;
    if (probe !== undefined && probe.intermediaries === undefined && nowMs >= probe.timeoutAtMs) {
      this.sendIndirect(probe, nowMs);
    } else if (probe !== undefined && probe.intermediaries !== undefined && nowMs >= probe.endAtMs) {
      this.probeFailed(probe, nowMs);
    }
    if (this.probe === undefined && nowMs >= this.nextProbeMs) this.startProbe(nowMs);
  }

  private startProbe(nowMs: number): void {
    const intervalMs = this.health.scale(this.config.probeIntervalMs);
    this.nextProbeMs = nowMs + intervalMs;
    const target = this.view.nextProbeTarget(nowMs);
    if (target === undefined) return;
    const sequence = ++this.sequence;
    const ping: Ping = { kind: "Ping", sequence, senderId: this.selfId, targetId: target.id };
    const messages = [encodeMessage(ping)];
    if (target.state === "suspect" && this.config.lifeguard) {
      // Lifeguard §IV-C (buddy system): tell the suspect first, so it can refute at once.
      messages.push(
        encodeMessage({
          kind: "Suspect",
          incarnation: target.incarnation,
          memberId: target.id,
          fromId: this.selfId,
        }),
      );
    }
    this.send(target.gossipAddress, messages);
    this.counters.probes++;
    this.probe = {
      sequence,
      targetId: target.id,
      targetAddress: target.gossipAddress,
      targetIncarnation: target.incarnation,
      timeoutAtMs: nowMs + this.health.scale(this.config.probeTimeoutMs),
      endAtMs: nowMs + intervalMs,
      intermediaries: undefined,
      nacksFrom: new Set(),
    };
  }

  private sendIndirect(probe: Probe, nowMs: number): void {
    const lateMs = nowMs - probe.timeoutAtMs;
    if (lateMs > 0) {
      // We ran late (a stall of ours): give the indirect round its full window anyway.
      const windowMs = probe.endAtMs - probe.timeoutAtMs;
      if (lateMs >= windowMs) this.health.applyDelta(1);
      probe.endAtMs = Math.max(probe.endAtMs, nowMs + windowMs);
    }
    const peers = this.view.randomMembers(
      this.config.indirectChecks,
      (member) => member.state === "alive" && member.id !== probe.targetId,
    );
    probe.intermediaries = new Set(peers.map((peer) => peer.id));
    if (peers.length === 0) return;
    this.counters.indirectRounds++;
    const request: IndirectPing = {
      kind: "IndirectPing",
      sequence: probe.sequence,
      senderId: this.selfId,
      targetId: probe.targetId,
      targetAddress: probe.targetAddress,
      wantNack: this.config.lifeguard,
    };
    const encoded = encodeMessage(request);
    for (const peer of peers) this.send(peer.gossipAddress, [encoded]);
  }

  private probeFailed(probe: Probe, nowMs: number): void {
    this.probe = undefined;
    this.counters.probesFailed++;
    // Lifeguard §IV-A: each expected nack that did not come suggests we are the slow one; with
    // nobody to ask, the failure itself counts.
    const expected = probe.intermediaries?.size ?? 0;
    this.health.applyDelta(expected > 0 ? expected - probe.nacksFrom.size : 1);
    this.view.suspect(probe.targetId, probe.targetIncarnation, this.selfId, nowMs);
  }

  onPing(ping: Ping, fromAddress: string): void {
    if (ping.targetId !== this.selfId) return this.drop("misdirected");
    const ack: Ack = { kind: "Ack", sequence: ping.sequence, memberId: this.selfId };
    this.send(fromAddress, [encodeMessage(ack)]);
  }

  onIndirectPing(request: IndirectPing, fromAddress: string, nowMs: number): void {
    if (request.targetId === this.selfId) return this.drop("misdirected");
    if (this.relays.size >= this.config.indirectProbesPendingMax) return this.drop("indirectBusy");
    const sequence = ++this.sequence;
    this.relays.set(sequence, {
      requesterAddress: fromAddress,
      requesterSequence: request.sequence,
      targetId: request.targetId,
      wantNack: request.wantNack,
      nackAtMs: nowMs + this.config.probeTimeoutMs,
      expiresAtMs: nowMs + this.config.probeIntervalMs,
      nackSent: false,
    });
    const ping: Ping = { kind: "Ping", sequence, senderId: this.selfId, targetId: request.targetId };
    this.send(request.targetAddress, [encodeMessage(ping)]);
  }

  onAck(ack: Ack): void {
    const probe = this.probe;
    if (probe !== undefined && ack.sequence === probe.sequence) {
      if (ack.memberId !== probe.targetId) return this.drop("unsolicited");
      this.probe = undefined;
      this.health.applyDelta(-1);
      return;
    }
    const relay = this.relays.get(ack.sequence);
    if (relay !== undefined) {
      if (ack.memberId !== relay.targetId) return this.drop("unsolicited");
      this.relays.delete(ack.sequence);
      const relayed: Ack = { kind: "Ack", sequence: relay.requesterSequence, memberId: relay.targetId };
      this.send(relay.requesterAddress, [encodeMessage(relayed)]);
      this.counters.acksRelayed++;
      return;
    }
    this.lateOrUnsolicited(ack.sequence);
  }

  onNack(nack: Nack): void {
    const probe = this.probe;
    if (probe !== undefined && nack.sequence === probe.sequence) {
      if (nack.memberId !== probe.targetId || !probe.intermediaries?.has(nack.senderId)) {
        return this.drop("unsolicited");
      }
      probe.nacksFrom.add(nack.senderId);
      return;
    }
    this.lateOrUnsolicited(nack.sequence);
  }

  /** A reply to a sequence we issued is late (normal); to one we never issued, unsolicited. */
  private lateOrUnsolicited(sequence: number): void {
    if (sequence >= 1 && sequence <= this.sequence) this.counters.lateReplies++;
    else this.drop("unsolicited");
  }

  private tickRelays(nowMs: number): void {
    for (const [sequence, relay] of this.relays) {
      if (relay.wantNack && !relay.nackSent && nowMs >= relay.nackAtMs) {
        relay.nackSent = true;
        const nack: Nack = {
          kind: "Nack",
          sequence: relay.requesterSequence,
          senderId: this.selfId,
          memberId: relay.targetId,
        };
        this.send(relay.requesterAddress, [encodeMessage(nack)]);
        this.counters.nacksSent++;
      }
      if (nowMs >= relay.expiresAtMs) this.relays.delete(sequence);
    }
  }
}
