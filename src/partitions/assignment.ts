// HEADER TODO
import { xxh3 } from "@node-rs/xxhash";
import { partitionCount } from "./partition.ts";

export const defaultReplicationFactor = 3;
export const replicationFactorMax = 7;
export const routerCountMax = 256;

export interface Assignment {
  /** The routers it was computed from: unique, sorted. */
  readonly routers: readonly string[];
  /** min(requested factor, routers.length). */
  readonly replicationFactor: number;
  /**
   * The partition's target replicas, in rank order: [0] is the preferred leader. Length =
   * replicationFactor. Same frozen array object on every call (no allocation per call).
   */
  replicasOf(partition: number): readonly string[];
  /** How many partitions list `router` at any rank. 0 for unknown routers. */
  slotsOf(router: string): number;
  /** How many partitions list `router` at rank 0. 0 for unknown routers. */
  leadsOf(router: string): number;
}

export const stats = { inserts: 0, augmentations: 0, recomputes: 0, initialMs: 0, loopMs: 0, dijkstraMs: 0 };

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x;
}

function scoreOf(partition: number, hashLow: number, hashHigh: number): number {
  return mix32(mix32(Math.imul(partition, 0x9e3779b1) ^ hashLow) ^ hashHigh) >>> 0;
}

const candidatesPerPair = 16;

interface BalanceProblem {
  readonly routerCount: number;
  readonly width: number;
  readonly chosenCount: number;
  readonly allowed: Uint16Array | undefined;
  readonly capacities: Int32Array;
  readonly hashLows: Int32Array;
  readonly hashHighs: Int32Array;
}

class ChoiceBalancer {
  readonly routerCount: number;
  readonly width: number;
  readonly chosenCount: number;
  readonly allowed: Uint16Array | undefined;
  readonly capacities: Int32Array;
  readonly hashLows: Int32Array;
  readonly hashHighs: Int32Array;
  readonly chosen: Uint8Array;
  readonly counts: Int32Array;
  readonly biases: Float64Array;
  readonly differences: Float64Array;
  readonly fromSlots: Int32Array;
  readonly toSlots: Int32Array;
  readonly sizes: Int32Array;
  readonly thresholds: Float64Array;
  readonly values: Float64Array;
  readonly routersOfPartition: Int32Array;
  settling = false;

  constructor(problem: BalanceProblem) {
    this.routerCount = problem.routerCount;
    this.width = problem.width;
    this.chosenCount = problem.chosenCount;
    this.allowed = problem.allowed;
    this.capacities = problem.capacities;
    this.hashLows = problem.hashLows;
    this.hashHighs = problem.hashHighs;
    const pairCount = this.routerCount * this.routerCount;
    this.chosen = new Uint8Array(partitionCount * this.width);
    this.counts = new Int32Array(this.routerCount);
    this.biases = new Float64Array(this.routerCount);
    this.differences = new Float64Array(pairCount * candidatesPerPair);
    this.fromSlots = new Int32Array(pairCount * candidatesPerPair);
    this.toSlots = new Int32Array(pairCount * candidatesPerPair);
    this.sizes = new Int32Array(pairCount);
    this.thresholds = new Float64Array(pairCount).fill(Number.POSITIVE_INFINITY);
    this.values = new Float64Array(this.width);
    this.routersOfPartition = new Int32Array(this.width);
  }

  routerOfSlot(slot: number): number {
    return this.allowed === undefined ? slot % this.width : this.allowed[slot]!;
  }

  valueOfSlot(slot: number): number {
    const router = this.routerOfSlot(slot);
    return scoreOf((slot / this.width) | 0, this.hashLows[router]!, this.hashHighs[router]!);
  }

  isValid(entry: number): boolean {
    return this.chosen[this.fromSlots[entry]!] === 1 && this.chosen[this.toSlots[entry]!] === 0;
  }

  compact(pair: number): void {
    const base = pair * candidatesPerPair;
    const size = this.sizes[pair]!;
    let kept = 0;
    for (let index = 0; index < size; index++) {
      const entry = base + index;
      if (!this.isValid(entry)) continue;
      const target = base + kept;
      this.differences[target] = this.differences[entry]!;
      this.fromSlots[target] = this.fromSlots[entry]!;
      this.toSlots[target] = this.toSlots[entry]!;
      kept++;
    }
    this.sizes[pair] = kept;
  }

