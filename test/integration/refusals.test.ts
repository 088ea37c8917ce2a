// Issue 11, item 1: every reply of 400 or above the relay gives an MTA — its own (routing, AUTH,
// limits, no token) or the provider's passed through (RCPT, end of DATA) — is one `refused` log
// line and one count of xoauth2_relay_refusals_total, by stage, code class and reason, with the
// account when one was picked. Counted from the client's side: what the MTAs saw is what the
// operator sees, no more and no less.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_LIMITS } from '../../src/config/account-limits.js';
import type { Reply } from '../../src/smtp/reply.js';
import { captureLog } from '../helpers/log-capture.js';
import { refusalCounts, refusedLines } from '../helpers/refusal-log.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, startStack, type Stack } from '../helpers/stack.js';

const A = 'a@gmail.test';
const B = 'b@gmail.test';
const PASSWORD = 'pw-a-0123456789';


describe('every refusal is logged and counted once', () => {
  let stack: Stack;
  const log = captureLog('info');
  const seen: Reply[] = [];

  /** A command whose reply the test keeps (every reply an MTA would see). */
  async function cmd(client: RawSmtp, line: string): Promise<Reply> {
    const r = await client.cmd(line);
    seen.push(r);
    return r;
  }

  const refusalsMetric = () => refusalCounts(stack.app.adminPort);

  beforeAll(async () => {
    stack = await startStack({
      logger: log.logger,
      accounts: [
        { email: A, kind: 'google', password: PASSWORD, senders: [A], extra: { limits: { ...NO_LIMITS, messages_per_day: 1 } } },
        { email: B, kind: 'google', senders: [B] },
      ],
      overrides: { inbound: { trusted_networks: ['127.0.0.1/32'], auth_failure_delay_ms: 0 } },
    });
  });
  afterAll(() => stack.stop());

  it('AUTH, MAIL, RCPT and DATA refusals, the relay\'s and the provider\'s, each one log line and one count with its reason', async () => {
    const before = await refusalsMetric();
    expect([...before.values()].reduce((a, b) => a + b, 0)).toBe(0);

    // A stranger (127.0.0.2 is not trusted here): MAIL without AUTH, then a wrong password.
    const { client: stranger } = await RawSmtp.connect(stack.port, '127.0.0.1', { localAddress: '127.0.0.2' });
    await cmd(stranger, 'EHLO mta.test');
    expect((await cmd(stranger, `MAIL FROM:<${A}>`)).code).toBe(530);
    expect((await cmd(stranger, 'AUTH PLAIN ' + Buffer.from(`\0${A}\0wrong-password`).toString('base64'))).code).toBe(535);
    stranger.close();

    // A trusted MTA: a sender no account has; then A's transaction with a refused RCPT and a refused DATA.
    const { client } = await RawSmtp.connect(stack.port);
    await cmd(client, 'EHLO mta.test');
    expect((await cmd(client, 'MAIL FROM:<nobody@unknown.test>')).code).toBe(550);
    stack.sandbox.smtp.addFault({ at: 'rcpt', recipient: 'gone@example.net', code: 550, enhanced: '5.1.1', text: 'No such user', times: 1 });
    stack.sandbox.smtp.addFault({ at: 'data', code: 554, enhanced: '5.6.0', text: 'Message refused', times: 1 });
    expect((await cmd(client, `MAIL FROM:<${A}>`)).code).toBe(250);
    expect((await cmd(client, 'RCPT TO:<gone@example.net>')).code).toBe(550);
    expect((await cmd(client, 'RCPT TO:<ok@example.net>')).code).toBe(250);
    expect((await cmd(client, 'DATA')).code).toBe(354);
    client.write(rawMessage(A, ['ok@example.net'], 'refused-at-data') + '.\r\n');
    const final = await client.read();
    seen.push(final);
    expect(final.code).toBe(554);
    // A's one message of the day, then its limit.
    expect((await client.send(A, ['ok@example.net'], rawMessage(A, ['ok@example.net'], 'the-one'))).code).toBe(250);
    expect((await cmd(client, `MAIL FROM:<${A}>`)).code).toBe(451);
    await cmd(client, 'RSET');

    // B loses its token: the provider forgets it and the token endpoint fails.
    stack.sandbox.tokens.injectFault({ status: 500 }, { email: B });
    stack.sandbox.state.revokeAccessTokens(B);
    stack.sandbox.smtp.dropAllConnections();
    const noToken = await cmd(client, `MAIL FROM:<${B}>`);
    expect(noToken.code).toBe(454);
    client.close();
    stack.sandbox.tokens.clearFaults();

    const refusedReplies = seen.filter((r) => r.code >= 400);
    expect(refusedReplies).toHaveLength(7);
    // The log: one `refused` line per such reply, in order, with what it was.
    await new Promise((r) => setTimeout(r, 50));
    const lines = refusedLines(log);
    expect(lines.map((l) => l.code)).toEqual(refusedReplies.map((r) => r.code));
    expect(lines.map((l) => [l.stage, l.reason, l.account ?? null])).toEqual([
      ['mail', 'auth_required', null],
      ['auth', 'auth_failed', null],
      ['mail', 'no_account', null],
      ['rcpt', 'upstream', A],
      ['data', 'upstream', A],
      ['mail', 'limit', A],
      ['mail', expect.stringMatching(/^(no_token|upstream_auth)$/), B],
    ]);
    for (const [i, l] of lines.entries()) expect(l.reply.startsWith(String(refusedReplies[i]!.code))).toBe(true);
    // The provider's own words reach the log line as the MTA got them.
    expect(lines[3]!.reply).toBe('550 5.1.1 No such user');

    // The metric: the same seven, by stage, class, reason and account.
    const after = await refusalsMetric();
    expect([...after.values()].reduce((a, b) => a + b, 0)).toBe(7);
    expect(after.get('stage="rcpt",class="5xx",reason="upstream",account="a@gmail.test"')).toBe(1);
    expect(after.get('stage="mail",class="4xx",reason="limit",account="a@gmail.test"')).toBe(1);
    expect(after.get('stage="mail",class="5xx",reason="no_account",account=""')).toBe(1);
    expect(after.get('stage="auth",class="5xx",reason="auth_failed",account=""')).toBe(1);
  });
});
