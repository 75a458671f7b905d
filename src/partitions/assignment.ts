// Partition assignment (DESIGN.md, partitions): from the roster (router ids) and a replication
// factor f to the target replicas of each of the 65,536 partitions. A pure function: every
// router computes the same table from the same roster, whatever order it lists the routers in.
//
// How. Each (partition, router) pair has a rendezvous score (highest random weight; Thaler &
// Ravishankar 1998): a 32-bit mix of the partition number and the router id's XXH3-64. Plain
// rendezvous (each partition takes its f best scores) moves only what must move on a join or a
// leave, but each router's load is off by about sqrt(65536 f / N). So the table is the optimal
// *transport* instead: each router r gets a bias b_r and each partition takes its f best
// score + b, with the biases (dual prices) set so that every router holds exactly its capacity,
// floor or ceil of 65536 f / N. It is computed as a min-cost flow by successive shortest paths on
// the N-router graph (ChoiceBalancer). Leaders are a second transport of the same kind: each
// partition picks one of its f replicas, every router leads floor or ceil of 65536 / N. The
// other replicas follow in order of score + leader bias (who would lead next). Ranks 1..f-1 are
// not balanced one by one: only the total and rank 0 are, which is what movement allows.
//
// Why not the greedy "consistent hashing with bounded loads": its result depends on the order
// the partitions are visited in, and a join's overflow cascades along that order. An optimal
// transport with distinct scores has one optimum whatever the computation; a join or a leave
// changes the biases a little, so besides the slots that must move only partitions at a
// decision boundary move.
//
// Measured (1,200 random rosters, N = 1..13, factor 1..3; the join of one router, or the leave
// of one): slots that change hands / the joiner's (or leaver's) own slots: median 1.006, p90
// 1.017, worst 1.035. Leader changes / its own leads: median 1.010, p90 1.023, worst 1.035. Time
// with 20 routers at factor 3: about 50 ms warm, 100 ms for the first call of a process (the JIT),
// on a shared 2-core machine; 12 routers 40 ms; 256 routers about 1 s. The table is a
// Uint16Array of 65536 f router indexes; replicasOf freezes one small array per partition on
// first use.
//
// Invariants: balance is exact (slots and leads floor or ceil of the mean); a partition's
// replicas are distinct; the result depends on the set of ids only (sorted first, ties broken by
// the lower id, the ceil going to routers in the order of their ids' hashes).
//
// Traps: the scores, the shortlist width and the tie rules are part of the cluster's protocol:
// routers running two versions of this file compute two tables, and a change moves data
// cluster-wide (the pinned vector in assignment.test.ts guards this). Each partition only
// considers its best factor + 4 routers (the shortlist); on 24 random rosters (N = 8..47,
// factor 1..4) the table was identical to the one without shortlists. Were the shortlists ever
// too short to balance, computeAssignment would assert rather than return an unbalanced table. Memory grows with N^2 (router-pair move lists), hence assignmentRoutersMax.
import { xxh3 } from "@node-rs/xxhash";
import { partitionCount } from "./partition.ts";

export const defaultReplicationFactor = 3;
export const replicationFactorMax = 7;
/**
 * computeAssignment refuses larger rosters (programmer error). Time and memory grow faster
 * than the roster: about 1 s and 20 MB of scratch at 256 routers.
 */
export const assignmentRoutersMax = 256;

export interface Assignment {
  /** The routers it was computed from: unique, sorted. */
  readonly routers: readonly string[];
  /** min(requested factor, routers.length). */
  readonly replicationFactor: number;
  /**
   * The partition's target replicas, in rank order: [0] is the preferred leader, then the
   * replicas that would lead next. Length = replicationFactor. The same frozen array on every
   * call: no allocation after the first call per partition.
   */
  replicasOf(partition: number): readonly string[];
  /** How many partitions list `router` at any rank. 0 for unknown routers. */
  slotsOf(router: string): number;
  /** How many partitions list `router` at rank 0. 0 for unknown routers. */
  leadsOf(router: string): number;
}

/**
 * The target replicas of every partition, from the roster and a replication factor. Throws a
 * plain Error (programmer error) on an empty roster, more than assignmentRoutersMax routers,
 * duplicate or empty ids, or a factor outside 1..replicationFactorMax.
 */
