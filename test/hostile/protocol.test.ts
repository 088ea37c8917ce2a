// Hostile or broken protocol input on the inbound side through the whole relay: commands
// pipelined behind STARTTLS (CVE-2011-0411 class), overlong text lines and NUL bytes inside
// DATA, random binary. None of it may reach the provider, crash the relay or keep it from
// serving the next client. The session's own refusals (commands out of order, unknown commands,
// overlong command lines, NUL bytes in commands, a session that keeps erring) are tested on the
// session alone in test/unit/session.test.ts.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SANDBOX_TLS_FILES } from '../../src/sandbox/index.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, stillDelivers, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const SENDER = 'p@gmail.test';
const MAX_ERRORS = 5;

describe('hostile protocol input', () => {
  let stack: Stack;
  const clients: RawSmtp[] = [];

  async function session(): Promise<RawSmtp> {
    const { client, greeting } = await RawSmtp.connect(stack.port);
    expect(greeting.code).toBe(220);
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: SENDER, kind: 'google', senders: [SENDER] }],
      overrides: {
        inbound: { tls: { cert_file: SANDBOX_TLS_FILES.cert, key_file: SANDBOX_TLS_FILES.key }, max_errors_per_session: MAX_ERRORS },
      },
    });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(() => stack.stop());

  it('commands pipelined behind STARTTLS are discarded, not run inside the TLS session', async () => {
    const before = stack.sandbox.smtp.stats().connectionsOpened;
    const client = await session();
    const ehlo = await client.cmd('EHLO mta.test');
    expect(ehlo.lines.slice(1)).toContain('STARTTLS');
    client.write(`STARTTLS\r\nMAIL FROM:<${SENDER}>\r\nRCPT TO:<injected@example.net>\r\n`);
    expect((await client.read()).code).toBe(220);
    // Nothing answered in clear after the 220.
    await expect(client.read(200)).rejects.toThrow(/no reply/);
    const secure = await client.upgrade(readFileSync(SANDBOX_TLS_FILES.ca));
    expect(secure.authorized).toBe(true);
    // The injected MAIL never happened: RCPT has no transaction to join.
    expect(line(await client.cmd('RCPT TO:<x@example.net>'))).toMatch(/^503 /);
    expect((await client.cmd('EHLO mta.test')).lines.slice(1)).not.toContain('STARTTLS');
    expect(stack.sandbox.smtp.stats().connectionsOpened).toBe(before);
  });

  it('overlong text lines and NUL bytes inside DATA are relayed unchanged (the provider judges them)', async () => {
    const client = await session();
    await client.cmd('EHLO mta.test');
    await client.cmd(`MAIL FROM:<${SENDER}>`);
    await client.cmd('RCPT TO:<long@example.net>');
    expect((await client.cmd('DATA')).code).toBe(354);
    const raw = rawMessage(SENDER, ['long@example.net'], 'long-lines', ['y'.repeat(200_000), 'nul\0in\0the\0middle', '']);
    client.write(raw + '.\r\n');
    expect((await client.read()).code).toBe(250);
    expect(stack.sandbox.messages.find((m) => m.sha256 === sha256(raw))?.body.equals(Buffer.from(raw))).toBe(true);
  });

  it('random binary gets error replies and, soon, 421; the relay keeps serving', async () => {
    for (let n = 0; n < 5; n++) {
      const client = await session();
      client.write(randomBytes(16 * 1024));
      await until(() => client.closed, 15_000, 'session closed after random binary');
    }
    expect(await stillDelivers(stack, SENDER, 'after-random-binary')).toBe(true);
    for (const c of clients.splice(0)) c.close();
    await until(() => stack.app.inbound.sessionCount === 0, 15_000, 'no session left');
  });
});
