// The region mesh inside one router: its Raft groups (the controller and the partitions it
// replicates) on one disk store, the links to the other routers, and the replicated state of
// each group (DESIGN.md, architecture).
//
// - The controller (group 65,536) holds the roster and the partitions activated so far, each
//   with the replicas it was created with. Every router of the cluster replicates it (voters:
//   at most three; the rest learners). The router with no seeds founds it, alone, once.
// - A partition's group is created once through the controller (ActivatePartition), so every
//   replica bootstraps it from the same recorded configuration; afterwards its leader moves it
//   toward the target assignment (reconciler.ts).
// - Requests (publish, declare, interest) go to the group's leader: here if this router leads
//   it, else forwarded over the router links (requests.ts). A persistent publish is answered
//   after its entry is committed (fsynced on a quorum) and applied; an ephemeral one is fanned
//   out by the leader at once and never stored.
// - Fan-out: the leader sends each message to every router that registered interest in its
//   topic (Deliver frames over the links, in log order), and the router delivers to its clients.
//
// Invariants: group state machines are rebuilt by applying the whole log at start (nothing is
// compacted yet); a message is fanned out only by a router that leads its partition when it
// applies it, so replicas replaying their log deliver nothing.
// Trap: apply() runs inside a Raft round: groups are created from it only in a microtask.
import { join } from "node:path";
import type { Address, Credentials, Transport } from "../axon/index.ts";
import {
  decodePartitionCommand,
  decodeReplayRequest,
  encodePartitionCommand,
  encodeReplayRequest,
  isReplayRequest,
  type PartitionCommand,
  PartitionState,
  type PartitionStateLimits,
  type ReplayRequest,
  StreamIndex,
} from "../delivery/index.ts";
import {
  type Assignment,
  ControllerState,
  computeAssignment,
  controllerGroup,
  decodeControllerCommand,
  encodeControllerCommand,
  type PartitionId,
  partitionCount,
  routerIdProblem,
} from "../partitions/index.ts";
import type { Clock, Random } from "../ports/index.ts";
import {
  type Applied,
  LinkRaftTransport,
  type MeshFrame,
  MultiRaft,
  type RaftConfig,
  RaftRequestError,
  type SoftState,
} from "../raft/index.ts";
import {
  type Configuration,
  type DiskStore,
  type Entry,
  type GroupId,
  nodeFileSystem,
  openDiskStore,
  type Snapshot,
} from "../storage/index.ts";
import type { Deliver, Headers, Hello, TopicKind } from "../wire/index.ts";
import type { Log } from "./log.ts";
import { done, doneAt, failed, type Outcome } from "./outcome.ts";
import { Reconciler } from "./reconciler.ts";
import { GroupRequests } from "./requests.ts";

/** How topics nobody declared are treated (config `[streams]`). */
export interface TopicRules {
  /** Undeclared topics starting with one of these are persistent. */
  readonly persistentPrefixes: readonly string[];
  /** Other undeclared topics: ephemeral (default), or refused with UnknownTopic. */
  readonly undeclared: "ephemeral" | "refuse";
}

export const defaultTopicRules: TopicRules = { persistentPrefixes: [], undeclared: "ephemeral" };

export interface RegionOptions {
  readonly id: string;
  readonly dataDir: string;
  /** No seeds: this router founds the cluster's controller if it has none on disk. */
  readonly founder: boolean;
  /** Router links; absent for a router on its own. */
  readonly links?: {
    readonly transport: Transport;
    readonly listen: Address;
    readonly credentials: Credentials;
    readonly hello: Hello;
  };
  /** Where a peer's links listen (from membership), or null. */
  readonly addressOf: (peer: string) => Address | null;
  /** Membership's verdict: false once a router is dead or left. */
  readonly isAlive: (router: string) => boolean;
  /** Membership declared the router dead or left (not merely unknown). */
  readonly isGone: (router: string) => boolean;
  /** Routers membership sees alive, this one included. */
  readonly aliveRouters: () => readonly string[];
  readonly replicationFactor: number;
  readonly topicRules: TopicRules;
  readonly clock: Clock;
  readonly random: Random;
  readonly log: Log;
  /** A message for this router's local subscribers (live, or answering a replay). */
  readonly deliver: (message: DeliveredMessage) => void;
  readonly partitionLimits?: Partial<PartitionStateLimits>;
  /** Raft's settings; `maxMessageBytes` must leave room in a link frame (router.ts). */
  readonly raft?: RaftConfig;
  /** This router was added to the roster (again): register the local interests anew. */
  readonly rejoined?: () => void;
  /** The router was drained (neuron drain): it should stop now. */
  readonly drained?: () => void;
  /** Longest a request waits for a leader before failing, ms. Default 8,000. */
  readonly requestDeadlineMs?: number;
}