export function computeAssignment(
  routers: readonly string[],
  replicationFactor: number = defaultReplicationFactor,
): Assignment {
  assert(routers.length > 0, "no routers");
  assert(
    routers.length <= assignmentRoutersMax,
    `${routers.length} routers, more than ${assignmentRoutersMax}`,
  );
  assert(
    Number.isInteger(replicationFactor) &&
      replicationFactor >= 1 &&
      replicationFactor <= replicationFactorMax,
    `replication factor ${replicationFactor} outside 1..${replicationFactorMax}`,
  );
  // UTF-16 code unit order, like every other roster sort in this project.
  const sorted = Object.freeze([...routers].sort());
  for (let index = 0; index < sorted.length; index++) {
    const id = sorted[index];
    assert(typeof id === "string" && id.length > 0, "router ids must be non-empty strings");
    assert(index === 0 || sorted[index - 1] !== id, `duplicate router id ${id}`);
  }
  const factor = Math.min(replicationFactor, sorted.length);
  const { replicas, slotCounts, leaderCounts } = assign(sorted, factor);

  const indexOf = new Map<string, number>();
  sorted.forEach((id, router) => {
    indexOf.set(id, router);
  });
  const lists: (readonly string[] | undefined)[] = new Array(partitionCount);
  return {
    routers: sorted,
    replicationFactor: factor,
    replicasOf(partition: number): readonly string[] {
      let list = lists[partition];
      if (list === undefined) {
        assert(
          Number.isInteger(partition) && partition >= 0 && partition < partitionCount,
          `no partition ${partition}`,
        );
        const names: string[] = [];
        for (let rank = 0; rank < factor; rank++) names.push(sorted[replicas[partition * factor + rank]!]!);
        list = Object.freeze(names);
        lists[partition] = list;
      }
      return list;
    },
    slotsOf(router: string): number {
      const index = indexOf.get(router);
      return index === undefined ? 0 : slotCounts[index]!;
    },
    leadsOf(router: string): number {
      const index = indexOf.get(router);
      return index === undefined ? 0 : leaderCounts[index]!;
    },
  };
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`computeAssignment: ${message}`);
}

/** Beyond the factor, how many more routers each partition's shortlist holds (see the header). */
const shortlistExtra = 4;

/** The table, as router indexes into the sorted roster, and each router's counts. */
function assign(
  sorted: readonly string[],
  factor: number,
): { replicas: Uint16Array; slotCounts: Int32Array; leaderCounts: Int32Array } {
  const routerCount = sorted.length;
  const hashLows = new Int32Array(routerCount);
  const hashHighs = new Int32Array(routerCount);
  const hashes = sorted.map((id) => xxh3.xxh64(id));
  hashes.forEach((hash, router) => {
    hashLows[router] = Number(hash & 0xffffffffn) | 0;
    hashHighs[router] = Number(hash >> 32n) | 0;
  });
  // Which routers get the ceil when the mean is not whole: an order that does not depend on the
  // roster, so a join or a leave moves few of the extra slots.
  const ceilOrder = sorted
    .map((_, router) => router)
    .sort((a, b) => (hashes[a]! < hashes[b]! ? -1 : hashes[a]! > hashes[b]! ? 1 : a - b));

  const width = Math.min(routerCount, factor + shortlistExtra);
  const { shortlists, scores } = shortlistsOf(width, hashLows, hashHighs);
  const sets = new ChoiceBalancer({
    routerCount,
    width,
    chosenCount: factor,
    shortlists,
    scores,
    capacities: capacitiesOf(partitionCount * factor, ceilOrder),
  });
  sets.start();
  sets.settle();

  // Each partition's replicas, best score first: the leaders' shortlists.
  const members = new Uint16Array(partitionCount * factor);
  const memberScores = new Uint32Array(partitionCount * factor);
  for (let partition = 0; partition < partitionCount; partition++) {
    let size = 0;
    for (let slot = partition * width; slot < (partition + 1) * width; slot++) {
      if (sets.chosen[slot] !== 1) continue;
      members[partition * factor + size] = shortlists[slot]!;
      memberScores[partition * factor + size] = scores[slot]!;
      size++;
    }
    assert(size === factor, `partition ${partition} has ${size} replicas`);
  }
  const leaders = new ChoiceBalancer({
    routerCount,
    width: factor,
    chosenCount: 1,
    shortlists: members,
    scores: memberScores,
    capacities: capacitiesOf(partitionCount, ceilOrder),
  });
  leaders.start();
  leaders.settle();

  // Rank order: the leader, then the others by score + leader bias (who would lead next).
  const replicas = new Uint16Array(partitionCount * factor);
  const followerValues = new Float64Array(factor);
  for (let partition = 0; partition < partitionCount; partition++) {
    const base = partition * factor;
    let size = 1;
    for (let slot = base; slot < base + factor; slot++) {
      const router = members[slot]!;
      if (leaders.chosen[slot] === 1) {
        replicas[base] = router;
        continue;
      }
      const value = memberScores[slot]! + leaders.biases[router]!;
      let position = size;
      while (position > 1) {
        const otherValue = followerValues[position - 1]!;
        const other = replicas[base + position - 1]!;
        if (otherValue > value || (otherValue === value && other < router)) break;
        replicas[base + position] = other;
        followerValues[position] = otherValue;
        position--;
      }
      replicas[base + position] = router;
      followerValues[position] = value;
      size++;
    }
  }
  return { replicas, slotCounts: sets.counts, leaderCounts: leaders.counts };
}

