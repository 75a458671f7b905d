// Errors of links. Each carries a sentence a person can act on; `AuthenticationFailed`
// also says which side refused and why (unknown CA, expired, no certificate, wrong role).
import type { ErrorCode, WireError } from "../wire/index.ts";

export type AxonError =
  | { readonly tag: "AuthenticationFailed"; readonly message: string }
  | { readonly tag: "ConnectFailed"; readonly message: string }
  | { readonly tag: "HandshakeTimeout"; readonly message: string }
  | { readonly tag: "PeerClosed"; readonly message: string; readonly code: ErrorCode }
  | { readonly tag: "ProtocolError"; readonly message: string; readonly wire?: WireError }
  | { readonly tag: "LinkClosed"; readonly message: string };

/** An AxonError as a thrown/rejected value, so `await` users get a stack and `instanceof`. */
export class AxonFailure extends Error {
  readonly error: AxonError;

  constructor(error: AxonError) {
    super(error.message);
    this.error = error;
    this.name = error.tag;
  }
}
