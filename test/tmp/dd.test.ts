import { describe, expect, it } from 'vitest';
import { DataDecoder } from '../../src/inbound/data-decoder.js';
function run(pieces: string[]) {
  const d = new DataDecoder(); const out: Buffer[] = []; let rest: string | null = null; let done = false;
  for (const p of pieces) { if (done) { rest += p; continue; } const r = d.push(Buffer.from(p, 'latin1')); out.push(...r.body); if (r.done) { done = true; rest = r.rest?.toString('latin1') ?? ''; } }
  return { body: Buffer.concat(out).toString('latin1'), done, rest };
}
describe('dd', () => {
  it('works', () => {
    const msgs = ['a\r\nb\r\n.\r\nQUIT\r\n', '.\r\n', '..x\r\n.\r\n', 'a\r\n..b\r\n.\r\n', 'a\n.\nb\r\n.\r\n', 'a\r\n.\rb\r\n.\r\n', '\r\n.\r\n'];
    for (const m of msgs) {
      const whole = run([m]);
      for (let i = 0; i <= m.length; i++) for (let j = i; j <= m.length; j++) {
        const r = run([m.slice(0, i), m.slice(i, j), m.slice(j)]);
        expect({ m, i, j, ...r }).toEqual({ m, i, j, ...whole });
      }
      console.log(JSON.stringify(m), JSON.stringify(whole));
    }
  });
});
