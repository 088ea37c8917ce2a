// Secrets stay secret on every path: the relay runs through success (AUTH PLAIN and LOGIN, both
// providers), token refresh (a revoked token answered by refresh and retry, Microsoft's rotating
// refresh tokens) and failures (a wrong password, the token endpoint failing, a revoked grant)
// with recognisable secrets. None of them — refresh tokens, access tokens, client secrets, the
// inbound password, XOAUTH2 strings, AUTH PLAIN/LOGIN blobs, also those of the wrong password —
// may appear in a log line (debug level), a metric, the admin status, a reply to the client, or
// in clear in the store.
//
// The same run three times: in process, with the log in memory; then the built CLI (`serve`
// from dist/, as an operator runs it) with its stdout captured, once as JSON and once as the
// readable lines LOG_FORMAT=pretty selects (src/obs/pretty.ts), since a line formatter that
// printed a field redaction had missed would leak only there.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SandboxProvider, type SandboxAccount } from '../../src/sandbox/index.js';
import { sandboxRelayConfig } from '../../src/sandbox/relay-config.js';
import { xoauth2String } from '../../src/upstream/xoauth2.js';
import { buildDist, freePort, startServe, writeYaml } from '../helpers/cli.js';
import { captureLog } from '../helpers/log-capture.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { KEY_ENV, rawMessage, startStack } from '../helpers/stack.js';
import { ADMIN_TOKEN_FILE, readAdminToken } from '../../src/admin/admin-token.js';
import { sleep } from '../helpers/wait.js';

const GOOGLE = 'secret-g@gmail.test';
const MICROSOFT = 'secret-m@outlook.test';
const PASSWORD = 'INBOUND-PASSWORD-d41d8cd9';
const WRONG = 'WRONG-PASSWORD-3f2a1b0c';
const b64 = (s: string) => Buffer.from(s).toString('base64');
const ACCOUNTS = [
  { email: GOOGLE, kind: 'google' as const, password: PASSWORD, senders: [GOOGLE] },
  { email: MICROSOFT, kind: 'microsoft' as const, password: PASSWORD, senders: [MICROSOFT] },
];
const OVERRIDES = { tokens: { retry_min_ms: 100, retry_max_ms: 300 }, inbound: { auth_failure_delay_ms: 0 }, log: { level: 'debug' } };

/** A relay under test, however it runs. */
interface Target {
  port: number;
  admin: string;
  dir: string;
  /** The admin credential's header (the relay generated it into admin.token). */
  auth(): Record<string, string>;
  /** Everything logged so far, as it was written. */
  logs(): string;
  /** Stops the relay; its data directory stays for the look at the store. */
  stop(): Promise<void>;
}

/** Every secret value of a run; the sandbox's access tokens (and their XOAUTH2 strings) are added as it issues them. */
function secretsOf(sandbox: SandboxProvider): Set<string> {
  const secrets = new Set<string>([PASSWORD, WRONG, b64(PASSWORD), b64(WRONG)]);
  for (const email of [GOOGLE, MICROSOFT]) {
    secrets.add(b64(`\0${email}\0${PASSWORD}`)).add(b64(`\0${email}\0${WRONG}`));
  }
  const issue = sandbox.state.issueAccessToken.bind(sandbox.state);
  sandbox.state.issueAccessToken = (email, lifetimeSec) => {
    const token = issue(email, lifetimeSec);
    secrets.add(token).add(xoauth2String(email, token)).add(b64(xoauth2String(email, token)));
    return token;
  };
  return secrets;
}

interface Run {
  sandbox: SandboxProvider;
  registered: SandboxAccount[];
  secrets: Set<string>;
}

async function newSandbox(): Promise<Run> {
  const sandbox = await SandboxProvider.start();
  const secrets = secretsOf(sandbox);
  const registered = ACCOUNTS.map(({ email, kind }) => {
    secrets.add(`CLIENT-SECRET-${kind}-9f8e7d`).add(`REFRESH-TOKEN-${kind}-6c5b4a`);
    return sandbox.addAccount({ email, kind, clientSecret: `CLIENT-SECRET-${kind}-9f8e7d`, refreshToken: `REFRESH-TOKEN-${kind}-6c5b4a` });
  });
  return { sandbox, registered, secrets };
}

