import { BlockList, isIPv6 } from 'node:net';
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

/** Whether a listen or http host is a loopback address (reachable from this machine only). */
export const isLoopbackHost = (host: string): boolean => /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i.test(host);

export const isDefaultTrustedNetworks = (networks: readonly string[]): boolean =>
  networks.length === DEFAULT_TRUSTED_NETWORKS.length && networks.every((n, i) => n === DEFAULT_TRUSTED_NETWORKS[i]);
