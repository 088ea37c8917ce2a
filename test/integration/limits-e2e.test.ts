// Sending limits and account pools end to end, on the embedded store: over a limit the MTA hears
// 451 4.7.1 with when to retry and nothing goes upstream; counts survive a restart; a provider's
// quota reply pauses the account; a pool sends through whichever account still has room.
import { describe, expect, it } from 'vitest';
import { NO_LIMITS } from '../../src/config/account-limits.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, startStack, type Stack, type StackAccount } from '../helpers/stack.js';

const limited = (email: string, limits: Record<string, number | null>, senders = [email], password?: string): StackAccount => ({
  email,
  kind: 'google',
  senders,
  ...(password ? { password } : {}),
  extra: { limits: { ...NO_LIMITS, ...limits } },
});

/** MAIL commands the provider has seen: "nothing went upstream" is this not moving. */
const upstreamMails = (stack: Stack) => stack.sandbox.smtp.connectionLog().reduce((n, c) => n + c.mailCommands, 0);

/** One transaction on an open session; the first reply that is not positive, or the final one. */
async function send(client: RawSmtp, from: string, to: string[], tag: string): Promise<string> {
  const mail = await client.cmd(`MAIL FROM:<${from}>`);
  if (mail.code !== 250) return line(mail);
  const refused: string[] = [];
  for (const rcpt of to) {
    const r = await client.cmd(`RCPT TO:<${rcpt}>`);
    if (r.code !== 250) refused.push(line(r));
  }
  if (refused.length === to.length) {
    await client.cmd('RSET');
    return refused[0]!;
  }
  await client.cmd('DATA');
  client.write(rawMessage(from, to, tag) + '.\r\n');
  const final = line(await client.read());
  return refused.length ? `${refused.join(' ; ')} ; ${final}` : final;
}

async function session(stack: Stack, auth?: { user: string; pass: string }): Promise<RawSmtp> {
  const { client } = await RawSmtp.connect(stack.port);
  await client.cmd('EHLO mta.test');
  if (auth) expect((await client.cmd('AUTH PLAIN ' + Buffer.from(`\0${auth.user}\0${auth.pass}`).toString('base64'))).code).toBe(235);
  return client;
}

const retrySeconds = (reply: string) => Number(/try again in (\d+) s/.exec(reply)?.[1]);

describe('sending limits', () => {
  it('over messages_per_day: 451 4.7.1 with the retry time at MAIL, nothing upstream; a restart does not reset the day', async () => {
    const account = limited('day@gmail.test', { messages_per_day: 3 });
    const stack = await startStack({ accounts: [account] });
    let second: Stack | null = null;
    try {
      const client = await session(stack);
      for (let i = 0; i < 3; i++) expect(await send(client, 'day@gmail.test', ['r@example.net'], `day-${i}`)).toMatch(/^250 /);
      const mails = upstreamMails(stack);
      const over = await send(client, 'day@gmail.test', ['r@example.net'], 'day-over');
      expect(over).toMatch(/^451 4\.7\.1 Sending limit reached \(messages_per_day 3\), try again in \d+ s$/);
      // The three went this hour: they leave the rolling day 24 to 25 hours from now.
      expect(retrySeconds(over)).toBeGreaterThan(23 * 3600);
      expect(retrySeconds(over)).toBeLessThanOrEqual(25 * 3600);
      expect(upstreamMails(stack)).toBe(mails);
      client.close();

      await stack.stopRelay();
      second = await startStack({ accounts: [account], provider: stack.sandbox, dir: stack.dir });
      const again = await session(second);
      expect(await send(again, 'day@gmail.test', ['r@example.net'], 'after-restart')).toMatch(/^451 4\.7\.1 /);
      again.close();
      expect(stack.sandbox.messages).toHaveLength(3);
    } finally {
      await second?.stopRelay();
      await stack.stop();
    }
  });

  it('a transaction reset before DATA gives its reservation back', async () => {
    const stack = await startStack({ accounts: [limited('rset@gmail.test', { messages_per_day: 2 })] });
    try {
      const client = await session(stack);
      for (let i = 0; i < 5; i++) {
        expect((await client.cmd('MAIL FROM:<rset@gmail.test>')).code).toBe(250);
        expect((await client.cmd('RCPT TO:<r@example.net>')).code).toBe(250);
        expect((await client.cmd('RSET')).code).toBe(250);
      }
      // A refused message is not sent either.
      stack.sandbox.smtp.addFault({ at: 'data', code: 554, enhanced: '5.6.0', text: 'Message refused', times: 1 });
      expect(await send(client, 'rset@gmail.test', ['r@example.net'], 'refused')).toMatch(/^554 5\.6\.0 /);
      expect(await send(client, 'rset@gmail.test', ['r@example.net'], 'one')).toMatch(/^250 /);
      expect(await send(client, 'rset@gmail.test', ['r@example.net'], 'two')).toMatch(/^250 /);
      expect(await send(client, 'rset@gmail.test', ['r@example.net'], 'three')).toMatch(/^451 4\.7\.1 /);
      client.close();
    } finally {
      await stack.stop();
    }
  });

  it('recipients: 452 4.5.3 past recipients_per_message, 451 4.7.1 past recipients_per_day, the rest go', async () => {
    const stack = await startStack({ accounts: [limited('rcpt@gmail.test', { recipients_per_day: 4, recipients_per_message: 2 })] });
    try {
      const client = await session(stack);
      const three = await send(client, 'rcpt@gmail.test', ['a@example.net', 'b@example.net', 'c@example.net'], 'per-message');
      expect(three).toMatch(/^452 4\.5\.3 .* ; 250 /);
      expect(stack.sandbox.messages.at(-1)?.rcptTo).toEqual(['a@example.net', 'b@example.net']);
      const two = await send(client, 'rcpt@gmail.test', ['d@example.net', 'e@example.net'], 'per-day');
      expect(two).toMatch(/^250 /);
      const over = await send(client, 'rcpt@gmail.test', ['f@example.net'], 'over');
      expect(over).toMatch(/^451 4\.7\.1 Sending limit reached \(recipients_per_day 4\)/);
      expect(stack.sandbox.messages.map((m) => m.rcptTo.length)).toEqual([2, 2]);
      client.close();
    } finally {
      await stack.stop();
    }
  });

  it("a provider's daily-quota reply at DATA becomes 451 4.7.1 and pauses the account: no further MAIL goes upstream", async () => {
    const stack = await startStack({ accounts: [limited('quota@gmail.test', {})] });
    try {
      stack.sandbox.smtp.addFault({ at: 'data', code: 550, enhanced: '5.4.5', text: 'Daily user sending limit exceeded.', times: 1 });
      const client = await session(stack);
      const refused = await send(client, 'quota@gmail.test', ['r@example.net'], 'quota');
      expect(refused).toMatch(/^451 4\.7\.1 Account over its daily quota at the provider, try again in 3600 s$/);
      const mails = upstreamMails(stack);
      const paused = await send(client, 'quota@gmail.test', ['r@example.net'], 'paused');
      expect(paused).toMatch(/^451 4\.7\.1 Sending limit reached \(paused: daily quota: 550 5\.4\.5 Daily user sending limit exceeded\.\), try again in 3\d{3} s$/);
      expect(upstreamMails(stack)).toBe(mails);
      client.close();
    } finally {
      await stack.stop();
    }
  });
});