async function inProcess(sandbox: SandboxProvider): Promise<Target> {
  const log = captureLog('debug');
  const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-secrets-'));
  const stack = await startStack({ provider: sandbox, dir, accounts: ACCOUNTS, overrides: OVERRIDES, logger: log.logger });
  return { port: stack.port, admin: `http://127.0.0.1:${stack.app.adminPort}`, dir: stack.dir, auth: () => stack.adminAuth(), logs: () => log.lines.join('\n'), stop: () => stack.stop() };
}

/** `serve` from dist/, its stdout (and stderr) captured; LOG_FORMAT chooses the format as an operator would. */
async function cli({ sandbox, registered }: Run, format: 'json' | 'pretty'): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-secrets-'));
  const adminPort = await freePort();
  const doc = sandboxRelayConfig(
    sandbox,
    registered.map((account, i) => ({ account, password: ACCOUNTS[i]!.password, senders: ACCOUNTS[i]!.senders })),
    { ...OVERRIDES, http: { host: '127.0.0.1', port: adminPort }, store: { path: join(dir, 'relay.db') } },
  );
  const relay = await startServe(['--config', writeYaml(dir, doc)], { dist: true, cwd: dir, env: { ...KEY_ENV, LOG_FORMAT: format } });
  return {
    port: relay.port,
    admin: `http://127.0.0.1:${adminPort}`,
    dir,
    auth: () => ({ authorization: `Bearer ${readAdminToken(join(dir, ADMIN_TOKEN_FILE))}` }),
    logs: relay.output,
    async stop() {
      relay.child.kill('SIGTERM');
      await relay.exited;
    },
  };
}

/** The run: every path that handles a secret. Returns the replies the client got. */
async function exercise(target: Target, sandbox: SandboxProvider): Promise<string[]> {
  const replies: string[] = [];
  const send = async (auth: 'plain' | 'login' | 'wrong', account: string, tag: string): Promise<void> => {
    const { client, greeting } = await RawSmtp.connect(target.port);
    const say = async (cmd: string) => {
      const r = line(await client.cmd(cmd));
      replies.push(r);
      return r;
    };
    replies.push(line(greeting));
    try {
      await say('EHLO mta.test');
      if (auth === 'login') {
        await say('AUTH LOGIN');
        await say(b64(account));
        expect(await say(b64(PASSWORD))).toMatch(/^235 /);
      } else if (!(await say('AUTH PLAIN ' + b64(`\0${account}\0${auth === 'wrong' ? WRONG : PASSWORD}`))).startsWith('235 ')) return;
      if (!(await say(`MAIL FROM:<${account}>`)).startsWith('250 ')) return;
      if (!(await say('RCPT TO:<to@example.net>')).startsWith('250 ')) return;
      await say('DATA');
      client.write(rawMessage(account, ['to@example.net'], tag) + '.\r\n');
      replies.push(line(await client.read()));
    } finally {
      client.close();
    }
  };
  const healthy = async () => {
    const body = (await (await fetch(`${target.admin}/api/accounts`, { headers: target.auth() })).json()) as { accounts: Array<{ email: string; health: string }> };
    return [GOOGLE, MICROSOFT].every((e) => body.accounts.find((a) => a.email === e)?.health === 'healthy');
  };

  // Success, both AUTH mechanisms, both providers.
  await send('plain', GOOGLE, 'ok-plain');
  await send('login', MICROSOFT, 'ok-login');
  // Refresh: the provider forgets the tokens; the 535 is answered by a refresh (Microsoft's rotates) and a retry.
  for (const email of [GOOGLE, MICROSOFT]) sandbox.state.revokeAccessTokens(email);
  sandbox.smtp.dropAllConnections();
  await send('plain', GOOGLE, 'after-refresh');
  await send('plain', MICROSOFT, 'after-refresh');
  // Failures: a wrong password, on both accounts; the token endpoint failing; a revoked grant.
  await send('wrong', GOOGLE, 'wrong-password');
  await send('wrong', MICROSOFT, 'wrong-password');
  sandbox.tokens.injectFault({ status: 500 }, { email: GOOGLE });
  sandbox.tokens.injectFault({ error: 'invalid_grant' }, { email: MICROSOFT });
  for (const email of [GOOGLE, MICROSOFT]) sandbox.state.revokeAccessTokens(email);
  sandbox.smtp.dropAllConnections();
  await send('plain', GOOGLE, 'endpoint-down');
  await send('plain', MICROSOFT, 'grant-revoked');
  sandbox.tokens.clearFaults();
  // A bound that only a broken recovery reaches: the retries are 100-300 ms apart.
  for (let i = 0; i < 100 && !(await healthy()); i++) await sleep(100);
  await send('plain', MICROSOFT, 'recovered');
  return replies;
}

