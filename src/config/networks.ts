import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import { DEFAULT_TRUSTED_NETWORKS } from './schema.js';

/** `inbound.trusted_networks` (addresses and CIDR blocks, as the schema checked them) as a BlockList. */
export function networkList(networks: readonly string[]): BlockList {
  const list = new BlockList();
  for (const net of networks) {
    const [addr, bits] = net.split('/') as [string, string | undefined];
    const type = isIPv6(addr) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return list;
}

/** Whether a client's address (as a socket gives it) is in `list`. */
export function addressIn(list: BlockList, address: string): boolean {
  // IPv4 clients on a dual-stack socket appear as ::ffff:a.b.c.d.
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIPv4(v4)) return list.check(v4, 'ipv4');
  return isIPv6(address) && list.check(address, 'ipv6');
}

/**
 * Whether `host` is a loopback address, judged as an address: 127.0.0.0/8, ::1, an IPv4-mapped
 * ::ffff:127.x, or the name `localhost`. `127.attacker.example` is a name, not loopback.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  const kind = isIP(h);
  if (kind === 4) return h.split('.')[0] === '127';
  if (kind === 6) {
    if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
    const mapped = /^(?:0:0:0:0:0|):ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h.replace(/^::/, ':'));
    return mapped ? isLoopbackHost(mapped[1]!) : false;
  }
  return false;
}

export const isDefaultTrustedNetworks = (networks: readonly string[]): boolean =>
  networks.length === DEFAULT_TRUSTED_NETWORKS.length && networks.every((n, i) => n === DEFAULT_TRUSTED_NETWORKS[i]);
