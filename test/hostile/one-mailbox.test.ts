// Issue 18 item 3: a path is one mailbox (RFC 5321 §4.1.2). `RCPT TO:<a@x.example,b@y.example>`
// was taken as one recipient: the relay's limits counted one, the Gmail API (which reads the
// envelope as an address list) delivered to two. Now it is `501 5.1.3`, recorded like every
// refusal (one `refused` line, one count), alone and inside a pipelined group, and the provider
// gets only the recipients that were accepted.
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { GMAIL, gmailAccount } from '../helpers/api-stack.js';
import { captureLog } from '../helpers/log-capture.js';
import { refusalRecord } from '../helpers/refusal-log.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const SMTP = 'smtp-one@gmail.test';
const LIST = 'a@x.example,b@y.example';

describe('a path is one mailbox', () => {
  let stack: Stack;
  const log = captureLog('info');

  const { refused, count } = refusalRecord(log, () => stack.app.adminPort);
  const rcptSyntax = (account: string) => `stage="rcpt",class="5xx",reason="syntax",account="${account}"`;

  beforeAll(async () => {
    stack = await startStack({ logger: log.logger, accounts: [gmailAccount(), { email: SMTP, kind: 'google', senders: [SMTP] }] });
  });
  afterAll(() => stack.stop());
  beforeEach(() => {
    stack.sandbox.reset();
    log.lines.length = 0;
  });

  it('RCPT TO a list of two: 501 5.1.3, one refused line and one count; the session goes on', async () => {
    const counted = await count(rcptSyntax(SMTP));
    const { client } = await RawSmtp.connect(stack.port);
    onTestFinished(() => client.close());
    await client.cmd('EHLO mta.test');
    expect((await client.cmd(`MAIL FROM:<${SMTP}>`)).code).toBe(250);
    expect(line(await client.cmd(`RCPT TO:<${LIST}>`))).toBe('501 5.1.3 Bad recipient address syntax');
    for (const other of ['<a@x.example;b@y.example>', '<a@x.example b@y.example>', '<a,b@x.example>']) {
      expect(line(await client.cmd(`RCPT TO:${other}`)), other).toBe('501 5.1.3 Bad recipient address syntax');
    }
    expect(line(await client.cmd(`MAIL FROM:<${LIST}>`))).toMatch(/^503 /); // nested: the first MAIL stands
    expect((await client.cmd('RSET')).code).toBe(250);
    expect(line(await client.cmd(`MAIL FROM:<${SMTP},b@y.example>`))).toBe('501 5.1.7 Bad sender address syntax');
    client.close();
    await until(() => refused().filter((l) => l.code === 501).length === 5, 2000, 'five refused lines');
    expect(refused().filter((l) => l.code === 501).map((l) => [l.stage, l.reason, l.reply])).toEqual([
      ...Array.from({ length: 4 }, () => ['rcpt', 'syntax', '501 5.1.3 Bad recipient address syntax']),
      ['mail', 'syntax', '501 5.1.7 Bad sender address syntax'],
    ]);
    expect(await count(rcptSyntax(SMTP))).toBe(counted + 4);
    // Nothing of it went upstream: the MAIL opened a transaction, no RCPT followed.
    expect(stack.sandbox.smtp.connectionLog().flatMap((c) => c.rcptAddresses)).toEqual([]);
  });

  it('in a pipelined group to the Gmail API: the list gets 501 5.1.3 at its place, the others are delivered once, and only to themselves', async () => {
    const counted = await count(rcptSyntax(GMAIL));
    const { client } = await RawSmtp.connect(stack.port);
    onTestFinished(() => client.close());
    await client.cmd('EHLO mta.test');
    client.write([`MAIL FROM:<${GMAIL}>`, 'RCPT TO:<one@example.net>', `RCPT TO:<${LIST}>`, 'RCPT TO:<two@example.net>', 'DATA', ''].join('\r\n'));
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push(line(await client.read()));
    expect(replies.map((r) => r.slice(0, 3))).toEqual(['250', '250', '501', '250', '354']);
    expect(replies[2]).toBe('501 5.1.3 Bad recipient address syntax');
    const raw = rawMessage(GMAIL, ['one@example.net', 'two@example.net'], 'one-mailbox-group');
    client.write(raw + '.\r\n');
    expect((await client.read()).code).toBe(250);
    client.close();
    const sent = stack.sandbox.gmail.messages;
    expect(sent).toHaveLength(1);
    expect(sent[0]!.sha256).toBe(sha256(raw));
    expect([...sent[0]!.rcptTo].sort()).toEqual(['one@example.net', 'two@example.net']);
    expect(await count(rcptSyntax(GMAIL))).toBe(counted + 1);
  });

  it('a group whose only RCPT is a list: 501 5.1.3, then 554 for DATA; the Gmail API gets nothing', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    onTestFinished(() => client.close());
    await client.cmd('EHLO mta.test');
    client.write([`MAIL FROM:<${GMAIL}>`, `RCPT TO:<${LIST}>`, 'DATA', ''].join('\r\n'));
    const replies = [];
    for (let i = 0; i < 3; i++) replies.push(line(await client.read()));
    expect(replies).toEqual([expect.stringMatching(/^250 /), '501 5.1.3 Bad recipient address syntax', '554 5.5.1 No valid recipients']);
    // The client, told DATA failed, sends no body; the session is still usable.
    expect((await client.cmd('RSET')).code).toBe(250);
    client.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(stack.sandbox.gmail.messages).toEqual([]);
  });
});
