// Provider faults under load: 500 messages over 20 inbound connections through a relay whose
// sandbox provider misbehaves, then the ledger (test/helpers/ledger.ts): nothing acknowledged is
// lost or doubled, everything deferred arrives exactly once when resent, no 5xx the provider
// did not give.
import { describe, expect, it } from 'vitest';
import { drive, Ledger, resendPending, type DriveOptions } from '../helpers/ledger.js';
import { startStack, type Stack, type StackAccount } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

// Google accounts: their default sending limits (2,000 a day) leave a 500-message load alone,
// where Exchange's 30 a minute would turn it into a test of the limiter.
const ACCOUNTS: StackAccount[] = [
  { email: 'g1@gmail.test', kind: 'google', senders: ['g1@gmail.test'] },
  { email: 'g2@gmail.test', kind: 'google', senders: ['g2@gmail.test'] },
];
const SENDERS = ACCOUNTS.map((a) => a.email);
const COUNT = 500;
const LOAD: DriveOptions = { connections: 20, timeLimitMs: 40_000 };

async function withStack(overrides: Record<string, unknown>, run: (stack: Stack) => Promise<void>, accounts = ACCOUNTS): Promise<void> {
  const stack = await startStack({ accounts, overrides });
  try {
    await run(stack);
  } finally {
    await stack.stop();
  }
}

/** The fault is lifted; what the client still holds is resent and must arrive exactly once. */
async function healAndResend(stack: Stack, ledger: Ledger, name: string): Promise<void> {
  stack.sandbox.smtp.clearFaults();
  stack.sandbox.smtp.setCloseAfterMessages(null);
  await resendPending(stack.port, ledger, LOAD);
  expect(ledger.problems(stack.sandbox.messages)).toEqual([]);
  ledger.report(`${name} (after resend)`, stack.sandbox.messages);
}

/** The first attempt's deferrals, as "stage code text". */
const deferrals = (ledger: Ledger) =>
  ledger.entries
    .map((e) => e.attempts[0]!)
    .filter((o) => o.code !== null && o.code >= 400 && o.code < 500)
    .map((o) => `${o.stage} ${o.code} ${o.text}`);

/**
 * The load against the faulty provider, and what holds whatever the fault: nothing acknowledged
 * lost or doubled, no silence, no 5xx. Returns the ledger, its counts and how often the first
 * fault rule fired.
 */
async function loadUnderFault(stack: Stack, name: string, count = COUNT) {
  const ledger = new Ledger(name, count, SENDERS);
  await drive(stack.port, ledger.entries, LOAD);
  const c = ledger.report(name, stack.sandbox.messages);
  expect(ledger.refusals()).toEqual([]);
  expect(c).toMatchObject({ sent: count, refused: 0, noReply: 0, unknown: 0, lost: 0, duplicated: 0 });
  return { ledger, c, fired: stack.sandbox.smtp.listFaults()[0]?.fired ?? 0 };
}

