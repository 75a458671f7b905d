import { defineConfig } from "vitest/config";

// Real-process tests start routers as child processes; give them room on a 2-core machine,
// but never retry: a flaky test is a bug.
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "client/**/*.test.ts", "test/**/*.test.ts", "harness/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    retry: 0,
    pool: "forks",
  },
});
