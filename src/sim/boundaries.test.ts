// Boundaries of src/sim (DESIGN.md): production code never imports it; only src/sim itself,
// harness/, bench/, tests and simulation support files (`*.sim.ts`, e.g. a subsystem's
// simulated cluster beside its core) may. Production code imports no `*.sim.ts` file either,
// so the boundary holds through them. And src/sim and `*.sim.ts` files touch no real time or
// ambient randomness (STYLE.md), or a seed would stop replaying. The checks scan the source
// tree; the scanners are tested on small examples first, so the checks cannot pass vacuously.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");
const simFolder = join(root, "src", "sim");
const skippedFolders = new Set(["node_modules", ".git", "dist", "coverage"]);

function sourceFiles(folder: string): string[] {
  const files: string[] = [];
  const pending = [folder];
  while (pending.length > 0) {
    const current = pending.pop()!;
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      if (entry.name.startsWith(".") || skippedFolders.has(entry.name)) continue;
      const path = join(current, entry.name);
      if (entry.isDirectory()) pending.push(path);
      else if (/\.(?:ts|mts|cts|js|mjs|cjs)$/.test(entry.name)) files.push(path);
    }
  }
  return files.sort();
}

/** Module specifiers in `import ... from`, `export ... from`, `import "..."` and `import("...")`. */
function specifiersOf(source: string): string[] {
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"']+)["']/g;
  return [...source.matchAll(pattern)].map((match) => match[1]!);
}

/** Whether `specifier`, imported by `file`, points into `folder`. */
function pointsInto(file: string, specifier: string, folder: string): boolean {
  if (!specifier.startsWith(".")) return false;
  const target = resolve(dirname(file), specifier);
  return target === folder || target.startsWith(folder + sep);
}

/** Simulation support beside a core: `simulation.sim.ts`. */
const simSupport = /\.sim\.[cm]?[jt]s$/;

/** Whether `file` may import src/sim: it is in src/sim, harness/, bench/, test/, a test or simulation support. */
function mayImportSim(file: string): boolean {
  const path = relative(root, file).split(sep).join("/");
  return (
    path.startsWith("src/sim/") ||
    path.startsWith("harness/") ||
    path.startsWith("bench/") ||
    path.startsWith("test/") ||
    /\.test\.[cm]?[jt]s$/.test(path) ||
    simSupport.test(path)
  );
}

/** Whether `specifier`, imported by `file`, is a simulation support file. */
function pointsAtSimSupport(specifier: string): boolean {
  return specifier.startsWith(".") && simSupport.test(specifier);
}

/** Calls that read real time, real timers or ambient randomness. */
const ambient =
  /\b(?:setTimeout|setInterval|setImmediate|Date\.now|performance\.now|Math\.random)\b|\bnew Date\(\)/;

/** Lines of `source` that use `ambient`, skipping comment lines. */
function ambientUses(source: string): string[] {
  return source
    .split("\n")
    .filter((line) => !/^\s*(?:\/\/|\*|\/\*)/.test(line))
    .filter((line) => ambient.test(line));
}

describe("the scanners", () => {
  it("find every import form and resolve it against the importing file", () => {
    const source = [
      'import { SimClock } from "../sim/index.ts";',
      'export { x } from "../sim/clock.ts";',
      'import "../sim/setup.ts";',
      'const later = await import("../sim/network.ts");',
      'import type { Clock } from "../ports/index.ts";',
    ].join("\n");
    const file = join(root, "src", "router", "router.ts");
    const found = specifiersOf(source).filter((specifier) => pointsInto(file, specifier, simFolder));
    expect(found).toEqual(["../sim/index.ts", "../sim/clock.ts", "../sim/setup.ts", "../sim/network.ts"]);
    expect(pointsInto(join(root, "src", "simulator", "a.ts"), "./b.ts", simFolder)).toBe(false);
  });

  it("allow only src/sim, harness/, bench/, test/, test files and *.sim.ts files", () => {
    expect(mayImportSim(join(root, "src", "router", "router.ts"))).toBe(false);
    expect(mayImportSim(join(root, "client", "index.ts"))).toBe(false);
    expect(mayImportSim(join(root, "src", "membership", "simulation.ts"))).toBe(false);
    expect(mayImportSim(join(root, "src", "membership", "simulation.sim.ts"))).toBe(true);
    expect(pointsAtSimSupport("./simulation.sim.ts")).toBe(true);
    expect(pointsAtSimSupport("../membership/simulation.ts")).toBe(false);
    expect(mayImportSim(join(root, "src", "router", "router.test.ts"))).toBe(true);
    expect(mayImportSim(join(root, "src", "sim", "network.ts"))).toBe(true);
    expect(mayImportSim(join(root, "harness", "drill.ts"))).toBe(true);
    expect(mayImportSim(join(root, "bench", "main.ts"))).toBe(true);
  });

  it("spot real time and ambient randomness outside comments", () => {
    expect(ambientUses("const t = Date.now();\n// Date.now() in a comment\nsetImmediate(f);")).toEqual([
      "const t = Date.now();",
      "setImmediate(f);",
    ]);
    expect(ambientUses("clock.schedule(0, f); random.nextFloat();")).toEqual([]);
  });
});

describe("src/sim boundaries", () => {
  it("no production file imports src/sim, or a *.sim.ts file", () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(root)) {
      if (mayImportSim(file)) continue;
      for (const specifier of specifiersOf(readFileSync(file, "utf8"))) {
        if (pointsInto(file, specifier, simFolder) || pointsAtSimSupport(specifier))
          offenders.push(`${relative(root, file)} imports ${specifier}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it("src/sim (tests aside) and *.sim.ts files use no real timer, real clock or Math.random", () => {
    const support = sourceFiles(root).filter((file) => simSupport.test(file));
    const files = [...sourceFiles(simFolder).filter((file) => !/\.test\.ts$/.test(file)), ...support];
    expect(files.length).toBeGreaterThan(5);
    const offenders = files.flatMap((file) =>
      ambientUses(readFileSync(file, "utf8")).map((line) => `${relative(root, file)}: ${line.trim()}`),
    );
    expect(offenders).toEqual([]);
  });
});
