// The router's log: one line per event on stderr, "time LEVEL message key=value ...", so a
// person can read it and grep can filter it. Not a core: shells and the router use it.

export type LogLevel = "debug" | "info" | "warn" | "error";
const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export interface Log {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export function createLog(
  write: (line: string) => void,
  minimum: LogLevel = "info",
  now = () => new Date(),
): Log {
  const emit = (level: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (order[level] < order[minimum]) return;
    let line = `${now().toISOString()} ${level.toUpperCase()} ${message}`;
    for (const [key, value] of Object.entries(fields ?? {})) {
      line += ` ${key}=${typeof value === "string" && !/\s/.test(value) ? value : JSON.stringify(value)}`;
    }
    write(`${line}\n`);
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };
