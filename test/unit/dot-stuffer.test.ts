import { describe, expect, it } from 'vitest';
import { DotStuffer, dotStuff } from '../../src/smtp/dot-stuffer.js';
import { prng } from '../helpers/random.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const s = (buf: Buffer): string => buf.toString('latin1');

function encodeChunks(chunks: string[]): string {
  const st = new DotStuffer();
  const parts = chunks.map((c) => st.push(b(c)));
  parts.push(st.end());
  return s(Buffer.concat(parts));
}

/** What the input must become: every line end CRLF, and a final CRLF on a non-empty body. */
function normalise(input: string): string {
  const out = input.replace(/\r\n|\r|\n/g, '\r\n');
  return out === '' || out.endsWith('\r\n') ? out : out + '\r\n';
}

/**
 * The receiving server (RFC 5321 §4.5.2): DATA ends at the first line that is a single ".";
 * a leading dot of any other line is removed. Returns the message and where DATA ended.
 */
function serverDecode(wire: string): { message: string; endsAt: number } {
  const endsAt = wire.startsWith('.\r\n') ? 3 : wire.indexOf('\r\n.\r\n') + 5;
  if (endsAt === 4) throw new Error('no terminator');
  const body = wire.startsWith('.\r\n') ? '' : wire.slice(0, endsAt - 3);
  const message = body
    .split('\r\n')
    .map((line) => (line.startsWith('.') ? line.slice(1) : line))
    .join('\r\n');
  return { message, endsAt };
}

function assertWireSafe(input: string, wire: string): void {
  // Only CRLF line ends on the wire: no bare CR, no bare LF.
  expect(/\r(?!\n)|(?<!\r)\n/.test(wire)).toBe(false);
  const { message, endsAt } = serverDecode(wire);
  // Exactly one end of DATA, and it is the real end: nothing can be smuggled behind it.
  expect(endsAt).toBe(wire.length);
  expect(message).toBe(normalise(input));
}

// Payloads from the SMTP smuggling research (SEC Consult, Dec 2023) and their variants: each
// tries to end DATA early so that the rest becomes commands on our authenticated session.
const SMUGGLED = 'MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<x@y>\r\nDATA\r\nspoofed\r\n';
const SMUGGLING = ['\n.\n', '\n.\r\n', '\r\n.\n', '\r.\r', '\r\n.\r', '\r.\r\n', '\r.\n', '\n.\r', '\r\n.\r\n'].map(
  (end) => `Subject: hi\r\n\r\nhello${end}${SMUGGLED}`,
);

describe('DotStuffer: table', () => {
  const table: Array<[string, string]> = [
    ['', '.\r\n'],
    ['a\r\nb\r\n', 'a\r\nb\r\n.\r\n'],
    ['a', 'a\r\n.\r\n'],
    ['.', '..\r\n.\r\n'],
    ['.\r\n', '..\r\n.\r\n'],
    ['..x\r\n', '...x\r\n.\r\n'],
    ['a\r\n.b\r\n.\r\n', 'a\r\n..b\r\n..\r\n.\r\n'],
    ['a\nb', 'a\r\nb\r\n.\r\n'],
    ['a\rb', 'a\r\nb\r\n.\r\n'],
    ['a\r', 'a\r\n.\r\n'],
    ['a\n', 'a\r\n.\r\n'],
    ['\r\n\r\n', '\r\n\r\n.\r\n'],
    ['a\r\r\nb', 'a\r\n\r\nb\r\n.\r\n'],
    ['a\n\rb', 'a\r\n\r\nb\r\n.\r\n'],
    ['\r', '\r\n.\r\n'],
    ['\n', '\r\n.\r\n'],
    ['\n.', '\r\n..\r\n.\r\n'],
    ['x\n.\nMAIL FROM:<e>\n', 'x\r\n..\r\nMAIL FROM:<e>\r\n.\r\n'],
    ['x\n.\r\n', 'x\r\n..\r\n.\r\n'],
    ['x\r\n.\n', 'x\r\n..\r\n.\r\n'],
    ['x\r.\r', 'x\r\n..\r\n.\r\n'],
    ['x\r\n.\r', 'x\r\n..\r\n.\r\n'],
    ['x\r\n.\r\nMAIL', 'x\r\n..\r\nMAIL\r\n.\r\n'],
    ['caf\xe9 \xff\x00\r\n', 'caf\xe9 \xff\x00\r\n.\r\n'],
  ];
  it.each(table)('%j', (input, wire) => {
    expect(encodeChunks([input])).toBe(wire);
    assertWireSafe(input, wire);
  });

  it('gives the same bytes for every split of every table input into two and three chunks', () => {
    for (const [input, wire] of table) {
      for (let i = 0; i <= input.length; i++) {
        expect(encodeChunks([input.slice(0, i), input.slice(i)])).toBe(wire);
        for (let j = i; j <= input.length; j++) {
          expect(encodeChunks([input.slice(0, i), input.slice(i, j), input.slice(j)])).toBe(wire);
        }
      }
    }
  });

  it('smuggling payloads become one message whose dot line is stuffed, at every split point', () => {
    for (const input of SMUGGLING) {
      const whole = encodeChunks([input]);
      assertWireSafe(input, whole);
      expect(whole.indexOf('\r\n.\r\n')).toBe(whole.length - 5);
      expect(whole).toContain('\r\n..\r\n');
      for (let i = 0; i <= input.length; i++) {
        expect(encodeChunks([input.slice(0, i), input.slice(i)])).toBe(whole);
      }
      // Byte by byte: the worst segmentation an attacker can force.
      expect(encodeChunks([...input])).toBe(whole);
    }
  });
});