/** The outcome of a request done at once, as a promise (shared: it never changes). */
const resolvedDone: Promise<Outcome> = Promise.resolve(done);

/** A message as a partition's leader sends it to an interested router (wire Deliver). */
export type DeliveredMessage = Omit<Deliver, "kind">;

/**
 * Most entry bytes one replay request reads (whatever their topic) before answering; the
 * requester asks again from where it stopped. Kept well below a link's backpressure threshold
 * (4 MiB) so one answer's deliveries fit, and small enough that one request never holds the
 * event loop for long.
 */
const replayBytesMax = 1024 * 1024;

export interface RegionCounters {
  storedMessages: number;
  ephemeralMessages: number;
  deliveredLocal: number;
  deliversSent: number;
  deliversDropped: number;
  deliversReceived: number;
  replays: number;
  replayedMessages: number;
}

export class Region {
  readonly id: string;
  readonly counters: RegionCounters = {
    storedMessages: 0,
    ephemeralMessages: 0,
    deliveredLocal: 0,
    deliversSent: 0,
    deliversDropped: 0,
    deliversReceived: 0,
    replays: 0,
    replayedMessages: 0,
  };
  readonly multi: MultiRaft;
  readonly links: LinkRaftTransport | undefined;
  readonly requests: GroupRequests;
  private readonly options: RegionOptions;
  private readonly store: DiskStore;
  private controller = new ControllerState();
  private readonly partitions = new Map<number, PartitionState>();
  private readonly streams = new Map<number, StreamIndex>();
  private assignmentCache: { version: number; assignment: Assignment | null } = {
    version: -1,
    assignment: null,
  };
  private readonly reconciler: Reconciler;
  /** The last interest change of each topic still in progress (see interest()). */
  private readonly interestChanges = new Map<string, Promise<Outcome>>();
  /**
   * Declarations this router proposed as a partition's leader that have not settled, by topic.
   * A publish to such a topic waits for its declaration: deciding its kind before the entry
   * applies would send a message meant to be stored as an ephemeral one. Bounded by the
   * requests in flight.
   */
  private readonly declaring = new Map<string, Promise<Outcome>>();
  private stopped = false;

  private constructor(options: RegionOptions, store: DiskStore, links: LinkRaftTransport | undefined) {
    this.options = options;
    this.id = options.id;
    this.store = store;
    this.links = links;
    this.multi = new MultiRaft({
      id: options.id,
      store,
      transport: links ?? { send: () => {} },
      clock: options.clock,
      random: options.random,
      groupsMax: partitionCount + 1,
      ...(options.raft === undefined ? {} : { config: options.raft }),
      configurationOf: (group) => this.configurationOf(group),
      stateMachine: {
        apply: (group, entries) => this.apply(group, entries),
        restore: (group, snapshot) => this.restore(group, snapshot),
        leadershipChanged: (group, state) => this.leadershipChanged(group, state),
      },
      onFailure: (error) =>
        options.log.error("the raft store failed; every group has stopped", { error: error.message }),
    });
    this.requests = new GroupRequests({
      id: options.id,
      clock: options.clock,
      multi: this.multi,
      links,
      deadlineMs: options.requestDeadlineMs ?? 8_000,
      isActive: (group) =>
        group === controllerGroup || this.controller.replicasAtActivation(group as PartitionId) !== undefined,
      activate: (group) => this.activate(group as PartitionId),
      guessLeader: (group, attempt) => this.guessLeader(group, attempt),
      atLeader: (group, command, origin, decoded) =>
        this.atLeader(group, command, origin, decoded as PartitionCommand | undefined),
    });
    this.reconciler = new Reconciler({
      id: options.id,
      multi: this.multi,
      clock: options.clock,
      log: options.log,
      controllerGroup,
      controller: () => this.controller,
      assignment: () => this.assignment(),
      isAlive: options.isAlive,
      isGone: options.isGone,
      aliveRouters: options.aliveRouters,
      propose: (command) => this.multi.propose(controllerGroup, encodeControllerCommand(command)),
      drained: () => {
        options.log.info("drained: no partition counts on this router any more; stopping");
        options.drained?.();
      },
    });
  }

