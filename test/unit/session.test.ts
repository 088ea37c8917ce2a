// The inbound Session alone, in-process over a loopback socket, against a scripted relay stage
// (test/helpers/session-harness.ts): pipelining orders, each refusal position of a group, AUTH,
// deadlines, half-close, overlong lines, the protocol's refusals and their reasons. No sandbox,
// no RelayApp: each test takes milliseconds (deadlines are set to a few hundred ms). The
// end-to-end proofs of the same paths through a real pool and provider stay in
// test/integration/inbound-engine.test.ts and test/hostile/.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { reply } from '../../src/smtp/reply.js';
import { sessionHarness, sessionServer, type Harness, type HarnessOptions } from '../helpers/session-harness.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { sleep, until } from '../helpers/wait.js';
import { connect } from 'node:net';
import { ReplyReader } from '../../src/smtp/reply-reader.js';
import type { Reply } from '../../src/smtp/reply.js';

// parsePath, counted: a path is parsed once per command, look-ahead included (the hot path).
const parsed = vi.hoisted(() => ({ calls: 0 }));
vi.mock('../../src/smtp/path.js', async (original) => {
  const real = await original<typeof import('../../src/smtp/path.js')>();
  return {
    ...real,
    parsePath: (...args: Parameters<typeof real.parsePath>) => {
      parsed.calls++;
      return real.parsePath(...args);
    },
  };
});

const FROM = 'mta@example.test';
const BODY = 'Subject: t\r\n\r\nhello\r\n';

let h: Harness | null = null;
afterEach(async () => {
  await h?.stop();
  h = null;
});

async function open(opts: HarnessOptions = {}): Promise<Harness> {
  h = await sessionHarness(opts);
  expect(h.greeting.code).toBe(220);
  return h;
}

/** Writes `text` in one write and reads `n` replies. */
async function pipelined(c: RawSmtp, text: string, n: number): Promise<string[]> {
  c.write(text);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(line(await c.read(5_000)));
  return out;
}

const group = (rcpts: string[]) => `MAIL FROM:<${FROM}>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`;

describe('pipelining', () => {
  it('a MAIL/RCPT/RCPT/DATA group is begun upstream as one group; replies come in order; the message is delivered once', async () => {
    const { client, relay } = await open();
    await client.cmd('EHLO mta.test');
    expect(await pipelined(client, group(['a@x.test', 'b@x.test']), 4)).toEqual(['250 2.1.0 OK mail', '250 2.1.5 OK rcpt', '250 2.1.5 OK rcpt', '354 Start mail input; end with <CRLF>.<CRLF>']);
    expect(relay.calls[0]).toBe(`begin ${FROM} group=a@x.test,b@x.test+DATA`);
    client.write(`${BODY}.\r\n`);
    expect(line(await client.read())).toBe('250 2.0.0 OK queued');
    expect(relay.messages).toEqual([{ from: FROM, to: ['a@x.test', 'b@x.test'], body: BODY }]);
  });

  it('each path of a group is parsed once, though MAIL looked ahead at the RCPTs', async () => {
    const { client } = await open();
    await client.cmd('EHLO mta.test');
    const before = parsed.calls;
    expect(await pipelined(client, group(['a@x.test', 'b@x.test', 'c@x.test']), 5)).toHaveLength(5);
    expect(parsed.calls - before).toBe(4);
  });

  it('the message, QUIT and the next transaction pipelined behind the final dot are each answered in order', async () => {
    const { client, relay } = await open();
    await client.cmd('EHLO mta.test');
    expect(await pipelined(client, group(['a@x.test']), 3)).toHaveLength(3);
    const replies = await pipelined(client, `${BODY}.\r\n${group(['c@x.test'])}`, 4);
    expect(replies.map((r) => r.slice(0, 3))).toEqual(['250', '250', '250', '354']);
    client.write(`${BODY}.\r\nQUIT\r\n`);
    expect((await client.read()).code).toBe(250);
    expect((await client.read()).code).toBe(221);
    expect(relay.messages.map((m) => m.to)).toEqual([['a@x.test'], ['c@x.test']]);
  });

  it('RSET inside a group forgets the envelope: the DATA after it gets 503, nothing is delivered', async () => {
    const { client, relay } = await open();
    await client.cmd('EHLO mta.test');
    const replies = await pipelined(client, `MAIL FROM:<${FROM}>\r\nRCPT TO:<a@x.test>\r\nRSET\r\nDATA\r\n`, 4);
    expect(replies.map((r) => r.slice(0, 3))).toEqual(['250', '250', '250', '503']);
    expect(relay.calls).toContain('abort');
    expect(relay.messages).toEqual([]);
  });
});

