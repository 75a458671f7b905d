// The membership shell in-process over real sockets: UDP gossip and push-pull over TLS, on
// IPv6 loopback as well as IPv4 (issue 3, item 3), and the bounded, counted drops of its shell.
import { createSocket } from "node:dgram";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Credentials } from "../src/axon/index.ts";
import { defaultLanConfig, memberId } from "../src/membership/index.ts";
import { generateKey, Keyring, parseKey } from "../src/membership/keyring.ts";
import { MembershipService } from "../src/membership/service.ts";
import { listenSync } from "../src/membership/sync.ts";
import { makeTestPki, type TestPki } from "./support/certs.ts";
import { waitFor } from "./support/processes.ts";

let pki: TestPki;
const services: MembershipService[] = [];
const key = parseKey(generateKey());

beforeAll(async () => {
  pki = await makeTestPki();
});

afterEach(async () => {
  for (const service of services.splice(0)) await service.stop();
});

async function start(id: string, host: string, credentials: Credentials): Promise<MembershipService> {
  const service = await MembershipService.start({
    config: defaultLanConfig,
    self: { id: memberId(id), region: "test", addresses: {}, metadata: {}, version: 0 },
    bind: { host, port: 0 },
    keyring: new Keyring([key]),
    sync: (bound, serve) =>
      listenSync({
        bound,
        credentials,
        serve,
        payloadMaxBytes: defaultLanConfig.pushPullBytesMax + 64,
        exchangeTimeoutMs: defaultLanConfig.pushPullTimeoutMs,
        agent: id,
      }),
    onEvent: () => {},
  });
  services.push(service);
  return service;
}

describe.each([
  ["IPv4", "127.0.0.1"],
  ["IPv6", "::1"],
])("membership service over %s loopback", (_name, host) => {
  it("two routers join through a seed and see each other alive", async () => {
    const a = await start("a", host, await pki.credentials({ role: "router", id: "a" }));
    const b = await start("b", host, await pki.credentials({ role: "router", id: "b" }));
    expect(a.core.self().gossipAddress).toBe(
      host.includes(":") ? `[${host}]:${a.address.port}` : `${host}:${a.address.port}`,
    );
    b.join([a.core.self().gossipAddress]);
    const bothAlive = (service: MembershipService) =>
      ["a", "b"].every((id) =>
        service.members().some((member) => member.id === id && member.state === "alive"),
      );
    await waitFor(() => bothAlive(a) && bothAlive(b), "a and b to see each other");
    await waitFor(() => a.stats().datagramsIn > 0 && b.stats().datagramsIn > 0, "gossip over UDP both ways");
  });
});

describe("membership service shell", () => {
  it("drops and counts datagrams that do not open with the cluster key, changing nothing", async () => {
    const a = await start("a", "127.0.0.1", await pki.credentials({ role: "router", id: "a" }));
    const before = a.members().map((member) => `${member.id}:${member.state}:${member.incarnation}`);
    const socket = createSocket("udp4");
    const foreign = new Keyring([parseKey(generateKey())]);
    const garbage = [Buffer.from("hello"), Buffer.alloc(2000, 7), foreign.seal(Buffer.from("forged"))];
    for (const datagram of garbage) {
      await new Promise<void>((resolve) =>
        socket.send(datagram, a.address.port, "127.0.0.1", () => resolve()),
      );
    }
    await waitFor(() => a.stats().openFailed === garbage.length, "three refused datagrams");
    socket.close();
    expect(a.members().map((member) => `${member.id}:${member.state}:${member.incarnation}`)).toEqual(before);
  });
});
