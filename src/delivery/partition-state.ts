// The replicated state of one partition: a pure, deterministic state machine that every replica
// applies to the committed entries of the partition's Raft log (Raft §5.3: the same commands
// in the same order give the same state). The log is the persistent stream itself: a stored
// message's offset is the index of its entry.
//
// What it holds: each topic's kind (persistent or ephemeral), the last stored sequence of each
// (producer, topic) pair (deduplication, like Kafka's idempotent producer, but numbered per
// topic), and which routers have subscribers to which topic (deliveries of a topic go to every
// interested router).
//
// Deduplication of Publish(producer p, topic t, sequence s, ackedSequence a), where a is the
// highest sequence the client had seen acknowledged on t (so known stored), and L the pair's last
// sequence (a known pair) or nothing (never seen, or evicted). Let e = max(L, a), or a alone for
// an unknown pair: s <= e is a duplicate; s == e + 1 is stored; s > e + 1 is out of order
// (expectedSequence e + 1). An unknown pair stores only a + 1: everything up to a is stored, but
// a + 1 may still be on its way (rerouted after a leader change), and storing a later one first
// would make it look like a duplicate and lose it. A known pair has a <= L unless it was evicted
// and re-created by a stale copy; e = max(L, a) then lets the client go on, where L + 1 (which
// the client holds acknowledged and never resends) would stall it.
//
// Invariants:
// - `apply` depends only on the state and the entry's bytes, never on time, randomness or the
//   replica; bad bytes, an over-limit command or a refused publish change nothing but the
//   applied index, and never throw.
// - Applied indexes strictly increase (asserted). They need not be contiguous: Raft's
//   configuration and empty entries do not come here.
// - Equal states give equal snapshot bytes: the snapshot lists topics and interests sorted
//   (UTF-16 code unit order, never locale order) and (producer, topic) pairs by last index,
//   which is unique (one stored publish updates one pair).
// - Every (producer, topic) pair's topic is a declared persistent topic (topics are never
//   removed and never change kind), and its last sequence is >= 1.
//
// Traps:
// - The limits are rules of the state machine, not local tuning: replicas with different
//   limits diverge (one stores what another refuses). Every replica of a partition must run
//   with the same limits, and changing them needs the same care as a new command format.
// - ackedSequence must be the truth: a client that claims an acknowledgement it has not seen lets
//   a forgotten pair skip publishes still in flight (they then count as duplicates, lost); one
//   that sends less than it has seen may wait on a publish it will never resend. Stores have no
//   gaps, so an acknowledgement of s settles every sequence up to s: the client never resends
//   one at or below its highest (decode refuses ackedSequence >= sequence). A client that loses
//   its acknowledgements (a restart without state) must take a new producer id.
// - At producersMax the pair with the smallest last index is evicted and forgets its sequence.
//   It loses deduplication only for copies of a publish s sent before s was acknowledged
//   (retries, network duplicates) that carry ackedSequence s - 1: one arriving after the eviction
//   is stored again (at least once, not exactly once, for pairs idle long enough to be evicted).
//   Copies carrying less are out of order, and no copy of s is sent after its acknowledgement.
import avro from "avsc";
import { isValidTopic } from "../partitions/index.ts";
import { BoundExceeded, boundedArrayType, type Headers } from "../wire/index.ts";
import {
  type DeclareTopicCommand,
  decodePartitionCommand,
  type InterestCommand,
  isValidProducerId,
  isValidRouterId,
  type PartitionDecodeError,
  type PublishCommand,
  type TopicKind,
  topicKindSchema,
} from "./partition-commands.ts";

/** Bounds on one partition's state. Every replica of a partition must use the same limits. */
export interface PartitionStateLimits {
  /**
   * Most topics (persistent and ephemeral) declared in the partition. Past it a new topic is
   * refused (`limit`). Default 100,000: ~6.5 billion topics over 65,536 partitions, a few
   * tens of MB of state per partition at most.
   */
  readonly topicsMax: number;
  /**
   * Most (producer, topic) pairs remembered for deduplication. Past it the pair with the
   * smallest last index is evicted and loses deduplication (see the traps above). Default
   * 10,000: at most ~3.4 MB of state with 64-byte producer ids and 255-byte topics, typically
   * under 1 MB.
   */
  readonly producersMax: number;
  /** Most (router, topic) interest pairs. Past it a new interest is refused (`limit`). Default 100,000. */
  readonly interestsMax: number;
}

