// The cluster fixture against real router processes: three routers find each other by gossip,
// a kill -9 is seen as dead, a restart (new process, new ports, same data dir) as alive again,
// and closing the scope leaves no process and no temp dir behind. Every wait is a condition
// with a deadline; nothing sleeps for a fixed time.
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { Cluster, type MemberState, memberState, type RouterStatus } from "./index.ts";

/** true when every view gives every id in `expected` its state; otherwise what is missing. */
function viewsAgree(
  views: ReadonlyMap<string, RouterStatus>,
  expected: Readonly<Record<string, MemberState>>,
): true | string {
  const wrong: string[] = [];
  for (const [observer, status] of views) {
    for (const [id, state] of Object.entries(expected)) {
      const seen = memberState(status, id);
      if (seen !== state) wrong.push(`${observer} sees ${id} ${seen ?? "unknown"} (want ${state})`);
    }
  }
  return wrong.length === 0 ? true : wrong.join("; ");
}

function pidGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

describe("Cluster (real processes)", () => {
  it("three routers converge, a kill -9 is seen as dead, a restart as alive; close leaves nothing behind", async ({
    signal,
  }) => {
    const program = Effect.gen(function* () {
      const { pids, dir } = yield* Effect.scoped(
        Effect.gen(function* () {
          const cluster = yield* Cluster.make({ routers: 3 });
          const ids = cluster.routers.map((router) => router.id);
          expect(ids).toEqual(["r1", "r2", "r3"]);
          expect(cluster.routers.every((router) => router.alive && router.lives === 1)).toBe(true);
          expect(existsSync(cluster.dir)).toBe(true);

          const allAlive = { r1: "alive", r2: "alive", r3: "alive" } as const;
          yield* cluster.waitUntil(cluster.views().pipe(Effect.map((views) => viewsAgree(views, allAlive))), {
            timeoutMs: 15_000,
            what: "all three alive in every router's view",
          });

          const client = yield* cluster.clientOptions();
          expect(client.seeds).toEqual(cluster.routers.map((router) => router.clients));
          expect(client.cert).toMatch(/BEGIN CERTIFICATE/);

          // kill -9: the survivors declare it dead (never "left": it said no goodbye).
          const victim = cluster.router("r2");
          yield* cluster.kill("r2");
          expect(cluster.router("r2")).toMatchObject({
            alive: false,
            exit: { code: null, signal: "SIGKILL" },
          });
          expect(pidGone(victim.pid!)).toBe(true);
          const status = yield* cluster.status("r2").pipe(Effect.flip);
          expect(status._tag).toBe("StatusFailed");
          yield* cluster.waitUntil(
            cluster
              .views()
              .pipe(Effect.map((views) => viewsAgree(views, { r1: "alive", r2: "dead", r3: "alive" }))),
            { timeoutMs: 15_000, what: "r2 dead in r1's and r3's views" },
          );

          // Restart: same id and data dir, a new process on new ports, alive again everywhere.
          const restarted = yield* cluster.restart("r2");
          expect(restarted).toMatchObject({ id: "r2", alive: true, lives: 2, dataDir: victim.dataDir });
          expect(restarted.pid).not.toBe(victim.pid);
          yield* cluster.waitUntil(cluster.views().pipe(Effect.map((views) => viewsAgree(views, allAlive))), {
            timeoutMs: 15_000,
            what: "r2 alive again in every router's view",
          });
          const seen = yield* cluster.status("r1");
          expect(seen.members.find((member) => member.id === "r2")?.gossip).toBe(restarted.gossip);

          expect(cluster.startedPids).toHaveLength(4);
          return { pids: cluster.startedPids, dir: cluster.dir };
        }),
      );
      // The scope is closed: every process ended and the temp dir is gone.
      for (const pid of pids) expect(pidGone(pid), `pid ${pid} still exists`).toBe(true);
      expect(existsSync(dir)).toBe(false);
    });
    await Effect.runPromise(program, { signal });
  }, 40_000);

  it("a router that cannot start fails with RouterStartFailed and its output, and the temp dir is removed", async ({
    signal,
  }) => {
    const baseDir = await mkdtemp(join(tmpdir(), "neuron-harness-test-"));
    try {
      const failure = await Effect.runPromise(
        Effect.scoped(
          // A key the config does not know: the router exits with code 2 and names it on stderr.
          Cluster.make({ routers: 2, baseDir, extraConfig: "[limits]\nno_such_limit = 1" }),
        ).pipe(Effect.flip),
        { signal },
      );
      expect(failure._tag).toBe("RouterStartFailed");
      expect(failure.message).toMatch(/router r1 did not start: exited with code 2 before its ready line/);
      expect(failure.message).toMatch(/limits\.no_such_limit: unknown key/);
      expect(await readdir(baseDir)).toEqual([]);
    } finally {
      await rm(baseDir, { recursive: true, force: true });
    }
  }, 20_000);
});
