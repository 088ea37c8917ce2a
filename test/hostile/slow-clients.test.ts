// Slow clients: one that says nothing, one that drips a command a byte at a time, and one that
// drips a message a line at a time (slowloris) — each byte in time to reset an inactivity timer.
// All are cut off with 421 4.4.2 at the configured deadlines, and a message cut off this way
// never reaches the provider, not even in part. After each: no error of the relay's own, no
// session left, the relay still serving.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { captureLog } from '../helpers/log-capture.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

const SENDER = 'slow@gmail.test';
const IDLE_MS = 500;
/** Far from IDLE_MS, so that a command cut off at the data deadline cannot pass for the idle one. */
const DATA_MS = 3_000;
/**
 * How late past its deadline a cut-off may show on a loaded machine: well under DATA_MS - IDLE_MS,
 * so "at the same deadline" is told apart from "at another deadline" and from "never".
 */
const LATE_MS = 2_000;
/**
 * No drip runs longer than this, whatever the relay does. A drip that reaches it was never cut
 * off: the bound is many times the deadlines, so a loaded machine cannot make a cut-off look
 * like none (durations are only ever checked from below, and against this bound).
 */
const DRIP_BOUND_MS = 15_000;
/** How long a reply or a close may take to show up: returns as soon as it does. */
const SETTLE_MS = 10_000;

describe('slow clients', () => {
  let stack: Stack;
  const log = captureLog('warn');

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: SENDER, kind: 'google', senders: [SENDER] }],
      overrides: { inbound: { idle_timeout_ms: IDLE_MS, data_timeout_ms: DATA_MS } },
      logger: log.logger,
    });
  });
  afterAll(() => stack.stop());
  // Checked after each test, so that each one, run alone or with the others, has these to check:
  // no error of the relay's own, no session left behind, and the relay still serving.
  afterEach(async () => {
    expect(log.events(50)).toEqual([]);
    await until(() => stack.app.inbound.sessionCount === 0, SETTLE_MS, 'no session left');
    const { client } = await RawSmtp.connect(stack.port);
    expect((await client.cmd('EHLO mta.test')).code).toBe(250);
    client.close();
  });

  /** Upstream connections closed with a transaction begun and not completed. */
  const abortedUpstream = () => stack.sandbox.smtp.connectionLog().filter((l) => l.mailCommands > l.messages && l.closedAt !== null).length;

  /** Writes `unit` every `everyMs` until the relay closes the session (or the bound); returns how long that took. */
  async function drip(client: RawSmtp, unit: string, everyMs: number): Promise<number> {
    const started = Date.now();
    while (!client.closed && Date.now() - started < DRIP_BOUND_MS) {
      client.write(unit);
      await sleep(everyMs);
    }
    return Date.now() - started;
  }

  it('a silent client gets 421 at idle_timeout_ms, not before and not much after', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    const started = Date.now();
    // Well before the 300 s default, never before the configured deadline.
    expect(line(await client.read(SETTLE_MS))).toMatch(/^421 4\.4\.2 /);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(IDLE_MS - 50);
    expect(waited).toBeLessThan(IDLE_MS + LATE_MS);
    await until(() => client.closed, SETTLE_MS, 'session closed');
  });

  it('a command dripped one byte at a time is cut off at the same deadline', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    const started = performance.now();
    const reply = client.read(DRIP_BOUND_MS).then((r) => ({ r, at: performance.now() - started }));
    await drip(client, 'N', 50);
    const { r, at } = await reply;
    expect(line(r)).toBe('421 4.4.2 Timeout waiting for the client, closing connection');
    // Cut off: each byte came in time to reset an idle timer, so only a deadline on the whole
    // line can have ended it — idle_timeout_ms after the EHLO reply, like the silent client's:
    // not sooner, and not at the data deadline or never.
    expect(client.closed).toBe(true);
    expect(at).toBeGreaterThanOrEqual(IDLE_MS - 50);
    expect(at).toBeLessThan(IDLE_MS + LATE_MS);
  });

  it('a message dripped one line at a time is cut off after data_timeout_ms; nothing of it is delivered', async () => {
    const before = stack.sandbox.messages.length;
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    expect((await client.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
    expect((await client.cmd('RCPT TO:<x@example.net>')).code).toBe(250);
    expect((await client.cmd('DATA')).code).toBe(354);
    const reply = client.read(DRIP_BOUND_MS);
    client.write(`From: <${SENDER}>\r\nSubject: slowloris\r\n\r\n`);
    const took = await drip(client, 'a line every 100 ms\r\n', 100);
    expect(line(await reply)).toMatch(/^421 4\.4\.2 /);
    expect(client.closed).toBe(true);
    // Not the idle timeout (each line resets that): the data deadline, and no drip without end.
    expect(took).toBeGreaterThanOrEqual(DATA_MS - 100);
    expect(took).toBeLessThan(DATA_MS + LATE_MS);
    // The upstream transaction was abandoned without its final dot: its connection is gone, no message.
    await until(() => abortedUpstream() > 0, SETTLE_MS, 'upstream aborted');
    expect(stack.sandbox.messages.length).toBe(before);
  });

  it('a client that vanishes mid-message: nothing delivered, the upstream transaction aborted', async () => {
    const before = { messages: stack.sandbox.messages.length, aborted: abortedUpstream() };
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    await client.cmd(`MAIL FROM:<${SENDER}>`);
    await client.cmd('RCPT TO:<x@example.net>');
    expect((await client.cmd('DATA')).code).toBe(354);
    client.write(`From: <${SENDER}>\r\nSubject: half a message\r\n\r\nand then`);
    await sleep(100);
    client.close();
    await until(() => abortedUpstream() > before.aborted, SETTLE_MS, 'upstream aborted');
    expect(stack.sandbox.messages.length).toBe(before.messages);
  });

});
