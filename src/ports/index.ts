// Ports: the seams between protocol cores and the world (STYLE.md). Transport lives in src/axon.
export { type Clock, systemClock, type Timer } from "./clock.ts";
export { type Random, systemRandom } from "./random.ts";
