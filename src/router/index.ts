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
export { type ListeningAddresses, Router, type RouterOptions, routerVersion } from "./router.ts";
