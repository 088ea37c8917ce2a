// Accounts that cost nothing while idle (issue 22 item 2): beyond warm.all_up_to accounts only
// the pinned and recently active ones get a token and ready connections; a cold account's first
// message pays one token request and one login, and then it is warm. Start-up under the token
// endpoint's 429: it backs off for Retry-After and still ends with every account ready.
import { afterEach, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/provider.js';
import { captureLog } from '../helpers/log-capture.js';
import { sendPipelined } from '../helpers/smtp-client.js';
import { rawMessage, startStack, type Stack } from '../helpers/stack.js';

const PINNED = 'pinned@gmail.test';
const COLD = 'cold@outlook.test';
const OTHER = 'other@gmail.test';

let stack: Stack | null = null;
afterEach(async () => {
  await stack?.stop();
  stack = null;
});

async function getJson(path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${stack!.app.adminPort}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const pipelined = (port: number, from: string, tag: string) => sendPipelined(port, from, 'to@example.net', rawMessage(from, ['to@example.net'], tag));

const logins = (email: string) => stack!.sandbox.smtp.authAttempts().filter((a) => a.user === email && a.ok).length;

describe('warmth: accounts that cost nothing while idle', () => {
  it("a cold account's first message makes one token request and one login, then the account is warm", async () => {
    const log = captureLog('info');
    stack = await startStack({
      accounts: [
        { email: PINNED, kind: 'google', senders: [PINNED] },
        { email: COLD, kind: 'microsoft', senders: [COLD] },
        { email: OTHER, kind: 'google', senders: [OTHER] },
      ],
      // Three accounts over a threshold of one: only the pinned one is warmed.
      overrides: { warm: { all_up_to: 1, pinned: [PINNED] } },
      logger: log.logger,
    });
    // Cold is not unhealthy: start-up's summary names no account (with thousands it named them all).
    const readyLine = log.lines.map((l) => JSON.parse(l) as { event?: string; unhealthy?: string[] }).find((l) => l.event === 'relay_ready');
    expect(readyLine?.unhealthy).toEqual([]);
    const { sandbox } = stack;
    expect(sandbox.state.tokenRequests(PINNED)).toBe(1);
    expect(sandbox.state.tokenRequests(COLD)).toBe(0);
    expect(sandbox.state.tokenRequests(OTHER)).toBe(0);
    expect(logins(COLD)).toBe(0);
    // Ready: the pinned account can send, and a cold one counts as able (its message fetches).
    const ready = await getJson('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.unable_total).toBe(0);
    const cold = stack.app.health.of(stack.app.relay.router.account(COLD)!);
    expect(cold).toMatchObject({ state: 'cold', can_send: true });

    const first = await pipelined(stack.port, COLD, 'cold-1');
    expect(first.map((r) => `${r.code} ${r.lines[0]}`)).toEqual([expect.stringMatching(/^250/), expect.stringMatching(/^250/), expect.stringMatching(/^354/), expect.stringMatching(/^250/)]);
    expect(sandbox.state.tokenRequests(COLD)).toBe(1);
    expect(logins(COLD)).toBe(1);
    const firstMessage = sandbox.messages.find((m) => m.authUser === COLD)!;
    // Warm now: its connection is kept ready and its token will be refreshed ahead of expiry.
    expect(stack.app.relay.warmth.isWarm(COLD)).toBe(true);
    expect(stack.app.relay.pools.get(COLD)!.stats.idle).toBe(1);
    expect(stack.app.health.of(stack.app.relay.router.account(COLD)!).state).toBe('ok');

    const second = await pipelined(stack.port, COLD, 'cold-2');
    expect(second.map((r) => r.code)).toEqual([250, 250, 354, 250]);
    // Nothing on the second message's path: no token request, the first message's connection.
    expect(sandbox.state.tokenRequests(COLD)).toBe(1);
    const messages = sandbox.messages.filter((m) => m.authUser === COLD);
    expect(messages).toHaveLength(2);
    expect(messages[1]!.connectionId).toBe(firstMessage.connectionId);
    // The account that sent nothing stayed cold all along.
    expect(sandbox.state.tokenRequests(OTHER)).toBe(0);
    expect(logins(OTHER)).toBe(0);
  });

  it("start-up under the token endpoint's 429 backs off for Retry-After and ends ready", async () => {
    const RATE = 20;
    const N = 60;
    const CONCURRENCY = 4;
    const provider = await SandboxProvider.start({ tokenRatePerClient: RATE });
    // No ready connections (min_idle 0): TLS logins in this same process would only slow it down.
    const accounts = Array.from({ length: N }, (_, i) => ({ email: `rl${i}@gmail.test`, kind: 'google' as const, extra: { min_idle: 0 } }));
    // One OAuth client for all of them, as an operator's app is: the limit is the client's.
    for (const a of accounts) provider.addAccount({ email: a.email, kind: a.kind, clientId: 'one-app.apps.sandbox', clientSecret: 'one-app-secret' });
    try {
      const started = Date.now();
      stack = await startStack({ accounts, provider, overrides: { tokens: { startup_concurrency: CONCURRENCY } } });
      const log = provider.state.tokenRequestLog();
      const limited = log.filter((r) => r.status === 429);
      expect(limited.length).toBeGreaterThan(0);
      // Backed off: a 429 stops every request until its Retry-After (1 s) has passed, so each
      // refusal costs at most the requests already in flight. Pressing on would have drawn a
      // 429 for each of the N - RATE accounts beyond the first second's allowance.
      expect(limited.length).toBeLessThanOrEqual(3 * CONCURRENCY);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
      // Every account got its token in the end, one success each.
      for (const a of accounts) expect(provider.state.tokenRequestLog(a.email).filter((r) => r.status === 200)).toHaveLength(1);
      const ready = await getJson('/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body.unable_total).toBe(0);
    } finally {
      await stack?.stop();
      stack = null;
      await provider.stop();
    }
  }, 30_000);
});