describe('each refusal position of a pipelined group: the client hears the provider at that position', () => {
  const refused = reply(550, '5.1.1 provider says no');

  it('MAIL refused: the RCPTs behind it get 503, DATA 503; nothing delivered', async () => {
    const { client, relay } = await open({ script: { mail: refused } });
    await client.cmd('EHLO mta.test');
    const replies = await pipelined(client, group(['a@x.test']), 3);
    expect(replies[0]).toBe('550 5.1.1 provider says no');
    expect(replies.slice(1).map((r) => r.slice(0, 3))).toEqual(['503', '503']);
    expect(relay.messages).toEqual([]);
  });

  for (const [name, rcpts, bad] of [
    ['the first RCPT', ['bad@x.test', 'b@x.test', 'c@x.test'], 0],
    ['a middle RCPT', ['a@x.test', 'bad@x.test', 'c@x.test'], 1],
  ] as const) {
    it(`${name} refused: that position carries the provider's reply; the others are delivered once`, async () => {
      const { client, relay } = await open({ script: { rcpt: { 'bad@x.test': refused } } });
      await client.cmd('EHLO mta.test');
      const replies = await pipelined(client, group([...rcpts]), 5);
      expect(replies[1 + bad]).toBe('550 5.1.1 provider says no');
      expect(replies.filter((r) => r.startsWith('250')).length).toBe(3);
      expect(replies[4]!.slice(0, 3)).toBe('354');
      client.write(`${BODY}.\r\n`);
      expect((await client.read()).code).toBe(250);
      expect(relay.messages).toEqual([{ from: FROM, to: rcpts.filter((r) => r !== 'bad@x.test'), body: BODY }]);
    });
  }

  it('every RCPT refused: DATA gets 554 5.5.1, nothing delivered', async () => {
    const { client, relay } = await open({ script: { rcpt: { 'a@x.test': refused, 'b@x.test': refused } } });
    await client.cmd('EHLO mta.test');
    const replies = await pipelined(client, group(['a@x.test', 'b@x.test']), 4);
    expect(replies).toEqual(['250 2.1.0 OK mail', '550 5.1.1 provider says no', '550 5.1.1 provider says no', '554 5.5.1 No valid recipients']);
    expect(relay.messages).toEqual([]);
  });

  it('DATA refused: the provider\'s reply instead of 354; nothing delivered', async () => {
    const { client, relay } = await open({ script: { dataRefused: reply(451, '4.3.0 provider busy') } });
    await client.cmd('EHLO mta.test');
    expect(await pipelined(client, group(['a@x.test']), 3)).toEqual(['250 2.1.0 OK mail', '250 2.1.5 OK rcpt', '451 4.3.0 provider busy']);
    expect(relay.messages).toEqual([]);
  });

  it('the provider\'s refusals do not count against the session, the client\'s do: the fifth of its own errors ends it with 421', async () => {
    const { client, refusals } = await open({ inbound: { max_errors_per_session: 5 }, script: { rcpt: { 'bad@x.test': refused } } });
    await client.cmd('EHLO mta.test');
    await client.cmd(`MAIL FROM:<${FROM}>`);
    for (let i = 0; i < 7; i++) expect(line(await client.cmd('RCPT TO:<bad@x.test>'))).toBe('550 5.1.1 provider says no');
    await client.cmd('RSET');
    for (const cmd of ['XYZZY', 'MAIL FROM:<no-brackets', 'RCPT TO:<x@x.test>', 'VRFY']) expect((await client.cmd(cmd)).code).toBeGreaterThanOrEqual(500);
    client.write('DATA\r\n');
    expect(line(await client.read())).toMatch(/^503 /);
    expect(line(await client.read())).toBe('421 4.7.0 Too many errors in this session, closing connection');
    await until(() => client.closed, 2_000);
    expect(refusals.map((r) => r.reason)).toContain('too_many_errors');
  });
});

