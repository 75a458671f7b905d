// Member info limits, and that the copies of axon's id and address rules stay equal to them.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseAddress } from "../axon/address.ts";
import { identityIdPattern } from "../axon/identity.ts";
import { checkAddress, checkMemberInfo, memberIdPattern, metadataBytesMax, sameInfo } from "./member-info.ts";
import type { MemberId, MemberInfo } from "./types.ts";

const base: MemberInfo = {
  id: "r1" as MemberId,
  region: "eu-west",
  gossipAddress: "10.0.0.1:7400",
  addresses: { links: "10.0.0.1:7401", clients: "10.0.0.1:7402" },
  metadata: { zone: "a" },
  version: 0,
};

describe("member info limits", () => {
  it("use the same id rule as axon's certificate identities", () => {
    expect(memberIdPattern.source).toBe(identityIdPattern.source);
  });

  it("read addresses as axon's parseAddress does (within the length limit)", () => {
    const samples = [
      "127.0.0.1:7400",
      "[::1]:7400",
      "localhost:1",
      "host:65536",
      "host",
      ":80",
      "a b:1",
      "[::1]:",
    ];
    for (const sample of samples) {
      const axon = parseAddress(sample);
      expect(checkAddress(sample) === undefined).toBe(axon.ok && axon.address.port <= 65_535);
    }
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (text) => {
        expect(checkAddress(text) === undefined).toBe(parseAddress(text).ok);
      }),
    );
  });

  it("accept a router's usual info and refuse each broken rule with a message", () => {
    expect(checkMemberInfo(base)).toBeUndefined();
    const broken: Partial<MemberInfo>[] = [
      { id: "-r1" as MemberId },
      { region: "" },
      { gossipAddress: "10.0.0.1" },
      { addresses: { Links: "10.0.0.1:1" } },
      { addresses: { a: "x:1", b: "x:1", c: "x:1", d: "x:1", e: "x:1" } },
      { addresses: { links: "nowhere" } },
      { metadata: { "": "x" } },
      { metadata: { big: "x".repeat(metadataBytesMax) } },
      { metadata: Object.fromEntries(Array.from({ length: 17 }, (_, index) => [`k${index}`, ""])) },
      { version: -1 },
      { version: 1.5 },
    ];
    for (const change of broken) {
      expect(checkMemberInfo({ ...base, ...change }), JSON.stringify(change)).toMatch(/./);
    }
  });

  it("compare announcements by content, not by object identity or key order", () => {
    const copy = { ...base, addresses: { clients: "10.0.0.1:7402", links: "10.0.0.1:7401" } };
    expect(sameInfo(base, copy)).toBe(true);
    expect(sameInfo(base, { ...base, metadata: { zone: "b" } })).toBe(false);
    expect(sameInfo(base, { ...base, metadata: {} })).toBe(false);
    expect(sameInfo(base, { ...base, version: 1 })).toBe(false);
  });
});
