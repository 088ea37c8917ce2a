// The relay's own inbound engine against the sandbox provider (issue 9): a pipelined group goes
// upstream in one segment and every reply is the provider's; a client that half-closes after
// "." (or "." and QUIT) gets its replies and its message is delivered once; addresses travel
// byte-exact; EHLO follows the provider's SIZE and SMTPUTF8; the null sender both ways; an
// upstream 250 to DATA is never passed on as a 250.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reclaims, RECLAIM_BYTES } from '../../src/inbound/reclaim.js';
import { captureLog } from '../helpers/log-capture.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

const SENDER = 'engine@gmail.test';
const PASSWORD = 'engine-password';

/** A message of about `size` bytes (CRLF lines of 78 characters). */
function sized(tag: string, size: number): string {
  const head = rawMessage(SENDER, ['half@example.net'], tag, []);
  const lines = Array.from({ length: Math.max(1, Math.ceil((size - head.length) / 80)) }, (_, i) => `${tag} line ${i} `.padEnd(78, 'x'));
  return rawMessage(SENDER, ['half@example.net'], tag, lines);
}

describe('inbound engine', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: SENDER, kind: 'google', password: PASSWORD, senders: [SENDER] }],
      overrides: { inbound: { null_sender_account: SENDER } },
    });
  });
  afterAll(() => stack.stop());

  const delivered = (raw: string) => stack.sandbox.messages.filter((m) => m.sha256 === sha256(raw));

  it("a pipelined MAIL/RCPT/DATA group reaches the provider in one segment, and each reply is the provider's own", async () => {
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      client.write(`MAIL FROM:<${SENDER}>\r\nRCPT TO:<p1@example.net>\r\nRCPT TO:<p2@example.net>\r\nDATA\r\n`);
      const replies = [await client.read(), await client.read(), await client.read(), await client.read()];
      // The sandbox words its successes like Gmail ("250 2.1.5 OK <id> - gsmtp"), not smtp-server's "Accepted".
      expect(line(replies[0]!)).toMatch(/^250 2\.1\.0 OK \S+ - gsmtp$/);
      expect(line(replies[1]!)).toMatch(/^250 2\.1\.5 OK \S+ - gsmtp$/);
      expect(line(replies[2]!)).toMatch(/^250 2\.1\.5 OK \S+ - gsmtp$/);
      expect(replies[3]!.code).toBe(354);
      const raw = rawMessage(SENDER, ['p1@example.net', 'p2@example.net'], 'pipelined');
      client.write(raw + '.\r\n');
      expect(line(await client.read())).toMatch(/^250 2\.0\.0 OK/);
      expect(delivered(raw)).toHaveLength(1);
      expect(stack.sandbox.smtp.connectionLog().some((c) => c.reads.some((r) => r.join(' ') === 'MAIL RCPT RCPT DATA'))).toBe(true);
    } finally {
      client.close();
    }
  });

  for (const size of [200, 20_000, 1_000_000]) {
    for (const quit of [false, true]) {
      it(`a client that half-closes after "."${quit ? ' and QUIT' : ''} (${size} B) gets 250${quit ? ' and 221' : ''}; delivered once`, async () => {
        const raw = sized(`half-${size}-${quit}`, size);
        const { client } = await RawSmtp.connect(stack.port);
        try {
          await client.cmd('EHLO mta.test');
          client.write(`MAIL FROM:<${SENDER}>\r\nRCPT TO:<half@example.net>\r\nDATA\r\n`);
          for (const code of [250, 250, 354]) expect((await client.read()).code).toBe(code);
          client.socket.end(raw + '.\r\n' + (quit ? 'QUIT\r\n' : ''));
          expect(line(await client.read(20_000))).toMatch(/^250 /);
          if (quit) expect((await client.read()).code).toBe(221);
          await until(() => client.closed, 5_000, 'relay closed the connection');
        } finally {
          client.close();
        }
        expect(delivered(raw)).toHaveLength(1);
      });
    }
  }

  it('a body of several MB has the buffers it arrived in reclaimed as it streams, and is delivered once', async () => {
    // Held until the reply, so that the test process has the buffer memory the reclaim looks for.
    const raw = Buffer.from(sized('reclaim', 2.5 * RECLAIM_BYTES));
    const before = reclaims;
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      client.write(`MAIL FROM:<${SENDER}>\r\nRCPT TO:<half@example.net>\r\nDATA\r\n`);
      for (const code of [250, 250, 354]) expect((await client.read()).code).toBe(code);
      client.write(raw);
      client.write('.\r\n');
      expect(line(await client.read(20_000))).toMatch(/^250 /);
    } finally {
      client.close();
    }
    expect(reclaims - before).toBeGreaterThanOrEqual(2);
    expect(stack.sandbox.messages.filter((m) => m.sha256 === sha256(raw))).toHaveLength(1);
  });

  it('an A-label recipient arrives upstream exactly as the client wrote it', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      const rcpt = 'Info@xn--mnchen-3ya.example';
      const raw = rawMessage(SENDER, [rcpt], 'a-label');
      expect(line(await client.send(SENDER, [rcpt], raw))).toMatch(/^250 /);
      expect(delivered(raw)).toHaveLength(1);
      // The provider saw the A-label, byte for byte (not the UTF-8 form, not lower-cased).
      const seen = stack.sandbox.smtp.connectionLog().flatMap((c) => c.rcptAddresses);
      expect(seen).toContain(rcpt);
      expect(seen.filter((a) => a.includes('münchen'))).toEqual([]);
    } finally {
      client.close();
    }
  });

  it('the null sender: through null_sender_account from a trusted network, and for an authenticated session', async () => {
    const trusted = rawMessage('', ['bounce@example.net'], 'null-trusted');
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      expect(line(await client.send('', ['bounce@example.net'], trusted))).toMatch(/^250 /);
      expect((await client.authPlain(SENDER, PASSWORD)).code).toBe(235);
      const authed = rawMessage('', ['bounce@example.net'], 'null-authenticated');
      expect(line(await client.send('', ['bounce@example.net'], authed))).toMatch(/^250 /);
      for (const raw of [trusted, authed]) expect(delivered(raw).map((m) => [m.mailFrom, m.authUser])).toEqual([['', SENDER]]);
    } finally {
      client.close();
    }
  });

  it('an upstream 250 to DATA (instead of 354) gets 451, never 250; nothing is delivered and the next message goes', async () => {
    const before = stack.sandbox.messages.length;
    stack.sandbox.smtp.addFault({ at: 'dataCommand', code: 250, enhanced: '2.0.0', text: 'OK but no 354', times: 1 });
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      expect((await client.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
      expect((await client.cmd('RCPT TO:<violation@example.net>')).code).toBe(250);
      expect(line(await client.cmd('DATA'))).toMatch(/^451 4\.5\.0 /);
      expect(stack.sandbox.messages.length).toBe(before);
      const raw = rawMessage(SENDER, ['violation@example.net'], 'after-violation');
      expect(line(await client.send(SENDER, ['violation@example.net'], raw))).toMatch(/^250 /);
    } finally {
      client.close();
      stack.sandbox.smtp.clearFaults();
    }
  });

  it('DATA after every RCPT was refused upstream gets 554 5.5.1, and one accepted RCPT among refused ones is enough', async () => {
    const before = stack.sandbox.messages.length;
    stack.sandbox.smtp.addFault({ at: 'rcpt', recipient: 'gone@example.net', code: 550 });
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      expect((await client.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
      expect((await client.cmd('RCPT TO:<gone@example.net>')).code).toBe(550);
      expect(line(await client.cmd('DATA'))).toMatch(/^554 5\.5\.1 /);
      expect(stack.sandbox.messages.length).toBe(before);
      // The same transaction shape with one good recipient behind the refused one goes through.
      expect((await client.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
      expect((await client.cmd('RCPT TO:<gone@example.net>')).code).toBe(550);
      expect((await client.cmd('RCPT TO:<kept@example.net>')).code).toBe(250);
      expect((await client.cmd('DATA')).code).toBe(354);
      const raw = rawMessage(SENDER, ['kept@example.net'], 'one-of-two');
      client.write(raw + '.\r\n');
      expect(line(await client.read())).toMatch(/^250 /);
      expect(delivered(raw)).toHaveLength(1);
    } finally {
      client.close();
      stack.sandbox.smtp.clearFaults();
    }
  });
});

describe("inbound engine against a provider with a 1 MB SIZE and no SMTPUTF8", () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: SENDER, kind: 'google', senders: [SENDER] }],
      sandbox: { submission: { size: 1_000_000, smtputf8: false } },
    });
  });
  afterAll(() => stack.stop());

  it("EHLO follows the provider's SIZE and SMTPUTF8; MAIL refuses what it cannot carry, in SMTP terms", async () => {
    const { client } = await RawSmtp.connect(stack.port);
    try {
      const ext = (await client.cmd('EHLO mta.test')).lines.slice(1);
      expect(ext).toContain('SIZE 1000000');
      expect(ext).not.toContain('SMTPUTF8');
      expect(ext).toContain('PIPELINING');
      expect(line(await client.cmd(`MAIL FROM:<${SENDER}> SMTPUTF8`))).toMatch(/^555 5\.6\.7 /);
      expect(line(await client.cmd(`MAIL FROM:<${SENDER}> SIZE=2000000`))).toMatch(/^552 5\.3\.4 /);
      // A body over the provider's SIZE whatever SIZE said: 552, not a dropped connection and 451.
      expect((await client.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
      expect((await client.cmd('RCPT TO:<big@example.net>')).code).toBe(250);
      expect((await client.cmd('DATA')).code).toBe(354);
      client.write(sized('too-big-for-provider', 1_100_000) + '.\r\n');
      expect(line(await client.read(20_000))).toMatch(/^552 5\.3\.4 /);
      expect(stack.sandbox.messages).toHaveLength(0);
    } finally {
      client.close();
    }
  });

  it('the null sender from a trusted network without null_sender_account: 550 5.7.1 saying to set it', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      expect(line(await client.cmd('MAIL FROM:<>'))).toMatch(/^550 5\.7\.1 .*inbound\.null_sender_account/);
    } finally {
      client.close();
    }
  });
});

