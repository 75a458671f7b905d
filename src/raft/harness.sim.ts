// A hand-stepped cluster of Raft cores for unit tests (etcd's raft_test.go `network`): each
// node has a MemoryStore; `stabilize()` runs every node's Ready (persist, send, apply,
// advance) and delivers messages until nothing moves. Messages can be dropped per link or
// intercepted. No time passes except through `tick`.

import type { Random } from "../ports/index.ts";
import { SeededRandom } from "../sim/index.ts";
import {
  type Configuration,
  type Entry,
  type HardState,
  MemoryStore,
  type NodeId,
} from "../storage/index.ts";
import { defaultRaftConfig, type RaftConfig } from "./config.ts";
import { RaftNode } from "./core.ts";
import { persistReady } from "./persist.ts";
import { emptyMessage, type Message, type ReadState, type Ready } from "./types.ts";

export interface HarnessOptions {
  readonly voters: readonly NodeId[];
  readonly learners?: readonly NodeId[];
  readonly config?: Partial<RaftConfig>;
  readonly seed?: number;
  readonly group?: number;
}

export class RaftHarness {
  readonly nodes = new Map<NodeId, RaftNode>();
  readonly stores = new Map<NodeId, MemoryStore>();
  /** Entries each node applied, in order. */
  readonly applied = new Map<NodeId, Entry[]>();
  readonly readStates = new Map<NodeId, ReadState[]>();
  /** Every message delivered or dropped, in order. */
  readonly sent: Message[] = [];
  /** Links "from->to" that drop everything. */
  readonly cut = new Set<string>();
  /** Return false to drop a message. */
  filter: (message: Message) => boolean = () => true;
  /** Nodes that are down: they neither run nor receive. */
  readonly down = new Set<NodeId>();
  readonly config: RaftConfig;
  readonly group: number;
  private readonly random: SeededRandom;
  private readonly initial: Configuration;
  private starts = 0;

  constructor(options: HarnessOptions) {
    this.config = { ...defaultRaftConfig, ...options.config };
    this.random = new SeededRandom(options.seed ?? 1);
    this.group = options.group ?? 7;
    this.initial = { voters: [...options.voters].sort(), learners: [...(options.learners ?? [])].sort() };
    for (const id of [...options.voters, ...(options.learners ?? [])]) this.addNode(id);
  }

  /** Creates (or re-creates after `crash`) a node on its store. */
  addNode(id: NodeId, initial: Configuration = this.initial): RaftNode {
    let store = this.stores.get(id);
    if (store === undefined) {
      store = new MemoryStore();
      this.stores.set(id, store);
    }
    const log = store.group(this.group);
    if (log.lastIndex() === 0 && log.snapshotMeta() === null) {
      store.compact(this.group, {
        meta: { index: 0, term: 0, configuration: initial },
        data: new Uint8Array(0),
      });
    }
    const node = new RaftNode({
      id,
      group: this.group,
      log: store.group(this.group),
      random: this.random.fork(`${id}#${this.starts++}`),
      config: this.config,
    });
    this.nodes.set(id, node);
    if (!this.applied.has(id)) this.applied.set(id, []);
    this.readStates.set(id, []);
    this.down.delete(id);
    return node;
  }

  node(id: NodeId): RaftNode {
    return this.nodes.get(id)!;
  }

  /** Stops a node; its store keeps what was persisted (MemoryStore: everything handed to it). */
  crash(id: NodeId): void {
    this.down.add(id);
  }

  /** Restarts a crashed node from its store; it re-applies from its snapshot. */
  restart(id: NodeId): RaftNode {
    this.applied.set(id, []);
    return this.addNode(id);
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}->${other}`);
      this.cut.add(`${other}->${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) this.node(id).tick();
  }

  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const [id, node] of this.nodes) if (!this.down.has(id)) node.tick();
    }
  }

  /** Ticks `id` until it campaigns, then lets the cluster settle. */
  elect(id: NodeId): void {
    const node = this.node(id);
    for (let i = 0; i < 2 * this.config.electionTicks + 1 && node.role === "follower"; i++) node.tick();
    this.stabilize();
  }

  /** Runs Readies and delivers messages until quiet. Returns the messages delivered. */
  stabilize(maxRounds = 10_000): number {
    let delivered = 0;
    for (let round = 0; round < maxRounds; round++) {
      const inbox: Message[] = [];
      for (const [id, node] of this.nodes) {
        if (this.down.has(id) || !node.hasReady()) continue;
        const ready = node.ready();
        const store = this.stores.get(id)!;
        persistReady(store, this.group, ready);
        inbox.push(...ready.messages);
        this.applied.get(id)!.push(...ready.committedEntries);
        this.readStates.get(id)!.push(...ready.readStates);
        node.advance(ready);
      }
      if (inbox.length === 0) return delivered;
      for (const message of inbox) {
        this.sent.push(message);
        if (this.down.has(message.to) || this.cut.has(`${message.from}->${message.to}`)) continue;
        if (!this.filter(message)) continue;
        const target = this.nodes.get(message.to);
        if (target === undefined) continue;
        target.step(message);
        delivered += 1;
      }
    }
    throw new Error("cluster did not stabilize");
  }

  leader(): RaftNode | null {
    let found: RaftNode | null = null;
    for (const [id, node] of this.nodes) {
      if (this.down.has(id) || node.role !== "leader") continue;
      if (found === null || node.term > found.term) found = node;
    }
    return found;
  }

  /** Data of the normal entries `id` applied, as strings. */
  appliedData(id: NodeId): string[] {
    return this.applied
      .get(id)!
      .filter((entry) => entry.kind === "normal")
      .map((entry) => Buffer.from(entry.data).toString());
  }
}

export function bytes(text: string): Uint8Array {
  return Buffer.from(text);
}

/** A message for unit tests: every field empty but those given; group 7 unless said. */
export function message(fields: Partial<Message> & Pick<Message, "type" | "from" | "to" | "term">): Message {
  return { ...emptyMessage, group: 7, ...fields };
}

/** One Raft core on its own MemoryStore, stepped by hand (no harness around it). */
export interface Replica {
  readonly raft: RaftNode;
  readonly store: MemoryStore;
}

export interface ReplicaOptions {
  readonly group?: number;
  readonly config?: Partial<RaftConfig>;
  readonly random?: Random;
  readonly entries?: Entry[];
  readonly hard?: HardState;
}

/** A replica of a group whose first configuration is `voters` (a bootstrap snapshot at index 0). */
export function replica(id: NodeId, voters: readonly NodeId[], options: ReplicaOptions = {}): Replica {
  const group = options.group ?? 7;
  const store = new MemoryStore();
  store.compact(group, {
    meta: { index: 0, term: 0, configuration: { voters, learners: [] } },
    data: bytes(""),
  });
  if (options.entries !== undefined) store.append(group, options.entries);
  if (options.hard !== undefined) store.setHardState(group, options.hard);
  const raft = new RaftNode({
    id,
    group,
    log: store.group(group),
    random: options.random ?? new SeededRandom(1).fork(id),
    config: { ...defaultRaftConfig, ...options.config },
  });
  return { raft, store };
}

/** Does what a shell does with one Ready: persist, then acknowledge. Returns it for inspection. */
export function flush({ raft, store }: Replica): Ready {
  const ready = raft.ready();
  persistReady(store, raft.group, ready);
  raft.advance(ready);
  return ready;
}

/** A normal entry whose data names its index. */
export function entry(index: number, term: number): Entry {
  return { index, term, kind: "normal", data: bytes(`e${index}`) };
}
