// The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a TCP balancer sends first on
// each connection, naming the client it accepted. server.ts reads it before the session starts,
// on listeners configured for it, from the balancers' addresses only.
//
// Hand-written, not a library: the header is a few fixed fields, and what matters is how it is
// read off a socket an untrusted peer may feed — incrementally (it may arrive split across
// chunks), bounded (v1: 107 bytes, v2: MAX_V2_LENGTH), refusing anything malformed instead of
// guessing. The npm parsers (proxy-protocol-js) take a complete buffer and leave the reading,
// the bounds and the deadline to the caller, which is most of the work; proxywrap-style modules
// patch net.Server. The deadline is server.ts's.

import { isIPv4, isIPv6 } from 'node:net';

/** v1: "PROXY TCP6 <39> <39> 65535 65535\r\n" is the longest possible line (the spec's 107). */
const V1_MAX = 107;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/**
 * Address block and TLVs after v2's 16 fixed bytes. Balancers add a few TLVs (AWS: the VPC
 * endpoint id; HAProxy: ALPN, SSL details when asked) — far under this.
 */
const MAX_V2_LENGTH = 1024;

export class ProxyHeaderError extends Error {}

/**
 * The header read: `client` is the client's address the balancer names, or null when it names
 * none (v2 LOCAL — the balancer's own health check — v1 UNKNOWN, or a family other than TCP
 * over IPv4/IPv6): then the connection's own address stands. `rest` is what followed the header.
 */
export interface ProxyHeader {
  version: 1 | 2;
  client: string | null;
  rest: Buffer;
}

/** Feed it the connection's first chunks until it returns a header; it throws ProxyHeaderError on anything else. */
export class ProxyHeaderReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): ProxyHeader | null {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const b = this.buf;
    if (b[0] === V1_PREFIX[0]) return readV1(b);
    if (b[0] === V2_SIGNATURE[0]) return readV2(b);
    throw new ProxyHeaderError('no PROXY protocol header');
  }
}

function startsLike(b: Buffer, prefix: Buffer): boolean {
  const n = Math.min(b.length, prefix.length);
  return b.subarray(0, n).equals(prefix.subarray(0, n));
}

function readV1(b: Buffer): ProxyHeader | null {
  if (!startsLike(b, V1_PREFIX)) throw new ProxyHeaderError('no PROXY protocol header');
  const lf = b.indexOf(0x0a);
  if (lf === -1) {
    if (b.length >= V1_MAX) throw new ProxyHeaderError(`PROXY v1 line longer than ${V1_MAX} bytes`);
    return null;
  }
  if (lf + 1 > V1_MAX || b[lf - 1] !== 0x0d) throw new ProxyHeaderError('PROXY v1 line malformed (too long, or not ended by CRLF)');
  const rest = b.subarray(lf + 1);
  const fields = b.toString('latin1', 0, lf - 1).split(' ');
  const proto = fields[1] ?? '';
  if (proto === 'UNKNOWN') return { version: 1, client: null, rest };
  if (fields.length !== 6) throw new ProxyHeaderError('PROXY v1 line malformed (fields)');
  const [, , src, dst, sport, dport] = fields as [string, string, string, string, string, string];
  const isIp = proto === 'TCP4' ? isIPv4 : proto === 'TCP6' ? isIPv6 : null;
  if (!isIp) throw new ProxyHeaderError(`PROXY v1 protocol ${proto.slice(0, 10)} unknown`);
  if (!isIp(src) || !isIp(dst)) throw new ProxyHeaderError(`PROXY v1 address not ${proto === 'TCP4' ? 'IPv4' : 'IPv6'}`);
  if (!isPort(sport) || !isPort(dport)) throw new ProxyHeaderError('PROXY v1 port malformed');
  return { version: 1, client: src, rest };
}

const isPort = (p: string) => /^(0|[1-9]\d{0,4})$/.test(p) && Number(p) <= 65535;

function readV2(b: Buffer): ProxyHeader | null {
  if (!startsLike(b, V2_SIGNATURE)) throw new ProxyHeaderError('no PROXY protocol header');
  if (b.length < 16) return null;
  const verCmd = b[12]!;
  if (verCmd >> 4 !== 2) throw new ProxyHeaderError(`PROXY v2 version ${verCmd >> 4} unknown`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) throw new ProxyHeaderError(`PROXY v2 command ${cmd} unknown`);
  const length = b.readUInt16BE(14);
  if (length > MAX_V2_LENGTH) throw new ProxyHeaderError(`PROXY v2 header of ${length} bytes, over ${MAX_V2_LENGTH}`);
  if (b.length < 16 + length) return null;
  const rest = b.subarray(16 + length);
  if (cmd === 0) return { version: 2, client: null, rest }; // LOCAL: the balancer's own connection
  const family = b[13]!;
  if (family === 0x11) {
    if (length < 12) throw new ProxyHeaderError('PROXY v2 IPv4 address block too short');
    return { version: 2, client: `${b[16]}.${b[17]}.${b[18]}.${b[19]}`, rest };
  }
  if (family === 0x21) {
    if (length < 36) throw new ProxyHeaderError('PROXY v2 IPv6 address block too short');
    return { version: 2, client: ipv6(b.subarray(16, 32)), rest };
  }
  // UNSPEC, UNIX sockets, datagrams: nothing to use; the connection's own address stands.
  return { version: 2, client: null, rest };
}

/** 16 bytes as an IPv6 address in the form Node gives remoteAddress (RFC 5952). */
function ipv6(bytes: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  // IPv4-mapped, written as Node writes a dual-stack socket's IPv4 client.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt === -1) return hex.join(':');
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`;
}
