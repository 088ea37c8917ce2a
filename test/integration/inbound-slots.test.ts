// Fair inbound slots (issue 10 item 3): 20 connections from untrusted addresses that never
// authenticate and keep sending NOOP must not keep the operator's MTA out. A per-address cap,
// slots kept for trusted and authenticated clients, and a deadline by which a stranger must
// have authenticated (NOOP does not extend it) keep the MTA's mail flowing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

const SENDER = 'slots@gmail.test';
const PASSWORD = 'slots-password';
const MAX = 12;
const RESERVED = 4;
const PER_ADDRESS = 5;
const AUTH_DEADLINE_MS = 2_000;

describe('inbound slots under a NOOP flood from untrusted addresses', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: SENDER, kind: 'google', password: PASSWORD, senders: [SENDER] }],
      overrides: {
        inbound: {
          trusted_networks: ['127.0.0.1/32'],
          max_connections: MAX,
          reserved_connections: RESERVED,
          max_connections_per_address: PER_ADDRESS,
          auth_deadline_ms: AUTH_DEADLINE_MS,
        },
      },
    });
  });
  afterAll(() => stack.stop());

  /** Connects from `address`; the client and its first reply's code (220, or 421 when refused). */
  async function knock(address: string): Promise<{ client: RawSmtp; code: number }> {
    const { client, greeting } = await RawSmtp.connect(stack.port, '127.0.0.1', { localAddress: address });
    return { client, code: greeting.code };
  }

  it('20 NOOP-ing strangers hold at most their share; the trusted MTA keeps sending; the strangers are cut at the deadline', async () => {
    const strangers: RawSmtp[] = [];
    const codes: number[] = [];
    try {
      // One address: capped at PER_ADDRESS.
      for (let i = 0; i < PER_ADDRESS + 1; i++) {
        const { client, code } = await knock('127.0.0.2');
        strangers.push(client);
        codes.push(code);
      }
      expect(codes).toEqual([...Array(PER_ADDRESS).fill(220), 421]);
      // More addresses: together they never hold the slots kept for trusted and authenticated clients.
      for (const address of ['127.0.0.3', '127.0.0.4', '127.0.0.5']) {
        for (let i = 0; i < 5 && strangers.length < 20; i++) {
          const { client, code } = await knock(address);
          strangers.push(client);
          codes.push(code);
        }
      }
      expect(strangers).toHaveLength(20);
      expect(codes.filter((c) => c === 220)).toHaveLength(MAX - RESERVED);
      const admitted = strangers.filter((_, i) => codes[i] === 220);
      // The strangers' share is full: only the reserved slots are left, and they are not for strangers.
      const late = await knock('127.0.0.6');
      expect(late.code).toBe(421);
      late.client.close();

      // The attack: every admitted stranger NOOPs every 200 ms, each answered 250, until cut off.
      const noops = admitted.map(async (c) => {
        const replies: string[] = [];
        for (let n = 0; n < 50 && !c.closed; n++) {
          const r = await c.cmd('NOOP', 5_000).catch(() => null);
          if (!r) break;
          replies.push(line(r));
          if (r.code !== 250) break;
          await sleep(200);
        }
        // The 421 may have come while this client slept: it is waiting to be read.
        for (;;) {
          const r = await c.read(200).catch(() => null);
          if (!r) break;
          replies.push(line(r));
        }
        return replies;
      });

      // Meanwhile the trusted MTA sends, one connection per message (slots are free for it).
      for (let i = 0; i < 4; i++) {
        const { client, code } = await knock('127.0.0.1');
        expect(code).toBe(220);
        await client.cmd('EHLO mta.test');
        const raw = rawMessage(SENDER, ['x@example.net'], `trusted-during-flood-${i}`);
        expect(line(await client.send(SENDER, ['x@example.net'], raw))).toMatch(/^250 /);
        client.close();
        expect(stack.sandbox.messages.filter((m) => m.sha256 === sha256(raw))).toHaveLength(1);
      }

      // NOOP did not extend the deadline: each stranger got 421 4.7.0 and was closed.
      const started = Date.now();
      const all = await Promise.all(noops);
      for (const replies of all) expect(replies.at(-1)).toMatch(/^421 4\.7\.0 Authentication required/);
      expect(Date.now() - started).toBeLessThan(AUTH_DEADLINE_MS + 3_000);
      await until(() => stack.app.inbound.sessionCount === 0, 5_000, 'strangers gone');
    } finally {
      for (const c of strangers) c.close();
    }
  });

  it('a stranger that authenticates in time keeps its session past the deadline', async () => {
    const { client, code } = await knock('127.0.0.7');
    try {
      expect(code).toBe(220);
      await client.cmd('EHLO client.test');
      // Cleartext AUTH from outside trusted_networks needs TLS, except on loopback (this test).
      expect((await client.authPlain(SENDER, PASSWORD)).code).toBe(235);
      await sleep(AUTH_DEADLINE_MS + 300);
      expect((await client.cmd('NOOP')).code).toBe(250);
    } finally {
      client.close();
    }
  });
});
