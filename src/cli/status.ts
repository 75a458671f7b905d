// `neuron status`: the whole cluster at a glance. Asks one router for its GET /status, then
// every member that router sees alive for theirs (at the `metrics` address each advertises),
// and prints one row per router, then the controller's roster and leader.
//
// Fetching is a thin shell around `formatStatus`, a pure function of the merged answers (its
// test feeds it fixed JSON). A member that does not answer in time is a row saying so, never
// a failure of the command; only the first router not answering is (exit 1).
// Bounded: at most `fetchesInFlightMax` requests at once, each with a deadline.
import { get } from "node:http";
import { parseAddress } from "../axon/index.ts";
import { metricsSnapshotOf } from "../router/index.ts";
import { parse, stringOption, UsageError } from "./args.ts";

/** Deadline of the first router's answer, ms. */
const firstTimeoutMs = 5_000;
/** Deadline of each other member's answer, ms: a slow router must not hold up the table. */
const memberTimeoutMs = 2_000;
/** Members asked at once. */
const fetchesInFlightMax = 16;

export const statusHelp = `Usage:
  neuron status [--router HOST:PORT] [--json]

Asks the router at HOST:PORT for its status, then every member it sees alive (at the
metrics address each one advertises, ${memberTimeoutMs / 1000} s each), and prints one row per router:
  STATE       membership state, as the first router sees it (or unreachable)
  CONTROLLER  its role in the controller group: leader, follower, learner
  HELD, LED   partitions it replicates, partitions it leads
  CLIENTS     client connections open now
  PUB/S       publishes per second from its clients, over the last 10 s
  DELIVER/S   messages per second delivered to its clients, over the last 10 s
  MAX LAG     log entries the furthest-behind replica of a group it leads is missing
then the controller's roster and leader.

Options:
  --router HOST:PORT  a router's [listen] metrics address
                      (default: $NEURON_STATUS or 127.0.0.1:7409)
  --json              print every router's status, merged, as JSON
`;

/** One router of the report: where it was asked, and its answer or why there is none. */
export interface RouterReport {
  readonly id: string;
  /** Its membership state in the first router's view. */
  readonly state: string;
  /** Its metrics address ("host:port"), or null if it advertises none. */
  readonly address: string | null;
  /** Its GET /status answer; absent if it was not asked or did not answer. */
  readonly status?: unknown;
  /** Why there is no answer from a member that should have given one. */
  readonly error?: string;
}

export interface ClusterReport {
  /** The address asked first, and the id of the router there. */
  readonly router: string;
  readonly id: string;
  /** The controller's roster and leader, as the first router's replica says. */
  readonly roster: readonly string[];
  readonly draining: readonly string[];
  readonly controllerLeader: string | null;
  readonly routers: readonly RouterReport[];
}

interface StatusMember {
  readonly id: string;
  readonly state: string;
  readonly gossip?: string;
  readonly addresses?: Readonly<Record<string, string>>;
}

type Fetched =
  | { readonly ok: true; readonly status: unknown }
  | { readonly ok: false; readonly error: string };

/** Largest /status answer read, bytes: a cluster of thousands of members stays well under it. */
const answerMaxBytes = 64 * 1024 * 1024;

/**
 * GET http://ADDRESS/status with a deadline. node:http, not fetch: fetch refuses the ports on
 * the browsers' "bad port" list (1, 6000, 6665-6669, ...), which a metrics listener may use.
 */
function fetchStatus(address: string, timeoutMs: number): Promise<Fetched> {
  return new Promise((resolve) => {
    const signal = AbortSignal.timeout(timeoutMs);
    const fail = (error: string) => resolve({ ok: false, error });
    const request = get(`http://${address}/status`, { signal }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        fail(`HTTP ${response.statusCode} from ${address}/status`);
        return;
      }
      const chunks: Buffer[] = [];
      let bytes = 0;
      response.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > answerMaxBytes) {
          response.destroy();
          fail(`${address}/status answered more than ${answerMaxBytes} bytes`);
          return;
        }
        chunks.push(chunk);
      });
      response.on("error", (error) =>
        fail(signal.aborted ? `no answer within ${timeoutMs} ms` : error.message),
      );
      response.on("end", () => {
        try {
          resolve({ ok: true, status: JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown });
        } catch (error) {
          fail(`${address}/status did not answer JSON (${(error as Error).message})`);
        }
      });
    });
    request.on("error", (error: NodeJS.ErrnoException) =>
      fail(signal.aborted ? `no answer within ${timeoutMs} ms` : (error.code ?? error.message)),
    );
  });
}

/** A member's metrics address, with an unspecified host (0.0.0.0, ::) replaced by its gossip host. */
function metricsAddressOf(member: StatusMember): string | null {
  const advertised = member.addresses?.metrics;
  if (advertised === undefined) return null;
  const parsed = parseAddress(advertised);
  if (!parsed.ok) return advertised;
  if (parsed.address.host !== "0.0.0.0" && parsed.address.host !== "::") return advertised;
  const gossip = member.gossip === undefined ? null : parseAddress(member.gossip);
  if (gossip === null || !gossip.ok) return advertised;
  const host = gossip.address.host.includes(":") ? `[${gossip.address.host}]` : gossip.address.host;
  return `${host}:${parsed.address.port}`;
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : [];
}

