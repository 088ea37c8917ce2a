// Secrets stay secret on every path: the relay runs through success (AUTH PLAIN and LOGIN, both
// providers), token refresh (a revoked token answered by refresh and retry, Microsoft's rotating
// refresh tokens) and failures (a wrong password, the token endpoint failing, a revoked grant)
// with recognisable secrets. None of them — refresh tokens, access tokens, client secrets, the
// inbound password, XOAUTH2 strings, AUTH PLAIN/LOGIN blobs — may appear in a log line (debug
// level), a metric, the admin status, a reply to the client, or in clear in the store.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { xoauth2String } from '../../src/upstream/xoauth2.js';
import { captureLog } from '../helpers/log-capture.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, startStack, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const GOOGLE = 'secret-g@gmail.test';
const MICROSOFT = 'secret-m@outlook.test';
const PASSWORD = 'INBOUND-PASSWORD-d41d8cd9';
const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('secrets never leak', () => {
  let sandbox: SandboxProvider;
  let stack: Stack;
  const log = captureLog('debug');
  const replies: string[] = [];
  /** Every secret value seen during the run; access tokens are added as the relay obtains them. */
  const secrets = new Set<string>([PASSWORD, b64(`\0${GOOGLE}\0${PASSWORD}`), b64(`\0${MICROSOFT}\0${PASSWORD}`), b64(PASSWORD)]);

  const noteTokens = () => {
    for (const email of [GOOGLE, MICROSOFT]) {
      const token = stack.app.relay.tokens.current(email)?.value;
      if (token) {
        secrets.add(token);
        secrets.add(xoauth2String(email, token));
      }
      secrets.add(sandbox.state.credentials(email).refreshToken); // rotated ones too
    }
  };

  /** One transaction; every reply the client got is kept for the check. */
  async function send(auth: 'plain' | 'login' | 'wrong', account: string, tag: string): Promise<void> {
    const { client, greeting } = await RawSmtp.connect(stack.port);
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
      } else if (!(await say('AUTH PLAIN ' + b64(`\0${account}\0${auth === 'wrong' ? PASSWORD + 'x' : PASSWORD}`))).startsWith('235 ')) return;
      if (!(await say(`MAIL FROM:<${account}>`)).startsWith('250 ')) return;
      if (!(await say('RCPT TO:<to@example.net>')).startsWith('250 ')) return;
      await say('DATA');
      client.write(rawMessage(account, ['to@example.net'], tag) + '.\r\n');
      replies.push(line(await client.read()));
    } finally {
      noteTokens();
      client.close();
    }
  }

  beforeAll(async () => {
    sandbox = await SandboxProvider.start();
    for (const [email, kind] of [[GOOGLE, 'google'], [MICROSOFT, 'microsoft']] as const) {
      sandbox.addAccount({ email, kind, clientSecret: `CLIENT-SECRET-${kind}-9f8e7d`, refreshToken: `REFRESH-TOKEN-${kind}-6c5b4a` });
      secrets.add(`CLIENT-SECRET-${kind}-9f8e7d`).add(`REFRESH-TOKEN-${kind}-6c5b4a`);
    }
    stack = await startStack({
      provider: sandbox,
      accounts: [
        { email: GOOGLE, kind: 'google', password: PASSWORD, senders: [GOOGLE] },
        { email: MICROSOFT, kind: 'microsoft', password: PASSWORD, senders: [MICROSOFT] },
      ],
      overrides: { tokens: { retry_min_ms: 100, retry_max_ms: 300 }, inbound: { auth_failure_delay_ms: 0 } },
      logger: log.logger,
    });
    noteTokens();
  });
  afterAll(async () => {
    await stack.stop();
    await sandbox.stop();
  });

  it('through success, refresh and failure paths, no secret shows in logs, metrics, status, replies or the store', async () => {
    // Success, both AUTH mechanisms, both providers.
    await send('plain', GOOGLE, 'ok-plain');
    await send('login', MICROSOFT, 'ok-login');
    // Refresh: the provider forgets the tokens; the 535 is answered by a refresh (Microsoft's rotates) and a retry.
    for (const email of [GOOGLE, MICROSOFT]) sandbox.state.revokeAccessTokens(email);
    sandbox.smtp.dropAllConnections();
    await send('plain', GOOGLE, 'after-refresh');
    await send('plain', MICROSOFT, 'after-refresh');
    // Failures: a wrong password; the token endpoint failing; a revoked grant.
    await send('wrong', GOOGLE, 'wrong-password');
    sandbox.tokens.injectFault({ status: 500 }, { email: GOOGLE });
    sandbox.tokens.injectFault({ error: 'invalid_grant' }, { email: MICROSOFT });
    for (const email of [GOOGLE, MICROSOFT]) sandbox.state.revokeAccessTokens(email);
    sandbox.smtp.dropAllConnections();
    await send('plain', GOOGLE, 'endpoint-down');
    await send('plain', MICROSOFT, 'grant-revoked');
    sandbox.tokens.clearFaults();
    await until(() => [GOOGLE, MICROSOFT].every((e) => stack.app.relay.tokens.statusOf(e)?.health === 'healthy'), 5_000, 'recovery');
    await send('plain', MICROSOFT, 'recovered');

    const admin = `http://127.0.0.1:${stack.app.adminPort}`;
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    const status = await (await fetch(`${admin}/api/status`, { headers: stack.adminAuth() })).text();
    await new Promise((r) => setTimeout(r, 50)); // let the logger's last lines land
    const store = readdirSync(stack.dir)
      .filter((f) => f.startsWith('relay.db'))
      .map((f) => readFileSync(join(stack.dir, f)).toString('latin1'))
      .join('\n');

    // The run went through what it claims to.
    expect(replies.filter((r) => r.startsWith('250 2.0.0 OK')).length).toBeGreaterThanOrEqual(5);
    expect(replies.some((r) => r.startsWith('535 '))).toBe(true);
    expect(replies.filter((r) => r.startsWith('454 4.7.0')).length).toBe(2);
    const events = new Set(log.events());
    for (const e of ['token_refresh', 'upstream_auth_rejected', 'auth_failed', 'transaction']) expect(events).toContain(e);
    expect(secrets.size).toBeGreaterThan(12);

    const places = { logs: log.lines.join('\n'), metrics, status, replies: replies.join('\n'), store };
    for (const [where, text] of Object.entries(places)) {
      const leaked = [...secrets].filter((s) => text.includes(s));
      expect(leaked, `secrets in ${where}`).toEqual([]);
      // Whatever the sandbox issued, by its prefix, including tokens this test never saw.
      expect(text, `sandbox tokens in ${where}`).not.toMatch(/sbx-(at|rt)-/);
    }
  });
});