describe('DotStuffer: properties', () => {
  const ALPHABET = ['.', '.', '.', '\r', '\r', '\n', '\n', '\r\n', '\r\n', 'a', 'b', ' ', '\xff', 'MAIL FROM:<a@b>'];

  it('for random bodies split at random points: output equals the unsplit output, and the wire is safe', () => {
    const rand = prng(0x5eed); // seeded, so a failure can be replayed
    for (let n = 0; n < 3000; n++) {
      const len = Math.floor(rand() * 40);
      let input = '';
      for (let k = 0; k < len; k++) input += ALPHABET[Math.floor(rand() * ALPHABET.length)]!;
      const whole = encodeChunks([input]);
      assertWireSafe(input, whole);
      const cuts = [0, input.length];
      const pieces = Math.floor(rand() * 6);
      for (let k = 0; k < pieces; k++) cuts.push(Math.floor(rand() * (input.length + 1)));
      cuts.sort((x, y) => x - y);
      const chunks: string[] = [];
      for (let k = 1; k < cuts.length; k++) chunks.push(input.slice(cuts[k - 1], cuts[k]));
      expect(encodeChunks(chunks), JSON.stringify(chunks)).toBe(whole);
    }
  });

  it('is byte-exact for CRLF input: the server decodes exactly the original', () => {
    const input = 'From: a@b\r\nSubject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n';
    const { message } = serverDecode(s(dotStuff(b(input))));
    expect(message).toBe(input);
  });
});

describe('DotStuffer: efficiency and accounting', () => {
  it('returns a CRLF chunk without leading dots as is (no copy)', () => {
    const st = new DotStuffer();
    const chunk = b('line one\r\nline two\r\nline three');
    expect(st.push(chunk)).toBe(chunk);
    // A chunk split between CR and LF needs no copy either.
    const a = b('x\r');
    const c = b('\ny\r\n');
    expect(st.push(a)).toBe(a);
    expect(st.push(c)).toBe(c);
  });

  it('counts input bytes', () => {
    const st = new DotStuffer();
    st.push(b('.a\n'));
    st.push(b(''));
    st.push(b('bc'));
    expect(st.bytesIn).toBe(5);
  });

  it('encodes a large CRLF body quickly', () => {
    const line = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\r\n';
    const chunk = b(line.repeat(800)); // ~64 KB
    const st = new DotStuffer();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 50; i++) st.push(chunk);
    const perChunkUs = Number(process.hrtime.bigint() - t0) / 1000 / 50;
    expect(perChunkUs).toBeLessThan(2000); // generous: catches accidental per-byte allocation
  });
});
