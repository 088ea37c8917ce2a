// The replies the relay decides: every registry entry is built from the named codes of
// src/smtp/codes.ts, and the path parser's refusals (src/smtp/path.ts, below the registry)
// still reach the MTA with the reply and refusal reason they had as RelayErrors.
import { describe, expect, it } from 'vitest';
import { defaultReply, isRefusal, reasonOf, RELAY_ERROR_CODES, toReply } from '../../src/errors/registry.js';
import * as codes from '../../src/smtp/codes.js';
import { parsePath } from '../../src/smtp/path.js';
import { enhancedCode, formatReply } from '../../src/smtp/reply.js';

const named = Object.entries(codes);
const replyCodes = new Set<unknown>(named.filter(([k]) => k.startsWith('C')).map(([, v]) => v));
const enhanced = new Set<unknown>(named.filter(([k]) => k.startsWith('Se')).map(([, v]) => v));

describe('reply codes', () => {
  it('names each code once, its number in its name', () => {
    for (const [name, value] of named.filter(([k]) => k.startsWith('C'))) expect(name.slice(1, 4)).toBe(String(value));
    expect(replyCodes.size).toBe(named.filter(([k]) => k.startsWith('C')).length);
    expect(enhanced.size).toBe(named.filter(([k]) => k.startsWith('Se')).length);
  });

  it.each(RELAY_ERROR_CODES)('%s replies with a named code and a named enhanced code of the same class', (code) => {
    const r = defaultReply(code);
    expect(replyCodes.has(r.code)).toBe(true);
    const e = enhancedCode(r);
    expect(e, formatReply(r)).not.toBeNull();
    const [cls, ...rest] = e!.split('.');
    expect(cls).toBe(String(r.code)[0]);
    expect(enhanced.has(rest.join('.')), formatReply(r)).toBe(true);
  });
});

describe('path refusals through the registry', () => {
  const refusal = (arg: string, keyword: 'FROM' | 'TO', max = 1000) => {
    try {
      parsePath(arg, keyword, max);
    } catch (e) {
      expect(isRefusal(e)).toBe(true);
      return `${formatReply(toReply(e))} [${reasonOf(e)}]`;
    }
    throw new Error(`${arg} was accepted`);
  };

  it.each([
    ['FROM a@b.example', 'FROM', '501 5.5.4 Syntax: MAIL FROM:<address> [syntax]'],
    ['TO:a@b.example', 'TO', '501 5.1.3 Bad recipient address syntax [syntax]'],
    ['FROM:<a@b.example', 'FROM', '501 5.1.7 Bad sender address syntax [syntax]'],
    ['FROM:<a@b.example> SIZE=x', 'FROM', '501 5.5.4 Invalid SIZE value [syntax]'],
    ['FROM:<a@b.example> SIZE=1001', 'FROM', '552 5.3.4 Message size exceeds fixed maximum message size [too_big]'],
    ['FROM:<a@b.example> BODY=BINARYMIME', 'FROM', '555 5.5.4 Unsupported BODY value [syntax]'],
    ['FROM:<a@b.example> X=1 X=2', 'FROM', '501 5.5.4 Parameter X given twice [syntax]'],
  ] as const)('%s', (arg, keyword, expected) => {
    expect(refusal(arg, keyword)).toBe(expected);
  });

  it('accepts a declared SIZE at the maximum', () => {
    expect(parsePath('FROM:<a@b.example> SIZE=1000', 'FROM', 1000).params.SIZE).toBe('1000');
  });
});
