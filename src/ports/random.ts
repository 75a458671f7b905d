// The Random port: every random choice in protocol code (election jitter, probe targets,
// retry backoff) comes from an injected Random, never from Math.random, so a simulation seed
// replays every choice. The seeded implementation lives in src/sim/random.ts.
import { randomInt } from "node:crypto";

export interface Random {
  /** A uniformly distributed integer in [0, bound); `bound` is a positive safe integer <= 2^32. */
  nextInt(bound: number): number;
  /** A uniformly distributed float in [0, 1). */
  nextFloat(): number;
}

/** Operating-system randomness, for production. */
export const systemRandom: Random = {
  nextInt: (bound) => randomInt(bound),
  nextFloat: () => randomInt(2 ** 48 - 1) / 2 ** 48,
};