describe('upstream faults under load', () => {
  it('the provider drops the connection after DATA, before its reply: 451 4.4.2, nothing lost or doubled', async () => {
    await withStack({}, async (stack) => {
      stack.sandbox.smtp.addFault({ at: 'data', action: 'drop', fraction: 0.05 });
      const { ledger, c, fired } = await loadUnderFault(stack, 'drop after DATA');
      expect(fired).toBeGreaterThan(10);
      // Each drop is one deferral, at the end of DATA: the relay never retries a message itself.
      expect(c.deferred).toBe(fired);
      for (const d of deferrals(ledger)) expect(d).toMatch(/^final 451 4\.4\.2 /);
      await healAndResend(stack, ledger, 'drop after DATA');
    });
  });

  it('421 at connect: new upstream connections fail half the time; the client gets 451 4.4.1 and nothing else breaks', async () => {
    // Connections are retired every 10 messages, so the load needs new ones all the time.
    const accounts = ACCOUNTS.map((a) => ({ ...a, extra: { messages_per_connection: 10 } }));
    await withStack(
      {},
      async (stack) => {
        stack.sandbox.smtp.addFault({ at: 'connect', code: 421, fraction: 0.5 });
        const { ledger, c, fired } = await loadUnderFault(stack, '421 at connect');
        expect(fired).toBeGreaterThan(5);
        expect(c.deferred).toBeLessThanOrEqual(fired);
        for (const d of deferrals(ledger)) expect(d).toMatch(/^mail 451 4\.4\.1 /);
        await healAndResend(stack, ledger, '421 at connect');
      },
      accounts,
    );
  });

  it('421 at MAIL: the relay retries once on a fresh connection; only a second 421 in a row reaches the client, as 451', async () => {
    await withStack({}, async (stack) => {
      stack.sandbox.smtp.addFault({ at: 'mail', code: 421, fraction: 0.1 });
      const { ledger, c, fired } = await loadUnderFault(stack, '421 at MAIL');
      expect(fired).toBeGreaterThan(20);
      // Without the retry every 421 would be a deferral; with it each deferral costs two.
      expect(c.deferred * 2).toBeLessThanOrEqual(fired);
      // The provider's 421 closes *its* channel, not the client's session: 451 with its text.
      for (const d of deferrals(ledger)) expect(d).toBe('mail 451 4.7.0 Try again later, closing connection.');
      await healAndResend(stack, ledger, '421 at MAIL');
    });
  });

  it('421 after 7 messages on a connection (as Gmail does): every message still gets 250 the first time', async () => {
    await withStack({}, async (stack) => {
      stack.sandbox.smtp.setCloseAfterMessages(7);
      const { ledger, c } = await loadUnderFault(stack, '421 after N messages');
      expect(c.accepted).toBe(COUNT);
      const log = stack.sandbox.smtp.connectionLog();
      expect(Math.max(...log.map((l) => l.messages))).toBeLessThanOrEqual(7);
      expect(log.length).toBeGreaterThanOrEqual(Math.floor(COUNT / 7));
      await healAndResend(stack, ledger, '421 after N messages');
    });
  });

  it('451 to a tenth of the RCPTs: the client gets the provider reply for exactly those, the rest go through', async () => {
    await withStack({}, async (stack) => {
      stack.sandbox.smtp.addFault({ at: 'rcpt', code: 451, fraction: 0.1 });
      const { ledger, c, fired } = await loadUnderFault(stack, '451 to RCPT');
      expect(c.deferred).toBe(fired);
      expect(c.accepted).toBe(COUNT - fired);
      for (const d of deferrals(ledger)) expect(d).toBe('rcpt 451 4.3.0 Mail server temporarily rejected message.');
      await healAndResend(stack, ledger, '451 to RCPT');
    });
  });

  it('a stalled provider: command and data timeouts give 451 4.4.2 and the stalled connection is discarded, never reused', async () => {
    await withStack({ upstream: { command_timeout_ms: 1_000, data_timeout_ms: 1_500 } }, async (stack) => {
      stack.sandbox.smtp.addFault({ at: 'rcpt', action: 'stall', fraction: 0.02, times: 3 });
      stack.sandbox.smtp.addFault({ at: 'data', action: 'stall', fraction: 0.02, times: 3 });
      const started = Date.now();
      const { ledger, c } = await loadUnderFault(stack, 'stalled provider', 300);
      expect(c.deferred).toBe(6);
      expect(deferrals(ledger).map((d) => d.split(',')[0]).sort()).toEqual([
        ...Array(3).fill('final 451 4.4.2 Provider timed out'),
        ...Array(3).fill('rcpt 451 4.4.2 Provider timed out'),
      ]);
      // The timeouts are the configured ones, not the 60 s/180 s defaults.
      expect(Date.now() - started).toBeLessThan(20_000);
      const stalled = () => stack.sandbox.smtp.connectionLog().filter((l) => l.stalled);
      expect(stalled()).toHaveLength(6);
      // Only the relay can have closed them: a stalled sandbox connection never times out by itself.
      await until(() => stalled().every((l) => l.closedAt !== null), 5_000, 'stalled connections closed');
      await healAndResend(stack, ledger, 'stalled provider');
    });
  });
});