  static async start(options: RegionOptions): Promise<Region> {
    const opened = await openDiskStore({ fs: nodeFileSystem, dir: join(options.dataDir, "raft") });
    for (const damage of opened.damage) options.log.warn("raft store damage found at open", { ...damage });
    for (const note of opened.notes) options.log.info("raft store", { note });
    let holder: Region | null = null;
    let links: LinkRaftTransport | undefined;
    if (options.links !== undefined) {
      links = await LinkRaftTransport.start({
        id: options.id,
        transport: options.links.transport,
        credentials: options.links.credentials,
        hello: options.links.hello,
        listen: options.links.listen,
        addressOf: options.addressOf,
        clock: options.clock,
        receive: (batch) => holder?.multi.receive(batch),
        frame: (peer, frame) => holder?.meshFrame(peer, frame),
        linkClosed: (peer) => {
          holder?.requests.linkClosed(peer);
          holder?.multi.peerUnreachable(peer);
        },
        oversized: (drop) => options.log.warn(drop.message),
      });
    }
    const region = new Region(options, opened.store, links);
    holder = region;
    region.multi.start();
    region.reconciler.start();
    return region;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.reconciler.stop();
    this.requests.stop();
    this.multi.stop();
    await this.links?.close();
    await this.store.close();
  }

  /** Where other routers dial this one's links. */
  get linksAddress(): Address | undefined {
    return this.links?.address;
  }

  // ---- requests from this router's clients -------------------------------------------------

  publish(
    topic: string,
    partition: number,
    payload: Uint8Array,
    headers: Headers,
    producerId: string,
    sequence: number,
    ackedSequence: number,
  ): Promise<Outcome> {
    const node = this.stopped ? undefined : this.multi.group(partition);
    // A removed replica keeps its node, and may still believe it leads (requests.ts, replica()).
    if (node?.role === "leader" && node.caughtUpAsLeader && node.configuration.voters.includes(this.id)) {
      // This router leads the partition: an ephemeral message goes out at once, without the
      // request machinery (requests.ts) or an encoding nothing would read (atLeader's rules).
      if (!this.declaring.has(topic) && this.kindAt(partition, topic) === "ephemeral") {
        this.sendEphemeral(partition, topic, payload, headers);
        return resolvedDone;
      }
    }
    const publish: PartitionCommand = {
      kind: "Publish",
      topic,
      payload,
      headers,
      producerId,
      sequence,
      ackedSequence,
    };
    return this.requests.request(partition, encodePartitionCommand(publish), publish);
  }

  declareTopic(topic: string, partition: number, kind: TopicKind): Promise<Outcome> {
    return this.requests.request(
      partition,
      encodePartitionCommand({ kind: "DeclareTopic", topic, topicKind: kind }),
    );
  }

  /**
   * This router has local subscribers to `topic` (on) or no longer (off). Changes to one topic
   * are made one after the other, so an "off" never lands after a later "on".
   */
  interest(topic: string, partition: number, on: boolean): Promise<Outcome> {
    const command = encodePartitionCommand({ kind: "Interest", router: this.id, topic, on });
    const previous = this.interestChanges.get(topic) ?? Promise.resolve(done);
    const next = previous
      .catch(() => done)
      .then(() => this.requests.request(partition, command))
      .catch((error: unknown) => failed("Internal", (error as Error).message));
    this.interestChanges.set(topic, next);
    void next.then(() => {
      if (this.interestChanges.get(topic) === next) this.interestChanges.delete(topic);
    });
    return next;
  }

  /**
   * Asks the partition's leader for the stored messages of `topic` in (after, through]; they
   * arrive through `deliver` (in order, each naming the one before it). Resolves with how far
   * the leader read (`offset`): less than `through` if it stopped at its byte budget.
   */
  replay(partition: number, request: ReplayRequest): Promise<Outcome> {
    return this.requests.request(partition, encodeReplayRequest(request));
  }

  /**
   * Marks `router` draining in the roster: the target assignment leaves it out, so the leaders
   * move its replicas and leaderships away; it then stops by itself (Reconciler.drained).
   */
  drain(router: string): Promise<Outcome> {
    const problem = routerIdProblem(router);
    if (problem !== null) return Promise.resolve(failed("InvalidArgument", `router id: ${problem}`));
    return this.requests.request(
      controllerGroup,
      encodeControllerCommand({ kind: "SetDraining", router, draining: true }),
    );
  }

