// Certificates for a harness cluster: one cluster CA per cluster, a router certificate per
// router id, client certificates on demand, all written as PEM files into the cluster's temp
// dir for the router configs (`[tls] ca, cert, key`).
// Invariant: every identity is issued by this cluster's CA, so routers of one cluster trust
// each other and its clients, and nothing from another cluster.
// Trap: key generation costs a few milliseconds; it runs when a router is first written, not
// per restart (a restarted router keeps its files).
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Effect } from "effect";
import {
  type Credentials,
  createCertificateAuthority,
  issueCertificate,
  type PeerIdentity,
  type PemPair,
} from "../src/axon/index.ts";

export interface ClusterPki {
  readonly ca: PemPair;
  /** Credentials (CA certificate, certificate, key) for a router or client id. */
  issue(identity: PeerIdentity): Effect.Effect<Credentials>;
}

/** Paths of the PEM files written for one identity. */
export interface CredentialFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Makes a cluster CA. Failures of the crypto library are defects (nothing to act on in a test). */
export const makeClusterPki = (name: string): Effect.Effect<ClusterPki> =>
  Effect.promise(() => createCertificateAuthority(name)).pipe(
    Effect.map((ca) => ({
      ca,
      issue: (identity: PeerIdentity) =>
        Effect.promise(async () => ({ ca: ca.cert, ...(await issueCertificate(ca, identity)) })),
    })),
  );

/** Writes `<dir>/ca.pem`, `<dir>/<name>.pem` and `<dir>/<name>.key` (mode 0600). */
export const writeCredentials = (
  dir: string,
  name: string,
  credentials: Credentials,
): Effect.Effect<CredentialFiles> => {
  const files = { ca: join(dir, "ca.pem"), cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  return Effect.promise(async () => {
    await writeFile(files.ca, credentials.ca);
    await writeFile(files.cert, credentials.cert);
    await writeFile(files.key, credentials.key, { mode: 0o600 });
    return files;
  });
};
