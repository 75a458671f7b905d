// Command-line parsing shared by the `neuron` commands: node:util's parseArgs in strict mode
// (an unknown option is an error, not ignored), with errors that name the command.
import { parseArgs } from "node:util";

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export type OptionSpec = Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }>;

export interface Parsed {
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly positionals: string[];
}

export function parse(command: string, args: readonly string[], options: OptionSpec): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: { ...options, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: true,
    });
    return { values: values as Parsed["values"], positionals };
  } catch (error) {
    throw new UsageError(`neuron ${command}: ${(error as Error).message}`);
  }
}

export function stringOption(parsed: Parsed, name: string, fallback?: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === "string" ? value : fallback;
}

export function integerOption(
  command: string,
  parsed: Parsed,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const value = parsed.values[name];
  if (value === undefined) return fallback;
  const number = Number(value);
  if (typeof value !== "string" || !/^\d+$/.test(value) || number < min || number > max) {
    throw new UsageError(
      `neuron ${command}: --${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return number;
}