export const defaultPartitionStateLimits: PartitionStateLimits = Object.freeze({
  topicsMax: 100_000,
  producersMax: 10_000,
  interestsMax: 100_000,
});

/** What the partition remembers of a (producer, topic) pair. */
export interface ProducerState {
  /** The sequence of its last stored publish on the topic. */
  readonly lastSequence: number;
  /** The log index of that publish (its offset). */
  readonly lastIndex: number;
}

/** What applying one entry did. Every kind but `stored`, `declared` and `interest` changed nothing. */
export type ApplyResult =
  /** A persistent message, stored at `offset` (the entry's index): fan it out. */
  | {
      readonly kind: "stored";
      readonly offset: number;
      readonly topic: string;
      readonly payload: Uint8Array;
      readonly headers: Headers;
    }
  /** Stored before (sequence <= the pair's last, or acknowledged): tell the proposer it succeeded earlier. */
  | {
      readonly kind: "duplicate";
      readonly producerId: string;
      readonly topic: string;
      readonly sequence: number;
    }
  /** A gap: the proposer must retry it after the publishes before it (`expectedSequence` first). */
  | { readonly kind: "outOfOrder"; readonly expectedSequence: number }
  | { readonly kind: "topicIsEphemeral"; readonly topic: string }
  /** DeclareTopic took effect, or the topic already had that kind. */
  | { readonly kind: "declared" }
  | { readonly kind: "kindConflict"; readonly topic: string; readonly existing: TopicKind }
  /** Interest or DropRouter took effect (or there was nothing to change). */
  | { readonly kind: "interest" }
  /** A new topic or interest would pass its limit. Producers are evicted instead. */
  | { readonly kind: "limit"; readonly what: "topics" | "interests"; readonly message: string }
  /** The entry is not a command this router can read (the message says why). */
  | { readonly kind: "malformed"; readonly message: string };

export interface PartitionStateStats {
  readonly appliedIndex: number;
  readonly topics: number;
  /** (producer, topic) pairs remembered. */
  readonly producers: number;
  /** (router, topic) pairs. */
  readonly interests: number;
  /** Topics with at least one interested router. */
  readonly interestedTopics: number;
  /** Routers with at least one interest. */
  readonly routers: number;
  /** (producer, topic) pairs evicted by this instance since it was made or restored (local: not in snapshots). */
  readonly producersEvicted: number;
}

export type PartitionStateRestore =
  | { readonly ok: true; readonly state: PartitionState }
  | { readonly ok: false; readonly error: PartitionDecodeError };

export const partitionSnapshotVersion = 1;

/** The largest index a snapshot can hold: avsc's largest long (2^53 - 2). */
const indexMax = 9_007_199_254_740_990;
const declared: ApplyResult = Object.freeze({ kind: "declared" });
const interestChanged: ApplyResult = Object.freeze({ kind: "interest" });
const noRouters: readonly string[] = Object.freeze([]);

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`partition state assertion failed: ${message}`);
}

/** The defaults with `changes` applied; asserts every limit is a positive integer. */
function limitsOf(changes: Partial<PartitionStateLimits> | undefined): PartitionStateLimits {
  const limits =
    changes === undefined ? defaultPartitionStateLimits : { ...defaultPartitionStateLimits, ...changes };
  for (const name of ["topicsMax", "producersMax", "interestsMax"] as const) {
    const value = limits[name];
    assert(Number.isSafeInteger(value) && value >= 1, `${name} must be a positive integer, not ${value}`);
  }
  return limits;
}

const compareStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The producers map's key of a pair: the id's length first, so no two pairs share a key. */
const pairKey = (producerId: string, topic: string): string => `${producerId.length}:${producerId}${topic}`;

interface Producer {
  readonly producerId: string;
  readonly topic: string;
  /** Invariant: >= 1. */
  lastSequence: number;
  lastIndex: number;
}

