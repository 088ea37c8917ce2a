// Dovecot's submission service as the relay's provider (test/helpers/dovecot.ts): an XOAUTH2
// server nobody here wrote, checking the sandbox's tokens through RFC 7662 introspection and
// relaying to a sink. What the relay must show against it: the bytes arrive as sent, the replies
// to MAIL, each RCPT and the end of DATA are Dovecot's own, and a token Dovecot refuses (its 334
// JSON challenge, then 535) costs exactly one refresh and a retry.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { xoauth2String } from '../../src/upstream/xoauth2.js';
import type { Reply } from '../../src/smtp/reply.js';
import { DovecotSubmission, SmtpSink } from '../helpers/dovecot.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const ACCOUNT = 'sender@example.com';
const PASSWORD = 'relay-pw-dovecot-1';
// The refused-token test's own account: a relay stopped by an earlier test must not be able to
// add a token request to its count.
const REFRESHER = 'refresher@example.com';

let sandbox: SandboxProvider;
let sink: SmtpSink;
let dovecot: DovecotSubmission;

beforeAll(async () => {
  sandbox = await SandboxProvider.start();
  sandbox.addAccount({ email: ACCOUNT, kind: 'google' });
  sandbox.addAccount({ email: REFRESHER, kind: 'google' });
  sink = await SmtpSink.start();
  dovecot = await DovecotSubmission.start(sandbox.tokens.introspectionUrl(), sink.port);
}, 30_000);

afterAll(async () => {
  await dovecot?.stop();
  await sink?.stop();
  await sandbox?.stop();
});

/** A relay whose google provider is Dovecot (STARTTLS, the sandbox CA), sharing the sandbox's token endpoint. */
function relayToDovecot(extra: Record<string, unknown> = {}, account = ACCOUNT): Promise<Stack> {
  const smtp = { host: '127.0.0.1', port: dovecot.port, security: 'starttls' };
  return startStack({
    provider: sandbox,
    accounts: [{ email: account, kind: 'google', password: PASSWORD, senders: [account], extra }],
    overrides: {
      inbound: { trusted_networks: [] },
      providers: { google: { token_url: sandbox.tokenUrl('google'), smtp, ca_file: sandbox.caFile } },
    },
  });
}

/** A session to the relay, authenticated as the account. */
async function relaySession(port: number, account = ACCOUNT): Promise<RawSmtp> {
  const { client } = await RawSmtp.connect(port);
  await client.cmd('EHLO mta.test');
  expect((await client.authPlain(account, PASSWORD)).code).toBe(235);
  return client;
}

/** A session straight to Dovecot, authenticated with a token the sandbox issued. */
async function dovecotSession(): Promise<RawSmtp> {
  const { client } = await RawSmtp.connect(dovecot.port);
  await client.cmd('EHLO mta.test');
  expect((await client.cmd('STARTTLS')).code).toBe(220);
  await client.upgrade(readFileSync(sandbox.caFile), 'localhost');
  await client.cmd('EHLO mta.test');
  expect((await client.cmd('AUTH XOAUTH2 ' + xoauth2String(ACCOUNT, sandbox.state.issueAccessToken(ACCOUNT)))).code).toBe(235);
  return client;
}

/** Every reply of one transaction, the rejected recipients' included: MAIL, each RCPT, DATA, end of data. */
async function transaction(client: RawSmtp, to: readonly string[], raw: string): Promise<Reply[]> {
  const replies = [await client.cmd(`MAIL FROM:<${ACCOUNT}>`)];
  for (const rcpt of to) replies.push(await client.cmd(`RCPT TO:<${rcpt}>`));
  const data = await client.cmd('DATA');
  replies.push(data);
  if (data.code === 354) {
    client.write(raw + '.\r\n');
    replies.push(await client.read());
  }
  return replies;
}

/** Dovecot prepends one Received header (with its continuation lines); the rest is the client's. */
function withoutDovecotReceived(body: Buffer): string {
  const m = /^Received: from [^\r]*\r\n(?:\t[^\r]*\r\n)*/.exec(body.toString('latin1'));
  expect(m, 'Dovecot\'s Received header').not.toBeNull();
  return body.toString('latin1').slice(m![0].length);
}

const shown = (replies: Reply[]) => replies.map((r) => `${r.code} ${r.lines.join(' | ')}`);

