// Shared mailboxes and send-as, as Exchange Online and Gmail do them (docs/operations.md,
// "Shared mailboxes and send-as"): the licensed delegate is the account that logs in, the shared
// address is one of its senders. Through SMTP, Microsoft Graph and the Gmail API, with the
// sandbox answering as Exchange does: 535 5.7.3 for a shared mailbox as the XOAUTH2 identity,
// 554 5.2.252 SendAsDenied at the end of DATA without Send As; and the advice the relay gives.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxRelayConfig } from '../../src/sandbox/relay-config.js';
import { freePort, runCliAsync, writeYaml } from '../helpers/cli.js';
import { RawSmtp, line } from '../helpers/smtp-client.js';
import { KEY_ENV, rawMessage, startStack, type Stack } from '../helpers/stack.js';

const BOB = 'bob@contoso.test'; // licensed delegate, SMTP
const INFO = 'info@contoso.test'; // shared mailbox
const DAN = 'dan@fabrikam.test'; // licensed delegate, Graph
const SALES = 'sales@fabrikam.test'; // shared mailbox
const EVE = 'eve@gmail.test'; // Gmail API
const ALIAS = 'hello@eve-alias.test'; // Eve's send-as alias in Gmail

/** MAIL, RCPT and DATA in one write, as an MTA pipelines them (RFC 2920); then the body. */
async function pipelined(port: number, from: string, to: string, raw: string): Promise<{ mail: string; rcpt: string; data: string; end: string }> {
  const { client } = await RawSmtp.connect(port);
  try {
    await client.cmd('EHLO mta.test');
    client.write(`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nDATA\r\n`);
    const [mail, rcpt, data] = [line(await client.read()), line(await client.read()), line(await client.read())];
    if (!data.startsWith('354')) return { mail, rcpt, data, end: '' };
    client.write(raw + '.\r\n');
    return { mail, rcpt, data, end: line(await client.read(15_000)) };
  } finally {
    client.close();
  }
}

