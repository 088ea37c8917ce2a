// How log lines come out: JSON unless stdout is a terminal (or LOG_FORMAT says otherwise), the
// readable form built from the JSON after redaction, and LOG_LEVEL over the config's level.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger, effectiveLevel } from '../../src/obs/logger.js';
import { prettyDestination, prettyLine, wantsPretty } from '../../src/obs/pretty.js';

describe('wantsPretty', () => {
  it('is readable exactly on a terminal, unless LOG_FORMAT decides', () => {
    expect(wantsPretty({ isTTY: true }, {})).toBe(true);
    expect(wantsPretty({ isTTY: false }, {})).toBe(false);
    expect(wantsPretty({}, {})).toBe(false);
    expect(wantsPretty({ isTTY: true }, { LOG_FORMAT: 'json' })).toBe(false);
    expect(wantsPretty({}, { LOG_FORMAT: 'pretty' })).toBe(true);
  });
});

describe('prettyLine', () => {
  it('puts time, level and event first, then the fields as key=value', () => {
    const json = JSON.stringify({ level: 30, time: '2026-01-02T03:04:05.678Z', service: 'xoauth2-relay', event: 'transaction', session: 's1', account: 'a@x.test', mail_from: 'a@x.test', rcpt_count: 2, reply: 250, upstream: '250 2.0.0 OK id - gsmtp', ms: 1.5, msg: 'transaction' });
    expect(prettyLine(json)).toBe('03:04:05.678 INFO  transaction session=s1 account=a@x.test mail_from=a@x.test rcpt_count=2 reply=250 upstream="250 2.0.0 OK id - gsmtp" ms=1.5\n');
    expect(prettyLine(JSON.stringify({ level: 40, time: '2026-01-02T03:04:05.678Z', event: 'token_refresh', msg: 'token refresh failed', keys: ['a', 'b'] }))).toBe(
      '03:04:05.678 WARN  token_refresh: token refresh failed keys=["a","b"]\n',
    );
    expect(prettyLine('not json')).toBe('not json\n');
  });

  it('shows what the JSON shows: secrets are redacted before the line is made readable', () => {
    const out: string[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, done) => (out.push(c.toString()), done()) });
    const logger = createLogger('info', prettyDestination(sink));
    logger.info({ event: 'oops', account: 'a@x.test', refresh_token: 'rt-SECRET', nested: { password: 'pw-SECRET' } }, 'careless');
    expect(out.join('')).toMatch(/ INFO  oops: careless account=a@x\.test refresh_token=\[redacted\] nested=\{"password":"\[redacted\]"\}\n$/);
    expect(out.join('')).not.toContain('SECRET');
  });
});

describe('log level', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('LOG_LEVEL wins over the config', () => {
    expect(effectiveLevel('info', {})).toBe('info');
    expect(effectiveLevel('info', { LOG_LEVEL: 'debug' })).toBe('debug');
    vi.stubEnv('LOG_LEVEL', 'warn');
    expect(createLogger('debug', new Writable({ write: (_c, _e, done) => done() })).level).toBe('warn');
  });
});
