// Hostile envelopes: control characters in MAIL FROM / RCPT TO (command injection upstream),
// absurd parameters, too many recipients, a declared SIZE over the limit and a body over it.
// Refusals come before anything reaches the provider, and an oversized body never arrives there
// even in part.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const SENDER = 'env@gmail.test';
const MAX_BYTES = 10_000;
const MAX_RCPTS = 5;

describe('hostile envelopes', () => {
  let stack: Stack;
  let client: RawSmtp;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: SENDER, kind: 'google', senders: [SENDER] }],
      overrides: { inbound: { max_message_bytes: MAX_BYTES, max_recipients: MAX_RCPTS } },
    });
  });
  afterAll(() => stack.stop());

  async function fresh(): Promise<RawSmtp> {
    client?.close();
    ({ client } = await RawSmtp.connect(stack.port));
    await client.cmd('EHLO mta.test');
    return client;
  }

  const upstreamMailCommands = () => stack.sandbox.smtp.connectionLog().reduce((n, c) => n + c.mailCommands, 0);

  it('CR, LF or NUL in MAIL FROM / RCPT TO, raw or xtext-encoded, are refused and never reach the provider', async () => {
    const before = upstreamMailCommands();
    const c = await fresh();
    expect(line(await c.cmd(`MAIL FROM:<${SENDER}\r>`))).toMatch(/^501 /);
    expect(line(await c.cmd(`MAIL FROM:<a\0b@gmail.test>`))).toMatch(/^501 /);
    expect(line(await c.cmd(`MAIL FROM:<${SENDER}> ENVID=x+0D+0ARCPT+20TO:<injected@example.net>`))).toMatch(/^501 /);
    // A bare LF ends the line early: two broken commands, not one injected one.
    c.write(`MAIL FROM:<${SENDER}\nRCPT TO:<injected@example.net>>\r\n`);
    expect((await c.read()).code).toBe(501);
    expect((await c.read()).code).toBeGreaterThanOrEqual(500);
    expect(upstreamMailCommands()).toBe(before);
    expect((await c.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
    expect(line(await c.cmd('RCPT TO:<a\rb@example.net>'))).toMatch(/^501 /);
    expect(line(await c.cmd('RCPT TO:<a\0b@example.net>'))).toMatch(/^501 /);
    expect(line(await c.cmd('RCPT TO:<ok@example.net> ORCPT=rfc822;x+0D+0AQUIT'))).toMatch(/^5\d\d /);
    expect((await c.cmd('RSET')).code).toBe(250);
    expect(stack.sandbox.messages).toHaveLength(0);
  });

  it('absurd parameters are refused at MAIL, unknown ones are not passed to the provider', async () => {
    const c = await fresh();
    for (const params of ['SIZE=abc', 'SIZE=' + '9'.repeat(25), 'BODY=BINARYMIME', 'BODY=', 'SMTPUTF8=yes', 'SIZE=1 SIZE=2']) {
      expect(line(await c.cmd(`MAIL FROM:<${SENDER}> ${params}`))).toMatch(/^5\d\d /);
    }
    const many = Array.from({ length: 500 }, (_, i) => `X-P${i}=${i}`).join(' ');
    expect((await c.cmd(`MAIL FROM:<${SENDER}> ${many}`)).code).toBe(250);
    expect((await c.cmd('RCPT TO:<params@example.net>')).code).toBe(250);
    expect((await c.cmd('DATA')).code).toBe(354);
    const raw = rawMessage(SENDER, ['params@example.net'], 'absurd-params');
    c.write(raw + '.\r\n');
    expect((await c.read()).code).toBe(250);
    expect(stack.sandbox.messages.filter((m) => m.sha256 === sha256(raw))).toHaveLength(1);
  });

  it(`more than ${MAX_RCPTS} recipients: 452 4.5.3 for the excess, the message goes to the first ${MAX_RCPTS}`, async () => {
    const c = await fresh();
    expect((await c.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
    const rcpts = Array.from({ length: MAX_RCPTS + 3 }, (_, i) => `r${i}@example.net`);
    const replies = [];
    for (const r of rcpts) replies.push(line(await c.cmd(`RCPT TO:<${r}>`)));
    expect(replies.slice(0, MAX_RCPTS).every((r) => r.startsWith('250 '))).toBe(true);
    for (const r of replies.slice(MAX_RCPTS)) expect(r).toMatch(/^452 4\.5\.3 /);
    expect((await c.cmd('DATA')).code).toBe(354);
    const raw = rawMessage(SENDER, rcpts.slice(0, MAX_RCPTS), 'too-many-rcpts');
    c.write(raw + '.\r\n');
    expect((await c.read()).code).toBe(250);
    expect(stack.sandbox.messages.find((m) => m.sha256 === sha256(raw))?.rcptTo).toEqual(rcpts.slice(0, MAX_RCPTS));
  });

  it('a declared SIZE over the limit gets 552 at MAIL, before anything goes upstream', async () => {
    const before = upstreamMailCommands();
    const c = await fresh();
    expect(line(await c.cmd(`MAIL FROM:<${SENDER}> SIZE=${MAX_BYTES + 1}`))).toMatch(/^552 5\.3\.4 /);
    expect(upstreamMailCommands()).toBe(before);
    expect((await c.cmd(`MAIL FROM:<${SENDER}> SIZE=${MAX_BYTES}`)).code).toBe(250);
  });

  it('a body over the limit (whatever SIZE said) gets 552 at the end of DATA; the provider gets no part of it', async () => {
    const before = stack.sandbox.messages.length;
    const c = await fresh();
    expect((await c.cmd(`MAIL FROM:<${SENDER}> SIZE=500`)).code).toBe(250);
    expect((await c.cmd('RCPT TO:<big@example.net>')).code).toBe(250);
    expect((await c.cmd('DATA')).code).toBe(354);
    const raw = rawMessage(SENDER, ['big@example.net'], 'too-big', Array.from({ length: 400 }, (_, i) => `line ${i} `.padEnd(70, 'z')));
    expect(raw.length).toBeGreaterThan(MAX_BYTES);
    c.write(raw + '.\r\n');
    expect(line(await c.read())).toBe('552 5.3.4 Message size exceeds fixed maximum message size');
    // The upstream transaction was aborted without its final dot: the connection carrying it is gone.
    await until(() => stack.sandbox.smtp.connectionLog().some((l) => l.mailCommands > l.messages && l.closedAt !== null), 15_000, 'upstream transaction aborted');
    expect(stack.sandbox.messages.length).toBe(before);
    expect(stack.sandbox.smtp.stats().messagesRejected).toBe(0);
    // The session is in step and the next message is fine.
    expect((await c.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
    client.close();
  });
});
