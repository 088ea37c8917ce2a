// The attacks of issue 10 item 1 against the operator's HTTP port on its default loopback bind:
// a web page's cross-site "simple" form post, DNS rebinding (a foreign Host), a local user
// without the credential, an account naming a key file on the relay's disk, and `test` used as
// a login hammer. Each is refused and changes nothing; the probes stay open on loopback.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLoopbackHost } from '../../src/config/networks.js';
import { TESTS_PER_WINDOW } from '../../src/admin/test-gate.js';
import { buildConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/errors.js';
import { captureLog } from '../helpers/log-capture.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { startStack, type Stack } from '../helpers/stack.js';

const CEO = 'ceo@gmail.test';
const OTHER = 'other@gmail.test';

interface Answer {
  status: number;
  text: string;
}

/** A raw HTTP request: fetch() would not let the test set Host or a browser's headers. */
function raw(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }), ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('the admin port refuses what a web page or another local user tries', () => {
  let stack: Stack;
  let port: number;
  let victim: ReturnType<Stack['sandbox']['addAccount']>;
  const log = captureLog('debug');
  const auth = () => stack.adminAuth();
  const accounts = async () => JSON.parse((await raw(port, 'GET', '/api/accounts', auth())).text) as { accounts: Array<Record<string, unknown>> };

  beforeAll(async () => {
    // One connection at most: `accounts test` must not add a second one at the provider.
    stack = await startStack({ accounts: [{ email: OTHER, kind: 'google', senders: ['*@gmail.test'], extra: { max_connections: 1 } }], logger: log.logger });
    port = stack.app.adminPort!;
    victim = stack.sandbox.addAccount({ email: CEO, kind: 'google' });
  });
  afterAll(async () => {
    const token = auth().authorization!.slice('Bearer '.length);
    await stack.stop();
    // The credential never reaches a log line (debug level included).
    expect(token.length).toBeGreaterThan(40);
    expect(log.lines.length).toBeGreaterThan(0);
    expect(log.lines.filter((l) => l.includes(token))).toEqual([]);
  });

  it('keeps the generated credential in admin.token, 0600, beside the store', () => {
    expect(statSync(join(stack.dir, 'admin.token')).mode & 0o777).toBe(0o600);
    expect(auth().authorization).toMatch(/^Bearer [A-Za-z0-9_-]{40,}$/);
  });

  it('a cross-site text/plain form post of an account: refused, nothing added', async () => {
    const form = JSON.stringify({ email: CEO, provider: 'google', client_id: victim.clientId, refresh_token: victim.refreshToken, password: 'attacker-pw-0001', senders: [CEO] });
    const post = (headers: Record<string, string>) => raw(port, 'POST', '/api/accounts?verify=false', { 'content-type': 'text/plain', ...headers }, form);
    // As the browser sends it: the page's Origin, no credential.
    expect((await post({ origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    // Stripped of its browser headers it still lacks the credential, and the type is not JSON.
    expect((await post({})).status).toBe(401);
    expect((await post(auth())).status).toBe(415);
    // A cross-site page that somehow had the credential is refused as well.
    expect((await raw(port, 'GET', '/api/accounts', { ...auth(), origin: 'http://evil.example' })).status).toBe(403);
    expect((await raw(port, 'GET', '/api/accounts', { ...auth(), origin: 'null' })).status).toBe(403);
    expect((await accounts()).accounts.map((a) => a.email)).toEqual([OTHER]);
    // And MAIL FROM the CEO still goes nowhere but the domain's own account.
    expect(stack.app.relay.router.account(CEO)).toBeNull();
  });

  it('a rebound hostname (foreign Host) is refused, with or without the credential; IP literals and localhost are served', async () => {
    for (const path of ['/api/accounts', '/healthz', '/metrics', '/readyz']) {
      expect((await raw(port, 'GET', path, { ...auth(), host: `rebind.attacker.example:${port}` })).status).toBe(403);
      expect((await raw(port, 'GET', path, { ...auth(), host: `127.attacker.example` })).status).toBe(403);
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'localhost']) {
      expect((await raw(port, 'GET', '/healthz', { host })).status, host).toBe(200);
    }
  });

  it('a local user without the credential: PATCH, PUT, DELETE, reload and reads of /api refused; probes open on loopback', async () => {
    const stored = { email: CEO, provider: 'google', client_id: victim.clientId, refresh_token: victim.refreshToken, senders: [CEO] };
    const added = await raw(port, 'POST', '/api/accounts?verify=false', { ...auth(), 'content-type': 'application/json' }, JSON.stringify(stored));
    expect(added.status, added.text).toBe(201);
    const json = { 'content-type': 'application/json' };
    expect((await raw(port, 'PATCH', `/api/accounts/${CEO}`, json, JSON.stringify({ password: 'attacker-pw-0002', senders: ['*@gmail.test'] }))).status).toBe(401);
    expect((await raw(port, 'PUT', `/api/accounts/${CEO}`, json, JSON.stringify({ ...stored, password: 'attacker-pw-0002' }))).status).toBe(401);
    expect((await raw(port, 'DELETE', `/api/accounts/${CEO}`)).status).toBe(401);
    expect((await raw(port, 'POST', '/api/reload')).status).toBe(401);
    expect((await raw(port, 'GET', '/api/accounts')).status).toBe(401);
    expect((await raw(port, 'GET', '/api/status')).status).toBe(401);
    expect((await raw(port, 'GET', '/api/accounts', { authorization: 'Bearer guessed-0123456789abcdef' })).status).toBe(401);
    const ceo = (await accounts()).accounts.find((a) => a.email === CEO)!;
    expect(ceo.senders).toEqual([CEO]);
    expect((ceo.settings as Record<string, unknown>).password).toBeUndefined();
    // The attacker's password does not open the account.
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    expect((await client.authPlain(CEO, 'attacker-pw-0002')).code).toBe(535);
    client.close();
    for (const path of ['/healthz', '/readyz', '/metrics']) expect((await raw(port, 'GET', path)).status, path).toBe(200);
    expect((await raw(port, 'DELETE', `/api/accounts/${CEO}`, auth())).status).toBe(204);
  });

  it('an account naming a file on the relay host is refused through the API, without a word about the path', async () => {
    const keyFile = join(stack.dir, 'operator-sa-key.json');
    writeFileSync(keyFile, '{"type":"service_account"}');
    for (const file of [keyFile, '/etc/shadow', '/nonexistent/key.json']) {
      const r = await raw(port, 'POST', '/api/accounts?verify=false', { ...auth(), 'content-type': 'application/json' }, JSON.stringify({ email: CEO, provider: 'google', auth: 'service_account', service_account_file: file }));
      expect(r.status).toBe(400);
      expect(JSON.parse(r.text)).toMatchObject({ key: 'service_account_file' });
      expect(r.text).not.toContain(file);
      expect(r.text).not.toMatch(/not JSON|ENOENT|EACCES|cannot read/);
    }
    const patched = await raw(port, 'PATCH', `/api/accounts/${OTHER}`, { ...auth(), 'content-type': 'application/json' }, JSON.stringify({ service_account_file: keyFile }));
    expect(patched.status).toBe(400);
    expect((await accounts()).accounts.map((a) => a.email)).toEqual([OTHER]);
  });

  it('accounts test: parallel calls share one check; past the rate limit 429 with Retry-After', async () => {
    const grants = stack.sandbox.state.tokenRequests(OTHER);
    const opened = stack.sandbox.smtp.stats().connectionsOpened;
    const pool = stack.app.relay.pools.get(OTHER)!;
    let most = 0;
    let outside = 0;
    const sampler = setInterval(() => {
      const s = pool.stats;
      most = Math.max(most, s.idle + s.busy + s.opening + s.outside);
      outside = Math.max(outside, s.outside);
    }, 2);
    const parallel = await Promise.all(Array.from({ length: 20 }, () => raw(port, 'POST', `/api/accounts/${OTHER}/test`, auth())));
    clearInterval(sampler);
    expect(parallel.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(stack.sandbox.state.tokenRequests(OTHER) - grants).toBe(1);
    // The test's connection took the pool's one slot (its idle connection closed for it), never a second.
    expect(outside).toBe(1);
    expect(most).toBe(1);
    expect(stack.sandbox.smtp.stats().connectionsOpened - opened).toBeLessThanOrEqual(2); // the check's own, and the pool's replacement
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await raw(port, 'POST', `/api/accounts/${OTHER}/test`, auth())).status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(TESTS_PER_WINDOW - 1);
    expect(statuses.filter((s) => s === 429)).toHaveLength(30 - (TESTS_PER_WINDOW - 1));
    expect(stack.sandbox.state.tokenRequests(OTHER) - grants).toBe(TESTS_PER_WINDOW);
    const limited = await new Promise<string | undefined>((resolve) =>
      request({ host: '127.0.0.1', port, method: 'POST', path: `/api/accounts/${OTHER}/test`, headers: auth() }, (res) => {
        res.resume();
        resolve(res.headers['retry-after']);
      }).end(),
    );
    expect(Number(limited)).toBeGreaterThan(0);
  });
});

describe('http.host is judged as an address', () => {
  it('knows loopback addresses from names that look like them', () => {
    for (const h of ['127.0.0.1', '127.8.9.10', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['127.attacker.example', '0.0.0.0', '::', '10.0.0.1', 'localhost.attacker.example', '::ffff:10.0.0.1', '1270.0.0.1']) expect(isLoopbackHost(h), h).toBe(false);
  });

  it('a non-loopback name in http.host needs http.bearer_token (config error)', () => {
    let err: unknown;
    try {
      buildConfig({ http: { host: '127.attacker.example', port: 9090 } }, null, { env: {} });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).path).toBe('http.bearer_token');
  });

  it('off loopback, the probes need the credential too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-guard-'));
    const token = 'off-loopback-token-0123456789';
    // 0.0.0.0 is not loopback: the bearer token is required by the config, and by every path.
    const stack = await startStack({ accounts: [{ email: OTHER, kind: 'google' }], dir, overrides: { http: { host: '0.0.0.0', port: 0, bearer_token: token } } });
    try {
      const p = stack.app.adminPort!;
      for (const path of ['/healthz', '/readyz', '/metrics']) {
        expect((await raw(p, 'GET', path)).status, path).toBe(401);
        expect((await raw(p, 'GET', path, { authorization: `Bearer ${token}` })).status, path).toBe(200);
      }
    } finally {
      await stack.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
