// The transaction line is written by hand (src/inbound/transaction-log.ts) for speed: it must be
// the line pino writes for the same object, and follow the logger's level.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createHash } from 'node:crypto';
import { TransactionLog, type TransactionFields } from '../../src/inbound/transaction-log.js';
import { hashAddress } from '../../src/obs/recipients.js';
import { createLogger } from '../../src/obs/logger.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

const capture = () => {
  const lines: string[] = [];
  return { lines, logger: createLogger('info', { write: (s: string) => void lines.push(s) }) };
};

const fields: TransactionFields = {
  event: 'transaction',
  session: 'Ab-9_x',
  client: '192.0.2.7',
  account: 'a@x.test',
  mail_from: 'odd "quoted" \\ <sender>@münchen.example',
  rcpts: [{ to: 'b@y.test', reply: '250 2.1.5 OK' }, { to: 'c"q"@y.test', reply: '550 5.1.1 No such user' }],
  rcpt_count: 1,
  message_id: '<id.1@x.test>',
  size: 2048,
  reply: 451,
  upstream: '451-4.3.0 first\n451 4.3.0 "second"',
  ms: 1.25,
  error: 'tab\there, nul\u0000 and \u2028',
};

describe('TransactionLog', () => {
  afterEach(() => vi.useRealTimers());

  it('writes what pino writes for the same object', () => {
    vi.useFakeTimers({ now: new Date('2026-01-02T03:04:05.678Z'), toFake: ['Date'] });
    const viaPino = capture();
    viaPino.logger.info({ ...fields }, 'transaction');
    const byHand = capture();
    new TransactionLog(byHand.logger).write(fields);
    expect(byHand.lines).toHaveLength(1);
    expect(byHand.lines[0]).toBe(viaPino.lines[0]);
    expect(JSON.parse(byHand.lines[0]!)).toMatchObject({ level: 30, time: '2026-01-02T03:04:05.678Z', service: 'xoauth2-relay', ...fields, msg: 'transaction' });
  });

  it('leaves out undefined fields, as pino does', () => {
    const viaPino = capture();
    const byHand = capture();
    const ok = { ...fields, reply: 250, upstream: undefined, error: undefined };
    vi.useFakeTimers({ now: new Date('2026-01-02T03:04:05.678Z'), toFake: ['Date'] });
    viaPino.logger.info({ ...ok }, 'transaction');
    new TransactionLog(byHand.logger).write(ok);
    expect(byHand.lines[0]).toBe(viaPino.lines[0]);
    expect(byHand.lines[0]).not.toContain('upstream');
  });

  it('follows the logger level, also when it changes later', () => {
    const { lines, logger } = capture();
    const log = new TransactionLog(logger);
    logger.level = 'warn';
    log.write(fields);
    expect(lines).toHaveLength(0);
    logger.level = 'info';
    log.write(fields);
    expect(lines).toHaveLength(1);
  });
});