describe('AUTH', () => {
  const accounts = { 'u@x.test': 'secret' };
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('PLAIN with an initial response, PLAIN after a 334, and LOGIN step by step each authenticate', async () => {
    for (const steps of [
      [[`AUTH PLAIN ${b64('\0u@x.test\0secret')}`, 235]],
      [['AUTH PLAIN', 334], [b64('\0u@x.test\0secret'), 235]],
      [['AUTH LOGIN', 334], [b64('u@x.test'), 334], [b64('secret'), 235]],
      [[`AUTH LOGIN ${b64('u@x.test')}`, 334], [b64('secret'), 235]],
    ] as Array<Array<[string, number]>>) {
      const { client } = await open({ trusted: false, script: { accounts } });
      await client.cmd('EHLO mta.test');
      for (const [cmd, code] of steps) expect((await client.cmd(cmd)).code).toBe(code);
      expect((await client.cmd(`MAIL FROM:<${FROM}>`)).code).toBe(250);
      await h!.stop();
      h = null;
    }
  });

  it('a wrong password gets 535 after the failure delay; a cancelled exchange 501; an unknown mechanism 504; AUTH before EHLO 503', async () => {
    const { client, refusals } = await open({ trusted: false, script: { accounts }, inbound: { auth_failure_delay_ms: 150 } });
    expect(line(await client.cmd(`AUTH PLAIN ${b64('\0u@x.test\0wrong')}`))).toMatch(/^503 5\.5\.1 /);
    await client.cmd('EHLO mta.test');
    const t = performance.now();
    expect(line(await client.cmd(`AUTH PLAIN ${b64('\0u@x.test\0wrong')}`))).toBe('535 5.7.8 Authentication credentials invalid');
    expect(performance.now() - t).toBeGreaterThanOrEqual(140);
    expect((await client.cmd('AUTH LOGIN')).code).toBe(334);
    expect(line(await client.cmd('*'))).toBe('501 5.0.0 Authentication cancelled');
    expect(line(await client.cmd('AUTH CRAM-MD5'))).toBe('504 5.5.4 Unrecognized authentication type');
    expect(refusals.map((r) => `${r.stage} ${r.reason}`)).toEqual(['auth syntax', 'auth auth_failed', 'auth syntax', 'auth syntax']);
  });

  it('an untrusted client that does not authenticate is cut off at auth_deadline_ms, not before', async () => {
    const { client } = await open({ trusted: false, inbound: { auth_deadline_ms: 300 } });
    await client.cmd('EHLO mta.test');
    const t = Date.now();
    expect((await client.cmd('NOOP')).code).toBe(250);
    expect(line(await client.read(3_000))).toMatch(/^421 4\.7\.0 Authentication required within/);
    expect(Date.now() - t).toBeGreaterThanOrEqual(250);
  });
});

