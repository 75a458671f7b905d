// The cluster CA and the certificates it issues, made with @peculiar/x509 (a well-kept X.509
// library on WebCrypto) rather than hand-written ASN.1. Keys are ECDSA P-256, which node:tls
// (OpenSSL) and @matrixai/quic (BoringSSL) both accept. Every issued certificate carries its
// identity as a URI SAN (identity.ts) and is good for both TLS client and server use, since a
// router dials and accepts links.
// @peculiar/x509 resolves its ASN.1 handlers through tsyringe, which needs this polyfill first.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { checkIdentityId, identityUri, type PeerIdentity } from "./identity.ts";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const dayMs = 24 * 60 * 60 * 1000;

export interface PemPair {
  /** The certificate, PEM. */
  readonly cert: string;
  /** The PKCS#8 private key, PEM. Keep it secret. */
  readonly key: string;
}

export interface Validity {
  /** When the certificate becomes valid; default: one hour ago (tolerates clock skew). */
  readonly notBefore?: Date;
  /** When it expires; default: `days` after now. */
  readonly notAfter?: Date;
  /** Lifetime in days when `notAfter` is not given. */
  readonly days?: number;
}

function window(validity: Validity, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return {
    notBefore: validity.notBefore ?? new Date(now - 60 * 60 * 1000),
    notAfter: validity.notAfter ?? new Date(now + (validity.days ?? defaultDays) * dayMs),
  };
}

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

async function exportKey(key: CryptoKey): Promise<string> {
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(pkcs8, "PRIVATE KEY");
}

function serial(): string {
  // A positive 16-byte serial (RFC 5280 §4.1.2.2): clear the top bit.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString("hex");
}

/** Makes a self-signed cluster CA. */
export async function createCertificateAuthority(
  name = "Neuron cluster CA",
  validity: Validity = {},
): Promise<PemPair> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    ...window(validity, 3650),
    keys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString("pem"), key: await exportKey(keys.privateKey) };
}

/** Issues a certificate for a router or a client, signed by `ca`. */
export async function issueCertificate(
  ca: PemPair,
  identity: PeerIdentity,
  validity: Validity = {},
): Promise<PemPair> {
  const problem = checkIdentityId(identity.id);
  if (problem !== undefined) throw new Error(problem);
  const caCert = new x509.X509Certificate(ca.cert);
  const caKey = await webcrypto.subtle.importKey(
    "pkcs8",
    x509.PemConverter.decode(ca.key)[0]!,
    algorithm,
    false,
    ["sign"],
  );
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${identity.id}, OU=${identity.role}`,
    issuer: caCert.subject,
    ...window(validity, 825),
    publicKey: keys.publicKey,
    signingKey: caKey as CryptoKey,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([
        { type: "url", value: identityUri(identity) },
        { type: "dns", value: "localhost" },
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString("pem"), key: await exportKey(keys.privateKey) };
}
