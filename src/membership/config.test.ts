// Membership config: valid defaults, the keyring-derived packet budget, one error per bad field.
import { describe, expect, it } from "vitest";
import { aliveMessageBytesMax } from "./codec.ts";
import {
  checkMembershipConfig,
  defaultLanConfig,
  defaultWanConfig,
  type MembershipConfig,
} from "./config.ts";
import { sealOverheadBytes } from "./keyring.ts";

describe("membership config", () => {
  it("has valid LAN and WAN defaults, WAN being slower", () => {
    expect(checkMembershipConfig(defaultLanConfig)).toEqual([]);
    expect(checkMembershipConfig(defaultWanConfig)).toEqual([]);
    expect(defaultWanConfig.probeIntervalMs).toBeGreaterThan(defaultLanConfig.probeIntervalMs);
    expect(defaultWanConfig.probeTimeoutMs).toBeGreaterThan(defaultLanConfig.probeTimeoutMs);
    expect(defaultWanConfig.suspicionMult).toBeGreaterThan(defaultLanConfig.suspicionMult);
    expect(defaultWanConfig.pushPullIntervalMs).toBeGreaterThan(defaultLanConfig.pushPullIntervalMs);
  });

  it("budgets a packet as 1400 bytes minus the keyring's sealing overhead", () => {
    expect(defaultLanConfig.packetBudgetBytes).toBe(1400 - sealOverheadBytes);
  });

  it("names each bad field with its limit", () => {
    const bad: MembershipConfig = {
      ...defaultLanConfig,
      probeIntervalMs: 0,
      indirectChecks: 17,
      suspicionMult: 1.5,
      packetBudgetBytes: aliveMessageBytesMax,
      membersMax: Number.NaN,
    };
    const errors = checkMembershipConfig(bad);
    expect(errors.map((error) => error.field)).toEqual([
      "probeIntervalMs",
      "indirectChecks",
      "suspicionMult",
      "membersMax",
      "packetBudgetBytes",
    ]);
    for (const error of errors) {
      expect(error.tag).toBe("InvalidMembershipConfig");
      expect(error.message).toMatch(
        new RegExp(`^membership\\.${error.field}: must be an integer from \\d+ to \\d+`),
      );
    }
  });

  it("requires the probe timeout to leave half the period for the indirect round", () => {
    const errors = checkMembershipConfig({ ...defaultLanConfig, probeIntervalMs: 300, probeTimeoutMs: 151 });
    expect(errors).toHaveLength(1);
    expect(errors[0]!.field).toBe("probeTimeoutMs");
    expect(errors[0]!.message).toContain("at most half of probeIntervalMs");
  });
});