function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x;
}

/** The rendezvous score of (partition, router), an integer in [0, 2^32), from the router id's XXH3-64 halves. */
function scoreOf(partition: number, hashLow: number, hashHigh: number): number {
  return mix32(mix32(Math.imul(partition, 0x9e3779b1) ^ hashLow) ^ hashHigh) >>> 0;
}

/** Each partition's best `width` routers by score, best first (ties: the lower router). */
function shortlistsOf(
  width: number,
  hashLows: Int32Array,
  hashHighs: Int32Array,
): { shortlists: Uint16Array; scores: Uint32Array } {
  const routerCount = hashLows.length;
  const shortlists = new Uint16Array(partitionCount * width);
  const scores = new Uint32Array(partitionCount * width);
  for (let partition = 0; partition < partitionCount; partition++) {
    const base = partition * width;
    let size = 0;
    let lowest = -1;
    for (let router = 0; router < routerCount; router++) {
      const score = scoreOf(partition, hashLows[router]!, hashHighs[router]!);
      if (score <= lowest) continue;
      let position = size === width ? width - 1 : size;
      while (position > 0 && scores[base + position - 1]! < score) {
        scores[base + position] = scores[base + position - 1]!;
        shortlists[base + position] = shortlists[base + position - 1]!;
        position--;
      }
      scores[base + position] = score;
      shortlists[base + position] = router;
      if (size < width) size++;
      if (size === width) lowest = scores[base + width - 1]!;
    }
  }
  return { shortlists, scores };
}

/** floor or ceil of total / routers each; the ceil goes to the first (total mod routers) of `order`. */
function capacitiesOf(total: number, order: readonly number[]): Int32Array {
  const capacities = new Int32Array(order.length);
  const floor = Math.floor(total / order.length);
  order.forEach((router, position) => {
    capacities[router] = floor + (position < total % order.length ? 1 : 0);
  });
  return capacities;
}

/**
 * Each partition chooses `chosenCount` routers of its shortlist so that router r is chosen
 * exactly capacities[r] times and the sum of the chosen scores is as high as it can be.
 */
interface ChoiceProblem {
  readonly routerCount: number;
  /** Shortlist length per partition. */
  readonly width: number;
  readonly chosenCount: number;
  /** partition * width + index -> router; each shortlist by score descending, ties by lower router. */
  readonly shortlists: Uint16Array;
  /** The score of each shortlist slot. */
  readonly scores: Uint32Array;
  /** Sums to partitionCount * chosenCount. */
  readonly capacities: Int32Array;
}

/**
 * Min-cost flow by successive shortest paths (Ahuja, Magnanti & Orlin, Network Flows §9.7) on
 * the graph of routers: an edge from -> to is "one partition gives up `from` for `to`", costing
 * the score it loses. Potentials are the routers' biases: the reduced cost of a move is
 * (score(from) + bias(from)) - (score(to) + bias(to)), never negative (asserted).
 */
