// Issue 18 item 5: every real MTA pipelines MAIL, its RCPTs and DATA in one write (RFC 2920), and
// the relay sends them upstream as one group (relay/transaction.ts). A refusal at any place of
// that group must reach the client at the same place, with the provider's code and text, and
// what was accepted must arrive exactly once. One test per reply position.
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import type { SmtpFaultRule } from '../../src/sandbox/submission-server.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';

const FROM = 'group@gmail.test';
const R = ['r1@example.net', 'r2@example.net', 'r3@example.net'];

describe('a refusal inside a pipelined group reaches the client at its place', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ accounts: [{ email: FROM, kind: 'google', senders: [FROM] }] });
  });
  afterAll(() => stack.stop());
  beforeEach(() => stack.sandbox.reset());

  const fault = (rule: SmtpFaultRule) => stack.sandbox.smtp.addFault({ times: 1, ...rule });

  /**
   * EHLO, then MAIL + RCPTs + DATA in one write, as Postfix does; the body if DATA got 354. The
   * reply lines in order (the body's last), and the session for what follows.
   */
  async function group(rcpts: readonly string[], tag: string): Promise<{ replies: string[]; raw: string; client: RawSmtp }> {
    const { client } = await RawSmtp.connect(stack.port);
    onTestFinished(() => client.close());
    await client.cmd('EHLO mta.test');
    client.write([`MAIL FROM:<${FROM}>`, ...rcpts.map((r) => `RCPT TO:<${r}>`), 'DATA', ''].join('\r\n'));
    const replies: string[] = [];
    for (let i = 0; i < rcpts.length + 2; i++) replies.push(line(await client.read()));
    const raw = rawMessage(FROM, [...rcpts], tag);
    if (replies.at(-1)!.startsWith('354 ')) {
      client.write(raw + '.\r\n');
      replies.push(line(await client.read()));
    }
    return { replies, raw, client };
  }

  /** The messages the provider accepted, as [sha256, recipients]. */
  const delivered = () => stack.sandbox.messages.map((m) => [m.sha256, [...m.rcptTo].sort()]);

  /** After a refused group, the same session still delivers, once. */
  async function stillDelivers(client: RawSmtp, tag: string): Promise<void> {
    await client.cmd('RSET');
    const raw = rawMessage(FROM, [R[0]!], tag);
    expect(line(await client.send(FROM, [R[0]!], raw))).toMatch(/^250 /);
    expect(delivered()).toEqual([[sha256(raw), [R[0]]]]);
  }

  it('MAIL refused: the provider\'s reply at MAIL, the RCPTs and DATA refused after it; nothing delivered', async () => {
    fault({ at: 'mail', code: 550, enhanced: '5.7.1', text: 'Sender blocked by policy [mail-position]' });
    const { replies, client } = await group(R, 'mail-refused');
    expect(replies[0]).toBe('550 5.7.1 Sender blocked by policy [mail-position]');
    expect(replies.slice(1)).toEqual([...R.map(() => expect.stringMatching(/^503 5\.5\.1 /)), expect.stringMatching(/^503 5\.5\.1 /)]);
    expect(delivered()).toEqual([]);
    await stillDelivers(client, 'after-mail-refused');
  });

  it('the first RCPT refused: its reply is the provider\'s, the others 250; delivered once to the others', async () => {
    fault({ at: 'rcpt', recipient: R[0], code: 550, enhanced: '5.1.1', text: 'No such user here [first-rcpt]' });
    const { replies, raw } = await group(R, 'first-rcpt-refused');
    expect(replies).toEqual([
      expect.stringMatching(/^250 /),
      '550 5.1.1 No such user here [first-rcpt]',
      expect.stringMatching(/^250 /),
      expect.stringMatching(/^250 /),
      expect.stringMatching(/^354 /),
      expect.stringMatching(/^250 /),
    ]);
    expect(delivered()).toEqual([[sha256(raw), [R[1], R[2]]]]);
  });

  it('a middle RCPT refused (4xx): its reply is the provider\'s, the others 250; delivered once to the others', async () => {
    fault({ at: 'rcpt', recipient: R[1], code: 452, enhanced: '4.2.2', text: 'Mailbox full, try later [middle-rcpt]' });
    const { replies, raw } = await group(R, 'middle-rcpt-refused');
    expect(replies).toEqual([
      expect.stringMatching(/^250 /),
      expect.stringMatching(/^250 /),
      '452 4.2.2 Mailbox full, try later [middle-rcpt]',
      expect.stringMatching(/^250 /),
      expect.stringMatching(/^354 /),
      expect.stringMatching(/^250 /),
    ]);
    expect(delivered()).toEqual([[sha256(raw), [R[0], R[2]]]]);
  });

  it('every RCPT refused: each gets the provider\'s own reply, DATA 554; nothing delivered, the session goes on', async () => {
    for (const [i, r] of R.entries()) fault({ at: 'rcpt', recipient: r, code: 550, enhanced: '5.1.1', text: `Unknown ${i} [every-rcpt]` });
    const { replies, client } = await group(R, 'every-rcpt-refused');
    expect(replies).toEqual([
      expect.stringMatching(/^250 /),
      '550 5.1.1 Unknown 0 [every-rcpt]',
      '550 5.1.1 Unknown 1 [every-rcpt]',
      '550 5.1.1 Unknown 2 [every-rcpt]',
      '554 5.5.1 No valid recipients',
    ]);
    expect(delivered()).toEqual([]);
    await stillDelivers(client, 'after-every-rcpt-refused');
  });

  it('DATA refused instead of 354: the provider\'s reply at DATA; nothing delivered, the session goes on', async () => {
    fault({ at: 'dataCommand', code: 451, enhanced: '4.3.0', text: 'Not now, try again [data-command]' });
    const { replies, client } = await group(R, 'data-command-refused');
    expect(replies).toEqual([...Array.from({ length: 4 }, () => expect.stringMatching(/^250 /)), '451 4.3.0 Not now, try again [data-command]']);
    expect(delivered()).toEqual([]);
    await stillDelivers(client, 'after-data-command-refused');
  });

  it('DATA refused instead of 354, one command at a time (no group): the next transaction is not a "nested MAIL" upstream', async () => {
    fault({ at: 'dataCommand', code: 451, enhanced: '4.3.0', text: 'Not now [data-command-alone]' });
    const { client } = await RawSmtp.connect(stack.port);
    onTestFinished(() => client.close());
    await client.cmd('EHLO mta.test');
    expect((await client.cmd(`MAIL FROM:<${FROM}>`)).code).toBe(250);
    expect((await client.cmd(`RCPT TO:<${R[0]}>`)).code).toBe(250);
    expect(line(await client.cmd('DATA'))).toBe('451 4.3.0 Not now [data-command-alone]');
    expect(delivered()).toEqual([]);
    await stillDelivers(client, 'after-data-command-alone');
  });

  it('the end of data refused: the provider\'s reply after the body; nothing delivered, the session goes on', async () => {
    fault({ at: 'data', code: 554, enhanced: '5.7.1', text: 'Message rejected as spam [end-of-data]' });
    const { replies, client } = await group(R, 'end-of-data-refused');
    expect(replies).toEqual([
      ...Array.from({ length: 4 }, () => expect.stringMatching(/^250 /)),
      expect.stringMatching(/^354 /),
      '554 5.7.1 Message rejected as spam [end-of-data]',
    ]);
    expect(delivered()).toEqual([]);
    await stillDelivers(client, 'after-end-of-data-refused');
  });
});