  insert(pair: number, difference: number, fromSlot: number, toSlot: number): void {
    stats.inserts++;
    if (difference >= this.thresholds[pair]!) return;
    const base = pair * candidatesPerPair;
    let size = this.sizes[pair]!;
    if (size === candidatesPerPair && this.settling) {
      this.compact(pair);
      size = this.sizes[pair]!;
    }
    if (size === candidatesPerPair) {
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
      const from = base + position - 1;
      this.differences[from + 1] = this.differences[from]!;
      this.fromSlots[from + 1] = this.fromSlots[from]!;
      this.toSlots[from + 1] = this.toSlots[from]!;
      position--;
    }
    this.differences[base + position] = difference;
    this.fromSlots[base + position] = fromSlot;
    this.toSlots[base + position] = toSlot;
    this.sizes[pair] = size + 1;
  }

  recompute(pair: number): void {
    stats.recomputes++;
    const { allowed, width, chosen } = this;
    this.sizes[pair] = 0;
    this.thresholds[pair] = Number.POSITIVE_INFINITY;
    const from = (pair / this.routerCount) | 0;
    const to = pair % this.routerCount;
    for (let partition = 0; partition < partitionCount; partition++) {
      const base = partition * width;
      let fromSlot = -1;
      let toSlot = -1;
      if (allowed === undefined) {
        fromSlot = base + from;
        toSlot = base + to;
      } else {
        for (let index = 0; index < width; index++) {
          const router = allowed[base + index]!;
          if (router === from) fromSlot = base + index;
          else if (router === to) toSlot = base + index;
        }
        if (fromSlot < 0 || toSlot < 0) continue;
      }
      if (chosen[fromSlot] !== 1 || chosen[toSlot] !== 0) continue;
      this.insert(pair, this.valueOfSlot(fromSlot) - this.valueOfSlot(toSlot), fromSlot, toSlot);
    }
  }

  /** The list index of the cheapest valid candidate of `pair`, or -1. */
  head(pair: number): number {
    const base = pair * candidatesPerPair;
    for (;;) {
      let size = this.sizes[pair]!;
      let start = 0;
      while (start < size && !this.isValid(base + start)) start++;
      if (start > 0) {
        for (let index = start; index < size; index++) {
          this.differences[base + index - start] = this.differences[base + index]!;
          this.fromSlots[base + index - start] = this.fromSlots[base + index]!;
          this.toSlots[base + index - start] = this.toSlots[base + index]!;
        }
        size -= start;
        this.sizes[pair] = size;
      }
      if (size > 0) return base;
      if (this.thresholds[pair] === Number.POSITIVE_INFINITY) return -1;
      this.recompute(pair);
    }
  }

  loadPartition(partition: number): void {
    const { allowed, width, values, routersOfPartition, hashLows, hashHighs } = this;
    const base = partition * width;
    for (let index = 0; index < width; index++) {
      const router = allowed === undefined ? index : allowed[base + index]!;
      routersOfPartition[index] = router;
      values[index] = scoreOf(partition, hashLows[router]!, hashHighs[router]!);
    }
  }

  addCandidates(partition: number, joinedRouter: number, leftRouter: number): void {
    const { width, chosen, values, routersOfPartition, routerCount } = this;
    this.loadPartition(partition);
    const base = partition * width;
    for (let from = 0; from < width; from++) {
      if (chosen[base + from] !== 1) continue;
      const fromRouter = routersOfPartition[from]!;
      for (let to = 0; to < width; to++) {
        if (chosen[base + to] !== 0) continue;
        const toRouter = routersOfPartition[to]!;
        if (fromRouter !== joinedRouter && toRouter !== leftRouter) continue;
        this.insert(fromRouter * routerCount + toRouter, values[from]! - values[to]!, base + from, base + to);
      }
    }
  }

