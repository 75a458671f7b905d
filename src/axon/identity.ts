// Peer identity from certificates. Every certificate the cluster CA issues names exactly one
// identity in a URI subject alternative name: `urn:neuron:router:<id>` or
// `urn:neuron:client:<id>`. That URI, not the host name, is what a link reports as its peer
// (DESIGN.md: a certificate's identity must match the router id it claims).
//
// `verifyPeerCertificate` checks a certificate against the CA with node:crypto alone,
// synchronously, at a given time: the in-memory transport uses it with the simulated clock,
// and it gives every transport the same wording for the same fault.
import { X509Certificate } from "node:crypto";

export type Role = "router" | "client";

export interface PeerIdentity {
  readonly role: Role;
  readonly id: string;
}

/** Router and client ids: 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit. */
export const identityIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkIdentityId(id: string): string | undefined {
  return identityIdPattern.test(id)
    ? undefined
    : `id ${JSON.stringify(id)} must be 1-64 characters of letters, digits, ".", "_" or "-", starting with a letter or digit`;
}

export function identityUri(identity: PeerIdentity): string {
  return `urn:neuron:${identity.role}:${identity.id}`;
}

export function describePeer(identity: PeerIdentity): string {
  return `${identity.role} ${identity.id}`;
}

/** Reads the identity from a certificate's subject alternative names, if it has exactly one. */
export function identityOf(certificate: X509Certificate): PeerIdentity | undefined {
  const names = certificate.subjectAltName?.split(", ") ?? [];
  const found: PeerIdentity[] = [];
  for (const name of names) {
    const match = /^URI:urn:neuron:(router|client):(.+)$/.exec(name);
    if (match && checkIdentityId(match[2]!) === undefined)
      found.push({ role: match[1] as Role, id: match[2]! });
  }
  return found.length === 1 ? found[0] : undefined;
}

export type CertificateCheck =
  | { readonly ok: true; readonly identity: PeerIdentity }
  | { readonly ok: false; readonly reason: string };

/** Checks that `certificatePem` was signed by `caPem`, is valid at `wallMs`, and names one identity. */
export function verifyPeerCertificate(
  certificatePem: string | undefined,
  caPem: string,
  wallMs: number,
): CertificateCheck {
  if (certificatePem === undefined || certificatePem.length === 0) {
    return { ok: false, reason: "peer presented no certificate" };
  }
  let certificate: X509Certificate;
  let ca: X509Certificate;
  try {
    certificate = new X509Certificate(certificatePem);
    ca = new X509Certificate(caPem);
  } catch (error) {
    return { ok: false, reason: `certificate does not parse: ${(error as Error).message}` };
  }
  if (!certificate.checkIssued(ca) || !certificate.verify(ca.publicKey)) {
    return { ok: false, reason: "certificate is not signed by the cluster CA (unknown CA)" };
  }
  if (wallMs < Date.parse(certificate.validFrom)) {
    return { ok: false, reason: `certificate is not yet valid (valid from ${certificate.validFrom})` };
  }
  if (wallMs > Date.parse(certificate.validTo)) {
    return { ok: false, reason: `certificate has expired (valid until ${certificate.validTo})` };
  }
  const identity = identityOf(certificate);
  if (identity === undefined) {
    return { ok: false, reason: "certificate names no Neuron identity (urn:neuron:<role>:<id>)" };
  }
  return { ok: true, identity };
}

/** Why a dialled peer is not the one expected, or undefined. */
export function expectationProblem(
  peer: PeerIdentity,
  role: Role,
  id: string | undefined,
): string | undefined {
  if (peer.role === role && (id === undefined || peer.id === id)) return undefined;
  return `expected ${role}${id === undefined ? "" : ` ${id}`}, but the peer's certificate is for ${describePeer(peer)}`;
}
