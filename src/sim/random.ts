// SeededRandom: the simulator's Random (src/ports/random.ts), xoroshiro128+ from `pure-rand`.
// One seed makes a whole simulation; each component draws from its own stream, derived with
// `fork(label)`, so adding draws in one component never shifts the numbers another one sees.
//
// Invariants: the same seed and the same fork labels give the same numbers, on every machine
// (pure-rand is pure integer arithmetic). A child's stream depends only on the root seed and
// the labels on its path, never on how many numbers its parent drew before forking.
// Traps: a label may be forked only once per parent (two components sharing a stream would
// silently correlate); forking is bounded by `forksMax`. Seeds are non-negative safe integers,
// so `Date.now()` works as a seed and prints back exactly.
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus";
import type { JumpableRandomGenerator } from "pure-rand/types/JumpableRandomGenerator";
import type { Random } from "../ports/index.ts";

/** Forks one stream may make: a simulation has a stream per component, not per event. */
export const forksMax = 100_000;

/** FNV-1a, 32 bits, over the UTF-16 code units of `text`, continuing from `hash`. */
function fnv1a(text: string, hash = 0x811c9dc5): number {
  for (let index = 0; index < text.length; index++) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The murmur3 finaliser: spreads every input bit over the output. */
function mix32(value: number): number {
  value ^= value >>> 16;
  value = Math.imul(value, 0x85ebca6b);
  value ^= value >>> 13;
  value = Math.imul(value, 0xc2b2ae35);
  value ^= value >>> 16;
  return value | 0;
}

/** The 128-bit xoroshiro state for (seed, path): four words, never all zero. */
function stateFor(seed: number, path: string): number[] {
  const low = seed >>> 0;
  const high = Math.floor(seed / 2 ** 32) >>> 0;
  const label = fnv1a(path);
  const state = [0, 1, 2, 3].map((lane): number =>
    mix32(
      mix32(low ^ Math.imul(lane + 1, 0x9e3779b9)) ^ mix32(high + lane) ^ mix32(label + lane * 0x632be5ab),
    ),
  );
  if (!state.some((word) => word !== 0)) state[0] = 1;
  return state;
}

export class SeededRandom implements Random {
  /** The root seed: print it when a simulation fails; it replays every stream. */
  readonly seed: number;
  /** Where this stream sits under the root: "" for the root, "/network/pipes" for a fork. */
  readonly path: string;
  private readonly generator: JumpableRandomGenerator;
  /** Labels already forked from this stream. Invariant: size <= forksMax. */
  private readonly forked = new Set<string>();

  constructor(seed: number, path = "") {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new Error(`seed must be a non-negative safe integer, got ${seed}`);
    }
    this.seed = seed;
    this.path = path;
    this.generator = xoroshiro128plusFromState(stateFor(seed, path));
  }

  /** A uniformly distributed integer in [0, bound); `bound` is a positive integer <= 2^32. */
  nextInt(bound: number): number {
    if (!Number.isInteger(bound) || bound < 1 || bound > 2 ** 32) {
      throw new Error(`nextInt bound must be an integer in [1, 2^32], got ${bound}`);
    }
    return uniformInt(this.generator, 0, bound - 1);
  }

  /** A uniformly distributed float in [0, 1), a multiple of 2^-53. */
  nextFloat(): number {
    return uniformFloat64(this.generator);
  }

  /** True with probability `probability` (0 never, 1 always; 0 and 1 still draw one number). */
  chance(probability: number): boolean {
    if (!(probability >= 0 && probability <= 1)) {
      throw new Error(`probability must be in [0, 1], got ${probability}`);
    }
    return this.nextFloat() < probability;
  }

  /** A uniformly distributed float in [min, max); `max === min` gives `min`. */
  between(min: number, max: number): number {
    if (!(Number.isFinite(min) && Number.isFinite(max) && min <= max)) {
      throw new Error(`between needs finite min <= max, got [${min}, ${max}]`);
    }
    return min + this.nextFloat() * (max - min);
  }

  /** One element of `items`, chosen uniformly; `items` must not be empty. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.nextInt(items.length)]!;
  }

  /**
   * An independent stream for one component, named by `label` (e.g. "network", "router r1").
   * It depends on the root seed and the path of labels only.
   */
  fork(label: string): SeededRandom {
    if (label.length === 0 || label.includes("/")) {
      throw new Error(`fork label must be non-empty and contain no "/", got ${JSON.stringify(label)}`);
    }
    if (this.forked.has(label)) {
      throw new Error(`stream ${JSON.stringify(this.path || "/")} already forked ${JSON.stringify(label)}`);
    }
    if (this.forked.size >= forksMax) {
      throw new Error(`stream ${JSON.stringify(this.path || "/")} forked more than ${forksMax} times`);
    }
    this.forked.add(label);
    return new SeededRandom(this.seed, `${this.path}/${label}`);
  }
}