  start(): void {
    const { width, chosenCount, chosen, counts, values, routersOfPartition, routerCount, thresholds } = this;
    const topIndexes = new Int32Array(chosenCount);
    // Any candidate at or above every pair's threshold is refused by insert(): skip it cheaply.
    let thresholdMax = Number.POSITIVE_INFINITY;
    for (let partition = 0; partition < partitionCount; partition++) {
      if ((partition & 255) === 255) {
        thresholdMax = 0;
        for (let pair = 0; pair < thresholds.length; pair++) {
          if (pair % (routerCount + 1) !== 0) thresholdMax = Math.max(thresholdMax, thresholds[pair]!);
        }
      }
      const base = partition * width;
      this.loadPartition(partition);
      // The chosenCount best, best first (ties: the lower router index, which is the lower id).
      let size = 0;
      for (let index = 0; index < width; index++) {
        const value = values[index]!;
        const router = routersOfPartition[index]!;
        let position = size;
        while (position > 0) {
          const other = topIndexes[position - 1]!;
          const otherValue = values[other]!;
          if (otherValue > value || (otherValue === value && routersOfPartition[other]! < router)) break;
          position--;
        }
        if (position >= chosenCount) continue;
        for (let move = Math.min(size, chosenCount - 1); move > position; move--)
          topIndexes[move] = topIndexes[move - 1]!;
        topIndexes[position] = index;
        if (size < chosenCount) size++;
      }
      for (let pick = 0; pick < chosenCount; pick++) {
        const index = topIndexes[pick]!;
        chosen[base + index] = 1;
        counts[routersOfPartition[index]!]!++;
      }
      const lowestChosenValue = values[topIndexes[chosenCount - 1]!]!;
      for (let to = 0; to < width; to++) {
        if (chosen[base + to] === 1) continue;
        const toValue = values[to]!;
        if (lowestChosenValue - toValue >= thresholdMax) continue;
        const toRouter = routersOfPartition[to]!;
        for (let pick = 0; pick < chosenCount; pick++) {
          const from = topIndexes[pick]!;
          const pair = routersOfPartition[from]! * routerCount + toRouter;
          const difference = values[from]! - toValue;
          if (difference < thresholds[pair]!) this.insert(pair, difference, base + from, base + to);
        }
      }
    }
  }

  settle(): void {
    const { routerCount, counts, capacities, biases, chosen, differences, fromSlots, toSlots, width } = this;
    const distances = new Float64Array(routerCount);
    const settled = new Uint8Array(routerCount);
    const parents = new Int32Array(routerCount);
    const parentEntries = new Int32Array(routerCount);
    const pathFromSlots: number[] = [];
    const pathToSlots: number[] = [];
    this.settling = true;
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
      stats.augmentations++;
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
        for (let next = 0; next < routerCount; next++) {
          if (settled[next] === 1) continue;
          const entry = this.head(current * routerCount + next);
          if (entry < 0) continue;
          const cost = differences[entry]! + biases[current]! - biases[next]!;
          assert(cost >= 0, "computeAssignment: negative reduced cost");
          const distance = distances[current]! + cost;
          if (distance < distances[next]!) {
            distances[next] = distance;
            parents[next] = current;
            parentEntries[next] = entry;
          }
        }
      }
      assert(target >= 0, "computeAssignment: no feasible balanced assignment");
      const reached = distances[target]!;
      for (let router = 0; router < routerCount; router++) {
        if (settled[router] === 1 && distances[router]! < reached)
          biases[router]! -= reached - distances[router]!;
      }
      pathFromSlots.length = 0;
      pathToSlots.length = 0;
      for (let router = target; parents[router]! >= 0; router = parents[router]!) {
        const entry = parentEntries[router]!;
        pathFromSlots.push(fromSlots[entry]!);
        pathToSlots.push(toSlots[entry]!);
      }
      for (let index = 0; index < pathFromSlots.length; index++) {
        const fromSlot = pathFromSlots[index]!;
        const toSlot = pathToSlots[index]!;
        assert(chosen[fromSlot] === 1 && chosen[toSlot] === 0, "computeAssignment: stale path");
        chosen[fromSlot] = 0;
        chosen[toSlot] = 1;
        counts[this.routerOfSlot(fromSlot)]!--;
        counts[this.routerOfSlot(toSlot)]!++;
      }
      for (let index = 0; index < pathFromSlots.length; index++) {
        const fromSlot = pathFromSlots[index]!;
        this.addCandidates(
          (fromSlot / width) | 0,
          this.routerOfSlot(pathToSlots[index]!),
          this.routerOfSlot(fromSlot),
        );
      }
    }
  }
}

function balance(problem: BalanceProblem): ChoiceBalancer {
  const balancer = new ChoiceBalancer(problem);
  let clock = performance.now();
  balancer.start();
  // console.log("init", problem.width, (performance.now() - clock).toFixed(1));
  stats.initialMs += performance.now() - clock;
  clock = performance.now();
  balancer.settle();
  stats.loopMs += performance.now() - clock;
  return balancer;
}

