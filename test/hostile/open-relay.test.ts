// Open-relay attempts from an address outside trusted_networks (here 127.0.0.1 is not trusted):
// without AUTH, whatever MAIL FROM says — a known sender, the null sender, a stranger — the
// answer is 530 and the provider sees nothing; XCLIENT cannot borrow a trusted address.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';

const ACCOUNT = 'boss@gmail.test';
const PASSWORD = 'open-relay-test-password';

describe('open relay attempts from an untrusted address', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: ACCOUNT, kind: 'google', password: PASSWORD, senders: [ACCOUNT, '*@corp.test'] }],
      overrides: { inbound: { trusted_networks: ['10.0.0.0/8'] } },
    });
  });
  afterAll(() => stack.stop());

  const upstreamMailCommands = () => stack.sandbox.smtp.connectionLog().reduce((n, c) => n + c.mailCommands, 0);

  it('no AUTH: MAIL FROM a known sender, the null sender or a stranger gets 530 5.7.0; RCPT and DATA get nowhere', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO spammer.test');
      for (const from of [ACCOUNT, 'ceo@corp.test', '', 'anyone@elsewhere.test', ACCOUNT.toUpperCase()]) {
        expect(line(await client.cmd(`MAIL FROM:<${from}>`))).toBe('530 5.7.0 Authentication required');
      }
      expect(line(await client.cmd('RCPT TO:<victim@example.net>'))).toMatch(/^503 /);
      expect(line(await client.cmd('DATA'))).toMatch(/^503 /);
      // XCLIENT would let a proxy claim another client address; nobody is allowed to use it.
      expect(line(await client.cmd('XCLIENT ADDR=10.1.2.3'))).toMatch(/^550 /);
      expect(line(await client.cmd(`MAIL FROM:<${ACCOUNT}>`))).toBe('530 5.7.0 Authentication required');
      // A failed AUTH does not open anything either.
      expect(line(await client.cmd('AUTH PLAIN ' + Buffer.from(`\0${ACCOUNT}\0guess`).toString('base64')))).toMatch(/^535 /);
      expect(line(await client.cmd(`MAIL FROM:<${ACCOUNT}>`))).toBe('530 5.7.0 Authentication required');
    } finally {
      client.close();
    }
    expect(stack.sandbox.messages).toHaveLength(0);
    expect(upstreamMailCommands()).toBe(0);
  });

  it('with the account password the same client may send, and only as the account\'s senders', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      expect((await client.cmd('AUTH PLAIN ' + Buffer.from(`\0${ACCOUNT}\0${PASSWORD}`).toString('base64'))).code).toBe(235);
      expect(line(await client.cmd('MAIL FROM:<stranger@elsewhere.test>'))).toMatch(/^550 5\.7\.1 /);
      expect((await client.cmd('MAIL FROM:<ceo@corp.test>')).code).toBe(250);
      expect((await client.cmd('RCPT TO:<x@example.net>')).code).toBe(250);
      expect((await client.cmd('DATA')).code).toBe(354);
      const raw = rawMessage('ceo@corp.test', ['x@example.net'], 'authenticated');
      client.write(raw + '.\r\n');
      expect((await client.read()).code).toBe(250);
      expect(stack.sandbox.messages.map((m) => m.sha256)).toEqual([sha256(raw)]);
    } finally {
      client.close();
    }
  });
});
