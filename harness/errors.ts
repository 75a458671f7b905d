// The harness's typed errors (STYLE.md "Errors"): each carries what a person needs to act on a
// failed real-process test: which router, what was awaited, how long, and the last lines the
// router printed. `message` is built from the fields, so a rejected `Effect.runPromise` reads
// well in vitest's output without any formatting by the test.
import { Data } from "effect";

interface RouterStartFailedFields {
  readonly id: string;
  /** Why: "exited with code 2 before its ready line", "no ready line within 20000 ms", ... */
  readonly reason: string;
  /** The last lines of the router's stderr (and stdout), oldest first. */
  readonly outputTail: string;
}

/** A router process did not print its ready line: it exited, could not spawn, or ran out of time. */
export class RouterStartFailed extends Data.TaggedError("RouterStartFailed")<
  RouterStartFailedFields & { readonly message: string }
> {
  constructor(fields: RouterStartFailedFields) {
    super({
      ...fields,
      message: `router ${fields.id} did not start: ${fields.reason}${section("router output", fields.outputTail)}`,
    });
  }
}

interface TimeoutFields {
  /** What was awaited, in words: "r3 dead in every survivor's view". */
  readonly what: string;
  readonly elapsedMs: number;
  /** The last check's answer or error, and the state of the cluster when time ran out. */
  readonly detail: string;
}

/** A condition (or a process exit) did not come about before its deadline. */
export class Timeout extends Data.TaggedError("Timeout")<TimeoutFields & { readonly message: string }> {
  constructor(fields: TimeoutFields) {
    super({
      ...fields,
      message: `timed out after ${fields.elapsedMs} ms waiting for ${fields.what}${section("detail", fields.detail)}`,
    });
  }
}

interface StatusFailedFields {
  readonly id: string;
  /** The URL asked, or "" when the router has no metrics address to ask. */
  readonly url: string;
  readonly reason: string;
}

/** GET /status of a router failed: not running, refused, no answer in time, or not the expected JSON. */
export class StatusFailed extends Data.TaggedError("StatusFailed")<
  StatusFailedFields & { readonly message: string }
> {
  constructor(fields: StatusFailedFields) {
    super({
      ...fields,
      message: `GET /status of router ${fields.id}${fields.url === "" ? "" : ` (${fields.url})`} failed: ${fields.reason}`,
    });
  }
}

function section(title: string, body: string): string {
  return body.length === 0 ? "" : `\n--- ${title} ---\n${body}`;
}