  // ---- status --------------------------------------------------------------------------------

  status(): unknown {
    let led = 0;
    let held = 0;
    const groups: {
      group: number;
      role: string;
      learner: boolean;
      voters: readonly string[];
      term: number;
      leader: string | null;
      commit: number;
      lag: Record<string, number>;
    }[] = [];
    for (const node of this.multi.groups()) {
      if (node.group !== controllerGroup) held += 1;
      if (node.role === "leader" && node.group !== controllerGroup) led += 1;
      if (groups.length < 64 || node.group === controllerGroup) {
        const lag: Record<string, number> = {};
        if (node.role === "leader") {
          for (const [peer, progress] of node.replicaProgress())
            lag[peer] = node.log.lastIndex() - progress.match;
        }
        groups.push({
          group: node.group,
          role: node.role,
          learner: node.configuration.learners.includes(this.id),
          voters: node.configuration.voters,
          term: node.term,
          leader: node.leader,
          commit: node.log.committed,
          lag,
        });
      }
    }
    const controller = this.multi.group(controllerGroup);
    return {
      roster: this.controller.routers(),
      draining: this.controller.routers().filter((router) => this.controller.isDraining(router)),
      controllerLeader: controller?.leader ?? null,
      activePartitions: this.controller.activePartitions(),
      partitionsHeld: held,
      partitionsLed: led,
      groups,
      counters: this.counters,
      requests: this.requests.stats,
      raft: this.multi.stats(),
      links: this.links?.stats,
    };
  }

  /**
   * Asks the controller's leader to activate a partition. The replicas named here are only
   * this router's guess: the leader records its own assignment's.
   */
  private activate(partition: PartitionId): Promise<Outcome> {
    const replicas = this.assignment()?.replicasOf(partition) ?? [this.id];
    return this.requests.request(
      controllerGroup,
      encodeControllerCommand({ kind: "ActivatePartition", partition, replicas }),
    );
  }

  // ---- the leader's side ---------------------------------------------------------------------

  /** A request for a group this router leads, from `origin`; `decoded`: `command` decoded, if at hand. */
  private async atLeader(
    group: GroupId,
    command: Uint8Array,
    origin: string,
    decoded: PartitionCommand | undefined,
  ): Promise<Outcome> {
    if (group === controllerGroup) return this.controllerRequest(command);
    let request = decoded;
    if (request === undefined) {
      if (isReplayRequest(command)) {
        const replay = decodeReplayRequest(command);
        if (!replay.ok) return failed("MalformedFrame", `partition ${group}: ${replay.message}`);
        return this.replayAt(group, replay.request, origin);
      }
      const read = decodePartitionCommand(command);
      if (!read.ok) return failed("MalformedFrame", `partition ${group}: ${read.error.message}`);
      request = read.command;
    }
    if (request.kind === "Publish") {
      const declaration = this.declaring.get(request.topic);
      if (declaration !== undefined) await declaration;
    }
    if (this.multi.group(group)?.caughtUpAsLeader !== true) {
      // A new leader has not applied what its predecessor committed yet (a topic declared
      // persistent, say): deciding now could treat it as ephemeral and drop the message.
      return failed("NoLeader", `partition ${group}'s new leader is catching up`);
    }
    if (request.kind === "DeclareTopic") {
      const topic = request.topic;
      const declaration = this.propose(group, command);
      this.declaring.set(topic, declaration);
      void declaration.then(() => {
        if (this.declaring.get(topic) === declaration) this.declaring.delete(topic);
      });
      return declaration;
    }
    if (request.kind === "Publish") {
      const kind = this.kindAt(group, request.topic);
      if (kind === undefined) {
        return failed(
          "UnknownTopic",
          `no topic ${JSON.stringify(request.topic)}: declare it, or name it under a persistent prefix`,
        );
      }
      if (kind === "ephemeral") {
        this.sendEphemeral(group, request.topic, request.payload, request.headers);
        return done;
      }
    }
    return this.propose(group, command);
  }

