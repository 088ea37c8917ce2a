// `xoauth2-relay auth google|microsoft` as an operator runs them, against the sandbox: the
// command prints what to do, the test does it (follows the consent URL / approves the code), and
// what the command prints and stores must make a working relay account.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expandEnv } from '../../src/config/load.js';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { runCli, spawnCli, writeYaml, type CliProcess } from '../helpers/cli.js';
import { sendOnce } from '../helpers/smtp-client.js';
import { KEY_ENV, rawMessage, sha256, startStack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

let sandbox: SandboxProvider;
let dir: string;
let cli: CliProcess | null = null;
beforeEach(async () => {
  sandbox = await SandboxProvider.start();
  dir = mkdtempSync(join(tmpdir(), 'relay-auth-cli-'));
});
afterEach(async () => {
  cli?.child.kill();
  cli = null;
  await sandbox.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** stdout: the relay.yaml snippet, then `NAME=refresh token`. */
function printed(stdout: string): { account: Record<string, unknown>; variable: [string, string] } {
  const [yamlPart, tail] = stdout.split(/^# the refresh token.*$/m);
  const doc = parse(yamlPart!) as { accounts: Array<Record<string, unknown>> };
  expect(doc.accounts).toHaveLength(1);
  const m = /^([A-Z0-9_]+)=(\S+)$/m.exec(tail ?? '');
  expect(m).not.toBeNull();
  return { account: doc.accounts[0]!, variable: [m![1]!, m![2]!] };
}

async function storedAccounts(path: string) {
  const store = SqliteStore.open(path, KEY_ENV);
  try {
    return (await store.listAccounts()).map((a) => a.config);
  } finally {
    await store.close();
  }
}

describe('auth google', () => {
  it('prints the consent URL, takes the redirect, prints a working account and stores it sealed', async () => {
    const registered = sandbox.addAccount({ email: 'cli@gmail.test', kind: 'google' });
    const storePath = join(dir, 'data', 'relay.db');
    cli = spawnCli(
      ['auth', 'google', '--email', 'cli@gmail.test', '--client-id', registered.clientId, '--auth-url', sandbox.tokens.authorizeUrl(), '--token-url', sandbox.tokenUrl('google'), '--store', storePath, '--timeout', '30'],
      { env: { ...KEY_ENV, XOAUTH2_RELAY_CLIENT_SECRET: registered.clientSecret! } },
    );
    const [consentUrl] = await cli.waitFor(/http:\/\/127\.0\.0\.1:\d+\/google\/auth\?\S+/);
    // The person's browser: the consent page redirects to the command's listener on 127.0.0.1.
    const landed = await fetch(consentUrl);
    expect(landed.status).toBe(200);
    expect(await cli.exited).toBe(0);

    const refreshToken = sandbox.state.credentials('cli@gmail.test').refreshToken;
    const { account, variable } = printed(cli.stdout());
    expect(account).toEqual({
      email: 'cli@gmail.test',
      provider: 'google',
      client_id: registered.clientId,
      client_secret: '${GOOGLE_CLIENT_SECRET}',
      refresh_token: '${CLI_GMAIL_TEST_REFRESH_TOKEN}',
      password: '${CLI_GMAIL_TEST_RELAY_PASSWORD}',
    });
    expect(variable).toEqual(['CLI_GMAIL_TEST_REFRESH_TOKEN', refreshToken]);
    // The instructions on stderr carry no secret.
    expect(cli.stderr()).not.toContain(refreshToken);
    expect(cli.stderr()).not.toContain(registered.clientSecret!);
    expect(await storedAccounts(storePath)).toEqual([
      { email: 'cli@gmail.test', provider: 'google', client_id: registered.clientId, client_secret: registered.clientSecret, refresh_token: refreshToken },
    ]);

    // The snippet, with its variables set, is an account that sends.
    const env = { GOOGLE_CLIENT_SECRET: registered.clientSecret!, [variable[0]]: variable[1], CLI_GMAIL_TEST_RELAY_PASSWORD: 'relay-pw-1' };
    const { email, provider: _provider, password: _password, ...credentials } = expandEnv(account, env) as Record<string, unknown>;
    const stack = await startStack({ provider: sandbox, accounts: [{ email: String(email), kind: 'google', senders: [String(email)], credentials }] });
    try {
      const raw = rawMessage('cli@gmail.test', ['to@example.net'], 'after-consent');
      expect(await sendOnce(stack.port, 'cli@gmail.test', ['to@example.net'], raw)).toMatch(/^250 /);
      expect(sandbox.messages.find((m) => m.sha256 === sha256(raw))?.authUser).toBe('cli@gmail.test');
    } finally {
      await stack.stopRelay();
    }
  });

  it('a refused consent exits 1 and prints no account', async () => {
    const registered = sandbox.addAccount({ email: 'no@gmail.test', kind: 'google' });
    sandbox.consent.refuseConsent();
    cli = spawnCli(['auth', 'google', '--email', 'no@gmail.test', '--client-id', registered.clientId, '--auth-url', sandbox.tokens.authorizeUrl(), '--token-url', sandbox.tokenUrl('google')], {
      env: { XOAUTH2_RELAY_CLIENT_SECRET: registered.clientSecret! },
    });
    const [consentUrl] = await cli.waitFor(/http:\/\/127\.0\.0\.1:\d+\/google\/auth\?\S+/);
    await fetch(consentUrl);
    expect(await cli.exited).toBe(1);
    expect(cli.stderr()).toContain('consent refused: access_denied');
    expect(cli.stdout()).toBe('');
  });
});

describe('auth microsoft', () => {
  it('prints the code, polls at the (scaled) interval, slows down when told, and stores the account via --config', async () => {
    const registered = sandbox.addAccount({ email: 'cli@contoso.test', kind: 'microsoft', clientSecret: null });
    sandbox.consent.setDeviceTiming({ intervalSec: 1, expiresInSec: 900 });
    const config = writeYaml(dir, { store: { path: './data/relay.db' } });
    const scale = 0.05;
    cli = spawnCli(['auth', 'microsoft', '--email', 'cli@contoso.test', '--client-id', registered.clientId, '--tenant', 'contoso.test', '--authority', sandbox.tokens.authority(), '--config', config], {
      env: { ...KEY_ENV, XOAUTH2_RELAY_POLL_SCALE: String(scale) },
    });
    const [, userCode] = await cli.waitFor(/enter the code\s+([A-Z2-9]{9})/);
    expect(cli.stderr()).toContain('https://microsoft.com/devicelogin');
    // The person is slow: the first poll finds the sign-in pending; then the endpoint asks to slow down.
    await until(() => sandbox.consent.devicePolls(userCode!).length >= 1, 10_000, 'a first poll');
    sandbox.consent.queueDeviceAnswers(userCode!, ['slow_down']);
    await until(() => sandbox.tokens.log().some((r) => r.error === 'slow_down'), 10_000, 'the slow_down answer');
    sandbox.consent.approveDevice(userCode!, 'cli@contoso.test');
    expect(await cli.exited).toBe(0);

    const polls = sandbox.tokens.log().filter((r) => r.grantType === 'urn:ietf:params:oauth:grant-type:device_code');
    expect(new Set(polls.map((r) => r.path))).toEqual(new Set(['/microsoft/contoso.test/oauth2/v2.0/token']));
    const times = sandbox.consent.devicePolls(userCode!);
    const slowed = polls.findIndex((r) => r.error === 'slow_down');
    expect(polls.slice(0, slowed).every((r) => r.error === 'authorization_pending')).toBe(true);
    expect(polls.at(-1)!.status).toBe(200);
    // Lower bounds only (a loaded machine is slower, never faster): one interval between polls,
    // one interval plus 5 s after slow_down — both scaled.
    for (let i = 1; i < times.length; i++) {
      const wanted = (i > slowed ? 6 : 1) * 1000 * scale;
      expect(times[i]! - times[i - 1]!, `gap before poll ${i}`).toBeGreaterThanOrEqual(wanted * 0.9);
    }

    const refreshToken = sandbox.state.credentials('cli@contoso.test').refreshToken;
    const { account, variable } = printed(cli.stdout());
    expect(account).toEqual({
      email: 'cli@contoso.test',
      provider: 'microsoft',
      client_id: registered.clientId,
      refresh_token: '${CLI_CONTOSO_TEST_REFRESH_TOKEN}',
      tenant: 'contoso.test',
      password: '${CLI_CONTOSO_TEST_RELAY_PASSWORD}',
    });
    expect(variable[1]).toBe(refreshToken);
    expect(await storedAccounts(join(dir, 'data', 'relay.db'))).toEqual([
      { email: 'cli@contoso.test', provider: 'microsoft', client_id: registered.clientId, refresh_token: refreshToken, tenant: 'contoso.test' },
    ]);
  });

  it('a --config that does not load exits 2 before any consent is asked', () => {
    const r = runCli(['auth', 'microsoft', '--email', 'x@contoso.test', '--client-id', 'c', '--authority', sandbox.tokens.authority(), '--config', join(dir, 'missing.yaml')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/config error: file .*missing\.yaml does not exist/);
    expect(sandbox.tokens.requests()).toBe(0);
  });

  it('a declined sign-in exits 1', async () => {
    const registered = sandbox.addAccount({ email: 'nope@contoso.test', kind: 'microsoft', clientSecret: null });
    sandbox.consent.setDeviceTiming({ intervalSec: 1, expiresInSec: 900 });
    cli = spawnCli(['auth', 'microsoft', '--email', 'nope@contoso.test', '--client-id', registered.clientId, '--authority', sandbox.tokens.authority()], {
      env: { XOAUTH2_RELAY_POLL_SCALE: '0.05' },
    });
    const [, userCode] = await cli.waitFor(/enter the code\s+([A-Z2-9]{9})/);
    sandbox.consent.denyDevice(userCode!);
    expect(await cli.exited).toBe(1);
    expect(cli.stderr()).toContain('the sign-in was declined');
  });
});

describe('auth for an API upstream (--upstream)', () => {
  const GRAPH_SEND = 'https://graph.microsoft.com/Mail.Send';
  const SMTP_SEND = 'https://outlook.office.com/SMTP.Send';

  it('auth microsoft --upstream graph asks for Graph\'s Mail.Send and Mail.ReadWrite only, is granted them, and prints upstream: graph', async () => {
    const registered = sandbox.addAccount({ email: 'graph@contoso.test', kind: 'microsoft', clientSecret: null });
    sandbox.consent.setDeviceTiming({ intervalSec: 1, expiresInSec: 900 });
    cli = spawnCli(['auth', 'microsoft', '--upstream', 'graph', '--email', 'graph@contoso.test', '--client-id', registered.clientId, '--authority', sandbox.tokens.authority()], {
      env: { XOAUTH2_RELAY_POLL_SCALE: '0.05' },
    });
    const [, userCode] = await cli.waitFor(/enter the code\s+([A-Z2-9]{9})/);
    sandbox.consent.approveDevice(userCode!, 'graph@contoso.test');
    expect(await cli.exited).toBe(0);
    const asked = sandbox.tokens.log().filter((r) => r.scope !== null).map((r) => r.scope!.split(' '));
    expect(asked.length).toBeGreaterThan(0);
    for (const scopes of asked) {
      expect(scopes).toContain(GRAPH_SEND);
      expect(scopes).toContain('https://graph.microsoft.com/Mail.ReadWrite');
      expect(scopes).not.toContain(SMTP_SEND);
    }
    expect(printed(cli.stdout()).account).toMatchObject({ email: 'graph@contoso.test', upstream: 'graph' });
    // The refresh token it printed gets a token Graph takes for sending.
    const refreshToken = sandbox.state.credentials('graph@contoso.test').refreshToken;
    const grant = sandbox.state.grantRefreshToken({ clientId: registered.clientId, clientSecret: null, refreshToken, scope: asked[0]!.join(' ') }, 'microsoft');
    expect(grant.ok && grant.scope.split(' ')).toContain(GRAPH_SEND);
  });

  it('auth google --upstream gmail_api asks for gmail.send, is granted it, and prints upstream: gmail_api', async () => {
    const registered = sandbox.addAccount({ email: 'api@gmail.test', kind: 'google' });
    cli = spawnCli(
      ['auth', 'google', '--upstream', 'gmail_api', '--email', 'api@gmail.test', '--client-id', registered.clientId, '--auth-url', sandbox.tokens.authorizeUrl(), '--token-url', sandbox.tokenUrl('google'), '--timeout', '30'],
      { env: { XOAUTH2_RELAY_CLIENT_SECRET: registered.clientSecret! } },
    );
    const [consentUrl] = await cli.waitFor(/http:\/\/127\.0\.0\.1:\d+\/google\/auth\?\S+/);
    expect(new URL(consentUrl!).searchParams.get('scope')).toBe('https://www.googleapis.com/auth/gmail.send');
    expect((await fetch(consentUrl!)).status).toBe(200);
    expect(await cli.exited).toBe(0);
    expect(printed(cli.stdout()).account).toMatchObject({ email: 'api@gmail.test', upstream: 'gmail_api' });
    const refreshToken = sandbox.state.credentials('api@gmail.test').refreshToken;
    const grant = sandbox.state.grantRefreshToken({ clientId: registered.clientId, clientSecret: registered.clientSecret!, refreshToken, scope: null }, 'google');
    expect(grant.ok && grant.scope).toBe('https://www.googleapis.com/auth/gmail.send');
  });

  it('an upstream the provider does not have is refused before any consent is asked', () => {
    const r = runCli(['auth', 'google', '--upstream', 'graph', '--email', 'x@gmail.test', '--client-id', 'c', '--auth-url', sandbox.tokens.authorizeUrl()]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('--upstream must be one of smtp, gmail_api for google, got "graph"');
    expect(sandbox.tokens.requests()).toBe(0);
  });
});
