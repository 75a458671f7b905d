// Sim: the deterministic simulation seams. A virtual clock, seeded randomness, a faulty network
// (datagrams and TCP-like pipes) and the in-memory Transport over it, and a faulty disk
// (SimDisk), so a whole cluster runs in one process from one seed (STYLE.md). Production code
// never imports this folder (DESIGN.md; boundaries.test.ts checks it): only tests, harness/
// and bench/ do.
export { defaultWallStartMs, type RunOptions, SimClock, type SimClockOptions } from "./clock.ts";
export {
  type CrashOptions,
  SimDisk,
  SimDiskError,
  type SimDiskOperation,
  type SimDiskStats,
} from "./disk.ts";
export {
  type DriveOptions,
  driveThrough,
  driveUntil,
  driveUntilIdle,
  microtaskTurnsDefault,
  settleMicrotasks,
} from "./drive.ts";
export { type MemoryTransportOptions, memoryTransport, simEnvironment } from "./memory-transport.ts";
export {
  checkSimNetworkConfig,
  type DatagramDropReason,
  type DatagramSendResult,
  type DatagramSocket,
  defaultSimNetworkConfig,
  type ListenPipesOptions,
  type NetworkStats,
  type PipeListener,
  SimNetwork,
  type SimNetworkConfig,
  SimNetworkError,
  type SimNetworkErrorCode,
} from "./network.ts";
export type { PipeEnd, PipeEndState, PipeError, PipeErrorCode, PipeHandler } from "./pipe.ts";
export { SeededRandom } from "./random.ts";
export { formatAddress, hostOf, type Partition, type PartitionId, parseAddress } from "./reachability.ts";
export { checksum, formatTraceEvent, type TraceEvent, type TraceKind } from "./trace.ts";
