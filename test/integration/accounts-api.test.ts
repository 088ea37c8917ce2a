// Accounts changed at run time through the HTTP API while mail flows: an account added (verified
// against the sandbox first; refused with a clear 4xx when its credentials do not work), changed
// and removed while a client keeps sending on another account — no session dropped, every
// message that got 250 upstream exactly once. relay.yaml's accounts are read-only here, a
// transaction in flight on a removed account still completes, a session that authenticated as it
// gets 451 at its next MAIL, and stored accounts come back after a restart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxAccount } from '../../src/sandbox/index.js';
import { drive, Ledger } from '../helpers/ledger.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const A = 'steady@gmail.test';
const B = 'added@gmail.test';
const B_PASSWORD = 'pw-added-RECOGNISABLE';

interface Answer {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

async function api(stack: Stack, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`http://127.0.0.1:${stack.app.adminPort}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...stack.adminAuth(), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, text };
}

/** relay.yaml keys of a sandbox account. */
const accountBody = (a: SandboxAccount, extra: Record<string, unknown> = {}) => ({
  email: a.email,
  provider: a.kind,
  client_id: a.clientId,
  client_secret: a.clientSecret,
  refresh_token: a.refreshToken,
  ...extra,
});

/** A session authenticated as `user`, EHLO said. */
async function session(stack: Stack, user: string, pass: string): Promise<RawSmtp> {
  const { client } = await RawSmtp.connect(stack.port);
  await client.cmd('EHLO mta.test');
  expect((await client.authPlain(user, pass)).code).toBe(235);
  return client;
}

describe('accounts through the HTTP API, at run time', () => {
  let stack: Stack;
  let b: SandboxAccount;

  beforeAll(async () => {
    stack = await startStack({ accounts: [{ email: A, kind: 'google', senders: [A] }] });
    b = stack.sandbox.addAccount({ email: B, kind: 'google' });
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('adds (verified), changes and removes an account while another keeps sending: nothing dropped, nothing lost or doubled', async () => {
    const ledger = new Ledger('api-steady', 3_000, [A]);
    let changesDone = false;
    // A keeps sending through every change, and at least 25 messages in all, however slow the machine.
    const sentByA = () => stack.sandbox.messages.filter((m) => m.authUser === A).length;
    const load = drive(stack.port, ledger.entries, { connections: 2, timeLimitMs: 60_000, stop: () => changesDone && sentByA() >= 25 });

    const added = await api(stack, 'POST', '/api/accounts', accountBody(b, { password: B_PASSWORD, senders: [B] }));
    expect(added.status, added.text).toBe(201);
    expect(added.body).toMatchObject({ email: B, source: 'store', health: 'ok' });
    for (const secret of [b.refreshToken, b.clientSecret!, B_PASSWORD]) expect(added.text).not.toContain(secret);
    // Verified: the sandbox saw an AUTH as B before the account was saved.
    expect(stack.sandbox.smtp.authAttempts().some((t) => t.user === B && t.ok)).toBe(true);

    const asB = await session(stack, B, B_PASSWORD);
    const first = rawMessage(B, ['x@example.net'], 'api-added');
    expect((await asB.send(B, ['x@example.net'], first)).code).toBe(250);
    expect(stack.sandbox.messages.find((m) => m.sha256 === sha256(first))?.authUser).toBe(B);

    // A change of settings only (password, senders): the token and the pool stay.
    // B's logins only: A's load retires and replaces its own connections meanwhile.
    const loginsOfB = () => stack.sandbox.smtp.authAttempts().filter((t) => t.user === B).length;
    // The message just sent took B's one ready connection, so the pool opens a spare (min_idle)
    // behind it, and on a loaded machine that login may land at any time: counted only once no
    // connection of B is opening, before and after, or the spare passes for a new pool.
    const settledLogins = async () => {
      await until(() => stack.app.relay.pools.get(B)?.stats.opening === 0, 10_000, "B's pool settled");
      return loginsOfB();
    };
    const pool = stack.app.relay.pools.get(B);
    const opened = await settledLogins();
    const patched = await api(stack, 'PATCH', `/api/accounts/${B}`, { password: 'pw-new-RECOGNISABLE', senders: ['*@gmail.test'] });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body.senders).toEqual(['*@gmail.test']);
    expect(stack.app.relay.pools.get(B)).toBe(pool);
    expect(await settledLogins()).toBe(opened);
    const { client: probe } = await RawSmtp.connect(stack.port);
    await probe.cmd('EHLO mta.test');
    expect((await probe.authPlain(B, B_PASSWORD)).code).toBe(535);
    expect((await probe.authPlain(B, 'pw-new-RECOGNISABLE')).code).toBe(235);
    probe.close();

    // A change of the pool (max_connections) replaces it; the open session goes on with the new one.
    const put = await api(stack, 'PUT', `/api/accounts/${B}`, accountBody(b, { password: 'pw-new-RECOGNISABLE', senders: ['*@gmail.test'], max_connections: 2 }));
    expect(put.status, put.text).toBe(200);
    const second = rawMessage(B, ['y@example.net'], 'api-changed');
    expect((await asB.send(B, ['y@example.net'], second)).code).toBe(250);

    // Removal with a transaction open: it completes on its connection; the next MAIL gets 451.
    expect((await asB.cmd(`MAIL FROM:<${B}>`)).code).toBe(250);
    expect((await asB.cmd('RCPT TO:<z@example.net>')).code).toBe(250);
    const removed = await api(stack, 'DELETE', `/api/accounts/${B}`);
    expect(removed.status, removed.text).toBe(204);
    expect((await asB.cmd('DATA')).code).toBe(354);
    const third = rawMessage(B, ['z@example.net'], 'api-in-flight');
    asB.write(third + '.\r\n');
    expect((await asB.read()).code).toBe(250);
    const after = await asB.cmd(`MAIL FROM:<${B}>`);
    expect(`${after.code} ${after.lines[0]}`).toMatch(/^451 4\.7\.0 /);
    asB.close();
    expect((await api(stack, 'GET', `/api/accounts/${B}`)).status).toBe(404);
    expect(stack.app.relay.pools.has(B)).toBe(false);

    changesDone = true;
    await load;
    const counts = ledger.counts(stack.sandbox.messages);
    expect(counts.sent).toBeGreaterThan(20);
    expect(counts).toMatchObject({ accepted: counts.sent, deferred: 0, refused: 0, noReply: 0, unknown: 0, lost: 0, duplicated: 0 });
    for (const raw of [first, second, third]) expect(stack.sandbox.messages.filter((m) => m.sha256 === sha256(raw))).toHaveLength(1);
  });

  it('refuses credentials that do not work with a clear 4xx, and saves nothing', async () => {
    const bogus = { ...accountBody(stack.sandbox.addAccount({ email: 'bogus@gmail.test', kind: 'google' })), refresh_token: 'rt-not-issued-RECOGNISABLE' };
    const r = await api(stack, 'POST', '/api/accounts', bogus);
    expect(r.status).toBe(422);
    expect(r.body.error).toMatch(/verification failed at token: token endpoint answered HTTP 400 invalid_grant/);
    expect((r.body.check as Record<string, unknown>).advice).toMatch(/Consent again/);
    expect(r.text).not.toContain('rt-not-issued-RECOGNISABLE');
    expect((await api(stack, 'GET', '/api/accounts/bogus@gmail.test')).status).toBe(404);
    // Told not to verify, it is saved, and runs as what it is: an account that needs consent.
    const unverified = await api(stack, 'POST', '/api/accounts?verify=false', bogus);
    expect(unverified.status, unverified.text).toBe(201);
    expect(unverified.body).toMatchObject({ health: 'needs_consent', can_send: false, last_error: 'token endpoint answered HTTP 400 invalid_grant' });
    expect(unverified.body.advice).toMatch(/Consent again, signed in as bogus@gmail\.test/);
    expect((await api(stack, 'DELETE', '/api/accounts/bogus@gmail.test')).status).toBe(204);
  });

  it('answers mistakes with the key and the reason, and leaves relay.yaml accounts alone (409)', async () => {
    const missing = await api(stack, 'POST', '/api/accounts', { email: 'half@gmail.test', provider: 'google' });
    expect(missing).toMatchObject({ status: 400, body: { key: 'client_id' } });
    expect(missing.body.error).toMatch(/client_id: required when auth is refresh_token/);
    expect((await api(stack, 'POST', '/api/accounts', { email: 'x@gmail.test', provider: 'google', client_id: 'c', refresh_token: 'r', colour: 'red' })).body.key).toBe('colour');
    expect((await api(stack, 'POST', '/api/accounts', '{not json')).status).toBe(400);
    // A GET's masked secret sent back is not taken for the secret.
    const masked = await api(stack, 'POST', '/api/accounts', { email: 'x@gmail.test', provider: 'google', client_id: 'c', refresh_token: '********' });
    expect(masked).toMatchObject({ status: 400, body: { key: 'refresh_token' } });
    for (const [method, body] of [['PATCH', { senders: [] }], ['PUT', { provider: 'google' }], ['DELETE', undefined]] as const) {
      const r = await api(stack, method, `/api/accounts/${A}`, body);
      expect(r.status).toBe(409);
      expect(r.body.error).toMatch(/defined in relay\.yaml.*edit the file and reload/);
    }
    expect((await api(stack, 'POST', '/api/accounts', accountBody(stack.accounts.get(A)!))).status).toBe(409);
    expect((await api(stack, 'DELETE', '/api/accounts/nobody@gmail.test')).status).toBe(404);
    expect((await api(stack, 'GET', '/api/accounts')).status).toBe(200);
  });

  it('lists accounts with health, expiry, recent sends and secrets masked; counts provider replies by command', async () => {
    const listA = async () => ((await api(stack, 'GET', '/api/accounts')).body.accounts as Array<Record<string, unknown>>).find((x) => x.email === A)!;
    // Its own sends, so that it checks the same whether it runs alone or after the others.
    const before = Number((await listA()).sent_last_hour);
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    for (let i = 0; i < 3; i++) expect((await client.send(A, ['list@example.net'], rawMessage(A, ['list@example.net'], `api-list-${i}`))).code).toBe(250);
    client.close();
    const list = await api(stack, 'GET', '/api/accounts');
    const a = (list.body.accounts as Array<Record<string, unknown>>).find((x) => x.email === A)!;
    expect(a).toMatchObject({ source: 'config', health: 'ok', provider: 'google' });
    expect(a.sent_last_hour).toBe(before + 3);
    expect(a.sent_last_day).toBe(a.sent_last_hour);
    expect(Date.parse(String(a.token_expires_at))).toBeGreaterThan(Date.now());
    expect((a.settings as Record<string, unknown>).refresh_token).toBe('********');
    expect(list.text).not.toContain(stack.accounts.get(A)!.refreshToken);
    const metrics = await (await fetch(`http://127.0.0.1:${stack.app.adminPort}/metrics`)).text();
    for (const command of ['MAIL', 'RCPT', 'DATA']) {
      const m = new RegExp(`xoauth2_relay_upstream_replies_total\\{account="${A}",command="${command}",code="250"\\} (\\d+)`).exec(metrics);
      expect(Number(m?.[1])).toBe(a.sent_last_hour);
    }
  });

  it('keeps stored accounts across a restart', async () => {
    const d = stack.sandbox.addAccount({ email: 'kept@gmail.test', kind: 'google' });
    expect((await api(stack, 'POST', '/api/accounts', accountBody(d, { senders: [d.email] }))).status).toBe(201);
    const requests = stack.sandbox.state.tokenRequests(d.email);
    await stack.stopRelay();
    stack = await startStack({ accounts: [{ email: A, kind: 'google', senders: [A] }], dir: stack.dir, provider: stack.sandbox });
    const kept = await api(stack, 'GET', `/api/accounts/${d.email}`);
    expect(kept.body).toMatchObject({ source: 'store', health: 'ok' });
    // Its token came back from the store with it.
    expect(stack.sandbox.state.tokenRequests(d.email)).toBe(requests);
    const raw = rawMessage(d.email, ['r@example.net'], 'api-kept');
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    expect((await client.send(d.email, ['r@example.net'], raw)).code).toBe(250);
    client.close();
  });
});

describe('the HTTP API with a bearer token', () => {
  it('refuses requests without it', async () => {
    const token = 'bearer-token-RECOGNISABLE-0123';
    const stack = await startStack({ accounts: [{ email: A, kind: 'google' }], overrides: { http: { host: '127.0.0.1', port: 0, bearer_token: token } } });
    try {
      const wrong = { authorization: 'Bearer not-the-token-0123456789' };
      expect((await api(stack, 'GET', '/api/accounts', undefined, wrong)).status).toBe(401);
      expect((await api(stack, 'POST', '/api/reload', undefined, wrong)).status).toBe(401);
      expect((await api(stack, 'GET', '/api/accounts', undefined, { authorization: `Bearer ${token}` })).status).toBe(200);
    } finally {
      await stack.stop();
    }
  });
});