describe('account pools', () => {
  const pool = (limits: Record<string, number | null>, password?: string) => [
    limited('one@gmail.test', limits, ['*@pool.test'], password),
    limited('two@gmail.test', limits, ['*@pool.test']),
  ];

  it('spreads a sender over the accounts with most headroom, and answers 451 4.7.1 only when all are full', async () => {
    const stack = await startStack({ accounts: pool({ messages_per_day: 3 }) });
    try {
      const client = await session(stack);
      for (let i = 0; i < 6; i++) expect(await send(client, `news${i}@pool.test`, ['r@example.net'], `pool-${i}`)).toMatch(/^250 /);
      const by = (user: string) => stack.sandbox.messages.filter((m) => m.authUser === user).length;
      expect([by('one@gmail.test'), by('two@gmail.test')]).toEqual([3, 3]);
      // Most headroom first: the two accounts took turns.
      expect(stack.sandbox.messages.slice(0, 4).map((m) => m.authUser)).toEqual(['one@gmail.test', 'two@gmail.test', 'one@gmail.test', 'two@gmail.test']);
      expect(await send(client, 'news@pool.test', ['r@example.net'], 'pool-over')).toMatch(/^451 4\.7\.1 No account for this sender is under its sending limits, try again in \d+ s$/);
      client.close();
    } finally {
      await stack.stop();
    }
  });

  it("a quota reply at MAIL pauses that account and the message goes through the pool's next one at once", async () => {
    const stack = await startStack({ accounts: pool({}) });
    try {
      stack.sandbox.smtp.addFault({ at: 'mail', code: 550, enhanced: '5.4.5', text: 'Daily user sending limit exceeded.', user: 'one@gmail.test' });
      const client = await session(stack);
      for (let i = 0; i < 4; i++) expect(await send(client, 'news@pool.test', ['r@example.net'], `failover-${i}`)).toMatch(/^250 /);
      expect(stack.sandbox.messages.map((m) => m.authUser)).toEqual(Array(4).fill('two@gmail.test'));
      // Refused once, then left alone: the paused account is not asked again.
      expect(stack.sandbox.smtp.listFaults()[0]!.fired).toBe(1);
      expect(stack.app.relay.pauses.get('one@gmail.test')?.reason).toMatch(/^daily quota: 550 5\.4\.5 /);
      client.close();
    } finally {
      await stack.stop();
    }
  });

  it('an authenticated session keeps its own account: over its limit it gets 451 though the pool has room', async () => {
    const stack = await startStack({ accounts: pool({ messages_per_day: 1 }, 'pw-one-123') });
    try {
      const client = await session(stack, { user: 'one@gmail.test', pass: 'pw-one-123' });
      expect(await send(client, 'a@pool.test', ['r@example.net'], 'auth-1')).toMatch(/^250 /);
      expect(await send(client, 'b@pool.test', ['r@example.net'], 'auth-2')).toMatch(/^451 4\.7\.1 Sending limit reached \(messages_per_day 1\)/);
      expect(stack.sandbox.messages.map((m) => m.authUser)).toEqual(['one@gmail.test']);
      client.close();
    } finally {
      await stack.stop();
    }
  });
});
