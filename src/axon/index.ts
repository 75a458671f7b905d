// Axon: links between routers and clients. One Transport interface; TLS (default), QUIC, and
// the in-memory transport in src/sim. Mutual authentication against the cluster CA.

export { type AddressParse, formatAddress, parseAddress } from "./address.ts";
export { createCertificateAuthority, issueCertificate, type PemPair, type Validity } from "./certificates.ts";
export { type AxonError, AxonFailure } from "./errors.ts";
export {
  checkIdentityId,
  describePeer,
  expectationProblem,
  identityOf,
  type PeerIdentity,
  type Role,
  verifyPeerCertificate,
} from "./identity.ts";
export {
  admit,
  type ByteChannel,
  type ChannelHandler,
  defaultLinkConfig,
  FramedLink,
  type LinkConfig,
  type LinkEnvironment,
  realEnvironment,
  refuseChannel,
} from "./link.ts";
export { defaultQuicConfig, type QuicConfig, type QuicTransportOptions, quicTransport } from "./quic.ts";
export { tlsTransport } from "./tls.ts";
export type {
  Address,
  ConnectOptions,
  Credentials,
  Link,
  LinkHandler,
  Listener,
  ListenOptions,
  RefusedConnection,
  Transport,
  TransportKind,
} from "./transport.ts";
