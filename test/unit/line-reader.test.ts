// The session's input (src/inbound/line-reader.ts): lines come out whole whatever the chunking,
// the unfinished line is judged as each chunk arrives, and the buffer says when to stop reading.
import { describe, expect, it } from 'vitest';
import { HIGH_WATER, LineReader, MAX_LINE } from '../../src/inbound/line-reader.js';

/** A reproducible stream of pseudo-random numbers (no seed flakiness). */
function rng(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

describe('LineReader', () => {
  it('gives back every line exactly, CRLF or bare LF, however the bytes were split', () => {
    const next = rng(7);
    const lines = Array.from({ length: 300 }, (_, i) => `CMD${i} ${'x'.repeat(Math.floor(next() * 200))}`);
    const wire = Buffer.from(lines.map((l, i) => l + (i % 3 ? '\r\n' : '\n')).join(''));
    for (let round = 0; round < 20; round++) {
      const r = new LineReader();
      const out: string[] = [];
      for (let at = 0; at < wire.length; ) {
        const n = 1 + Math.floor(next() * 700);
        r.push(wire.subarray(at, at + n));
        at += n;
        for (let l = r.take(); typeof l === 'string'; l = r.take()) out.push(l);
      }
      expect(out).toEqual(lines);
      expect(r.size).toBe(0);
    }
  });

  it('peek() shows the complete lines ahead without taking them; takeAll() hands over the rest and unshift() puts bytes back', () => {
    const r = new LineReader();
    r.push(Buffer.from('MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRC'));
    r.push(Buffer.from('PT TO:<e@f>\r\nDATA\r\npartial'));
    expect(r.take()).toBe('MAIL FROM:<a@b>');
    expect([...r.peek()]).toEqual(['RCPT TO:<c@d>', 'RCPT TO:<e@f>', 'DATA']);
    expect(r.take()).toBe('RCPT TO:<c@d>');
    expect(r.takeAll()?.toString()).toBe('RCPT TO:<e@f>\r\nDATA\r\npartial');
    expect(r.size).toBe(0);
    r.unshift(Buffer.from('QUIT\r\n'));
    expect(r.take()).toBe('QUIT');
  });

  it('a line without an end is overlong as soon as it passes the limit, whichever chunk carries it; one with its end is refused when taken', () => {
    const r = new LineReader();
    r.push(Buffer.from('NOOP\r\n' + 'x'.repeat(MAX_LINE)));
    expect(r.overlong).toBe(false);
    r.push(Buffer.from('yy'));
    expect(r.overlong).toBe(true);
    const s = new LineReader();
    s.push(Buffer.from('x'.repeat(MAX_LINE + 10) + '\r\nNOOP\r\n'));
    expect(s.overlong).toBe(false); // the unfinished part is "" after the last LF
    expect(s.take()).toBe(false);
    const exact = new LineReader();
    exact.push(Buffer.from('x'.repeat(MAX_LINE) + '\r\n'));
    expect(exact.take()).toBe('x'.repeat(MAX_LINE));
  });

  it('is full at HIGH_WATER unhandled bytes, and no longer once lines are taken', () => {
    const r = new LineReader();
    const line = Buffer.from('NOOP ' + 'z'.repeat(1000) + '\r\n');
    while (!r.full) r.push(line);
    expect(r.size).toBeGreaterThanOrEqual(HIGH_WATER);
    expect(r.size).toBeLessThan(HIGH_WATER + line.length);
    expect(r.take()).toBe('NOOP ' + 'z'.repeat(1000));
    expect(r.full).toBe(false);
  });

  it('a stream without a line end, one byte at a time, is judged overlong at the first byte past the limit', () => {
    const r = new LineReader();
    const one = Buffer.from('a');
    let pushed = 0;
    while (!r.overlong && pushed < 10 * MAX_LINE) {
      r.push(one);
      pushed++;
    }
    expect(pushed).toBe(MAX_LINE + 2);
  });
});
