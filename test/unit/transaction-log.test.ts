// The transaction line is written by hand (src/inbound/transaction-log.ts) for speed: it must be
// the line pino writes for the same object, and follow the logger's level.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TransactionLog, type TransactionFields } from '../../src/inbound/transaction-log.js';
import { createLogger } from '../../src/obs/logger.js';

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
