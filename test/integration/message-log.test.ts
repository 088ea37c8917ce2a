// Issue 21, item 4: "did mail to X go out?" answered from the log, as from Postfix's. A pipelined
// group (MAIL, three RCPTs of which the provider refuses one, DATA) leaves one `transaction` line
// with the sender, each recipient and the provider's reply to it, the Message-ID, the client's
// address and the provider's queue id; the refused RCPT one `refused` line with the sender and
// the client, and the recipient. A grep for a recipient finds its lines. log.recipients: drop keeps
// the addresses out of both.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLog } from '../helpers/log-capture.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, startStack, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const A = 'a@gmail.test';
const CLIENT = '127.0.0.2';

type Line = Record<string, unknown>;
const parsed = (lines: string[]) => lines.map((l) => JSON.parse(l) as Line);

/** A stack of one account whose log this describe block reads; CLIENT is trusted. */
function loggedStack(logOverrides: { recipients?: 'drop' }) {
  const log = captureLog('info');
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await startStack({
      logger: log.logger,
      accounts: [{ email: A, kind: 'google', senders: [A] }],
      overrides: { inbound: { trusted_networks: [`${CLIENT}/32`] }, log: logOverrides },
    });
  });
  afterAll(() => stack?.stop());
  return { log, stack: () => stack! };
}

/** The pipelined group an MTA sends, then the body; every reply in order. */
async function pipelinedMessage(stack: Stack, tag: string): Promise<number[]> {
  const { client } = await RawSmtp.connect(stack.port, '127.0.0.1', { localAddress: CLIENT });
  try {
    await client.cmd('EHLO mta.test');
    const rcpts = ['ok1@example.net', 'gone@example.net', 'ok2@example.net'];
    client.write(`MAIL FROM:<${A}>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`);
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) codes.push((await client.read()).code);
    client.write(rawMessage(A, rcpts, tag) + '.\r\n');
    codes.push((await client.read()).code);
    // A sender no account has: refused at MAIL, and the refused line still names it.
    codes.push((await client.cmd('MAIL FROM:<nobody@unknown.test>')).code);
    await client.cmd('QUIT');
    return codes;
  } finally {
    client.close();
  }
}

describe('transaction and refused lines answer "did it go out"', () => {
  const { log, stack } = loggedStack({});

  it('a pipelined group with one refused RCPT: the lines carry exactly their fields', async () => {
    stack().sandbox.smtp.addFault({ at: 'rcpt', recipient: 'gone@example.net', code: 550, enhanced: '5.1.1', text: 'No such user', times: 1 });
    expect(await pipelinedMessage(stack(), 'grep-me')).toEqual([250, 250, 550, 250, 354, 250, 550]);
    await until(() => parsed(log.lines).filter((l) => l.event === 'refused').length === 2, 3000, 'the refused lines');
    const lines = parsed(log.lines);

    const tx = lines.find((l) => l.event === 'transaction')!;
    expect(Object.keys(tx)).toEqual(['level', 'time', 'service', 'event', 'session', 'client', 'account', 'mail_from', 'rcpts', 'rcpt_count', 'message_id', 'size', 'reply', 'upstream', 'queue_id', 'ms', 'msg']);
    const delivered = stack().sandbox.messages.at(-1)!;
    expect(tx).toMatchObject({
      client: CLIENT,
      account: A,
      mail_from: A,
      rcpts: [
        { to: 'ok1@example.net', reply: expect.stringMatching(/^250 2\.1\.5 /) },
        { to: 'gone@example.net', reply: '550 5.1.1 No such user' },
        { to: 'ok2@example.net', reply: expect.stringMatching(/^250 2\.1\.5 /) },
      ],
      rcpt_count: 2,
      message_id: '<grep-me@test.example>',
      reply: 250,
      upstream: expect.stringMatching(/^250 2\.0\.0 OK +\d+ \S+ - gsmtp$/),
    });
    // The queue id is the provider's, the one its reply named.
    expect(tx.queue_id).toMatch(/^\S+$/);
    expect(tx.upstream).toContain(` ${tx.queue_id as string} - gsmtp`);
    expect(delivered.rcptTo).toEqual(['ok1@example.net', 'ok2@example.net']);

    const refused = lines.filter((l) => l.event === 'refused');
    expect(refused.map((l) => Object.keys(l))).toEqual([
      ['level', 'time', 'service', 'event', 'stage', 'code', 'reason', 'account', 'session', 'client', 'mail_from', 'rcpt', 'reply', 'error', 'msg'],
      ['level', 'time', 'service', 'event', 'stage', 'code', 'reason', 'session', 'client', 'mail_from', 'reply', 'error', 'msg'],
    ]);
    expect(refused[0]).toMatchObject({ stage: 'rcpt', code: 550, account: A, session: tx.session, client: CLIENT, mail_from: A, rcpt: 'gone@example.net', reply: '550 5.1.1 No such user' });
    expect(refused[1]).toMatchObject({ stage: 'mail', code: 550, reason: 'no_account', client: CLIENT, mail_from: 'nobody@unknown.test' });

    // `grep ok2@example.net`: its line, saying it went out.
    const found = log.lines.filter((l) => l.includes('ok2@example.net'));
    expect(found).toHaveLength(1);
    expect(JSON.parse(found[0]!)).toMatchObject({ event: 'transaction', reply: 250 });
    // `grep gone@example.net`: its refusal, and the transaction line with the reply it got.
    expect(log.lines.filter((l) => l.includes('gone@example.net')).map((l) => (JSON.parse(l) as Line).event)).toEqual(['refused', 'transaction']);
    // And the status page's recent refusals show sender and client.
    const status = (await (await fetch(`http://127.0.0.1:${stack().app.adminPort}/status.json`, { headers: stack().adminAuth() })).json()) as { recent_refusals: Line[] };
    expect(status.recent_refusals[0]).toMatchObject({ stage: 'mail', mail_from: 'nobody@unknown.test', client: CLIENT });
    expect(status.recent_refusals[1]).toMatchObject({ stage: 'rcpt', mail_from: A, client: CLIENT });
  });
});

describe('log.recipients: drop', () => {
  const { log, stack } = loggedStack({ recipients: 'drop' });

  it('the transaction line keeps each recipient\'s reply, not its address', async () => {
    stack().sandbox.smtp.addFault({ at: 'rcpt', recipient: 'gone@example.net', code: 550, enhanced: '5.1.1', text: 'No such user', times: 1 });
    expect(await pipelinedMessage(stack(), 'dropped')).toEqual([250, 250, 550, 250, 354, 250, 550]);
    await until(() => log.lines.some((l) => l.includes('"transaction"')), 3000, 'the transaction line');
    const tx = parsed(log.lines).find((l) => l.event === 'transaction')!;
    expect(tx.rcpts).toEqual([{ reply: expect.stringMatching(/^250 /) }, { reply: '550 5.1.1 No such user' }, { reply: expect.stringMatching(/^250 /) }]);
    expect(log.lines.filter((l) => /ok1@|ok2@|gone@/.test(l))).toEqual([]);
  });
});
