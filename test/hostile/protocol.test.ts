// Hostile or broken protocol input on the inbound side: commands pipelined behind STARTTLS
// (CVE-2011-0411 class), commands out of order, unknown commands, overlong lines, NUL bytes,
// random binary, and a session that keeps erring. None of it may reach the provider, crash the
// relay or keep it from serving the next client.
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

  it('an EHLO name is echoed only while it can be a domain: kilobytes get a short 501, not a reply line clients cannot read', async () => {
    const client = await session();
    const long = await client.cmd(`EHLO ${'a'.repeat(5_000)}`);
    expect(line(long)).toMatch(/^501 5\.5\.4 /);
    expect(long.lines.every((l) => l.length < 200)).toBe(true);
    const longest = await client.cmd(`EHLO ${'b'.repeat(255)}`);
    expect(longest.code).toBe(250);
    expect(longest.lines[0]).toContain('b'.repeat(255));
  });

  it('MAIL, RCPT, DATA and AUTH before EHLO get 503; nothing goes upstream', async () => {
    const before = stack.sandbox.smtp.stats();
    const client = await session();
    for (const cmd of [`MAIL FROM:<${SENDER}>`, 'RCPT TO:<x@example.net>', 'DATA', 'AUTH PLAIN AHVzZXIAcGFzcw==']) {
      expect(line(await client.cmd(cmd))).toMatch(/^503 5\.5\.1 /);
    }
    expect(stack.sandbox.smtp.stats()).toMatchObject({ connectionsOpened: before.connectionsOpened, messagesAccepted: before.messagesAccepted });
  });

  it('unknown commands get 500 and the session goes on; an HTTP request line ends it at once', async () => {
    const client = await session();
    await client.cmd('EHLO mta.test');
    expect(line(await client.cmd('XYZZY plugh'))).toMatch(/^500 5\.5\.2 /);
    expect((await client.cmd('NOOP')).code).toBe(250);
    // A web page made to talk to the SMTP port (cross-protocol attack): closed at once.
    expect(line(await client.cmd('GET / HTTP/1.1'))).toMatch(/^421 /);
    await until(() => client.closed, 15_000, 'session closed');
  });

  it(`${MAX_ERRORS} errors in one session end it with 421 4.7.0; a provider's refusals do not count`, async () => {
    stack.sandbox.smtp.addFault({ at: 'rcpt', recipient: 'gone@example.net', code: 550 });
    const client = await session();
    await client.cmd('EHLO mta.test');
    expect((await client.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
    // The provider's own 5xx replies, passed through, are not the client's errors.
    for (let i = 0; i < MAX_ERRORS + 2; i++) expect(line(await client.cmd('RCPT TO:<gone@example.net>'))).toMatch(/^550 5\.1\.1 /);
    expect((await client.cmd('RSET')).code).toBe(250);
    const errors = ['XYZZY', 'MAIL FROM:<no-brackets', 'RCPT TO:<x@example.net>', 'VRFY', 'DATA'];
    for (const cmd of errors.slice(0, -1)) expect((await client.cmd(cmd)).code).toBeGreaterThanOrEqual(500);
    client.write(errors.at(-1) + '\r\n');
    expect(line(await client.read())).toMatch(/^503 /);
    expect(line(await client.read())).toBe('421 4.7.0 Too many errors in this session, closing connection');
    await until(() => client.closed, 15_000, 'session closed');
    stack.sandbox.smtp.clearFaults();
  });

  it('an overlong command line ends the session with 421; an overlong address is refused with 501', async () => {
    const client = await session();
    await client.cmd('EHLO mta.test');
    expect(line(await client.cmd(`MAIL FROM:<${'a'.repeat(300)}@example.com>`))).toMatch(/^501 /);
    client.write('NOOP ' + 'x'.repeat(64 * 1024));
    expect(line(await client.read())).toMatch(/^421 .*too long/i);
    await until(() => client.closed, 15_000, 'session closed');
    expect(await stillDelivers(stack, SENDER, 'after-overlong-line')).toBe(true);
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

  it('NUL bytes in commands are refused with 501', async () => {
    const client = await session();
    expect(line(await client.cmd('EHLO bad\0host'))).toMatch(/^501 /);
    await client.cmd('EHLO mta.test');
    expect(line(await client.cmd(`MAIL FROM:<${SENDER}\0>`))).toMatch(/^501 /);
    expect((await client.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
    expect(line(await client.cmd('RCPT TO:<a\0b@example.net>'))).toMatch(/^501 /);
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