describe('deadlines', () => {
  it('a silent client gets 421 4.4.2 after idle_timeout_ms, not before', async () => {
    const { client } = await open({ inbound: { idle_timeout_ms: 200 } });
    await client.cmd('EHLO mta.test');
    const t = Date.now();
    expect(line(await client.read(3_000))).toMatch(/^421 4\.4\.2 /);
    expect(Date.now() - t).toBeGreaterThanOrEqual(190);
    await until(() => client.closed, 2_000);
  });

  it('a message not complete within data_timeout_ms is abandoned (nothing delivered) and the session ends with 421', async () => {
    const { client, relay } = await open({ inbound: { data_timeout_ms: 300 } });
    await client.cmd('EHLO mta.test');
    await pipelined(client, group(['a@x.test']), 3);
    client.write('Subject: slow\r\n\r\nhalf');
    expect(line(await client.read(3_000))).toMatch(/^421 4\.4\.2 /);
    await until(() => relay.calls.includes('body abandoned'), 2_000);
    expect(relay.messages).toEqual([]);
  });

  it('a MAIL the relay cannot open within mail_reply_timeout_ms gets 451 4.4.5; the late transaction is aborted', async () => {
    const { client, relay } = await open({ inbound: { mail_reply_timeout_ms: 150 }, script: { mailDelayMs: 400 } });
    await client.cmd('EHLO mta.test');
    expect(line(await client.cmd(`MAIL FROM:<${FROM}>`, 3_000))).toMatch(/^451 4\.4\.5 /);
    await until(() => relay.calls.includes('abort'), 2_000);
    expect((await client.cmd('NOOP')).code).toBe(250);
  });

  it('with greeting_delay_ms, a client that talks first gets 421; by default one that does not wait for the greeting is served', async () => {
    for (const [delay, expected] of [[0, [220, 250]], [400, [421]]] as const) {
      const server = await sessionServer({ inbound: { greeting_delay_ms: delay } });
      const replies: Reply[] = [];
      const reader = new ReplyReader((r) => replies.push(r));
      const socket = connect({ port: server.port, host: '127.0.0.1' });
      socket.on('data', (d) => reader.push(d));
      socket.once('connect', () => setTimeout(() => socket.write('EHLO early.test\r\n'), 60));
      await until(() => replies.length >= expected.length, 3_000);
      expect(replies.map((r) => r.code)).toEqual(expected);
      socket.destroy();
      await server.stop();
    }
  });
});

describe('half-close', () => {
  it('after the final dot (and QUIT): the client still gets its replies, the message is delivered once', async () => {
    const { client, relay } = await open();
    await client.cmd('EHLO mta.test');
    await pipelined(client, group(['a@x.test']), 3);
    client.write(`${BODY}.\r\nQUIT\r\n`);
    client.socket.end();
    expect((await client.read()).code).toBe(250);
    expect((await client.read()).code).toBe(221);
    expect(relay.messages).toHaveLength(1);
  });

  for (const [when, script] of [
    ['the provider slow to answer DATA', { dataDelayMs: 300 }],
    ['its FIN read while MAIL was still upstream', { mailDelayMs: 200 }],
  ] as const) {
  it(`right after a pipelined DATA, before the 354 (${when}): 421 at once, the transaction abandoned`, async () => {
    const { client, relay, closed } = await open({ script });
    await client.cmd('EHLO mta.test');
    client.write(group(['a@x.test']));
    client.socket.end();
    const t = Date.now();
    expect((await client.read()).code).toBe(250);
    expect((await client.read()).code).toBe(250);
    expect(line(await client.read())).toMatch(/^421 4\.4\.2 /);
    await closed;
    expect(Date.now() - t).toBeLessThan(1_000);
    expect(relay.calls).toContain('data');
    expect(relay.bodyErrors.map((e) => e.message)).toEqual([expect.stringMatching(/^CLIENT_GONE/)]);
    expect(relay.messages).toEqual([]);
  });
  }

  it('a hasty client that sent its whole session, body and all, before any reply, then shut its side: every reply, delivered once', async () => {
    const { client, relay } = await open({ script: { mailDelayMs: 100, dataDelayMs: 50 } });
    await client.cmd('EHLO mta.test');
    client.write(`${group(['a@x.test'])}${BODY}.\r\nQUIT\r\n`);
    client.socket.end();
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await client.read()).code);
    expect(codes).toEqual([250, 250, 354, 250, 221]);
    expect(relay.messages).toEqual([{ from: FROM, to: ['a@x.test'], body: BODY }]);
  });

  it('a hasty client whose early bytes end mid-message: nothing is delivered, 421 once they are read', async () => {
    const { client, relay, closed } = await open({ script: { mailDelayMs: 100 } });
    await client.cmd('EHLO mta.test');
    client.write(`${group(['a@x.test'])}Subject: cut\r\n\r\nhalf`);
    client.socket.end();
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(line(await client.read()));
    expect(replies.map((r) => r.slice(0, 3))).toEqual(['250', '250', '354', '421']);
    await closed;
    expect(relay.calls).toContain('body abandoned');
    expect(relay.messages).toEqual([]);
  });

  it('mid-message: nothing of the message is delivered', async () => {
    const { client, relay, closed } = await open();
    await client.cmd('EHLO mta.test');
    await pipelined(client, group(['a@x.test']), 3);
    client.write('Subject: half\r\n\r\nand then');
    client.socket.end();
    await closed;
    expect(relay.calls).toContain('body abandoned');
    expect(relay.messages).toEqual([]);
  });
});

