// ClientSession's Leader frames, one rule a test: a publish or declaration another router
// answered as the partition's leader is followed by a Leader frame naming it, with its address
// for the link's transport; the same leader is named again only after leaderRenameMs (the
// client still sending the long way means it lost or never got its link), a new one at once;
// nothing when this router answered itself or the leader's address is unknown.
//
// The link and the region are fakes: the link records frames, the region answers publishes
// with the outcome the test sets. Time is a SimClock moved by hand; microtasks are settled.
import { describe, expect, it } from "vitest";
import type { Link, TransportKind } from "../axon/index.ts";
import { partitionOf } from "../partitions/index.ts";
import { SimClock, settleMicrotasks } from "../sim/index.ts";
import type { Frame } from "../wire/index.ts";
import { defaultLimits } from "./config.ts";
import type { LocalDelivery } from "./local-delivery.ts";
import type { Outcome } from "./outcome.ts";
import type { Region } from "./region.ts";
import { ClientSession, leaderRenameMs } from "./session.ts";

function setup(transport: TransportKind = "tls") {
  const clock = new SimClock();
  const sent: Frame[] = [];
  const link = {
    transport,
    closed: false,
    bufferedBytes: 0,
    send: (frame: Frame) => {
      sent.push(frame);
      return { ok: true, bytes: 0 };
    },
    close: () => {},
  } as unknown as Link;
  let outcome: Outcome = { ok: true, by: "r2" };
  const region = {
    publish: () => Promise.resolve(outcome),
    declareTopic: () => Promise.resolve(outcome),
  } as unknown as Region;
  const addresses: Record<string, Partial<Record<TransportKind, string>>> = {
    r2: { tls: "10.0.0.2:7402", quic: "10.0.0.2:7403" },
    r3: { tls: "10.0.0.3:7402" },
  };
  const session = new ClientSession(
    link,
    {} as LocalDelivery,
    region,
    defaultLimits,
    { published: 0, delivered: 0, refused: 0, slowConsumers: 0 },
    (router, kind) => addresses[router]?.[kind] ?? null,
    clock,
  );
  let requestId = 0;
  const publish = async (topic = "orders") => {
    requestId += 1;
    session.frame({
      kind: "Publish",
      requestId,
      topic,
      payload: new Uint8Array([1]),
      headers: {},
      producerId: "p",
      sequence: requestId,
      ackedSequence: requestId - 1,
    });
    await settleMicrotasks();
  };
  const leaders = () => sent.filter((frame) => frame.kind === "Leader");
  return {
    clock,
    publish,
    leaders,
    answer: (next: Outcome) => {
      outcome = next;
    },
    declare: async (topic: string) => {
      requestId += 1;
      session.frame({ kind: "DeclareTopic", requestId, topic, topicKind: "persistent" });
      await settleMicrotasks();
    },
  };
}

describe("client session: naming partition leaders", () => {
  it("a publish another router answered as leader is followed by a Leader frame with its client address", async () => {
    const s = setup();
    await s.publish();
    expect(s.leaders()).toEqual([
      { kind: "Leader", partition: partitionOf("orders"), router: "r2", address: "10.0.0.2:7402" },
    ]);
  });

  it("names the address of the link's own transport", async () => {
    const s = setup("quic");
    await s.publish();
    expect(s.leaders().map((frame) => (frame as { address: string }).address)).toEqual(["10.0.0.2:7403"]);
  });

  it("names the same leader again only after leaderRenameMs, a new one at once", async () => {
    const s = setup();
    await s.publish();
    await s.publish();
    expect(s.leaders()).toHaveLength(1);
    s.clock.advance(leaderRenameMs - 1);
    await s.publish();
    expect(s.leaders()).toHaveLength(1);
    s.clock.advance(1);
    await s.publish();
    expect(s.leaders()).toHaveLength(2);
    s.answer({ ok: true, by: "r3" });
    await s.publish();
    expect(s.leaders().map((frame) => (frame as { router: string }).router)).toEqual(["r2", "r2", "r3"]);
  });

  it("a declaration answered elsewhere names the leader too", async () => {
    const s = setup();
    await s.declare("ledger");
    expect(s.leaders()).toMatchObject([{ partition: partitionOf("ledger"), router: "r2" }]);
  });

  it("names nobody when this router answered itself, the request failed, or the leader's address is unknown", async () => {
    const s = setup();
    s.answer({ ok: true });
    await s.publish();
    s.answer({ ok: false, code: "UnknownTopic", message: "no such topic" });
    await s.publish();
    s.answer({ ok: true, by: "r9" });
    await s.publish();
    expect(s.leaders()).toEqual([]);
  });
});