/** The position of `value` in the sorted `values`, or -(insertion point) - 1. */
function search(values: readonly string[], value: string): number {
  let low = 0;
  let high = values.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const current = values[middle]!;
    if (current < value) low = middle + 1;
    else if (current > value) high = middle - 1;
    else return middle;
  }
  return -low - 1;
}

export class PartitionState {
  readonly limits: PartitionStateLimits;
  private applied = 0;
  private readonly topics = new Map<string, TopicKind>();
  /**
   * (producer, topic) pairs by `pairKey`. Invariant: in increasing `lastIndex` order (a stored
   * publish deletes and re-inserts its pair, and indexes increase), so the first entry is the
   * one to evict.
   */
  private readonly producers = new Map<string, Producer>();
  /**
   * Invariant: every array is non-empty, sorted, free of duplicates and frozen. An array is
   * replaced, never mutated (copy on write), so `routersInterestedIn` allocates nothing and a
   * fan-out loop over its answer is never disturbed by a later apply.
   */
  private readonly routersByTopic = new Map<string, readonly string[]>();
  /** Invariant: topic in topicsByRouter(router) iff router in routersByTopic(topic); no empty sets. */
  private readonly topicsByRouter = new Map<string, Set<string>>();
  /** Invariant: the sum of the lengths of routersByTopic's arrays. */
  private interestCount = 0;
  private evictedCount = 0;

  /** An empty state; `limits` are changes to `defaultPartitionStateLimits`. */
  constructor(limits?: Partial<PartitionStateLimits>) {
    this.limits = limitsOf(limits);
  }

  /** The index of the last entry applied (0 before any). */
  get appliedIndex(): number {
    return this.applied;
  }

  /**
   * Applies the committed entry at `index`. Bad bytes give `malformed` and change nothing.
   * Throws only when `index` does not follow the last applied index (a programmer error).
   * A stored message's payload is a copy of its bytes (a slice of avsc's pool), not a view of `data`.
   */
  apply(index: number, data: Uint8Array): ApplyResult {
    assert(
      Number.isSafeInteger(index) && index > this.applied && index <= indexMax,
      `entry ${index} applied after entry ${this.applied}: indexes must strictly increase`,
    );
    this.applied = index;
    const decoded = decodePartitionCommand(data);
    if (!decoded.ok) return { kind: "malformed", message: `${decoded.error.tag}: ${decoded.error.message}` };
    const command = decoded.command;
    switch (command.kind) {
      case "Publish":
        return this.publish(index, command);
      case "DeclareTopic":
        return this.declareTopic(command);
      case "Interest":
        return command.on ? this.addInterest(command) : this.removeInterest(command);
      case "DropRouter":
        return this.dropRouter(command.router);
    }
  }

  private publish(index: number, command: PublishCommand): ApplyResult {
    const { topic, producerId, sequence, ackedSequence } = command;
    assert(ackedSequence < sequence, "decode lets no acked sequence reach apply at or past its sequence");
    const existing = this.topics.get(topic);
    if (existing === "ephemeral") return { kind: "topicIsEphemeral", topic };
    // Sequences before limits: a retry of a stored publish is a duplicate whatever the limits.
    const key = pairKey(producerId, topic);
    const producer = this.producers.get(key);
    // Everything up to `known` is stored: the pair's last, or what the client saw acknowledged.
    // For an unknown pair only `ackedSequence` counts, so `sequence <= known` cannot happen.
    const known = producer === undefined ? ackedSequence : Math.max(producer.lastSequence, ackedSequence);
    if (sequence <= known) return { kind: "duplicate", producerId, topic, sequence };
    if (sequence > known + 1) return { kind: "outOfOrder", expectedSequence: known + 1 };
    if (existing === undefined) {
      if (this.topics.size >= this.limits.topicsMax) return this.topicsLimit(topic);
      this.topics.set(topic, "persistent");
    }
    if (producer === undefined) {
      if (this.producers.size >= this.limits.producersMax) {
        const oldest = this.producers.keys().next().value!;
        this.producers.delete(oldest);
        this.evictedCount += 1;
      }
      this.producers.set(key, { producerId, topic, lastSequence: sequence, lastIndex: index });
    } else {
      this.producers.delete(key);
      producer.lastSequence = sequence;
      producer.lastIndex = index;
      this.producers.set(key, producer);
    }
    return { kind: "stored", offset: index, topic, payload: command.payload, headers: command.headers };
  }

