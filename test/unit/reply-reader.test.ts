import { describe, expect, it } from 'vitest';
import type { Reply } from '../../src/smtp/reply.js';
import { ReplyParseError, ReplyReader } from '../../src/smtp/reply-reader.js';

function readAll(chunks: Array<string | Buffer>, options?: ConstructorParameters<typeof ReplyReader>[1]): Reply[] {
  const out: Reply[] = [];
  const reader = new ReplyReader((r) => out.push(r), options);
  for (const c of chunks) reader.push(typeof c === 'string' ? Buffer.from(c, 'utf8') : c);
  return out;
}

const EHLO =
  '250-smtp.gmail.com at your service, [203.0.113.7]\r\n' +
  '250-SIZE 35882577\r\n' +
  '250-8BITMIME\r\n' +
  '250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n' +
  '250-ENHANCEDSTATUSCODES\r\n' +
  '250-PIPELINING\r\n' +
  '250-CHUNKING\r\n' +
  '250 SMTPUTF8\r\n';

describe('ReplyReader', () => {
  it('reads a single-line reply, keeping the enhanced status code in the text', () => {
    expect(readAll(['250 2.1.0 OK x12sm\r\n'])).toEqual([{ code: 250, lines: ['2.1.0 OK x12sm'] }]);
  });

  it('reads a multi-line reply as one', () => {
    const [r] = readAll([EHLO]);
    expect(r!.code).toBe(250);
    expect(r!.lines).toHaveLength(8);
    expect(r!.lines[0]).toBe('smtp.gmail.com at your service, [203.0.113.7]');
    expect(r!.lines[7]).toBe('SMTPUTF8');
  });

  it('is indifferent to chunk boundaries, down to one byte per chunk', () => {
    const stream = EHLO + '220 2.0.0 Ready to start TLS\r\n' + '334 \r\n' + '250\r\n';
    const whole = readAll([stream]);
    expect(whole).toHaveLength(4);
    expect(readAll([...stream])).toEqual(whole);
    for (let i = 0; i <= stream.length; i += 7) {
      expect(readAll([stream.slice(0, i), stream.slice(i)])).toEqual(whole);
    }
  });

  it('reads several pipelined replies from one chunk, in order', () => {
    const rs = readAll(['250 2.1.0 OK\r\n550 5.1.1 No such user\r\n250 2.1.5 OK\r\n']);
    expect(rs.map((r) => r.code)).toEqual([250, 550, 250]);
    expect(rs[1]!.lines).toEqual(['5.1.1 No such user']);
  });

  it('accepts a bare code, an empty text and bare LF line ends', () => {
    expect(readAll(['250\r\n', '354 \r\n', '221 bye\n'])).toEqual([
      { code: 250, lines: [''] },
      { code: 354, lines: [''] },
      { code: 221, lines: ['bye'] },
    ]);
  });

  it('decodes UTF-8 text, also when a character is split between chunks', () => {
    const bytes = Buffer.from('550 5.1.1 Empfänger unbekannt\r\n', 'utf8');
    const cut = bytes.indexOf(0xc3) + 1;
    expect(readAll([bytes.subarray(0, cut), bytes.subarray(cut)])[0]!.lines[0]).toBe('5.1.1 Empfänger unbekannt');
  });

  it('reports hasPending for a partial line or an unfinished multi-line reply', () => {
    const reader = new ReplyReader(() => {});
    expect(reader.hasPending).toBe(false);
    reader.push(Buffer.from('250-a\r\n'));
    expect(reader.hasPending).toBe(true);
    reader.push(Buffer.from('250 b\r\n'));
    expect(reader.hasPending).toBe(false);
    reader.push(Buffer.from('25'));
    expect(reader.hasPending).toBe(true);
    reader.reset();
    expect(reader.hasPending).toBe(false);
  });

  it.each([
    ['garbage line', 'hello\r\n'],
    ['short line', '25\r\n'],
    ['empty line', '\r\n'],
    ['code out of range', '650 x\r\n'],
    ['bad separator', '250_x\r\n'],
    ['code change in a multi-line reply', '250-a\r\n251 b\r\n'],
  ])('throws ReplyParseError on %s', (_name, input) => {
    expect(() => readAll([input])).toThrow(ReplyParseError);
  });

  it('guards the line length, however the line is chunked, and stays failed', () => {
    const long = '250 ' + 'x'.repeat(100);
    expect(() => readAll([long + '\r\n'], { maxLineLength: 64 })).toThrow(/too long/);
    expect(() => readAll([long.slice(0, 50), long.slice(50)], { maxLineLength: 64 })).toThrow(/too long/);
    const reader = new ReplyReader(() => {}, { maxLineLength: 64 });
    expect(() => reader.push(Buffer.from(long))).toThrow(ReplyParseError);
    expect(() => reader.push(Buffer.from('250 ok\r\n'))).toThrow(ReplyParseError);
    // A line of exactly the limit passes, with or without CR.
    expect(readAll(['250 ' + 'y'.repeat(60) + '\r\n'], { maxLineLength: 64 })).toHaveLength(1);
    expect(readAll(['250 ' + 'y'.repeat(60), '\r', '\n'], { maxLineLength: 64 })).toHaveLength(1);
  });

  it('limits the number of lines of one reply', () => {
    expect(() => readAll(['250-a\r\n'.repeat(11) + '250 z\r\n'], { maxLines: 10 })).toThrow(/too many lines/);
    expect(readAll(['250-a\r\n'.repeat(9) + '250 z\r\n'], { maxLines: 10 })[0]!.lines).toHaveLength(10);
  });
});