  /**
   * Sends `origin` the stored messages of one topic in (after, through], reading the log up to
   * what is applied here, at most `replayBytesMax` of payload. Answers how far it read.
   */
  private replayAt(group: GroupId, request: ReplayRequest, origin: string): Outcome {
    const node = this.multi.group(group);
    if (node?.role !== "leader")
      return failed("NotLeader", `partition ${group} moved`, node?.leader ?? undefined);
    if (!node.caughtUpAsLeader) return failed("NoLeader", `partition ${group}'s new leader is catching up`);
    if (request.probe) return doneAt(this.streamIndex(group).lastOffsetOf(request.topic));
    this.counters.replays += 1;
    const log = this.store.group(group);
    const stream = this.streamIndex(group);
    const through = Math.min(request.through, node.log.applied);
    let from = request.after + 1;
    if (from < log.firstIndex()) {
      return failed("LimitReached", `partition ${group} no longer holds offsets before ${log.firstIndex()}`);
    }
    let previous = request.after;
    let read = request.after;
    let bytes = 0;
    while (from <= through && bytes < replayBytesMax) {
      const entries = log.entries(from, through + 1, replayBytesMax - bytes);
      for (const entry of entries) {
        bytes += entry.data.byteLength;
        if (entry.kind !== "normal" || stream.wasSkipped(entry.index)) {
          read = entry.index;
          continue;
        }
        const decoded = decodePartitionCommand(entry.data);
        if (!decoded.ok || decoded.command.kind !== "Publish" || decoded.command.topic !== request.topic) {
          read = entry.index;
          continue;
        }
        const message = decoded.command;
        const sent = this.sendTo(origin, {
          partition: group,
          offset: entry.index,
          previous,
          replay: request.replay,
          topic: message.topic,
          payload: message.payload,
          headers: message.headers,
        });
        if (!sent) {
          // What was sent arrives before this answer: report it, so the next request goes on from there.
          if (read > request.after) return doneAt(read);
          return failed("Unavailable", `the link to ${origin} is full or down; replay again`);
        }
        this.counters.replayedMessages += 1;
        previous = entry.index;
        read = entry.index;
      }
      from = read + 1;
    }
    return doneAt(read);
  }

  private async controllerRequest(command: Uint8Array): Promise<Outcome> {
    const decoded = decodeControllerCommand(command);
    if (!decoded.ok) return failed("MalformedFrame", `controller: ${decoded.error.message}`);
    const request = decoded.command;
    if (request.kind === "SetDraining" && request.draining) {
      const others = this.controller.eligibleRouters().filter((router) => router !== request.router);
      if (others.length === 0) {
        return failed(
          "LimitReached",
          `cannot drain ${request.router}: no other router would hold the partitions`,
        );
      }
    }
    if (request.kind !== "ActivatePartition") return this.propose(controllerGroup, command);
    if (this.controller.replicasAtActivation(request.partition) !== undefined) return done;
    const assignment = this.assignment();
    if (assignment === null) return failed("Unavailable", "the cluster has no routers in its roster yet");
    const replicas = assignment.replicasOf(request.partition);
    return this.propose(
      controllerGroup,
      encodeControllerCommand({ kind: "ActivatePartition", partition: request.partition, replicas }),
    );
  }

  private async propose(group: GroupId, command: Uint8Array): Promise<Outcome> {
    let applied: Applied;
    try {
      applied = await this.multi.propose(group, command);
    } catch (error) {
      return outcomeOfRaftError(group, error);
    }
    return outcomeOfApply(group, applied.result);
  }

  /** A topic's kind as its partition's leader decides it: declared, or by the rules; undefined: no such topic. */
  private kindAt(partition: number, topic: string): TopicKind | undefined {
    return this.partitionState(partition).kindOf(topic) ?? this.ruleFor(topic);
  }

  /** An ephemeral message, at its partition's leader: fanned out now, never stored. */
  private sendEphemeral(partition: number, topic: string, payload: Uint8Array, headers: Headers): void {
    this.counters.ephemeralMessages += 1;
    this.fanOut(partition, 0, 0, topic, payload, headers);
  }

  private ruleFor(topic: string): TopicKind | undefined {
    const rules = this.options.topicRules;
    if (rules.persistentPrefixes.some((prefix) => topic.startsWith(prefix))) return "persistent";
    return rules.undeclared === "ephemeral" ? "ephemeral" : undefined;
  }

  /** Sends a message to every router interested in its topic, this one included. */
  private fanOut(
    partition: number,
    offset: number,
    previous: number,
    topic: string,
    payload: Uint8Array,
    headers: Headers,
  ): void {
    const routers = this.partitionState(partition).routersInterestedIn(topic);
    for (const router of routers) {
      const sent = this.sendTo(router, { partition, offset, previous, replay: 0, topic, payload, headers });
      if (!sent) this.counters.deliversDropped += 1;
    }
  }

