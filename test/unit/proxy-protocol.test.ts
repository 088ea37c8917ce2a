// The PROXY protocol header reader (src/inbound/proxy-protocol.ts): both versions as HAProxy's
// spec writes them, read incrementally and bounded, anything malformed refused.
import { describe, expect, it } from 'vitest';
import { ProxyHeaderError, ProxyHeaderReader, type ProxyHeader } from '../../src/inbound/proxy-protocol.js';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function v2(cmd: number, family: number, addresses: Buffer, tlvs = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(4);
  head[0] = 0x20 | cmd;
  head[1] = family;
  head.writeUInt16BE(addresses.length + tlvs.length, 2);
  return Buffer.concat([SIG, head, addresses, tlvs]);
}

const inet4 = (src: number[], dst: number[], sport: number, dport: number) => {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
};

const inet6 = (src: string, dst: string) => {
  const b = Buffer.alloc(36);
  Buffer.from(src, 'hex').copy(b, 0);
  Buffer.from(dst, 'hex').copy(b, 16);
  b.writeUInt16BE(40000, 32);
  b.writeUInt16BE(25, 34);
  return b;
};

/** Fed whole, and one byte at a time: the same header and the same rest. */
function read(bytes: Buffer): ProxyHeader {
  const whole = new ProxyHeaderReader().push(bytes);
  const r = new ProxyHeaderReader();
  let split: ProxyHeader | null = null;
  for (let i = 0; i < bytes.length && !split; i++) split = r.push(bytes.subarray(i, i + 1));
  // Byte by byte, the header ends at its last byte: what followed comes in later chunks.
  expect(whole).not.toBeNull();
  expect(split).not.toBeNull();
  expect(split!.client).toBe(whole!.client);
  return whole!;
}

const refused = (bytes: Buffer | string) => {
  const r = new ProxyHeaderReader();
  return () => r.push(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'latin1'));
};

describe('PROXY protocol v1', () => {
  it('TCP4 and TCP6 give the source address, and keep what followed', () => {
    const h = read(Buffer.from('PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO mta\r\n'));
    expect(h).toMatchObject({ version: 1, client: '192.0.2.7' });
    expect(h.rest.toString()).toBe('EHLO mta\r\n');
    expect(read(Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n')).client).toBe('2001:db8::7');
  });

  it('UNKNOWN names no client (the connection\'s own address stands)', () => {
    expect(read(Buffer.from('PROXY UNKNOWN\r\n')).client).toBeNull();
    expect(read(Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n')).client).toBeNull();
  });

  it('waits for more while the line is incomplete', () => {
    expect(new ProxyHeaderReader().push(Buffer.from('PROXY TCP4 192.0.2.7'))).toBeNull();
  });

  it('refuses malformed lines', () => {
    expect(refused('EHLO mta.test\r\n')).toThrow(ProxyHeaderError);
    expect(refused('PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n')).toThrow(/fields/);
    expect(refused('PROXY TCP4 2001:db8::7 198.51.100.1 40000 25\r\n')).toThrow(/not IPv4/);
    expect(refused('PROXY TCP6 192.0.2.7 198.51.100.1 40000 25\r\n')).toThrow(/not IPv6/);
    expect(refused('PROXY TCP4 192.0.2.7 198.51.100.1 70000 25\r\n')).toThrow(/port/);
    expect(refused('PROXY UDP4 192.0.2.7 198.51.100.1 1 25\r\n')).toThrow(/unknown/);
    expect(refused('PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\n')).toThrow(/CRLF/);
    expect(refused('PROXY TCP4 192.0.2.7 198.51.100.1 40000 25 ' + 'x'.repeat(80) + '\r\n')).toThrow(/too long/);
  });

  it('is bounded: 107 bytes without a line end is refused without waiting for more', () => {
    expect(refused('PROXY TCP6 ' + '1'.repeat(200))).toThrow(/longer than 107/);
    // 106 bytes may still become a valid line.
    expect(new ProxyHeaderReader().push(Buffer.from('PROXY TCP6 ' + '1'.repeat(95)))).toBeNull();
  });
});

describe('PROXY protocol v2', () => {
  it('PROXY over IPv4 gives the source address; TLVs are skipped; what followed is kept', () => {
    const tlv = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63]); // PP2_TYPE_NOOP
    const h = read(Buffer.concat([v2(1, 0x11, inet4([192, 0, 2, 7], [198, 51, 100, 1], 40000, 465), tlv), Buffer.from('\x16\x03\x01')]));
    expect(h).toMatchObject({ version: 2, client: '192.0.2.7' });
    expect([...h.rest]).toEqual([0x16, 0x03, 0x01]);
  });

  it('PROXY over IPv6, written as Node writes addresses (compressed, IPv4-mapped dotted)', () => {
    expect(read(v2(1, 0x21, inet6('20010db8000000000000000000000007', '20010db8000000000000000000000001'))).client).toBe('2001:db8::7');
    expect(read(v2(1, 0x21, inet6('00000000000000000000ffffc0000207', '00000000000000000000ffffc6336401'))).client).toBe('::ffff:192.0.2.7');
    expect(read(v2(1, 0x21, inet6('20010db8000100000000000100000001', '00000000000000000000000000000001'))).client).toBe('2001:db8:1::1:0:1');
  });

  it('LOCAL (the balancer\'s own health check) and unsupported families name no client', () => {
    expect(read(v2(0, 0x00, Buffer.alloc(0))).client).toBeNull();
    expect(read(v2(1, 0x31, Buffer.alloc(216))).client).toBeNull(); // AF_UNIX
  });

  it('waits for the whole address block', () => {
    const full = v2(1, 0x11, inet4([192, 0, 2, 7], [198, 51, 100, 1], 1, 2));
    expect(new ProxyHeaderReader().push(full.subarray(0, 20))).toBeNull();
  });

  it('refuses malformed headers', () => {
    const bad = (f: (b: Buffer) => void) => {
      const b = v2(1, 0x11, inet4([192, 0, 2, 7], [198, 51, 100, 1], 1, 2));
      f(b);
      return refused(b);
    };
    expect(bad((b) => (b[6] = 0x00))).toThrow(/no PROXY/); // broken signature
    expect(bad((b) => (b[12] = 0x11))).toThrow(/version 1/);
    expect(bad((b) => (b[12] = 0x22))).toThrow(/command 2/);
    expect(refused(v2(1, 0x11, Buffer.alloc(8)))).toThrow(/too short/);
    expect(refused(v2(1, 0x21, Buffer.alloc(20)))).toThrow(/too short/);
  });

  it('is bounded: a declared length over 1024 bytes is refused before it is read', () => {
    const b = Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0xff, 0xff])]);
    expect(refused(b)).toThrow(/65535 bytes, over 1024/);
  });
});
