import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { generateKey, Keyring, KeyringError, parseKey, sealOverheadBytes } from "./keyring.ts";

const key = () => parseKey(generateKey());

describe("gossip keyring (AES-256-GCM)", () => {
  it("opens what it seals, adding exactly the stated overhead", () => {
    const ring = new Keyring([key()]);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1400 }), (plaintext) => {
        const sealed = ring.seal(plaintext);
        expect(sealed.length).toBe(plaintext.length + sealOverheadBytes);
        expect(ring.open(sealed)).toEqual({ ok: true, plaintext: Buffer.from(plaintext) });
      }),
    );
  });

  it("refuses packets sealed with a key it does not hold", () => {
    const sealed = new Keyring([key()]).seal(Buffer.from("hello"));
    expect(new Keyring([key()]).open(sealed)).toEqual({ ok: false, reason: "authentication-failed" });
  });

  it("refuses any flipped bit, truncation or other version, and never throws", () => {
    const ring = new Keyring([key()]);
    const sealed = ring.seal(Buffer.from("membership"));
    fc.assert(
      fc.property(fc.nat({ max: sealed.length * 8 - 1 }), (bit) => {
        const bad = Buffer.from(sealed);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        expect(ring.open(bad).ok).toBe(false);
      }),
    );
    expect(ring.open(sealed.subarray(0, sealOverheadBytes - 1))).toEqual({ ok: false, reason: "truncated" });
    const other = Buffer.from(sealed);
    other[0] = 9;
    expect(ring.open(other)).toEqual({ ok: false, reason: "unknown-version" });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        expect(ring.open(bytes).ok).toBe(false);
      }),
    );
  });

  it("rotates without a moment where two routers cannot read each other", () => {
    const oldKey = key();
    const newKey = key();
    const a = new Keyring([oldKey]);
    const b = new Keyring([oldKey]);
    const talk = () => a.open(b.seal(Buffer.from("x"))).ok && b.open(a.seal(Buffer.from("y"))).ok;
    a.add(newKey);
    expect(talk()).toBe(true);
    b.add(newKey);
    a.use(newKey);
    expect(talk()).toBe(true);
    b.use(newKey);
    a.remove(oldKey);
    expect(talk()).toBe(true);
    b.remove(oldKey);
    expect(talk()).toBe(true);
    expect(() => a.remove(newKey)).toThrow(KeyringError);
  });

  it("rejects keys that are not 32 bytes of base64", () => {
    expect(() => parseKey("c2hvcnQ=")).toThrow(/32 bytes of base64/);
    expect(() => parseKey("not base64!")).toThrow(KeyringError);
    expect(() => new Keyring([])).toThrow(/at least one key/);
  });
});