  /** One message to one router (this one: to its subscribers at once). False if it was dropped. */
  private sendTo(router: string, message: DeliveredMessage): boolean {
    if (router === this.id) {
      this.counters.deliveredLocal += 1;
      this.options.deliver(message);
      return true;
    }
    // avsc writes "bytes" only from a Buffer.
    const payload = message.payload;
    const bytes = Buffer.isBuffer(payload)
      ? payload
      : Buffer.from(payload.buffer, payload.byteOffset, payload.length);
    const frame: Deliver = { kind: "Deliver", ...message, payload: bytes };
    if (this.links?.sendFrame(router, frame) !== true) return false;
    this.counters.deliversSent += 1;
    return true;
  }

  private meshFrame(peer: string, frame: MeshFrame): void {
    switch (frame.kind) {
      case "Forward":
        this.requests.forwarded(peer, frame);
        return;
      case "ForwardResult":
        this.requests.answered(peer, frame);
        return;
      case "Deliver":
        this.counters.deliversReceived += 1;
        this.options.deliver(frame);
        return;
    }
  }

  // ---- state machines ------------------------------------------------------------------------

  private configurationOf(group: GroupId): Configuration | null {
    if (group === controllerGroup) return this.options.founder ? { voters: [this.id], learners: [] } : null;
    const replicas = this.controller.replicasAtActivation(group as PartitionId);
    return replicas === undefined ? null : { voters: replicas, learners: [] };
  }

  private streamIndex(group: GroupId): StreamIndex {
    let index = this.streams.get(group);
    if (index === undefined) {
      index = new StreamIndex();
      this.streams.set(group, index);
    }
    return index;
  }

  private partitionState(group: GroupId): PartitionState {
    let state = this.partitions.get(group);
    if (state === undefined) {
      state = new PartitionState(this.options.partitionLimits);
      this.partitions.set(group, state);
    }
    return state;
  }

  private apply(group: GroupId, entries: readonly Entry[]): readonly unknown[] {
    const results: unknown[] = [];
    if (group === controllerGroup) {
      for (const entry of entries) {
        if (entry.kind !== "normal") {
          results.push(undefined);
          continue;
        }
        const result = this.controller.apply(entry.index, entry.data);
        results.push(result);
        if (result.kind === "added" && result.router === this.id) {
          // Back in the roster after being removed: its interests were dropped meanwhile.
          queueMicrotask(() => this.options.rejoined?.());
        }
        if (result.kind === "removed") {
          // Its subscribers are gone: the partitions this router leads stop sending it their
          // messages (a router that comes back registers its interest again).
          const router = result.router;
          queueMicrotask(() => this.dropInterest(router));
        }
        if (result.kind === "activated" && result.replicas.includes(this.id)) {
          // Not from inside a Raft round: see the file's traps.
          queueMicrotask(() => {
            if (!this.stopped) this.multi.group(result.partition);
          });
        }
      }
      this.reconciler.rosterChanged();
      return results;
    }
    const state = this.partitionState(group);
    const stream = this.streamIndex(group);
    const leading = this.multi.group(group)?.role === "leader";
    for (const entry of entries) {
      if (entry.kind !== "normal") {
        results.push(undefined);
        continue;
      }
      const result = state.apply(entry.index, entry.data);
      switch (result.kind) {
        case "stored": {
          this.counters.storedMessages += 1;
          const previous = stream.stored(result.topic, result.offset);
          if (leading)
            this.fanOut(group, result.offset, previous, result.topic, result.payload, result.headers);
          results.push(result);
          break;
        }
        case "interest": {
          // The proposer opens its stream of the topic right after this entry: tell it where.
          const decoded = decodePartitionCommand(entry.data);
          const topic = decoded.ok && decoded.command.kind === "Interest" ? decoded.command.topic : "";
          results.push({ kind: "interest", offset: stream.lastOffsetOf(topic) });
          break;
        }
        case "duplicate":
        case "outOfOrder":
        case "topicIsEphemeral":
        case "limit":
        case "malformed":
          stream.skip(entry.index);
          results.push(result);
          break;
        default:
          results.push(result);
      }
    }
    this.requests.wake(group);
    return results;
  }