describe('overlong lines and protocol refusals', () => {
  it('a command line over 16 KiB ends the session with 421, with its line end or without one, even while a reply is pending', async () => {
    for (const [text, pending] of [
      [`NOOP ${'x'.repeat(20_000)}\r\n`, false],
      [`NOOP ${'x'.repeat(64 * 1024)}`, false],
      [`NOOP ${'x'.repeat(64 * 1024)}`, true],
    ] as const) {
      const { client, refusals } = await open({ trusted: false, script: { accounts: {} }, inbound: { auth_failure_delay_ms: 2_000 } });
      await client.cmd('EHLO mta.test');
      if (pending) client.write(`AUTH PLAIN ${Buffer.from('\0a@x.test\0b').toString('base64')}\r\n`);
      await sleep(20);
      const t = Date.now();
      client.write(text);
      expect(line(await client.read(3_000))).toBe('421 4.5.0 Command line too long, closing connection');
      expect(Date.now() - t).toBeLessThan(1_000); // not after the AUTH delay
      expect(refusals.at(-1)).toMatchObject({ stage: 'session', reason: 'syntax' });
      await h!.stop();
      h = null;
    }
  });

  it('an overlong address is refused with 501 and nothing is begun upstream', async () => {
    const { client, relay } = await open();
    await client.cmd('EHLO mta.test');
    expect(line(await client.cmd(`MAIL FROM:<${'a'.repeat(300)}@example.com>`))).toMatch(/^501 5\.1\.7 /);
    expect(relay.calls).toEqual([]);
  });

  it('a command line of exactly 16 KiB is a command', async () => {
    const { client } = await open();
    expect(line(await client.cmd(`EHLO ${'a'.repeat(16 * 1024 - 5)}`))).toMatch(/^501 5\.5\.4 /);
  });

  it('an EHLO name is echoed only while it can be a domain: kilobytes get a short 501', async () => {
    const { client } = await open();
    const long = await client.cmd(`EHLO ${'a'.repeat(5_000)}`);
    expect(line(long)).toMatch(/^501 5\.5\.4 /);
    expect(long.lines.every((l) => l.length < 200)).toBe(true);
    const longest = await client.cmd(`EHLO ${'b'.repeat(255)}`);
    expect(longest.code).toBe(250);
    expect(longest.lines[0]).toContain('b'.repeat(255));
  });

  it('MAIL, RCPT, DATA and AUTH before EHLO get 503; nothing is begun upstream', async () => {
    const { client, relay } = await open();
    for (const cmd of [`MAIL FROM:<${FROM}>`, 'RCPT TO:<x@x.test>', 'DATA', 'AUTH PLAIN AHVzZXIAcGFzcw==']) {
      expect(line(await client.cmd(cmd))).toMatch(/^503 5\.5\.1 /);
    }
    expect(relay.calls).toEqual([]);
  });

  it('unknown commands get 500 and the session goes on; an HTTP request line ends it at once', async () => {
    const { client } = await open();
    await client.cmd('EHLO mta.test');
    expect(line(await client.cmd('XYZZY plugh'))).toMatch(/^500 5\.5\.2 /);
    expect((await client.cmd('NOOP')).code).toBe(250);
    expect(line(await client.cmd('GET / HTTP/1.1'))).toBe('421 4.5.0 HTTP requests are not served here, closing connection');
    await until(() => client.closed, 2_000);
  });

  it('NUL bytes in commands are refused with 501', async () => {
    const { client } = await open();
    expect(line(await client.cmd('EHLO bad\0host'))).toMatch(/^501 /);
    await client.cmd('EHLO mta.test');
    expect(line(await client.cmd(`MAIL FROM:<${FROM}\0>`))).toMatch(/^501 /);
    expect((await client.cmd(`MAIL FROM:<${FROM}>`)).code).toBe(250);
    expect(line(await client.cmd('RCPT TO:<a\0b@x.test>'))).toMatch(/^501 /);
  });

  it('VRFY and EXPN get 502 (reason not_implemented); XCLIENT and XFORWARD 550 (reason impersonation)', async () => {
    const { client, refusals } = await open();
    await client.cmd('EHLO mta.test');
    expect(line(await client.cmd('VRFY postmaster'))).toBe('502 5.5.1 VRFY not supported');
    expect(line(await client.cmd('EXPN list'))).toBe('502 5.5.1 EXPN not supported');
    expect(line(await client.cmd('XCLIENT ADDR=10.0.0.1'))).toBe('550 5.7.0 XCLIENT not allowed');
    expect(line(await client.cmd('XFORWARD ADDR=10.0.0.1'))).toBe('550 5.7.0 XFORWARD not allowed');
    expect(refusals.map((r) => r.reason)).toEqual(['not_implemented', 'not_implemented', 'impersonation', 'impersonation']);
  });
});