describe('inbound engine: AUTH user in logs, MAIL reply bound', () => {
  const log = captureLog('info');
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: SENDER, kind: 'google', password: PASSWORD, senders: [SENDER] }],
      overrides: { inbound: { mail_reply_timeout_ms: 700, auth_failure_delay_ms: 0 } },
      logger: log.logger,
    });
  });
  afterAll(() => stack.stop());

  it('a failed AUTH logs the user only when it names an account, else a short hash (a swapped password never reaches the log)', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      expect((await client.authPlain(PASSWORD, SENDER)).code).toBe(535); // user and password swapped
      expect((await client.authPlain(SENDER, 'wrong')).code).toBe(535);
    } finally {
      client.close();
    }
    const failed = log.lines.map((l) => JSON.parse(l) as { event?: string; user?: string }).filter((e) => e.event === 'auth_failed').map((e) => e.user);
    expect(failed).toHaveLength(2);
    expect(failed[0]).toMatch(/^sha256:[0-9a-f]{8}$/);
    expect(failed[1]).toBe(SENDER);
    expect(log.lines.join('\n')).not.toContain(PASSWORD);
  });

  it('a MAIL that waits for an upstream connection is answered 451 at inbound.mail_reply_timeout_ms: not before, and not much after', async () => {
    stack.sandbox.smtp.addFault({ at: 'connect', action: 'stall' });
    stack.sandbox.smtp.dropAllConnections();
    await sleep(100);
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      const started = performance.now();
      expect(line(await client.cmd(`MAIL FROM:<${SENDER}>`, 10_000))).toMatch(/^451 4\.4\.5 /);
      const waited = performance.now() - started;
      // Measured from before the client wrote MAIL, so the relay's own clock started later:
      // sooner than the timeout would be a 451 the MTA did not have to get (10 ms: the event
      // loop's clock counts whole milliseconds).
      expect(waited).toBeGreaterThanOrEqual(700 - 10);
      expect(waited).toBeLessThan(700 + 1_500);
      // The session is in step: the next command is answered.
      expect((await client.cmd('NOOP')).code).toBe(250);
    } finally {
      client.close();
      stack.sandbox.smtp.clearFaults();
    }
  });
});
