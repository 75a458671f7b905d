// Gossip encryption: every UDP packet is sealed with AES-256-GCM under the cluster key, so
// only members holding a key can read or forge gossip (DESIGN.md, Security). Shell-side code
// (node:crypto); the membership core only sees plaintext and a byte budget.
//
// Sealed packet: u8 version | 12-byte random nonce | ciphertext | 16-byte tag. The version
// byte is authenticated (additional data), so it cannot be changed in flight.
//
// Key rotation, as memberlist does it: (1) add the new key on every router (it is tried for
// opening, not used for sealing), (2) make it primary everywhere, (3) remove the old one.
// At every step each router can open what any other seals.
//
// Invariant: the keyring is never empty; the primary key is one of its keys.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

export const sealVersion = 1;
const nonceBytes = 12;
const tagBytes = 16;
/** Bytes a sealed packet adds to its plaintext. */
export const sealOverheadBytes = 1 + nonceBytes + tagBytes;
export const keyBytes = 32;

export type OpenResult =
  | { readonly ok: true; readonly plaintext: Buffer }
  | { readonly ok: false; readonly reason: "truncated" | "unknown-version" | "authentication-failed" };

export class KeyringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KeyringError";
  }
}

/** Parses a base64 key (as in router.toml), checking its length. */
export function parseKey(text: string): Buffer {
  const key = Buffer.from(text, "base64");
  if (key.length !== keyBytes || key.toString("base64") !== text.trim()) {
    throw new KeyringError(
      `a gossip key must be ${keyBytes} bytes of base64 (make one with \`neuron keygen\`)`,
    );
  }
  return key;
}

export function generateKey(): string {
  return randomBytes(keyBytes).toString("base64");
}

export class Keyring {
  /** keys[0] is the primary (sealing) key. */
  private keys: Buffer[];

  constructor(keys: readonly Buffer[]) {
    if (keys.length === 0) throw new KeyringError("the gossip keyring needs at least one key");
    for (const key of keys)
      if (key.length !== keyBytes) throw new KeyringError(`a gossip key must be ${keyBytes} bytes`);
    this.keys = [...keys];
  }

  get size(): number {
    return this.keys.length;
  }

  /** Adds a key for opening only (rotation step 1). */
  add(key: Buffer): void {
    if (key.length !== keyBytes) throw new KeyringError(`a gossip key must be ${keyBytes} bytes`);
    if (!this.keys.some((known) => known.equals(key))) this.keys.push(key);
  }

  /** Makes a known key the primary (rotation step 2). */
  use(key: Buffer): void {
    const index = this.keys.findIndex((known) => known.equals(key));
    if (index < 0) throw new KeyringError("cannot make an unknown key primary; add it first");
    this.keys = [this.keys[index]!, ...this.keys.filter((_, other) => other !== index)];
  }

  /** Removes a key that is not the primary (rotation step 3). */
  remove(key: Buffer): void {
    if (this.keys[0]!.equals(key))
      throw new KeyringError("cannot remove the primary key; make another key primary first");
    this.keys = this.keys.filter((known) => !known.equals(key));
  }

  seal(plaintext: Uint8Array): Buffer {
    const header = Buffer.from([sealVersion]);
    const nonce = randomBytes(nonceBytes);
    const cipher = createCipheriv("aes-256-gcm", this.keys[0]!, nonce);
    cipher.setAAD(header);
    const body = cipher.update(plaintext);
    cipher.final();
    return Buffer.concat([header, nonce, body, cipher.getAuthTag()]);
  }

  /** Opens a sealed packet with any key of the ring. Never throws. */
  open(packet: Uint8Array): OpenResult {
    if (packet.length < sealOverheadBytes) return { ok: false, reason: "truncated" };
    if (packet[0] !== sealVersion) return { ok: false, reason: "unknown-version" };
    const header = packet.subarray(0, 1);
    const nonce = packet.subarray(1, 1 + nonceBytes);
    const body = packet.subarray(1 + nonceBytes, packet.length - tagBytes);
    const tag = packet.subarray(packet.length - tagBytes);
    for (const key of this.keys) {
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, nonce);
        decipher.setAAD(header);
        decipher.setAuthTag(tag);
        const plaintext = Buffer.concat([decipher.update(body), decipher.final()]);
        return { ok: true, plaintext };
      } catch {
        // Wrong key or forged packet: try the next key.
      }
    }
    return { ok: false, reason: "authentication-failed" };
  }
}
