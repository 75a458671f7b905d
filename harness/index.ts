// The harness's public surface (DESIGN.md "harness"): real-process clusters as scoped Effects.
// Production code never imports this folder.
export {
  Cluster,
  type ClusterClientOptions,
  type ClusterOptions,
  type RouterInfo,
  routersMax,
} from "./cluster.ts";
export { RouterStartFailed, StatusFailed, Timeout } from "./errors.ts";
export type { LogLevel, ProcessExit, ReadyLine } from "./router-process.ts";
export {
  fetchStatus,
  type MemberState,
  memberState,
  type RouterStatus,
  type StatusMember,
} from "./status.ts";
export { type WaitOptions, waitUntil } from "./wait.ts";