export function computeAssignment(
  routers: readonly string[],
  replicationFactor: number = defaultReplicationFactor,
): Assignment {
  assert(routers.length > 0, "computeAssignment: no routers");
  assert(routers.length <= routerCountMax, `computeAssignment: more than ${routerCountMax} routers`);
  assert(
    Number.isInteger(replicationFactor) &&
      replicationFactor >= 1 &&
      replicationFactor <= replicationFactorMax,
    `computeAssignment: replication factor ${replicationFactor} outside 1..${replicationFactorMax}`,
  );
  const sorted = [...routers].sort();
  for (let index = 0; index < sorted.length; index++) {
    const id = sorted[index];
    assert(
      typeof id === "string" && id.length > 0,
      "computeAssignment: router ids must be non-empty strings",
    );
    assert(index === 0 || sorted[index - 1] !== id, `computeAssignment: duplicate router id ${id}`);
  }
  const routerCount = sorted.length;
  const factor = Math.min(replicationFactor, routerCount);

  const hashLows = new Int32Array(routerCount);
  const hashHighs = new Int32Array(routerCount);
  const hashes: bigint[] = [];
  for (let router = 0; router < routerCount; router++) {
    const hash = xxh3.xxh64(sorted[router]!);
    hashes.push(hash);
    hashLows[router] = Number(hash & 0xffffffffn) | 0;
    hashHighs[router] = Number(hash >> 32n) | 0;
  }
  const extraOrder = Array.from({ length: routerCount }, (_, router) => router).sort((a, b) =>
    hashes[a]! < hashes[b]! ? -1 : hashes[a]! > hashes[b]! ? 1 : a - b,
  );
  const slotCapacities = new Int32Array(routerCount);
  const leaderCapacities = new Int32Array(routerCount);
  for (let position = 0; position < routerCount; position++) {
    const router = extraOrder[position]!;
    const slots = partitionCount * factor;
    slotCapacities[router] = Math.floor(slots / routerCount) + (position < slots % routerCount ? 1 : 0);
    leaderCapacities[router] =
      Math.floor(partitionCount / routerCount) + (position < partitionCount % routerCount ? 1 : 0);
  }

  const sets = balance({
    routerCount,
    width: routerCount,
    chosenCount: factor,
    allowed: undefined,
    capacities: slotCapacities,
    hashLows,
    hashHighs,
  });
  const members = new Uint16Array(partitionCount * factor);
  for (let partition = 0; partition < partitionCount; partition++) {
    let size = 0;
    for (let router = 0; router < routerCount; router++) {
      if (sets.chosen[partition * routerCount + router] === 1) members[partition * factor + size++] = router;
    }
    assert(size === factor, "computeAssignment: wrong set size");
  }
  const leaders = balance({
    routerCount,
    width: factor,
    chosenCount: 1,
    allowed: members,
    capacities: leaderCapacities,
    hashLows,
    hashHighs,
  });

  const replicas = new Uint16Array(partitionCount * factor);
  for (let partition = 0; partition < partitionCount; partition++) {
    const base = partition * factor;
    let leader = -1;
    for (let index = 0; index < factor; index++) {
      if (leaders.chosen[base + index] === 1) leader = members[base + index]!;
    }
    replicas[base] = leader;
    let size = 1;
    for (let index = 0; index < factor; index++) {
      const router = members[base + index]!;
      if (router === leader) continue;
      const value = scoreOf(partition, hashLows[router]!, hashHighs[router]!) + leaders.biases[router]!;
      let position = size;
      while (position > 1) {
        const other = replicas[base + position - 1]!;
        const otherValue = scoreOf(partition, hashLows[other]!, hashHighs[other]!) + leaders.biases[other]!;
        if (otherValue > value || (otherValue === value && other < router)) break;
        replicas[base + position] = other;
        position--;
      }
      replicas[base + position] = router;
      size++;
    }
  }
  const indexOf = new Map<string, number>();
  for (let router = 0; router < routerCount; router++) indexOf.set(sorted[router]!, router);
  const cache: (readonly string[] | undefined)[] = new Array(partitionCount);
  return {
    routers: Object.freeze(sorted),
    replicationFactor: factor,
    replicasOf(partition: number): readonly string[] {
      let list = cache[partition];
      if (list === undefined) {
        const names: string[] = [];
        for (let k = 0; k < factor; k++) names.push(sorted[replicas[partition * factor + k]!]!);
        list = Object.freeze(names);
        cache[partition] = list;
      }
      return list;
    },
    slotsOf(router: string): number {
      const index = indexOf.get(router);
      return index === undefined ? 0 : sets.counts[index]!;
    },
    leadsOf(router: string): number {
      const index = indexOf.get(router);
      return index === undefined ? 0 : leaders.counts[index]!;
    },
  };
}