describe('TransactionLog.record', () => {
  const recipients = [
    { to: 'Bob@Y.test', reply: { code: 250, lines: ['2.1.5 OK'] } },
    { to: 'gone@y.test', reply: { code: 550, lines: ['5.1.1 No such user'] } },
  ];
  const record = (upstreamText: string) => ({
    session: 's1',
    client: '192.0.2.7',
    account: 'a@x.test',
    mailFrom: 'a@x.test',
    recipients,
    accepted: 1,
    messageId: '<m1@x.test>',
    size: 10,
    reply: 250,
    upstream: { code: 250, lines: [upstreamText] },
  });
  const one = (mode: 'full' | 'hash' | 'drop', upstreamText = '2.0.0 OK') => {
    const { lines, logger } = capture();
    new TransactionLog(logger, mode).record(record(upstreamText), 3);
    expect(lines).toHaveLength(1);
    return JSON.parse(lines[0]!) as Record<string, unknown>;
  };

  it('full: each recipient as given with its reply, the Message-ID, the client', () => {
    expect(one('full')).toMatchObject({
      client: '192.0.2.7',
      rcpts: [{ to: 'Bob@Y.test', reply: '250 2.1.5 OK' }, { to: 'gone@y.test', reply: '550 5.1.1 No such user' }],
      rcpt_count: 1,
      message_id: '<m1@x.test>',
      upstream: '250 2.0.0 OK',
    });
  });

  it('hash: sha256 of the lower-cased address, first 16 hex digits (what `sha256sum` gives)', () => {
    const line = one('hash');
    expect(line.rcpts).toEqual([
      { to: 'sha256:' + sha256('bob@y.test').slice(0, 16), reply: '250 2.1.5 OK' },
      { to: 'sha256:' + sha256('gone@y.test').slice(0, 16), reply: '550 5.1.1 No such user' },
    ]);
    expect(JSON.stringify(line)).not.toMatch(/bob@|gone@/i);
    expect(hashAddress('BOB@y.test')).toBe(hashAddress('bob@y.test'));
  });

  it('drop: the replies without the addresses', () => {
    const line = one('drop');
    expect(line.rcpts).toEqual([{ reply: '250 2.1.5 OK' }, { reply: '550 5.1.1 No such user' }]);
    expect(JSON.stringify(line)).not.toMatch(/bob@|gone@/i);
  });

  it('writes, field by field, what pino writes for the same object (escapes and all)', () => {
    vi.useFakeTimers({ now: new Date('2026-01-02T03:04:05.678Z'), toFake: ['Date'] });
    const odd = 'odd "quoted" \\ <s>@münchen.example\t\u0000\u2028\ud800';
    const rec = { ...record('2.0.0 OK  1700000000 d2-x.1 - gsmtp'), mailFrom: odd, recipients: [{ to: odd, reply: { code: 250, lines: ['2.1.5 "OK"'] } }] };
    const viaPino = capture();
    viaPino.logger.info(
      { event: 'transaction', session: 's1', client: '192.0.2.7', account: 'a@x.test', mail_from: odd, rcpts: [{ to: odd, reply: '250 2.1.5 "OK"' }], rcpt_count: 1, message_id: '<m1@x.test>', size: 10, reply: 250, upstream: '250 2.0.0 OK  1700000000 d2-x.1 - gsmtp', queue_id: 'd2-x.1', ms: 1.25 },
      'transaction',
    );
    const byHand = capture();
    new TransactionLog(byHand.logger).record(rec, 1.25);
    expect(byHand.lines[0]).toBe(viaPino.lines[0]);
    const noUpstream = capture();
    new TransactionLog(noUpstream.logger, 'drop').record({ ...rec, upstream: undefined, messageId: undefined, error: 'x' }, 1.25);
    expect(JSON.parse(noUpstream.lines[0]!)).toMatchObject({ rcpts: [{ reply: '250 2.1.5 "OK"' }], error: 'x' });
    expect(noUpstream.lines[0]).not.toMatch(/upstream|queue_id|message_id/);
  });

  it('stamps each line with the clock of its own millisecond, as pino does (the ISO text is reused within one)', () => {
    vi.useFakeTimers({ now: new Date('2026-01-02T03:04:05.678Z'), toFake: ['Date'] });
    const byHand = capture();
    const viaPino = capture();
    const log = new TransactionLog(byHand.logger);
    for (const step of [0, 0, 1, 999]) {
      vi.setSystemTime(Date.now() + step);
      log.record(record('2.0.0 OK'), 3);
      viaPino.logger.info({ event: 'transaction' }, 'transaction');
    }
    const times = (lines: string[]) => lines.map((l) => (JSON.parse(l) as { time: string }).time);
    expect(times(byHand.lines)).toEqual(['2026-01-02T03:04:05.678Z', '2026-01-02T03:04:05.678Z', '2026-01-02T03:04:05.679Z', '2026-01-02T03:04:06.678Z']);
    for (const at of ['2026-12-31T23:59:59.998Z', '2026-12-31T23:59:59.999Z', '2027-01-01T00:00:00.000Z', '2027-01-01T00:00:00.001Z', '2027-01-01T00:00:01.000Z']) {
      vi.setSystemTime(new Date(at));
      log.record(record('2.0.0 OK'), 3);
      viaPino.logger.info({ event: 'transaction' }, 'transaction');
      expect(times(byHand.lines).at(-1)).toBe(at);
    }
    expect(times(byHand.lines)).toEqual(times(viaPino.lines));
  });

  it('queue_id from the providers\' 250 replies; absent when the reply has none', () => {
    expect(one('full', '2.0.0 OK  1700000000 d2-20020a05600c0c4100b0040b4b9c8a5asm123456wmq.1 - gsmtp').queue_id).toBe('d2-20020a05600c0c4100b0040b4b9c8a5asm123456wmq.1');
    expect(one('full', '2.0.0 OK <AM0PR01MB1234ABCD@AM0PR01MB1234.eurprd01.prod.exchangelabs.com> [Hostname=AM0PR01MB1234.eurprd01.prod.exchangelabs.com]').queue_id).toBe(
      'AM0PR01MB1234ABCD@AM0PR01MB1234.eurprd01.prod.exchangelabs.com',
    );
    expect(one('full', '2.0.0 Ok: queued as 4Bc1Yz3abc').queue_id).toBe('4Bc1Yz3abc');
    expect(one('full', '2.0.0 OK').queue_id).toBeUndefined();
  });
});
