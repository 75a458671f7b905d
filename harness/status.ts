// GET /status of a router (src/router/status.ts) as an Effect, checked enough that a test can
// read `members` without guarding every field. The shape mirrors Router.status().
// Trap: a router answers /status only once it is ready and until it stops; a request to a
// router being killed fails with StatusFailed, which `waitUntil` treats as "not yet".
import { Effect } from "effect";
import { StatusFailed } from "./errors.ts";

export type MemberState = "alive" | "suspect" | "dead" | "left";

export interface StatusMember {
  readonly id: string;
  readonly state: MemberState;
  readonly region: string;
  readonly incarnation: number;
  /** Its gossip address, "host:port". */
  readonly gossip: string;
  /** Its other addresses by name ("clients"). */
  readonly addresses: Readonly<Record<string, string>>;
}

export interface RouterStatus {
  readonly id: string;
  readonly region: string;
  readonly version: string;
  readonly clients: number;
  readonly subscriptions: number;
  readonly counters: Readonly<Record<string, number>>;
  /** The router's membership view, itself included. */
  readonly members: readonly StatusMember[];
  /** Gossip counters (MembershipStats); absent when gossip is off. */
  readonly membership?: Readonly<Record<string, unknown>>;
}

/** A status request's deadline: a loopback answer takes milliseconds; 2 s means the router is stuck. */
export const statusTimeoutMs = 2000;

export const fetchStatus = (
  id: string,
  metrics: string,
  timeoutMs = statusTimeoutMs,
): Effect.Effect<RouterStatus, StatusFailed> => {
  const url = `http://${metrics}/status`;
  const failed = (reason: string) => new StatusFailed({ id, url, reason });
  return Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, { signal });
      const text = await response.text();
      if (!response.ok) throw new Error(`HTTP ${response.status}: ${text.slice(0, 200)}`);
      return JSON.parse(text) as unknown;
    },
    catch: (error) => failed(describeError(error)),
  }).pipe(
    Effect.timeoutOrElse({
      duration: timeoutMs,
      orElse: () => Effect.fail(failed(`no answer within ${timeoutMs} ms`)),
    }),
    Effect.flatMap((body) => {
      const problem = checkStatus(body);
      return problem === undefined ? Effect.succeed(body as RouterStatus) : Effect.fail(failed(problem));
    }),
  );
};

/** The state `status` gives member `id`, or undefined if it does not know it. */
export function memberState(status: RouterStatus, id: string): MemberState | undefined {
  return status.members.find((member) => member.id === id)?.state;
}

function checkStatus(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null) return "the answer is not a JSON object";
  const status = body as { id?: unknown; members?: unknown };
  if (typeof status.id !== "string") return "the answer has no id";
  if (!Array.isArray(status.members)) return "the answer has no members list";
  for (const member of status.members as unknown[]) {
    const fields = member as { id?: unknown; state?: unknown } | null;
    if (typeof fields?.id !== "string" || typeof fields.state !== "string")
      return `a member without id or state: ${JSON.stringify(member)}`;
  }
  return undefined;
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  // fetch wraps the socket error ("fetch failed"); the cause says ECONNREFUSED and the like.
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
}
