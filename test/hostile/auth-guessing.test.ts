// Password guessing over AUTH from one address: each failure is answered a little later than the
// one before (tarpit), then the address is locked out — even the right password gets 421 — until
// the lockout ends. Other addresses (other loopback addresses here) are neither slowed nor locked.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { sleep } from '../helpers/wait.js';

const ACCOUNT = 'target@gmail.test';
const PASSWORD = 'the-right-password';
const FAILURES = 5;
const DELAY_MS = 100;
const LOCKOUT_MS = 2_000;

const plain = (password: string) => 'AUTH PLAIN ' + Buffer.from(`\0${ACCOUNT}\0${password}`).toString('base64');

describe('AUTH guessing', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: ACCOUNT, kind: 'google', password: PASSWORD, senders: [ACCOUNT] }],
      overrides: {
        inbound: { auth_failures_before_lockout: FAILURES, auth_lockout_ms: LOCKOUT_MS, auth_failure_delay_ms: DELAY_MS },
      },
    });
  });
  afterAll(() => stack.stop());

  async function from(address: string): Promise<RawSmtp> {
    const { client } = await RawSmtp.connect(stack.port, '127.0.0.1', { localAddress: address });
    await client.cmd('EHLO client.test');
    return client;
  }

  /**
   * Sends each command on its own client in the same tick and returns the replies in the order
   * they arrived, with how long each took. Order, not duration, is what the tests compare: a
   * stall of this process delays every reply alike, but cannot move a reply that is not held
   * back behind one that is held back by a timer, nor fire a longer timer before a shorter one.
   */
  async function race(sends: Array<[name: string, client: RawSmtp, command: string]>) {
    const started = performance.now();
    const arrived: Array<{ name: string; reply: string; ms: number }> = [];
    await Promise.all(
      sends.map(async ([name, client, command]) => {
        const reply = line(await client.cmd(command));
        arrived.push({ name, reply, ms: performance.now() - started });
      }),
    );
    return { order: arrived.map((a) => a.name), of: (name: string) => arrived.find((a) => a.name === name)! };
  }

  it('failures are answered ever later, then the address is locked out; another address is untouched throughout', async () => {
    const attacker = await from('127.0.0.2');
    const bystander = await from('127.0.0.3');
    try {
      for (let n = 1; n <= FAILURES; n++) {
        // The bystander logs in while the attacker's reply is held back, and is answered first: no wait for it.
        const honest = await from('127.0.0.3');
        const r = await race([
          ['guess', attacker, plain(`guess-${n}`)],
          ['honest', honest, plain(PASSWORD)],
        ]);
        honest.close();
        expect(r.of('guess').reply).toMatch(/^535 5\.7\.8 /);
        expect(r.of('guess').ms).toBeGreaterThanOrEqual(n * DELAY_MS - 5);
        expect(r.of('honest').reply).toMatch(/^235 /);
        expect(r.order).toEqual(['honest', 'guess']);
      }
      // Locked out: the right password does not help, and the session ends.
      expect(line(await attacker.cmd(plain(PASSWORD)))).toBe('421 4.7.0 Too many failed authentication attempts from your address, try again later');
      const again = await from('127.0.0.2');
      expect(line(await again.cmd(plain(PASSWORD)))).toMatch(/^421 4\.7\.0 /);
      again.close();
      // The bystander's own mistake costs it one delay, its first, not the attacker's: it is
      // answered before the third failure of yet another address, sent at the same moment.
      const other = await from('127.0.0.5');
      for (let n = 1; n <= 2; n++) expect((await other.cmd(plain(`other-${n}`))).code).toBe(535);
      const r = await race([
        ['third', other, plain('other-3')],
        ['typo', bystander, plain('typo')],
      ]);
      other.close();
      expect(r.of('typo').reply).toMatch(/^535 /);
      expect(r.of('typo').ms).toBeGreaterThanOrEqual(DELAY_MS - 5);
      expect(r.order).toEqual(['typo', 'third']);
      expect((await bystander.cmd(plain(PASSWORD))).code).toBe(235);
      // The lockout ends by itself.
      await sleep(LOCKOUT_MS + 100);
      const later = await from('127.0.0.2');
      expect((await later.cmd(plain(PASSWORD))).code).toBe(235);
      later.close();
    } finally {
      attacker.close();
      bystander.close();
    }
  });

  it('guessing in parallel gets no more tries: only the allowed number of failures is even checked', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => from('127.0.0.4')));
    // What a guess costs the attacker is a password compared: counted where the relay compares.
    const checks = vi.spyOn(stack.app.relay.router, 'authenticate');
    try {
      const replies = await Promise.all(clients.map((c, i) => c.cmd(plain(`parallel-${i}`), 15_000).then(line)));
      expect(replies.filter((r) => r.startsWith('535 '))).toHaveLength(FAILURES);
      expect(replies.filter((r) => r.startsWith('421 4.7.0 '))).toHaveLength(20 - FAILURES);
      const guessed = checks.mock.calls.filter(([, password]) => password.startsWith('parallel-'));
      expect(guessed).toHaveLength(FAILURES);
    } finally {
      checks.mockRestore();
      for (const c of clients) c.close();
    }
  });
});
