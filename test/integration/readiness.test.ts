// /readyz means "this relay can send now", and an account's health says what the operator must
// do: from the token endpoint's answer (500 → token_endpoint_failing, invalid_client →
// bad_client_credentials) and from what the provider said at the last AUTH (535 with a fresh
// token → provider_refuses_login), the store (store_failing) and the provider's quota replies
// (paused_by_quota), shown alike in /api/accounts, /metrics and /readyz.
import { afterEach, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const A = 'a@gmail.test';
const B = 'b@outlook.test';
const TOKENS = { request_timeout_ms: 500, retry_min_ms: 100, retry_max_ms: 400, startup_wait_ms: 3_000 };

interface Json {
  status: number;
  body: Record<string, any>;
}

async function get(stack: Stack, path: string): Promise<Json> {
  const res = await fetch(`http://127.0.0.1:${stack.app.adminPort}${path}`, { headers: stack.adminAuth() });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function metrics(stack: Stack): Promise<string> {
  return (await fetch(`http://127.0.0.1:${stack.app.adminPort}/metrics`)).text();
}

const healthOf = (stack: Stack, email: string) => stack.app.health.of(stack.app.relay.router.account(email)!);

let stack: Stack | null = null;
let sandbox: SandboxProvider | null = null;

afterEach(async () => {
  await stack?.stop();
  await sandbox?.stop();
  stack = null;
  sandbox = null;
});

describe('/readyz and account health', () => {
  it('is 503 with the reasons while the token endpoint fails for every account, 200 once one account can send', async () => {
    sandbox = await SandboxProvider.start();
    sandbox.addAccount({ email: A, kind: 'google' });
    sandbox.addAccount({ email: B, kind: 'microsoft' });
    sandbox.tokens.injectFault({ status: 500 });
    stack = await startStack({
      provider: sandbox,
      accounts: [
        { email: A, kind: 'google', senders: [A] },
        { email: B, kind: 'microsoft', senders: [B] },
      ],
      overrides: { tokens: TOKENS },
    });

    const down = await get(stack, '/readyz');
    expect(down.status).toBe(503);
    expect(down.body.ready).toBe(false);
    expect(down.body.reasons.join(' ')).toMatch(/no account can send: a@gmail\.test token_endpoint_failing, b@outlook\.test token_endpoint_failing/);
    expect(down.body.unable).toEqual([
      { email: A, state: 'token_endpoint_failing', error: expect.stringMatching(/HTTP 500/) },
      { email: B, state: 'token_endpoint_failing', error: expect.stringMatching(/HTTP 500/) },
    ]);
    const listed = await get(stack, '/api/accounts');
    expect(listed.body.accounts[0]).toMatchObject({ email: A, health: 'token_endpoint_failing', can_send: false, last_error: expect.stringMatching(/HTTP 500/) });
    // An error never stands without its time, on the accounts list and on the status page's data.
    expect(Date.parse(listed.body.accounts[0].last_error_at)).toBeGreaterThan(Date.now() - 60_000);
    const status = await get(stack, '/api/status');
    const shown = (status.body.accounts as Array<{ email: string; last_error: string | null; last_error_at: string | null }>).find((a) => a.email === A)!;
    expect(shown.last_error).toMatch(/HTTP 500/);
    expect(shown.last_error_at).toBe(listed.body.accounts[0].last_error_at);
    expect(await metrics(stack)).toMatch(/xoauth2_relay_account_healthy\{account="a@gmail\.test"\} 0/);
    expect(await metrics(stack)).toMatch(/xoauth2_relay_account_state\{account="a@gmail\.test",state="token_endpoint_failing"\} 1/);

    // The endpoint heals for A only: one account can send, so the relay is ready, and says which cannot.
    sandbox.tokens.clearFaults();
    sandbox.tokens.injectFault({ status: 500 }, { email: B });
    await until(() => healthOf(stack!, A).can_send, 5_000, 'A recovers');
    const up = await get(stack, '/readyz');
    expect(up.status).toBe(200);
    expect(up.body).toMatchObject({ ready: true, reasons: [], unable: [{ email: B, state: 'token_endpoint_failing' }] });
    expect(await metrics(stack)).toMatch(/xoauth2_relay_account_healthy\{account="a@gmail\.test"\} 1/);
  });

  it('names a refused client secret bad_client_credentials, not needs_consent', async () => {
    sandbox = await SandboxProvider.start();
    sandbox.addAccount({ email: A, kind: 'google' });
    sandbox.tokens.injectFault({ error: 'invalid_client' }, { email: A });
    stack = await startStack({ provider: sandbox, accounts: [{ email: A, kind: 'google', senders: [A] }], overrides: { tokens: TOKENS } });
    const h = healthOf(stack, A);
    expect(h).toMatchObject({ state: 'bad_client_credentials', can_send: false });
    expect(h.advice).toMatch(/check client_id and client_secret/);
    const ready = await get(stack, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.unable).toEqual([{ email: A, state: 'bad_client_credentials', error: expect.stringMatching(/invalid_client/) }]);
  });

  it('shows what the provider said at AUTH when it refuses a fresh token, and the other account keeps the relay ready', async () => {
    stack = await startStack({
      accounts: [
        { email: A, kind: 'google', senders: [A] },
        { email: B, kind: 'microsoft', senders: [B] },
      ],
      overrides: { tokens: TOKENS },
    });
    expect((await get(stack, '/readyz')).body).toMatchObject({ ready: true, unable: [] });
    expect(healthOf(stack, B).state).toBe('ok');

    // Exchange with SMTP AUTH switched off for the tenant: every AUTH of B gets 535 5.7.139.
    stack.sandbox.smtp.addFault({ at: 'auth', user: B, code: 535, enhanced: '5.7.139', text: 'Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.' });
    stack.sandbox.smtp.dropAllConnections();
    await until(() => healthOf(stack!, B).state === 'provider_refuses_login', 10_000, 'B refused at login');

    const b = healthOf(stack, B);
    expect(b.can_send).toBe(false);
    expect(b.error).toMatch(/535 5\.7\.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant/);
    expect(b.advice).toMatch(/Set-TransportConfig -SmtpClientAuthenticationDisabled \$false/);
    // The token itself is fine: the relay fetched a fresh one before calling it the provider's refusal.
    expect(stack.app.relay.tokens.statusOf(B)?.health).toBe('healthy');

    const view = (await get(stack, `/api/accounts/${B}`)).body;
    expect(view).toMatchObject({ health: 'provider_refuses_login', can_send: false, last_error: b.error });
    const ready = await get(stack, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.unable).toEqual([{ email: B, state: 'provider_refuses_login', error: b.error }]);
    const m = await metrics(stack);
    expect(m).toMatch(/xoauth2_relay_account_healthy\{account="b@outlook\.test"\} 0/);
    expect(m).toMatch(/xoauth2_relay_account_state\{account="b@outlook\.test",state="provider_refuses_login"\} 1/);

    // The tenant admin turns SMTP AUTH back on: the pool's own retries find out, without a message.
    stack.sandbox.smtp.clearFaults();
    await until(() => healthOf(stack!, B).state === 'ok', 15_000, 'B recovers');
    expect(healthOf(stack, B).can_send).toBe(true);
  });

  it('calls accounts with counted limits store_failing while the shared store is unreachable, and only those', async () => {
    const LIMITED = 'limited@gmail.test';
    const FREE = 'free@gmail.test';
    stack = await startStack({
      accounts: [
        { email: LIMITED, kind: 'google', senders: [LIMITED], extra: { limits: { messages_per_day: 100 } } },
        { email: FREE, kind: 'google', senders: [FREE] },
      ],
      // Nothing listens on port 1: Redis is down from the start.
      overrides: { tokens: TOKENS, store: { url: 'redis://127.0.0.1:1' } },
    });
    expect(healthOf(stack, LIMITED)).toMatchObject({ state: 'store_failing', can_send: false, error: 'the shared store (Redis) is unreachable' });
    expect(healthOf(stack, FREE)).toMatchObject({ state: 'ok', can_send: true });
    const ready = await get(stack, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ ready: true, unable: [{ email: LIMITED, state: 'store_failing' }], store_problem: 'the shared store (Redis) is unreachable' });

    // Without the account that needs no store, nothing can send.
    await stack.app.relay.applyAccounts(stack.app.relay.accounts.filter((a) => a.email === LIMITED));
    const down = await get(stack, '/readyz');
    expect(down.status).toBe(503);
    expect(down.body.reasons).toEqual([`no account can send: ${LIMITED} store_failing`]);
  });

  it('a provider quota reply pauses the account: paused_by_quota until a time, healthy, and not ready when it was the only one', async () => {
    stack = await startStack({ accounts: [{ email: A, kind: 'google', senders: [A] }], overrides: { tokens: TOKENS } });
    stack.sandbox.smtp.addFault({ at: 'mail', code: 550, enhanced: '5.4.5', text: 'Daily user sending limit exceeded.', user: A, times: 1 });
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    expect((await client.cmd(`MAIL FROM:<${A}>`)).code).toBe(451);
    client.close();
    const h = healthOf(stack, A);
    expect(h).toMatchObject({ state: 'paused_by_quota', can_send: false, error: expect.stringMatching(/daily quota: 550 5\.4\.5 Daily user sending limit exceeded/) });
    expect(h.until! - Date.now()).toBeGreaterThan(3_000_000);
    const ready = await get(stack, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.reasons).toEqual([`no account can send: ${A} paused_by_quota`]);
    // Paused is the provider's limit working as it should: nothing to fix, so not unhealthy.
    expect(await metrics(stack)).toMatch(/xoauth2_relay_account_healthy\{account="a@gmail\.test"\} 1/);
    expect((await get(stack, `/api/accounts/${A}`)).body).toMatchObject({ health: 'paused_by_quota', paused: { reason: expect.stringMatching(/daily quota/) } });
  });
});