/** What the run left behind, by place, once the relay has written its last lines. */
async function places(target: Target, replies: string[]): Promise<Record<string, string>> {
  const metrics = await (await fetch(`${target.admin}/metrics`)).text();
  const status = await (await fetch(`${target.admin}/api/status`, { headers: target.auth() })).text();
  const accounts = await (await fetch(`${target.admin}/api/accounts`, { headers: target.auth() })).text();
  const page = await (await fetch(`${target.admin}/status.json`)).text();
  await target.stop(); // the CLI's output is complete once it has exited
  const store = readdirSync(target.dir, { withFileTypes: true })
    .filter((f) => f.name.startsWith('relay.db'))
    .map((f) => readFileSync(join(target.dir, f.name)).toString('latin1'))
    .join('\n');
  rmSync(target.dir, { recursive: true, force: true });
  return { logs: target.logs(), metrics, status, accounts, page, replies: replies.join('\n'), store };
}

function expectNoSecrets(found: Record<string, string>, secrets: Set<string>): void {
  expect(secrets.size).toBeGreaterThan(16);
  for (const [where, text] of Object.entries(found)) {
    const leaked = [...secrets].filter((s) => text.includes(s));
    expect(leaked, `secrets in ${where}`).toEqual([]);
    // Whatever the sandbox issued, by its prefix, including tokens this test never saw.
    expect(text, `sandbox tokens in ${where}`).not.toMatch(/sbx-(at|rt)-/);
  }
}

/** The run went through what it claims to. */
function expectTheRun(replies: string[], logs: string): void {
  expect(replies.filter((r) => r.startsWith('250 2.0.0 OK')).length).toBeGreaterThanOrEqual(5);
  expect(replies.filter((r) => r.startsWith('535 '))).toHaveLength(2);
  expect(replies.filter((r) => r.startsWith('454 4.7.0'))).toHaveLength(2);
  for (const e of ['token_refresh', 'upstream_auth_rejected', 'auth_failed', 'transaction']) expect(logs).toContain(e);
}

describe('secrets never leak', () => {
  let sandbox: SandboxProvider | null = null;
  beforeAll(() => buildDist(), 120_000);
  afterEach(async () => {
    await sandbox?.stop();
    sandbox = null;
  });

  it('in process: no secret shows in the debug log, metrics, status, replies or the store', async () => {
    const run = await newSandbox();
    sandbox = run.sandbox;
    const target = await inProcess(run.sandbox);
    const replies = await exercise(target, run.sandbox);
    const adminToken = target.auth().authorization!.slice('Bearer '.length);
    const found = await places(target, replies);
    expectTheRun(replies, found.logs!);
    expectNoSecrets(found, new Set([...run.secrets, adminToken]));
  });

  for (const format of ['json', 'pretty'] as const) {
    it(`serve from dist/, stdout as ${format}: no secret shows in what it printed, metrics, status, replies or the store`, async () => {
      const run = await newSandbox();
      sandbox = run.sandbox;
      const target = await cli(run, format);
      const replies = await exercise(target, run.sandbox);
      const adminToken = target.auth().authorization!.slice('Bearer '.length);
      const found = await places(target, replies);
      // The format is the one asked for: JSON objects, or the readable lines.
      const first = found.logs!.split('\n')[0]!;
      if (format === 'json') expect(JSON.parse(first)).toHaveProperty('event');
      else expect(first).toMatch(/^\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO |WARN ) /);
      expectTheRun(replies, found.logs!);
      expectNoSecrets(found, new Set([...run.secrets, adminToken]));
    });
  }
});
