// Router: the composition of one router process, its config and its log.
export {
  ConfigError,
  checkConfigDocument,
  defaultLimits,
  loadCredentials,
  loadRouterConfig,
  type RouterConfig,
  type RouterLimits,
} from "./config.ts";
export { createLog, type Log, type LogLevel, silentLog } from "./log.ts";
export {
  type MeshSnapshot,
  type MetricsSnapshot,
  metricsSnapshotOf,
  RouterMetrics,
  routerMetrics,
} from "./metrics.ts";
export { RateSampler, type Rates, type RateTotals } from "./rates.ts";
export { type ListeningAddresses, Router, type RouterOptions, routerVersion } from "./router.ts";
