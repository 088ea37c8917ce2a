// `accounts add|import|list|test|remove` and `reload` as an operator runs them (child processes)
// against a sandbox provider: first with no relay running (the store is written directly, list
// shows what a start would load), then with `serve` running (it loads the stored accounts, list
// and test go through its API, add and remove take effect at once). `accounts test` failures
// say what to do: a revoked grant, SMTP AUTH disabled at Microsoft, a token of another mailbox.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SandboxProvider, type SandboxAccount } from '../../src/sandbox/index.js';
import { sandboxRelayConfig } from '../../src/sandbox/relay-config.js';
import { freePort, runCliAsync, startServe, writeYaml, type CliResult, type ServeProcess } from '../helpers/cli.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { KEY_ENV, rawMessage } from '../helpers/stack.js';

const CONFIGURED = 'configured@gmail.test';

// Each test runs the real CLI several times (a node process each, about 2 s under load on this
// 2-core machine): the default 30 s was eaten by a loaded run, not by a slow relay.
const CLI_TEST_MS = 150_000;

describe('accounts commands', () => {
  let sandbox: SandboxProvider;
  let dir: string;
  let file: string;
  let relay: ServeProcess | null = null;
  const secrets: string[] = [];
  const add = (name: string, kind: 'google' | 'microsoft' = 'google') => {
    const a = sandbox.addAccount({ email: `${name}@${kind === 'google' ? 'gmail' : 'outlook'}.test`, kind });
    secrets.push(a.refreshToken, a.clientSecret!);
    return a;
  };
  const cli = async (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> => {
    const r = await runCliAsync([...args, '--config', file], { env: { ...KEY_ENV, ...env } });
    for (const s of secrets) expect(r.stdout + r.stderr).not.toContain(s);
    return r;
  };
  const csvRow = (a: SandboxAccount, password: string) => [a.email, a.kind, a.clientId, a.clientSecret, a.refreshToken, password, a.email].join(',');
  let b: SandboxAccount;
  let m: SandboxAccount;

  beforeAll(async () => {
    sandbox = await SandboxProvider.start();
    dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-accounts-cli-'));
    const configured = { account: add('configured'), senders: [CONFIGURED] };
    const doc = sandboxRelayConfig(sandbox, [configured], { store: { path: join(dir, 'relay.db') }, http: { host: '127.0.0.1', port: await freePort() } });
    file = writeYaml(dir, doc);
    b = add('bea');
    m = add('mike', 'microsoft');
  });
  afterAll(async () => {
    if (relay && relay.child.exitCode === null) relay.child.kill('SIGTERM');
    await relay?.exited;
    await sandbox.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('without a running relay: add (verified) and import write the store, all or nothing; list shows what a start loads', async () => {
    const added = await cli(['accounts', 'add', '--email', b.email, '--provider', 'google', '--client-id', b.clientId, '--sender', b.email], {
      XOAUTH2_RELAY_CLIENT_SECRET: b.clientSecret!,
      XOAUTH2_RELAY_REFRESH_TOKEN: b.refreshToken,
      XOAUTH2_RELAY_PASSWORD: 'pw-bea-RECOGNISABLE',
    });
    expect(added.status, added.stderr).toBe(0);
    expect(added.stderr).toContain(`saved 1 account(s) in the store: ${b.email}`);
    expect(added.stderr).toContain('the relay is not running');
    // Microsoft rotates the refresh token at the verification's grant: the new one is kept.
    const ms = await cli(['accounts', 'add', '--email', m.email, '--provider', 'microsoft', '--client-id', m.clientId, '--sender', m.email], {
      XOAUTH2_RELAY_CLIENT_SECRET: m.clientSecret!,
      XOAUTH2_RELAY_REFRESH_TOKEN: m.refreshToken,
    });
    expect(ms.status, ms.stderr).toBe(0);
    expect(sandbox.state.credentials(m.email).refreshToken).not.toBe(m.refreshToken);

    const c = add('cleo');
    const d = add('dan');
    const header = 'email,provider,client_id,client_secret,refresh_token,password,senders';
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, [header, csvRow(c, 'pw-c'), `${d.email},google,,,${d.refreshToken},,`, `nobody,google,x,y,z,,`, ''].join('\n'));
    const refused = await cli(['accounts', 'import', bad]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain('nothing was written, 2 account(s) refused');
    expect(refused.stderr).toContain('row 2 (line 3): client_id: required when auth is refresh_token');
    expect(refused.stderr).toContain('row 3 (line 4): email: must be an email address');

    const good = join(dir, 'good.csv');
    writeFileSync(good, [header, csvRow(c, 'pw-c'), csvRow(d, 'pw-d')].join('\r\n') + '\r\n');
    expect((await cli(['accounts', 'import', good])).status).toBe(0);
    const e = add('eve');
    const json = join(dir, 'more.json');
    writeFileSync(json, JSON.stringify([{ email: e.email, provider: 'google', client_id: e.clientId, client_secret: e.clientSecret, refresh_token: e.refreshToken, senders: [e.email] }]));
    expect((await cli(['accounts', 'import', json, '--verify'])).status).toBe(0);

    const list = await cli(['accounts', 'list']);
    expect(list.status).toBe(0);
    const rows = list.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/));
    expect(rows.map((r) => [r[0], r[3]])).toEqual([
      [CONFIGURED, 'config'],
      [b.email, 'store'],
      [c.email, 'store'],
      [d.email, 'store'],
      [e.email, 'store'],
      [m.email, 'store'],
    ]);
    expect(list.stderr).toMatch(/The relay is not running \(nothing answers at http:\/\/127\.0\.0\.1:\d+\): these are the 6 account\(s\) it would load\. Health, token expiry, last error and messages sent are known only to the running relay/);
  }, CLI_TEST_MS);

  it('without a running relay: test checks from here, and a token of another mailbox is named as such', async () => {
    const owner = add('owner');
    const wrong = 'wrong@gmail.test';
    const r = await cli(['accounts', 'add', '--email', wrong, '--provider', 'google', '--client-id', owner.clientId, '--no-verify'], {
      XOAUTH2_RELAY_CLIENT_SECRET: owner.clientSecret!,
      XOAUTH2_RELAY_REFRESH_TOKEN: owner.refreshToken,
    });
    expect(r.status, r.stderr).toBe(0);
    const test = await cli(['accounts', 'test', wrong]);
    expect(test.status).toBe(1);
    expect(test.stderr).toContain('the relay is not running: checked from here');
    expect(test.stdout).toMatch(/wrong@gmail\.test: FAILED at auth: UPSTREAM_AUTH_REJECTED: provider refused XOAUTH2 for wrong@gmail\.test: 535 5\.7\.8/);
    expect(test.stdout).toMatch(/what to do: .*The token belongs to another account: the refresh token was granted to a different mailbox than wrong@gmail\.test/);
    expect(sandbox.smtp.authAttempts().at(-1)).toMatchObject({ user: wrong, outcome: 'user-mismatch' });
    expect((await cli(['accounts', 'remove', wrong])).status).toBe(0);
  }, CLI_TEST_MS);

  it('serve loads the stored accounts; list, test, add, remove and reload go through the running relay', async () => {
    relay = await startServe(['--config', file], { env: KEY_ENV });
    const { client } = await RawSmtp.connect(relay.port);
    await client.cmd('EHLO mta.test');
    expect((await client.authPlain(b.email, 'pw-bea-RECOGNISABLE')).code).toBe(235);
    expect((await client.send(b.email, ['x@example.net'], rawMessage(b.email, ['x@example.net'], 'stored-b'))).code).toBe(250);
    expect((await client.send(b.email, ['y@example.net'], rawMessage(b.email, ['y@example.net'], 'stored-b2'))).code).toBe(250);
    client.close();
    expect(sandbox.messages.filter((x) => x.authUser === b.email)).toHaveLength(2);

    const list = await cli(['accounts', 'list', '--json']);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stderr).toMatch(/6 account\(s\), from the running relay at http:\/\/127\.0\.0\.1:\d+/);
    const views = JSON.parse(list.stdout) as Array<Record<string, unknown>>;
    expect(views.find((v) => v.email === b.email)).toMatchObject({ source: 'store', health: 'ok', sent_last_hour: 2, sent_last_day: 2, last_error: null });
    expect(views.find((v) => v.email === m.email)).toMatchObject({ health: 'ok' });
    const table = await cli(['accounts', 'list']);
    expect(table.stdout).toMatch(new RegExp(`${b.email.replace('.', '\\.')}\\s+google\\s+store\\s+ok\\s+\\S+ \\S+Z\\s+2\\s+2\\s+-`));
    // Filters: provider, state and an expression on the email combine; a wrong state is an error.
    const grep = await cli(['accounts', 'list', '--provider', 'google', '--grep', '^BEA@', '--json']);
    expect((JSON.parse(grep.stdout) as Array<{ email: string }>).map((v) => v.email)).toEqual([b.email]);
    expect(grep.stderr).toMatch(/1 account\(s\) of 6, from the running relay/);
    const byState = await cli(['accounts', 'list', '--state', 'ok,needs_consent', '--provider', 'microsoft', '--json']);
    expect((JSON.parse(byState.stdout) as Array<{ email: string; provider: string }>).every((v) => v.provider === 'microsoft')).toBe(true);
    expect((JSON.parse(byState.stdout) as Array<{ email: string }>).map((v) => v.email)).toContain(m.email);
    const wrong = await cli(['accounts', 'list', '--state', 'okay']);
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toMatch(/--state okay: not a state \(okay\); one or more of needs_consent, .*cold, ok/);

    const ok = await cli(['accounts', 'test', b.email]);
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stderr).toContain('checked by the running relay');
    expect(ok.stdout).toMatch(/bea@gmail\.test: OK: a fresh token \(valid \d+ s\) authenticated to 127\.0\.0\.1:\d+ in \d+ ms; nothing was sent/);

    const f = add('fay');
    const addF = await cli(['accounts', 'add', '--email', f.email, '--provider', 'google', '--client-id', f.clientId, '--sender', f.email], {
      XOAUTH2_RELAY_CLIENT_SECRET: f.clientSecret!,
      XOAUTH2_RELAY_REFRESH_TOKEN: f.refreshToken,
    });
    expect(addF.status, addF.stderr).toBe(0);
    expect(addF.stderr).toContain(`the running relay reloaded: added ${f.email}; 6 unchanged`);
    const { client: trusted } = await RawSmtp.connect(relay.port);
    await trusted.cmd('EHLO mta.test');
    expect((await trusted.send(f.email, ['z@example.net'], rawMessage(f.email, ['z@example.net'], 'added-live'))).code).toBe(250);
    const removed = await cli(['accounts', 'remove', f.email]);
    expect(removed.stderr).toContain(`the running relay reloaded: removed ${f.email}; 6 unchanged`);
    expect((await trusted.send(f.email, ['z@example.net'], rawMessage(f.email, ['z@example.net'], 'removed-live'))).code).toBe(550);
    trusted.close();

    const reload = await cli(['reload']);
    expect(reload.status).toBe(0);
    expect(reload.stdout).toBe('reloaded: 6 unchanged\n');

    expect(relay.output()).not.toContain('pw-bea-RECOGNISABLE');
  }, CLI_TEST_MS);

  it("list, test and reload ask the running relay without needing the accounts' variables", async () => {
    // From a shell without the accounts' secrets (they live in the service's environment): list,
    // test and reload only ask the running relay, so they do not demand those variables.
    const withVars = writeYaml(dir, { ...parse(readFileSync(file, 'utf8')), accounts: [{ email: CONFIGURED, provider: 'google', client_id: '${CLI_UNSET_ID}', refresh_token: '${CLI_UNSET_RT}' }] }, 'vars.yaml');
    for (const args of [['accounts', 'list'], ['accounts', 'test', b.email], ['reload']]) {
      const r = await runCliAsync([...args, '--config', withVars], { env: KEY_ENV });
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      expect(r.stderr).not.toContain('CLI_UNSET');
    }
  }, CLI_TEST_MS);

  it('reload with a file this command cannot read says the running relay was never asked', async () => {
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, readFileSync(file, 'utf8') + 'inbound: { max_conections: 5\n');
    const asked = new Date().toISOString();
    const r = await runCliAsync(['reload', '--config', broken], { env: KEY_ENV });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/line \d+, column \d+/);
    expect(r.stderr).toContain('the running relay was not asked to reload');
    expect(r.stdout).toBe('');
    // And indeed it was not: no reload of any kind in its log since (the previous test's last
    // line may still be arriving, so lines are told apart by their time, not their place).
    const since = relay!
      .output()
      .split('\n')
      .filter((l) => /"event":"reload/.test(l) && (/"time":"([^"]+)"/.exec(l)?.[1] ?? '') >= asked);
    expect(since).toEqual([]);
  }, CLI_TEST_MS);

  it('test says what to do: consent again, or enable SMTP AUTH at Microsoft', async () => {
    sandbox.state.revokeGrant(b.email);
    const revoked = await cli(['accounts', 'test', b.email]);
    expect(revoked.status).toBe(1);
    expect(revoked.stdout).toMatch(/FAILED at token: .*invalid_grant/);
    expect(revoked.stdout).toContain(`what to do: The provider refused the refresh token (invalid_grant)`);
    expect(revoked.stdout).toContain(`Consent again, signed in as ${b.email}: xoauth2-relay auth google --email ${b.email}`);

    const tenantOff = 'Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.';
    sandbox.smtp.addFault({ at: 'auth', user: m.email, code: 535, enhanced: '5.7.139', text: tenantOff, times: 1 });
    const tenant = await cli(['accounts', 'test', m.email]);
    expect(tenant.status).toBe(1);
    expect(tenant.stdout).toContain('FAILED at auth: UPSTREAM_AUTH_REJECTED: provider refused XOAUTH2 for mike@outlook.test: 535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant');
    expect(tenant.stdout).toContain('what to do: SMTP AUTH is disabled for the whole tenant. An Exchange admin enables it with Set-TransportConfig -SmtpClientAuthenticationDisabled $false');

    sandbox.smtp.addFault({ at: 'auth', user: m.email, code: 535, enhanced: '5.7.3', text: 'Authentication unsuccessful [SN4PR0601CA0001.namprd06.prod.outlook.com]', times: 1 });
    const generic = await cli(['accounts', 'test', m.email]);
    expect(generic.status).toBe(1);
    expect(generic.stdout).toMatch(/what to do: Exchange refused a token .* Either SMTP AUTH is disabled for the mailbox or the tenant \(Set-CASMailbox -Identity mike@outlook\.test -SmtpClientAuthenticationDisabled \$false/);
    expect(generic.stdout).toContain('or the token belongs to another account');
    // The faults are used up: the account itself is fine.
    expect((await cli(['accounts', 'test', m.email])).status).toBe(0);
  }, CLI_TEST_MS);
});
