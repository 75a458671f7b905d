// "host:port" addresses as people write them in config files and on the command line:
// "127.0.0.1:7402", "localhost:7402", "[::1]:7402". Port 0 means "any free port" when listening.
import type { Address } from "./transport.ts";

export type AddressParse =
  | { readonly ok: true; readonly address: Address }
  | { readonly ok: false; readonly reason: string };

export function parseAddress(text: string): AddressParse {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(text);
  if (match === null) {
    return { ok: false, reason: `${JSON.stringify(text)} is not "host:port" (IPv6 as "[::1]:7402")` };
  }
  const port = Number(match[3]);
  if (port > 65_535) return { ok: false, reason: `port ${port} in ${JSON.stringify(text)} is above 65535` };
  return { ok: true, address: { host: match[1] ?? match[2]!, port } };
}

export function formatAddress(address: Address): string {
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