class ChoiceBalancer {
  readonly routerCount: number;
  readonly width: number;
  readonly chosenCount: number;
  readonly shortlists: Uint16Array;
  readonly scores: Uint32Array;
  readonly capacities: Int32Array;
  /** Per shortlist slot: 1 when chosen. Invariant: chosenCount per partition. */
  readonly chosen: Uint8Array;
  /** Per router, how many slots choose it. Invariant after settle(): counts[r] === capacities[r]. */
  readonly counts: Int32Array;
  /**
   * The dual prices, integers. Invariant: in every partition, each chosen slot's score + bias is
   * at least each unchosen slot's, so the choice is optimal for the counts it has.
   */
  readonly biases: Float64Array;
  /** Router -> its shortlist slots: slotsOfRouter[slotOffsets[r] .. slotOffsets[r + 1]). Built on first use. */
  slotOffsets: Int32Array | undefined;
  slotsOfRouter: Int32Array | undefined;
  /**
   * Per ordered router pair (from, to): up to candidatesPerPair moves, cheapest raw score
   * difference first (biases shift a pair's moves alike, so the order holds). Invariant: every
   * valid move of the pair cheaper than thresholds[pair] is listed. Moves that later changes made
   * invalid are dropped lazily; an emptied list with a finite threshold is rebuilt by a scan.
   */
  readonly candidatesPerPair: number;
  readonly differences: Float64Array;
  readonly fromSlots: Int32Array;
  readonly toSlots: Int32Array;
  readonly sizes: Int32Array;
  readonly thresholds: Float64Array;
  /** Before settle(), every listed move is valid: no need to compact a full list. */
  compacting = false;

  constructor(problem: ChoiceProblem) {
    this.routerCount = problem.routerCount;
    this.width = problem.width;
    this.chosenCount = problem.chosenCount;
    this.shortlists = problem.shortlists;
    this.scores = problem.scores;
    this.capacities = problem.capacities;
    const pairCount = this.routerCount * this.routerCount;
    this.chosen = new Uint8Array(this.shortlists.length);
    this.counts = new Int32Array(this.routerCount);
    this.biases = new Float64Array(this.routerCount);
    // 16 moves per pair: 17 MB at assignmentRoutersMax; few lists ever run dry and need a rebuild.
    this.candidatesPerPair = 16;
    this.differences = new Float64Array(pairCount * this.candidatesPerPair);
    this.fromSlots = new Int32Array(pairCount * this.candidatesPerPair);
    this.toSlots = new Int32Array(pairCount * this.candidatesPerPair);
    this.sizes = new Int32Array(pairCount);
    this.thresholds = new Float64Array(pairCount).fill(Number.POSITIVE_INFINITY);
  }

  /** Every partition takes the head of its shortlist (all biases 0); list the moves. */
  start(): void {
    const { width, chosenCount, chosen, counts, shortlists, scores, routerCount, thresholds } = this;
    // A move at or above every pair's threshold would be refused by insert(): skip it here.
    let thresholdMax = Number.POSITIVE_INFINITY;
    for (let partition = 0; partition < partitionCount; partition++) {
      if (partition >= 255 && (partition & (partition + 1)) === 0) {
        thresholdMax = 0;
        for (let pair = 0; pair < thresholds.length; pair++) {
          if (pair % (routerCount + 1) !== 0) thresholdMax = Math.max(thresholdMax, thresholds[pair]!);
        }
      }
      const base = partition * width;
      for (let slot = base; slot < base + chosenCount; slot++) {
        chosen[slot] = 1;
        counts[shortlists[slot]!]!++;
      }
      const lowestChosenScore = scores[base + chosenCount - 1]!;
      for (let toSlot = base + chosenCount; toSlot < base + width; toSlot++) {
        const toScore = scores[toSlot]!;
        if (lowestChosenScore - toScore >= thresholdMax) break;
        const toRouter = shortlists[toSlot]!;
        for (let fromSlot = base; fromSlot < base + chosenCount; fromSlot++) {
          const pair = shortlists[fromSlot]! * routerCount + toRouter;
          const difference = scores[fromSlot]! - toScore;
          if (difference < thresholds[pair]!) this.insert(pair, difference, fromSlot, toSlot);
        }
      }
    }
  }