describe('the message body, pushed into the consumer\'s sink', () => {
  /** A body of `lines` CRLF lines, about 1 KB each. */
  const bigBody = (lines: number) => `Subject: big\r\n\r\n${Array.from({ length: lines }, (_, i) => `${String(i).padStart(6, '0')}${'x'.repeat(1000)}\r\n`).join('')}`;

  it('a consumer that asks to wait stops the session reading (the client\'s bytes stay in its TCP window) until it drains; the message arrives whole', async () => {
    const window = 64 * 1024;
    const { client, relay } = await open({ script: { sinkWindow: window } });
    await client.cmd('EHLO mta.test');
    await pipelined(client, group(['a@x.test']), 3);
    const body = bigBody(4000); // 4 MB: far more than the window and the sockets' buffers
    client.write(`${body}.\r\n`);
    await until(() => relay.waiting, 2_000);
    // Waiting: nothing more reaches the consumer, however long it waits.
    const held = relay.bodyBytes;
    await sleep(150);
    expect(relay.bodyBytes).toBe(held);
    // At most one socket read past the window was taken when the sink said wait.
    expect(held).toBeLessThan(window + 64 * 1024 + 1);
    let drains = 0;
    while (relay.messages.length === 0) {
      await until(() => relay.waiting || relay.messages.length > 0, 2_000, 'the consumer asked to wait again or had the message');
      if (relay.waiting) {
        drains++;
        relay.drain();
      }
    }
    expect(drains).toBeGreaterThan(body.length / (2 * (window + 64 * 1024)));
    expect(line(await client.read())).toBe('250 2.0.0 OK queued');
    expect(relay.messages[0]!.body).toBe(body);
    expect((await client.cmd('NOOP')).code).toBe(250);
  });

  it('a client lost mid-body: the consumer\'s sink is failed with CLIENT_GONE after what it already took, and nothing is delivered', async () => {
    const { client, relay, closed } = await open();
    await client.cmd('EHLO mta.test');
    await pipelined(client, group(['a@x.test']), 3);
    client.write('Subject: cut\r\n\r\nthe first part of the message\r\n');
    await until(() => relay.bodyBytes > 0, 2_000);
    client.socket.destroy();
    await closed;
    await until(() => relay.bodyErrors.length > 0, 2_000);
    expect(relay.bodyErrors.map((e) => (e as { code?: string }).code)).toEqual(['CLIENT_GONE']);
    expect(relay.calls).toContain('body abandoned');
    expect(relay.messages).toEqual([]);
  });

  it('DATA refused by a slow provider: the client never hears 354, the body is never opened, and the session stays in step', async () => {
    const { client, relay } = await open({ script: { dataDelayMs: 100, dataRefused: reply(554, '5.7.1 provider refuses the message') } });
    await client.cmd('EHLO mta.test');
    client.write(group(['a@x.test']));
    await sleep(50); // DATA is with the provider: nothing may be said yet
    client.write('NOOP\r\n');
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(line(await client.read()));
    expect(replies).toEqual(['250 2.1.0 OK mail', '250 2.1.5 OK rcpt', '554 5.7.1 provider refuses the message', '250 2.0.0 OK']);
    expect(relay.bodyBytes).toBe(0);
    expect(relay.messages).toEqual([]);
  });
});