describe('shared mailboxes and send-as', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      // One refresh token serves two configs below (the delegate's, and the misconfigured shared one).
      sandbox: { rotateRefreshTokens: { microsoft: false } },
      accounts: [
        { email: BOB, kind: 'microsoft', senders: [BOB, INFO] },
        { email: DAN, kind: 'microsoft', senders: [DAN, SALES], extra: { upstream: 'graph' } },
        { email: EVE, kind: 'google', senders: [EVE, ALIAS], extra: { upstream: 'gmail_api' } },
      ],
      overrides: { http: { host: '127.0.0.1', port: 0 } },
    });
    stack.sandbox.addSharedMailbox({ address: INFO, sendAs: [BOB] });
    stack.sandbox.addSharedMailbox({ address: SALES, sendAs: [DAN] });
  });
  afterAll(() => stack?.stop());

  it('SMTP: the delegate sends as the shared mailbox with Send As; without it, Exchange’s 554 5.2.252 at the end of DATA reaches the MTA, with advice on the status page', async () => {
    const ok = await pipelined(stack.port, INFO, 'x@example.net', rawMessage(INFO, ['x@example.net'], 'shared-ok'));
    expect(ok.end).toMatch(/^250 /);
    expect(stack.sandbox.messages.at(-1)).toMatchObject({ authUser: BOB, mailFrom: INFO });

    stack.sandbox.state.setSendAs(INFO, BOB, false);
    const denied = await pipelined(stack.port, INFO, 'y@example.net', rawMessage(INFO, ['y@example.net'], 'shared-denied'));
    // Exchange accepts MAIL and RCPT; it checks Send As when it submits the message.
    expect(denied.mail).toMatch(/^250 /);
    expect(denied.rcpt).toMatch(/^250 /);
    expect(denied.end).toMatch(/^554 5\.2\.252 SendAsDenied; bob@contoso\.test not allowed to send as info@contoso\.test; STOREDRV\.Submission\.Exception:SendAsDeniedException/);

    const status = (await (await fetch(`http://127.0.0.1:${stack.app.adminPort}/status.json`)).json()) as { recent_refusals: Array<{ reply: string; advice: string | null }> };
    const refusal = status.recent_refusals.find((r) => r.reply.includes('SendAsDenied'));
    expect(refusal?.advice).toMatch(/Log in as the delegate and grant it Send As.*Add-RecipientPermission/);
    stack.sandbox.state.setSendAs(INFO, BOB, true);
  });

  it('SMTP: Exchange’s Send As check reads the From field as an address list, not the first <…> in it', async () => {
    stack.sandbox.state.setSendAs(INFO, BOB, false);
    try {
      // The envelope is Bob's own; the From's display name quotes Bob's address, the address is the shared one.
      const raw = `From: "Bob <${BOB}>" <${INFO}>\r\nTo: <z@example.net>\r\nSubject: display name\r\n\r\nhello\r\n`;
      const denied = await pipelined(stack.port, BOB, 'z@example.net', raw);
      expect(denied.mail).toMatch(/^250 /);
      expect(denied.end).toMatch(/^554 5\.2\.252 SendAsDenied; bob@contoso\.test not allowed to send as info@contoso\.test;/);
    } finally {
      stack.sandbox.state.setSendAs(INFO, BOB, true);
    }
  });

  it('Microsoft Graph: the delegate sends with the shared From; without Send As, Graph’s ErrorSendAsDenied becomes a permanent 554 5.7.1 SendAsDenied', async () => {
    const ok = await pipelined(stack.port, SALES, 'x@example.net', rawMessage(SALES, ['x@example.net'], 'graph-ok'));
    expect(ok.end).toMatch(/^250 /);
    expect(stack.sandbox.graph.messages.at(-1)).toMatchObject({ authUser: DAN });
    expect(stack.sandbox.graph.messages.at(-1)!.body.toString()).toContain(`From: <${SALES}>`);

    stack.sandbox.state.setSendAs(SALES, DAN, false);
    const denied = await pipelined(stack.port, SALES, 'y@example.net', rawMessage(SALES, ['y@example.net'], 'graph-denied'));
    expect(denied.end).toMatch(/^554 5\.7\.1 SendAsDenied: Microsoft Graph refused the From address \(ErrorSendAsDenied\)/);
    stack.sandbox.state.setSendAs(SALES, DAN, true);
  });

  it('Gmail API: the account sends as an alias listed in its senders; an address it does not list never reaches Google', async () => {
    const before = stack.sandbox.gmail.messages.length;
    const ok = await pipelined(stack.port, ALIAS, 'x@example.net', rawMessage(ALIAS, ['x@example.net'], 'alias-ok'));
    expect(ok.end).toMatch(/^250 /);
    expect(stack.sandbox.gmail.messages.at(-1)).toMatchObject({ authUser: EVE });
    expect(stack.sandbox.gmail.messages.at(-1)!.body.toString()).toContain(`From: <${ALIAS}>`);
    const stranger = await pipelined(stack.port, 'someone@eve-alias.test', 'x@example.net', rawMessage('someone@eve-alias.test', ['x@example.net'], 'alias-no'));
    expect(stranger.mail).toMatch(/^550 5\.7\.1 /);
    expect(stack.sandbox.gmail.messages.length).toBe(before + 1);
  });

  it('accounts test: a shared mailbox configured as the account gets Exchange’s 535 5.7.3 and the advice to log in as the delegate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-shared-'));
    try {
      const bob = stack.accounts.get(BOB)!;
      // The common mistake: the shared address as the account, with the delegate's consent.
      const doc = sandboxRelayConfig(stack.sandbox, [{ account: { ...bob, email: INFO }, senders: [INFO] }], {
        store: { path: join(dir, 'relay.db') },
        http: { host: '127.0.0.1', port: await freePort() },
      });
      const file = writeYaml(dir, doc);
      const r = await runCliAsync(['accounts', 'test', INFO, '--config', file], { env: KEY_ENV });
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/FAILED at auth: .*535 5\.7\.3 Authentication unsuccessful/);
      expect(r.stdout).toMatch(/what to do: .*info@contoso\.test is a shared mailbox.*A shared mailbox cannot log in: make the account the licensed user who has Send As on it/);
      expect(stack.sandbox.smtp.authAttempts().at(-1)).toMatchObject({ user: INFO, outcome: 'shared-mailbox' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