  private declareTopic(command: DeclareTopicCommand): ApplyResult {
    const existing = this.topics.get(command.topic);
    if (existing !== undefined) {
      return existing === command.topicKind
        ? declared
        : { kind: "kindConflict", topic: command.topic, existing };
    }
    if (this.topics.size >= this.limits.topicsMax) return this.topicsLimit(command.topic);
    this.topics.set(command.topic, command.topicKind);
    return declared;
  }

  private topicsLimit(topic: string): ApplyResult {
    return {
      kind: "limit",
      what: "topics",
      message: `topic ${JSON.stringify(topic)} was not declared: the partition holds ${this.topics.size} topics, its limit (topicsMax)`,
    };
  }

  private addInterest({ router, topic }: InterestCommand): ApplyResult {
    const routers = this.routersByTopic.get(topic) ?? noRouters;
    const position = search(routers, router);
    if (position >= 0) return interestChanged;
    if (this.interestCount >= this.limits.interestsMax) {
      return {
        kind: "limit",
        what: "interests",
        message: `router ${JSON.stringify(router)} was not registered for topic ${JSON.stringify(topic)}: the partition holds ${this.interestCount} interests, its limit (interestsMax)`,
      };
    }
    const at = -position - 1;
    this.routersByTopic.set(topic, Object.freeze([...routers.slice(0, at), router, ...routers.slice(at)]));
    let topics = this.topicsByRouter.get(router);
    if (topics === undefined) {
      topics = new Set();
      this.topicsByRouter.set(router, topics);
    }
    topics.add(topic);
    this.interestCount += 1;
    return interestChanged;
  }

  private removeInterest({ router, topic }: InterestCommand): ApplyResult {
    if (!this.unlink(topic, router)) return interestChanged;
    const topics = this.topicsByRouter.get(router)!;
    topics.delete(topic);
    if (topics.size === 0) this.topicsByRouter.delete(router);
    return interestChanged;
  }

  private dropRouter(router: string): ApplyResult {
    const topics = this.topicsByRouter.get(router);
    if (topics === undefined) return interestChanged;
    for (const topic of topics) {
      const removed = this.unlink(topic, router);
      assert(removed, `router ${router} listed topic ${topic} without being interested in it`);
    }
    this.topicsByRouter.delete(router);
    return interestChanged;
  }

  /** Removes `router` from `topic`'s routers (not from topicsByRouter); returns whether it was there. */
  private unlink(topic: string, router: string): boolean {
    const routers = this.routersByTopic.get(topic);
    if (routers === undefined) return false;
    const position = search(routers, router);
    if (position < 0) return false;
    if (routers.length === 1) this.routersByTopic.delete(topic);
    else this.routersByTopic.set(topic, Object.freeze(routers.filter((_, at) => at !== position)));
    this.interestCount -= 1;
    return true;
  }

  /** The kind of a declared topic, or undefined: the leader resolves a publish's path with it. */
  kindOf(topic: string): TopicKind | undefined {
    return this.topics.get(topic);
  }

  /** The routers to deliver `topic` to, sorted. Allocates nothing; the array never changes. */
  routersInterestedIn(topic: string): readonly string[] {
    return this.routersByTopic.get(topic) ?? noRouters;
  }

  /**
   * The sequence the partition will store next from `producerId` on `topic` (unless a publish
   * shows a higher acknowledged one); undefined for an unknown pair, which stores the client's
   * ackedSequence + 1 next.
   */
  expectedSequence(producerId: string, topic: string): number | undefined {
    const producer = this.producers.get(pairKey(producerId, topic));
    return producer === undefined ? undefined : producer.lastSequence + 1;
  }

  /** What the partition remembers of `producerId` on `topic`, if anything. */
  producer(producerId: string, topic: string): ProducerState | undefined {
    const producer = this.producers.get(pairKey(producerId, topic));
    return producer === undefined
      ? undefined
      : { lastSequence: producer.lastSequence, lastIndex: producer.lastIndex };
  }