describe('Dovecot submission as the provider', () => {
  it('relays messages to it byte for byte (but for Dovecot\'s own Received header)', async () => {
    const stack = await relayToDovecot();
    const client = await relaySession(stack.port);
    try {
      sink.messages.length = 0;
      const bodies = [
        rawMessage(ACCOUNT, ['to@example.net'], 'dc-plain'),
        rawMessage(ACCOUNT, ['to@example.net'], 'dc-dots', ['.leading dot', '..', '.', 'x.', ' .', 'end']),
        rawMessage(ACCOUNT, ['to@example.net'], 'dc-long', Array.from({ length: 2000 }, (_, i) => `${i} ${'y'.repeat(i % 900)}`)),
        rawMessage(ACCOUNT, ['to@example.net'], 'dc-8bit', ['Gr\u00fc\u00dfe aus M\u00fcnchen', 'caf\u00e9']),
      ];
      for (const raw of bodies) {
        const stuffed = raw.replace(/^\./gm, '..');
        expect((await client.send(ACCOUNT, ['to@example.net'], stuffed)).code).toBe(250);
      }
      await until(() => sink.messages.length >= bodies.length, 10_000, 'messages at the sink');
      expect(sink.messages).toHaveLength(bodies.length);
      bodies.forEach((raw, i) => {
        const arrived = sink.messages[i]!;
        expect(arrived.mailFrom).toBe(ACCOUNT);
        expect(arrived.rcptTo).toEqual(['to@example.net']);
        expect(sha256(Buffer.from(withoutDovecotReceived(arrived.body), 'latin1')), `message ${i}`).toBe(sha256(Buffer.from(raw)));
      });
    } finally {
      client.close();
      await stack.stop();
    }
  });

  it('answers MAIL, each RCPT and the end of data with Dovecot\'s own replies', async () => {
    const stack = await relayToDovecot();
    const to = ['first@example.net', 'refused@example.net', 'second@example.net'];
    const raw = rawMessage(ACCOUNT, ['first@example.net', 'second@example.net'], 'dc-replies');
    const direct = await dovecotSession();
    const viaRelay = await relaySession(stack.port);
    try {
      const own = shown(await transaction(direct, to, raw));
      // Dovecot's words for each, so the comparison below compares something.
      expect(own[0]).toMatch(/^250 2\.1\.0 /);
      expect(own[2]).toMatch(/^550 5\.0\.0 <refused@example\.net> 5\.1\.1 /);
      expect(own).toHaveLength(6);
      const relayed = shown(await transaction(viaRelay, to, raw));
      // The 354 is the relay's to give (SPEC); every other reply is Dovecot's, word for word.
      expect(relayed[4]).toMatch(/^354 /);
      expect({ ...relayed, 4: '354' }).toEqual({ ...own, 4: '354' });
    } finally {
      direct.close();
      viaRelay.close();
      await stack.stop();
    }
  });

  it('a token Dovecot refuses is answered by one refresh and a retry', async () => {
    // No idle upstream connection: the first message opens one, with the token cached at start.
    const atStart = sandbox.tokens.requests(REFRESHER);
    const stack = await relayToDovecot({ min_idle: 0 }, REFRESHER);
    const client = await relaySession(stack.port, REFRESHER);
    try {
      sink.messages.length = 0;
      await until(() => sandbox.tokens.requests(REFRESHER) > atStart, 10_000, 'the token the relay caches at start');
      const refreshes = sandbox.tokens.requests(REFRESHER);
      const introspections = sandbox.tokens.introspections(REFRESHER);
      expect(sandbox.state.revokeAccessTokens(REFRESHER)).toBeGreaterThan(0);

      const raw = rawMessage(REFRESHER, ['to@example.net'], 'dc-refused-token');
      const reply = await client.send(REFRESHER, ['to@example.net'], raw);
      expect(`${reply.code} ${reply.lines.join(' | ')}`).toMatch(/^250 /);
      const log = sandbox.tokens.log(REFRESHER).slice(-4).map((r) => `${r.at.toISOString()} ${r.path} ${r.clientId} ${r.status}`);
      expect(sandbox.tokens.requests(REFRESHER) - refreshes, `token refreshes (the last requests: ${log.join(', ')})`).toBe(1);
      // Dovecot asked the sandbox about the refused token and then about the new one.
      expect(sandbox.tokens.introspections(REFRESHER) - introspections).toBe(2);
      await until(() => sink.messages.length >= 1, 10_000, 'the message at the sink');
      expect(sink.messages.map((m) => sha256(Buffer.from(withoutDovecotReceived(m.body), 'latin1')))).toEqual([sha256(raw)]);
    } finally {
      client.close();
      await stack.stop();
    }
  });
});
