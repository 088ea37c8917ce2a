// The inbound DATA decoder: only CRLF.CRLF ends a message, a doubled dot loses one, bare CR/LF
// lookalikes are data — and none of it depends on where the client's segments were cut.
import { describe, expect, it } from 'vitest';
import { DataDecoder } from '../../src/smtp/data-decoder.js';

function run(pieces: string[]): { body: string; done: boolean; rest: string | null } {
  const d = new DataDecoder();
  const out: Buffer[] = [];
  let rest: string | null = null;
  for (const p of pieces) {
    if (rest !== null) {
      rest += p;
      continue;
    }
    const r = d.push(Buffer.from(p, 'latin1'));
    out.push(...r.body);
    if (r.done) rest = r.rest?.toString('latin1') ?? '';
  }
  return { body: Buffer.concat(out).toString('latin1'), done: rest !== null, rest };
}

const CASES: Array<[string, string, string | null]> = [
  ['a\r\nb\r\n.\r\nQUIT\r\n', 'a\r\nb\r\n', 'QUIT\r\n'],
  ['.\r\n', '', ''],
  ['..x\r\n.\r\n', '.x\r\n', ''],
  ['a\r\n..b\r\n.\r\n', 'a\r\n.b\r\n', ''],
  ['a\n.\nb\r\n.\r\n', 'a\n.\nb\r\n', ''],
  ['a\r\n.\rb\r\n.\r\n', 'a\r\n.\rb\r\n', ''],
  ['a\r\n.\nMAIL FROM:<x>\r\n', 'a\r\n.\nMAIL FROM:<x>\r\n', null],
  ['\r\n.\r\n', '\r\n', ''],
];

describe('DataDecoder', () => {
  for (const [input, body, rest] of CASES) {
    it(`${JSON.stringify(input)}, cut anywhere in three`, () => {
      for (let i = 0; i <= input.length; i++) {
        for (let j = i; j <= input.length; j++) {
          const r = run([input.slice(0, i), input.slice(i, j), input.slice(j)]);
          expect({ i, j, ...r }).toEqual({ i, j, body: rest === null ? r.body : body, done: rest !== null, rest });
          if (rest === null) expect(body.startsWith(r.body)).toBe(true);
        }
      }
    });
  }
});