  stats(): PartitionStateStats {
    return {
      appliedIndex: this.applied,
      topics: this.topics.size,
      producers: this.producers.size,
      interests: this.interestCount,
      interestedTopics: this.routersByTopic.size,
      routers: this.topicsByRouter.size,
      producersEvicted: this.evictedCount,
    };
  }

  /** All the state, applied index included, as versioned bytes; equal states give equal bytes. */
  snapshot(): Uint8Array {
    const topics = [...this.topics.keys()].sort(compareStrings).map((topic) => ({
      topic,
      kind: this.topics.get(topic)!,
    }));
    const producers = [...this.producers.values()].map((producer) => ({
      producerId: producer.producerId,
      topic: producer.topic,
      lastSequence: producer.lastSequence,
      lastIndex: producer.lastIndex,
    }));
    const interests = [...this.routersByTopic.keys()].sort(compareStrings).map((topic) => ({
      topic,
      routers: this.routersByTopic.get(topic)!,
    }));
    const body = snapshotTypeOf(this.limits).toBuffer({
      appliedIndex: this.applied,
      topics,
      producers,
      interests,
    });
    const bytes = Buffer.allocUnsafe(1 + body.length);
    bytes[0] = partitionSnapshotVersion;
    body.copy(bytes, 1);
    return bytes;
  }

  /**
   * A state from `snapshot()` bytes. Never throws on bad bytes: counts are bounded by `limits`
   * before anything is allocated, and every rule the state keeps (valid names, sorted and
   * unique lists, unique (producer, topic) pairs on persistent topics, sequences >= 1, last
   * indexes increasing and <= the applied index) is checked.
   */
  static restore(bytes: Uint8Array, limits?: Partial<PartitionStateLimits>): PartitionStateRestore {
    const state = new PartitionState(limits);
    const fail = (tag: PartitionDecodeError["tag"], message: string): PartitionStateRestore => ({
      ok: false,
      error: { tag, message },
    });
    if (bytes.length === 0) return fail("Malformed", "partition snapshot is empty");
    if (bytes[0] !== partitionSnapshotVersion) {
      return fail(
        "UnsupportedVersion",
        `partition snapshot format ${bytes[0]} is not supported (this router reads ${partitionSnapshotVersion})`,
      );
    }
    const body = Buffer.from(bytes.buffer, bytes.byteOffset + 1, bytes.byteLength - 1);
    let decoded: { value: unknown; offset: number };
    try {
      decoded = snapshotTypeOf(state.limits).decode(body, 0);
    } catch (error) {
      if (error instanceof BoundExceeded) return fail("TooLarge", `partition snapshot: ${error.message}`);
      return fail("Malformed", `partition snapshot does not decode: ${(error as Error).message}`);
    }
    if (decoded.offset < 0) return fail("Malformed", "partition snapshot is truncated");
    if (decoded.offset !== body.length) {
      return fail("Malformed", `partition snapshot has ${body.length - decoded.offset} trailing bytes`);
    }
    const error = state.load(decoded.value as SnapshotValue);
    return error === undefined ? { ok: true, state } : { ok: false, error };
  }

