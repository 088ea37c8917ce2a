// Issue 18 items 6 and 7. Refusals at the `session` stage (a command line over the limit, too
// many errors: session.ts fail()) and at the `connect` stage (too many connections: server.ts
// refuse()) are recorded like every other: one `refused` log line and one count in
// xoauth2_relay_refusals_total with that stage. And a command line over the limit ends the
// session whether or not its line end came with it.
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { MAX_COMMAND_LINE } from '../../src/smtp/limits.js';
import { captureLog } from '../helpers/log-capture.js';
import { refusalRecord } from '../helpers/refusal-log.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { startStack, stillDelivers, type Stack } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

const SENDER = 's@gmail.test';
const MAX_ERRORS = 3;
/** A command line past it is not read as a command (16 KiB). */
const LIMIT = MAX_COMMAND_LINE;
const STRANGER = '127.0.0.2';

describe('session and connect refusals', () => {
  let stack: Stack;
  const log = captureLog('info');

  const { refused, count } = refusalRecord(log, () => stack.app.adminPort);
  async function connect(localAddress?: string): Promise<RawSmtp> {
    const { client, greeting } = await RawSmtp.connect(stack.port, '127.0.0.1', localAddress ? { localAddress } : {});
    onTestFinished(() => client.close());
    expect(greeting.code).toBe(220);
    return client;
  }

  beforeAll(async () => {
    stack = await startStack({
      logger: log.logger,
      accounts: [{ email: SENDER, kind: 'google', senders: [SENDER] }],
      overrides: { inbound: { trusted_networks: ['127.0.0.1/32'], max_errors_per_session: MAX_ERRORS, max_connections_per_address: 1 } },
    });
  });
  afterAll(() => stack.stop());
  beforeEach(() => {
    log.lines.length = 0;
  });

  const SESSION_SYNTAX = 'stage="session",class="4xx",reason="syntax",account=""';

  it('a command line over the limit WITH its line end, in one write: 421, nothing after it answered, the session ends; recorded at stage session', async () => {
    const counted = await count(SESSION_SYNTAX);
    const client = await connect();
    await client.cmd('EHLO mta.test');
    // A command that would be answered 250 if the line were taken, and one pipelined behind it.
    client.write('NOOP ' + 'x'.repeat(LIMIT + 100) + '\r\nNOOP\r\n');
    expect(line(await client.read())).toBe('421 4.5.0 Command line too long, closing connection');
    await until(() => client.closed, 5_000, 'session closed');
    await expect(client.read(100)).rejects.toThrow(/closed/);
    await until(() => refused().length === 1, 2_000, 'one refused line');
    expect(refused()[0]).toMatchObject({ stage: 'session', code: 421, reason: 'syntax', reply: '421 4.5.0 Command line too long, closing connection' });
    expect(await count(SESSION_SYNTAX)).toBe(counted + 1);
    expect(await stillDelivers(stack, SENDER, 'after-long-line-with-crlf')).toBe(true);
  });

  it('the same line split across writes, its line end in the last: 421 and the session ends', async () => {
    const client = await connect();
    await client.cmd('EHLO mta.test');
    client.write('NOOP ' + 'x'.repeat(LIMIT / 2));
    await sleep(50);
    client.write('x'.repeat(LIMIT / 2 + 100) + '\r\n');
    expect(line(await client.read())).toBe('421 4.5.0 Command line too long, closing connection');
    await until(() => client.closed, 5_000, 'session closed');
  });

  it('a long line within the limit is still a command', async () => {
    const client = await connect();
    await client.cmd('EHLO mta.test');
    expect((await client.cmd('NOOP ' + 'x'.repeat(LIMIT - 100))).code).toBe(250);
  });

  it(`${MAX_ERRORS} errors end the session with 421 4.7.0: recorded at stage session, reason too_many_errors`, async () => {
    const labels = 'stage="session",class="4xx",reason="too_many_errors",account=""';
    const counted = await count(labels);
    const client = await connect();
    await client.cmd('EHLO mta.test');
    for (let i = 0; i < MAX_ERRORS - 1; i++) expect((await client.cmd('BOGUS')).code).toBe(500);
    expect((await client.cmd('BOGUS')).code).toBe(500);
    expect(line(await client.read())).toBe('421 4.7.0 Too many errors in this session, closing connection');
    await until(() => refused().some((l) => l.reason === 'too_many_errors'), 2_000, 'too_many_errors line');
    // The BOGUS commands' own 500s are there too (an unknown verb is refused at stage session).
    expect(refused().map((l) => [l.stage, l.code, l.reason])).toEqual([...Array.from({ length: MAX_ERRORS }, () => ['session', 500, 'syntax']), ['session', 421, 'too_many_errors']]);
    expect(await count(labels)).toBe(counted + 1);
  });

  it('a connection over max_connections_per_address: 421 at connect, recorded at stage connect with the address', async () => {
    const labels = 'stage="connect",class="4xx",reason="too_many_connections",account=""';
    const counted = await count(labels);
    await connect(STRANGER);
    const { client: second, greeting } = await RawSmtp.connect(stack.port, '127.0.0.1', { localAddress: STRANGER });
    onTestFinished(() => second.close());
    expect(line(greeting)).toBe('421 4.7.0 Too many connections, try again later');
    await until(() => refused().length === 1, 2_000, 'one refused line');
    expect(refused()[0]).toMatchObject({ stage: 'connect', code: 421, reason: 'too_many_connections', remote: STRANGER });
    expect(await count(labels)).toBe(counted + 1);
  });
});