  private dropInterest(router: string): void {
    if (this.stopped) return;
    const command = encodePartitionCommand({ kind: "DropRouter", router });
    for (const node of this.multi.groups()) {
      if (node.group === controllerGroup || node.role !== "leader") continue;
      this.multi.propose(node.group, command).catch(() => {
        // Leadership moved meanwhile: the entry is lost or applied; either way nothing to do.
      });
    }
  }

  private restore(group: GroupId, snapshot: Snapshot): void {
    if (group === controllerGroup) {
      const restored = ControllerState.restore(snapshot.data);
      if (!restored.ok) throw new Error(`controller snapshot: ${restored.error.message}`);
      this.controller = restored.state;
      this.reconciler.rosterChanged();
      return;
    }
    const restored = PartitionState.restore(snapshot.data, this.options.partitionLimits);
    if (!restored.ok) throw new Error(`partition ${group} snapshot: ${restored.error.message}`);
    this.partitions.set(group, restored.state);
  }

  private leadershipChanged(group: GroupId, state: SoftState): void {
    this.requests.leaderChanged(group, state.leader);
    if (state.role === "leader") this.reconciler.led(group);
  }

  /** The target assignment of the roster's routers that are not draining (null: none yet). */
  private assignment(): Assignment | null {
    const version = this.controller.rosterVersion;
    if (this.assignmentCache.version !== version) {
      const routers = this.controller.eligibleRouters();
      this.assignmentCache = {
        version,
        assignment: routers.length === 0 ? null : computeAssignment(routers, this.options.replicationFactor),
      };
    }
    return this.assignmentCache.assignment;
  }

  /** Where to send a request for a group whose leader this router does not know. */
  private guessLeader(group: GroupId, attempt: number): string | null {
    let candidates: readonly string[];
    if (group === controllerGroup) {
      const roster = this.controller.routers();
      candidates = roster.length > 0 ? roster : this.options.aliveRouters();
    } else {
      candidates =
        this.assignment()?.replicasOf(group) ??
        this.controller.replicasAtActivation(group as PartitionId) ??
        [];
    }
    const others = candidates.filter((router) => router !== this.id && this.options.isAlive(router));
    return others.length === 0 ? null : others[attempt % others.length]!;
  }
}

function outcomeOfRaftError(group: GroupId, error: unknown): Outcome {
  if (!(error instanceof RaftRequestError)) {
    return failed("Unavailable", `group ${group}: ${(error as Error).message}`);
  }
  const refusal = error.error;
  switch (refusal.tag) {
    case "NotLeader":
      return refusal.leader === null
        ? failed("NoLeader", `partition ${group} is electing a leader`)
        : failed("NotLeader", `partition ${group} is led by ${refusal.leader}`, refusal.leader);
    case "OutcomeUnknown":
      return failed("Unavailable", `partition ${group}: ${refusal.reason}; retrying`);
    case "Overloaded":
      return failed("Unavailable", `partition ${group} is overloaded; retrying`);
    case "Transferring":
      // A planned move: the new leader takes over within an election timeout.
      return failed("NoLeader", `partition ${group}'s leadership is moving to ${refusal.to}`);
    default:
      return failed("LimitReached", `partition ${group}: ${refusal.tag}`);
  }
}

/** A partition's or the controller's apply result, for the proposer. */
function outcomeOfApply(group: GroupId, result: unknown): Outcome {
  const applied = result as
    | {
        kind: string;
        message?: string;
        expectedSequence?: number;
        existing?: string;
        topic?: string;
        offset?: number;
      }
    | undefined;
  if (applied === undefined) return done;
  switch (applied.kind) {
    case "interest":
      return doneAt(applied.offset ?? 0);
    case "outOfOrder":
      return failed("OutOfOrder", `partition ${group}: expected sequence ${applied.expectedSequence} first`);
    case "topicIsEphemeral":
      return failed("TopicKindConflict", `topic ${JSON.stringify(applied.topic)} is ephemeral`);
    case "kindConflict":
      return failed(
        "TopicKindConflict",
        `topic ${JSON.stringify(applied.topic)} is already ${applied.existing}`,
      );
    case "limit":
      return failed("LimitReached", applied.message ?? `partition ${group}: a limit was reached`);
    case "malformed":
      return failed("MalformedFrame", applied.message ?? "malformed command");
    case "unknownRouter":
      return failed("UnknownRouter", "no such router in the cluster's roster");
    default:
      return done;
  }
}