  /** Fills this empty state from a decoded snapshot, checking every invariant. */
  private load(value: SnapshotValue): PartitionDecodeError | undefined {
    const malformed = (message: string): PartitionDecodeError => ({
      tag: "Malformed",
      message: `partition snapshot: ${message}`,
    });
    if (!Number.isSafeInteger(value.appliedIndex) || value.appliedIndex < 0) {
      return malformed(`applied index ${value.appliedIndex} is not a non-negative safe integer`);
    }
    this.applied = value.appliedIndex;
    let previous = "";
    for (const { topic, kind } of value.topics) {
      if (!isValidTopic(topic)) return malformed(`topic ${JSON.stringify(topic)} is not a valid topic`);
      if (this.topics.size > 0 && !(previous < topic)) return malformed("topics are not sorted and unique");
      this.topics.set(topic, kind);
      previous = topic;
    }
    let previousIndex = 0;
    for (const { producerId, topic, lastSequence, lastIndex } of value.producers) {
      const pair = `producer ${JSON.stringify(producerId)} on topic ${JSON.stringify(topic)}`;
      if (!isValidProducerId(producerId)) return malformed(`${pair}: the producer id is invalid`);
      if (this.topics.get(topic) !== "persistent") {
        return malformed(`${pair}: the topic is not a persistent topic of the partition`);
      }
      const key = pairKey(producerId, topic);
      if (this.producers.has(key)) return malformed(`${pair} is repeated`);
      if (!Number.isSafeInteger(lastSequence) || lastSequence < 1) {
        return malformed(`${pair} has last sequence ${lastSequence}`);
      }
      if (!Number.isSafeInteger(lastIndex) || lastIndex <= previousIndex || lastIndex > this.applied) {
        return malformed(`producers' last indexes must increase and not pass the applied index`);
      }
      this.producers.set(key, { producerId, topic, lastSequence, lastIndex });
      previousIndex = lastIndex;
    }
    previous = "";
    for (const { topic, routers } of value.interests) {
      if (!isValidTopic(topic)) return malformed(`topic ${JSON.stringify(topic)} is not a valid topic`);
      if (this.routersByTopic.size > 0 && !(previous < topic)) {
        return malformed("interests are not sorted by topic and unique");
      }
      if (routers.length === 0) return malformed(`topic ${topic} lists no routers`);
      if (this.interestCount + routers.length > this.limits.interestsMax) {
        return {
          tag: "TooLarge",
          message: `partition snapshot holds more than ${this.limits.interestsMax} interests (interestsMax)`,
        };
      }
      for (const [at, router] of routers.entries()) {
        if (!isValidRouterId(router)) return malformed(`router id ${JSON.stringify(router)} is invalid`);
        if (at > 0 && !(routers[at - 1]! < router))
          return malformed(`routers of ${topic} are not sorted and unique`);
        let topics = this.topicsByRouter.get(router);
        if (topics === undefined) {
          topics = new Set();
          this.topicsByRouter.set(router, topics);
        }
        topics.add(topic);
      }
      this.routersByTopic.set(topic, Object.freeze(routers.slice()));
      this.interestCount += routers.length;
      previous = topic;
    }
    return undefined;
  }
}

interface SnapshotValue {
  appliedIndex: number;
  topics: { topic: string; kind: TopicKind }[];
  producers: { producerId: string; topic: string; lastSequence: number; lastIndex: number }[];
  interests: { topic: string; routers: string[] }[];
}

/**
 * The snapshot's Avro type, its arrays bounded by `limits`. Built once per distinct limits (a
 * router uses one set for all its partitions); the cache is cleared past a few sets.
 */
const snapshotTypes = new Map<string, avro.Type>();
const snapshotTypesMax = 16;
function snapshotTypeOf(limits: PartitionStateLimits): avro.Type {
  const key = `${limits.topicsMax}/${limits.producersMax}/${limits.interestsMax}`;
  let type = snapshotTypes.get(key);
  if (type !== undefined) return type;
  const record = (name: string, fields: { name: string; type: unknown }[]) =>
    avro.Type.forSchema({ type: "record", name, fields } as avro.Schema, { registry: {} });
  // Smallest encodings: a string takes at least 1 byte (its length), a long or an enum 1.
  const topicType = record("Topic", [
    { name: "topic", type: "string" },
    { name: "kind", type: topicKindSchema },
  ]);
  const producerType = record("Producer", [
    { name: "producerId", type: "string" },
    { name: "topic", type: "string" },
    { name: "lastSequence", type: "long" },
    { name: "lastIndex", type: "long" },
  ]);
  const routersType = boundedArrayType(
    avro.Type.forSchema("string"),
    limits.interestsMax,
    1,
    "routers of a topic",
  );
  const interestType = record("Interest", [
    { name: "topic", type: "string" },
    { name: "routers", type: routersType },
  ]);
  type = record("PartitionSnapshot", [
    { name: "appliedIndex", type: "long" },
    { name: "topics", type: boundedArrayType(topicType, limits.topicsMax, 2, "topics") },
    { name: "producers", type: boundedArrayType(producerType, limits.producersMax, 4, "producers") },
    { name: "interests", type: boundedArrayType(interestType, limits.interestsMax, 2, "interests") },
  ]);
  if (snapshotTypes.size >= snapshotTypesMax) snapshotTypes.clear();
  snapshotTypes.set(key, type);
  return type;
}
