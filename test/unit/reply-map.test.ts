// The reply the MTA gets for a provider's reply (src/errors/registry.ts toReply).
import { describe, expect, it } from 'vitest';
import { RelayError, toReply, UpstreamReplyError } from '../../src/errors/registry.js';
import { reply } from '../../src/smtp/reply.js';

const forClient = (code: number, ...lines: string[]) => toReply(new UpstreamReplyError(reply(code, ...lines)));

describe('provider replies as the MTA sees them', () => {
  it('keep the provider code, enhanced code and text', () => {
    expect(forClient(550, '5.1.1 The email account that you tried to reach does not exist')).toEqual(
      reply(550, '5.1.1 The email account that you tried to reach does not exist'),
    );
    expect(forClient(552, '5.2.2 over quota', '5.2.2 try later')).toEqual(reply(552, '5.2.2 over quota', '5.2.2 try later'));
  });

  it('get the class-generic enhanced code on every line when the provider sent none', () => {
    expect(forClient(550, 'No such user here')).toEqual(reply(550, '5.0.0 No such user here'));
    expect(forClient(452, 'Too many', 'slow down')).toEqual(reply(452, '4.0.0 Too many', '4.0.0 slow down'));
    expect(forClient(554, '')).toEqual(reply(554, '5.0.0'));
  });

  it('turn a provider 421 into 451 with its own text, so the MTA session stays open', () => {
    expect(forClient(421, '4.7.0 Try again later, closing connection.')).toEqual(reply(451, '4.7.0 Try again later, closing connection.'));
  });

  it('relay errors keep the reply their code declares', () => {
    expect(toReply(new RelayError('TOKEN_UNAVAILABLE')).code).toBe(454);
    expect(toReply(new Error('anything else')).code).toBe(451);
  });
});