  /**
   * Until no router is over capacity: from the most loaded router, Dijkstra over reduced costs
   * to the nearest router under capacity, lower the biases of the routers it reached by how much
   * closer they were (reduced costs stay non-negative), and move one slot along the path.
   */
  settle(): void {
    const { routerCount, counts, capacities, biases, chosen, differences, fromSlots, toSlots } = this;
    const { width, shortlists, sizes, thresholds, candidatesPerPair } = this;
    const distances = new Float64Array(routerCount);
    const settled = new Uint8Array(routerCount);
    const parents = new Int32Array(routerCount);
    const parentEntries = new Int32Array(routerCount);
    const pathFromSlots: number[] = [];
    const pathToSlots: number[] = [];
    this.compacting = true;
    for (;;) {
      let source = -1;
      let excessMax = 0;
      for (let router = 0; router < routerCount; router++) {
        const excess = counts[router]! - capacities[router]!;
        if (excess > excessMax) {
          excessMax = excess;
          source = router;
        }
        distances[router] = Number.POSITIVE_INFINITY;
        settled[router] = 0;
        parents[router] = -1;
      }
      if (source < 0) return;
      distances[source] = 0;
      let target = -1;
      for (;;) {
        let current = -1;
        for (let router = 0; router < routerCount; router++) {
          if (settled[router] === 1 || distances[router] === Number.POSITIVE_INFINITY) continue;
          if (current < 0 || distances[router]! < distances[current]!) current = router;
        }
        if (current < 0) break;
        settled[current] = 1;
        if (counts[current]! < capacities[current]!) {
          target = current;
          break;
        }
        const row = current * routerCount;
        for (let next = 0; next < routerCount; next++) {
          if (settled[next] === 1) continue;
          const pair = row + next;
          // A list's first entry, valid or not, bounds its cheapest valid move from below.
          if (sizes[pair]! > 0) {
            const bound =
              distances[current]! + differences[pair * candidatesPerPair]! + biases[current]! - biases[next]!;
            if (bound >= distances[next]!) continue;
          } else if (thresholds[pair] === Number.POSITIVE_INFINITY) continue;
          const entry = this.head(pair);
          if (entry < 0) continue;
          const cost = differences[entry]! + biases[current]! - biases[next]!;
          assert(cost >= 0, "negative reduced cost");
          const distance = distances[current]! + cost;
          if (distance < distances[next]!) {
            distances[next] = distance;
            parents[next] = current;
            parentEntries[next] = entry;
          }
        }
      }
      assert(target >= 0, "no balanced assignment within the shortlists");
      const reached = distances[target]!;
      for (let router = 0; router < routerCount; router++) {
        if (settled[router] === 1 && distances[router]! < reached)
          biases[router]! -= reached - distances[router]!;
      }
      // Read the whole path before changing anything: the edges use distinct router pairs, so
      // one move cannot invalidate another, which the assert below checks.
      pathFromSlots.length = 0;
      pathToSlots.length = 0;
      for (let router = target; parents[router]! >= 0; router = parents[router]!) {
        pathFromSlots.push(fromSlots[parentEntries[router]!]!);
        pathToSlots.push(toSlots[parentEntries[router]!]!);
      }
      for (let index = 0; index < pathFromSlots.length; index++) {
        const fromSlot = pathFromSlots[index]!;
        const toSlot = pathToSlots[index]!;
        assert(chosen[fromSlot] === 1 && chosen[toSlot] === 0, "a stale move on the path");
        chosen[fromSlot] = 0;
        chosen[toSlot] = 1;
        counts[shortlists[fromSlot]!]!--;
        counts[shortlists[toSlot]!]!++;
      }
      for (let index = 0; index < pathFromSlots.length; index++) {
        const fromSlot = pathFromSlots[index]!;
        this.addMoves(fromSlot - (fromSlot % width), shortlists[pathToSlots[index]!]!, shortlists[fromSlot]!);
      }
    }
  }

  isValid(entry: number): boolean {
    return this.chosen[this.fromSlots[entry]!] === 1 && this.chosen[this.toSlots[entry]!] === 0;
  }