/** Asks the members of `first`'s view for their status, at most `fetchesInFlightMax` at once. */
async function gather(router: string, first: unknown): Promise<ClusterReport> {
  const root = (typeof first === "object" && first !== null ? first : {}) as Record<string, unknown>;
  const id = typeof root.id === "string" ? root.id : "?";
  const members = (Array.isArray(root.members) ? root.members : []).filter(
    (member): member is StatusMember =>
      typeof member === "object" &&
      member !== null &&
      typeof member.id === "string" &&
      typeof member.state === "string",
  );
  const reports: RouterReport[] = [];
  if (!members.some((member) => member.id === id))
    reports.push({ id, state: "alive", address: router, status: first });
  const pending: { index: number; address: string }[] = [];
  for (const member of members) {
    if (member.id === id) {
      reports.push({ id, state: member.state, address: router, status: first });
      continue;
    }
    const address = metricsAddressOf(member);
    if (member.state !== "alive") {
      reports.push({ id: member.id, state: member.state, address });
    } else if (address === null) {
      reports.push({ id: member.id, state: member.state, address, error: "advertises no metrics address" });
    } else {
      pending.push({ index: reports.length, address });
      reports.push({ id: member.id, state: member.state, address });
    }
  }
  let next = 0;
  const worker = async () => {
    while (next < pending.length) {
      const { index, address } = pending[next++]!;
      const fetched = await fetchStatus(address, memberTimeoutMs);
      const report = reports[index]!;
      reports[index] = fetched.ok
        ? { ...report, status: fetched.status }
        : { ...report, error: `unreachable at ${address}: ${fetched.error}` };
    }
  };
  await Promise.all(Array.from({ length: Math.min(fetchesInFlightMax, pending.length) }, worker));
  reports.sort((a, b) => a.id.localeCompare(b.id));
  const mesh = (typeof root.mesh === "object" && root.mesh !== null ? root.mesh : {}) as Record<
    string,
    unknown
  >;
  return {
    router,
    id,
    roster: stringList(mesh.roster),
    draining: stringList(mesh.draining),
    controllerLeader: typeof mesh.controllerLeader === "string" ? mesh.controllerLeader : null,
    routers: reports,
  };
}

function rate(value: unknown): string {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(1) : "-";
}

/** The report as a table, one row per router, then the roster and the controller's leader. */
export function formatStatus(report: ClusterReport): string {
  const rows = [["ID", "STATE", "CONTROLLER", "HELD", "LED", "CLIENTS", "PUB/S", "DELIVER/S", "MAX LAG"]];
  const notes: string[] = [];
  for (const router of report.routers) {
    if (router.status === undefined) {
      rows.push([
        router.id,
        router.error === undefined ? router.state : "unreachable",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
      ]);
      if (router.error !== undefined)
        notes.push(`${router.id} (${router.state} in ${report.id}'s view): ${router.error}`);
      continue;
    }
    const snapshot = metricsSnapshotOf(router.status);
    const mesh = snapshot.mesh;
    const rates = (
      router.status as { rates?: { publishedPerSecond?: unknown; deliveredPerSecond?: unknown } }
    ).rates;
    rows.push([
      router.id,
      router.state,
      mesh.controllerLearner ? "learner" : (mesh.controllerRole ?? "-"),
      String(mesh.partitionsHeld),
      String(mesh.partitionsLed),
      String(snapshot.clients),
      rate(rates?.publishedPerSecond),
      rate(rates?.deliveredPerSecond),
      String(mesh.replicaLagMaxEntries),
    ]);
    if (snapshot.id !== "" && snapshot.id !== router.id) {
      notes.push(`${router.id}: the router at ${router.address} says it is ${snapshot.id}`);
    }
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const lines = rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join("  ")
      .trimEnd(),
  );
  const draining = new Set(report.draining);
  const roster = report.roster.map((id) => (draining.has(id) ? `${id} (draining)` : id));
  return [
    `cluster as router ${report.id} (${report.router}) sees it:`,
    ...lines,
    ...notes.map((note) => `note: ${note}`),
    "",
    `roster (${roster.length}): ${roster.length === 0 ? "empty" : roster.join(", ")}`,
    `controller leader: ${report.controllerLeader ?? "none known"}`,
    "",
  ].join("\n");
}

export async function statusCommand(
  args: readonly string[],
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const parsed = parse("status", args, { router: { type: "string" }, json: { type: "boolean" } });
  if (parsed.values.help === true) {
    out(statusHelp);
    return 0;
  }
  if (parsed.positionals.length > 0) {
    throw new UsageError(`neuron status: unexpected argument ${JSON.stringify(parsed.positionals[0])}`);
  }
  const router = stringOption(parsed, "router") ?? process.env.NEURON_STATUS ?? "127.0.0.1:7409";
  const address = parseAddress(router);
  if (!address.ok) throw new UsageError(`neuron status: --router: ${address.reason}`);
  const first = await fetchStatus(router, firstTimeoutMs);
  if (!first.ok) {
    err(
      `neuron status: cannot get ${router}/status: ${first.error}; is it a router's [listen] metrics address?`,
    );
    return 1;
  }
  const report = await gather(router, first.status);
  out(parsed.values.json === true ? JSON.stringify(report, null, 2) : formatStatus(report));
  return 0;
}
