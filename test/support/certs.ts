// Certificates for tests: one cluster CA, a foreign CA, and identities issued on demand.
// Key generation costs a few milliseconds each, so a suite builds one set in beforeAll.
import {
  type Credentials,
  createCertificateAuthority,
  issueCertificate,
  type PeerIdentity,
  type PemPair,
} from "../../src/axon/index.ts";

export interface TestPki {
  readonly ca: PemPair;
  readonly foreignCa: PemPair;
  credentials(identity: PeerIdentity): Promise<Credentials>;
  /** Credentials signed by the foreign CA but trusting our CA. */
  foreign(identity: PeerIdentity): Promise<Credentials>;
  /** Credentials that expired yesterday. */
  expired(identity: PeerIdentity): Promise<Credentials>;
}

export async function makeTestPki(): Promise<TestPki> {
  const ca = await createCertificateAuthority("Test cluster CA");
  const foreignCa = await createCertificateAuthority("Foreign CA");
  const dayMs = 24 * 60 * 60 * 1000;
  return {
    ca,
    foreignCa,
    credentials: async (identity) => ({ ca: ca.cert, ...(await issueCertificate(ca, identity)) }),
    foreign: async (identity) => ({ ca: ca.cert, ...(await issueCertificate(foreignCa, identity)) }),
    expired: async (identity) => ({
      ca: ca.cert,
      ...(await issueCertificate(ca, identity, {
        notBefore: new Date(Date.now() - 10 * dayMs),
        notAfter: new Date(Date.now() - dayMs),
      })),
    }),
  };
}