  /** Lists a move unless the pair's threshold refuses it; a full list drops its dearest. */
  insert(pair: number, difference: number, fromSlot: number, toSlot: number): void {
    if (difference >= this.thresholds[pair]!) return;
    const capacity = this.candidatesPerPair;
    const base = pair * capacity;
    let size = this.sizes[pair]!;
    if (size === capacity && this.compacting) {
      this.compact(pair);
      size = this.sizes[pair]!;
    }
    if (size === capacity) {
      const last = this.differences[base + size - 1]!;
      if (difference >= last) {
        this.thresholds[pair] = difference;
        return;
      }
      this.thresholds[pair] = last;
      size--;
    }
    let position = size;
    while (position > 0 && this.differences[base + position - 1]! > difference) {
      this.moveEntry(base + position - 1, base + position);
      position--;
    }
    this.differences[base + position] = difference;
    this.fromSlots[base + position] = fromSlot;
    this.toSlots[base + position] = toSlot;
    this.sizes[pair] = size + 1;
  }

  moveEntry(from: number, to: number): void {
    this.differences[to] = this.differences[from]!;
    this.fromSlots[to] = this.fromSlots[from]!;
    this.toSlots[to] = this.toSlots[from]!;
  }

  compact(pair: number): void {
    const base = pair * this.candidatesPerPair;
    let kept = 0;
    for (let index = 0; index < this.sizes[pair]!; index++) {
      if (!this.isValid(base + index)) continue;
      this.moveEntry(base + index, base + kept);
      kept++;
    }
    this.sizes[pair] = kept;
  }

  /** The entry of the pair's cheapest valid move, or -1 when it has none. */
  head(pair: number): number {
    const base = pair * this.candidatesPerPair;
    for (;;) {
      const size = this.sizes[pair]!;
      let start = 0;
      while (start < size && !this.isValid(base + start)) start++;
      if (start > 0) {
        for (let index = start; index < size; index++) this.moveEntry(base + index, base + index - start);
        this.sizes[pair] = size - start;
      }
      if (size - start > 0) return base;
      if (this.thresholds[pair] === Number.POSITIVE_INFINITY) return -1;
      this.rebuild(pair);
    }
  }

  /** Lists the pair's moves again from a scan of the `from` router's slots. */
  rebuild(pair: number): void {
    const { width, chosen, shortlists, scores } = this;
    this.sizes[pair] = 0;
    this.thresholds[pair] = Number.POSITIVE_INFINITY;
    const from = (pair / this.routerCount) | 0;
    const to = pair % this.routerCount;
    if (this.slotOffsets === undefined || this.slotsOfRouter === undefined) {
      this.slotOffsets = new Int32Array(this.routerCount + 1);
      this.slotsOfRouter = new Int32Array(shortlists.length);
      for (let slot = 0; slot < shortlists.length; slot++) this.slotOffsets[shortlists[slot]! + 1]!++;
      for (let router = 0; router < this.routerCount; router++) {
        this.slotOffsets[router + 1]! += this.slotOffsets[router]!;
      }
      const filled = this.slotOffsets.slice(0, this.routerCount);
      for (let slot = 0; slot < shortlists.length; slot++)
        this.slotsOfRouter[filled[shortlists[slot]!]!++] = slot;
    }
    const { slotOffsets, slotsOfRouter } = this;
    const end = slotOffsets[from + 1]!;
    for (let index = slotOffsets[from]!; index < end; index++) {
      const fromSlot = slotsOfRouter[index]!;
      if (chosen[fromSlot] !== 1) continue;
      const base = fromSlot - (fromSlot % width);
      for (let toSlot = base; toSlot < base + width; toSlot++) {
        if (shortlists[toSlot] !== to) continue;
        if (chosen[toSlot] === 0) this.insert(pair, scores[fromSlot]! - scores[toSlot]!, fromSlot, toSlot);
        break;
      }
    }
  }

  /** After a partition took `joinedRouter` instead of `leftRouter`: list the moves that became valid. */
  addMoves(base: number, joinedRouter: number, leftRouter: number): void {
    const { width, chosen, shortlists, scores, routerCount } = this;
    for (let fromSlot = base; fromSlot < base + width; fromSlot++) {
      if (chosen[fromSlot] !== 1) continue;
      const fromRouter = shortlists[fromSlot]!;
      for (let toSlot = base; toSlot < base + width; toSlot++) {
        if (chosen[toSlot] !== 0) continue;
        const toRouter = shortlists[toSlot]!;
        if (fromRouter !== joinedRouter && toRouter !== leftRouter) continue;
        this.insert(
          fromRouter * routerCount + toRouter,
          scores[fromSlot]! - scores[toSlot]!,
          fromSlot,
          toSlot,
        );
      }
    }
  }
}
