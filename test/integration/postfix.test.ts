// A real MTA in front of the relay: Postfix (from Debian, scripts/test-deps.sh), configured with
// the settings docs/operations.md gives, relays what a local program submits with sendmail to
// the relay, authenticating as the account; the relay hands it to the sandbox provider.
// The relay trusts no network here, so a message can only get through with the account's AUTH.
import { describe, expect, it } from 'vitest';
import { PostfixInstance } from '../helpers/postfix.js';
import { sha256, startStack } from '../helpers/stack.js';

const ACCOUNT = 'sender@example.com';
const PASSWORD = 'relay-pw-postfix-1';

/** A message as a local program writes it to sendmail: LF line ends. */
function message(tag: string, body: string[]): string {
  return [
    `From: Sender <${ACCOUNT}>`,
    'To: <to@example.net>, <cc@example.org>',
    `Subject: ${tag}`,
    `Message-ID: <${tag}@postfix.test>`,
    'Date: Thu, 01 Jan 2026 00:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    ...body,
    '',
  ].join('\n');
}

const crlf = (s: string) => s.replace(/\n/g, '\r\n');
const bodyOf = (m: Buffer | string) => {
  const text = m.toString();
  return text.slice(text.indexOf('\r\n\r\n') + 4);
};

const MESSAGES = [
  { tag: 'pf-plain', body: ['Hello from Postfix.'] },
  // Lines SMTP must dot-stuff (Postfix out, relay in and out again) and one mbox would escape.
  { tag: 'pf-dots', body: ['.leading dot', '.', '..', 'From the start of a line', 'trailing space ', '\tand a tab'] },
  { tag: 'pf-long', body: Array.from({ length: 400 }, (_, i) => `line ${i} ${'x'.repeat(70)}`) },
];

/** The relay with the account; no trusted network, so only the account's AUTH gets mail through. */
const relayTrustingNoNetwork = () =>
  startStack({ accounts: [{ email: ACCOUNT, kind: 'google', password: PASSWORD, senders: [ACCOUNT] }], overrides: { inbound: { trusted_networks: [] } } });

describe('Postfix in front of the relay', () => {
  it('relays what sendmail submits, as the account, with headers and bodies unchanged but for Postfix\'s Received', async () => {
    const stack = await relayTrustingNoNetwork();
    let postfix: PostfixInstance | null = null;
    try {
      postfix = await PostfixInstance.start(stack.port, ACCOUNT, PASSWORD);
      for (const m of MESSAGES) postfix.submit(ACCOUNT, ['to@example.net', 'cc@example.org'], message(m.tag, m.body));
      await postfix.until(() => stack.sandbox.messages.length >= MESSAGES.length, 30_000, `${MESSAGES.length} messages at the provider`);

      expect(stack.sandbox.messages).toHaveLength(MESSAGES.length);
      for (const m of MESSAGES) {
        const sent = crlf(message(m.tag, m.body));
        const arrived = stack.sandbox.messages.find((a) => a.body.includes(`Message-ID: <${m.tag}@postfix.test>`));
        expect(arrived, m.tag).toBeDefined();
        expect(arrived!.authUser).toBe(ACCOUNT);
        expect(arrived!.mailFrom).toBe(ACCOUNT);
        expect([...arrived!.rcptTo].sort()).toEqual(['cc@example.org', 'to@example.net']);
        expect(sha256(bodyOf(arrived!.body)), `${m.tag} body`).toBe(sha256(bodyOf(sent)));
        // Postfix prepends its Received header; everything the program wrote follows, byte for byte.
        const text = arrived!.body.toString();
        expect(text.startsWith('Received: by mta.postfix.test (Postfix')).toBe(true);
        expect(text.endsWith(sent), `${m.tag} headers and body`).toBe(true);
        expect(text.slice(0, text.length - sent.length).match(/^Received:/gm)).toHaveLength(1);
      }
      // Postfix logs each recipient's delivery as sent via the relay once the relay's 250 is in,
      // which is after the provider has the message: wait for the lines, then count them exactly.
      const sent = () => postfix!.maillog().match(/relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent/g) ?? [];
      await postfix.until(() => sent().length >= MESSAGES.length * 2, 10_000, 'the deliveries in the Postfix log');
      expect(sent()).toHaveLength(MESSAGES.length * 2);
    } finally {
      await postfix?.stop();
      await stack.stop();
    }
  });

  it('with a wrong password Postfix is refused at AUTH and keeps the message queued', async () => {
    const stack = await relayTrustingNoNetwork();
    let postfix: PostfixInstance | null = null;
    try {
      postfix = await PostfixInstance.start(stack.port, ACCOUNT, 'not-the-password');
      postfix.submit(ACCOUNT, ['to@example.net'], message('pf-refused', ['Should wait in the queue.']));
      await postfix.until(() => /status=deferred/.test(postfix!.maillog()), 30_000, 'a deferral');
      expect(postfix.maillog()).toMatch(/SASL authentication failed; server 127\.0\.0\.1\[127\.0\.0\.1\] said: 535/);
      expect(stack.sandbox.messages).toHaveLength(0);
    } finally {
      await postfix?.stop();
      await stack.stop();
    }
  });
});
