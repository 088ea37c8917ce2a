// The command line as SPEC fixes it: check-config output and exit codes, serve on a config
// file, serve on built-in defaults, and a clean exit on SIGTERM.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { sandboxRelayConfig } from '../../src/sandbox/relay-config.js';
import { runCli, startServe, writeYaml } from '../helpers/cli.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { KEY_ENV, rawMessage, sha256 } from '../helpers/stack.js';

describe('xoauth2-relay command line', () => {
  let dir: string;
  let sandbox: SandboxProvider;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-cli-'));
    sandbox = await SandboxProvider.start();
  });
  afterAll(async () => {
    await sandbox.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('check-config prints the effective config with every secret masked, exit 0', () => {
    const account = sandbox.addAccount({ email: 'cli@gmail.test', kind: 'google', clientSecret: 'cs-RECOGNISABLE-1', refreshToken: 'rt-RECOGNISABLE-2' });
    const doc = sandboxRelayConfig(sandbox, [{ account, password: 'pw-RECOGNISABLE-3' }]);
    (doc.accounts as Array<Record<string, unknown>>)[0]!.refresh_token = '${CLI_REFRESH}';
    const file = writeYaml(dir, doc, 'check.yaml');
    const r = runCli(['check-config', '--config', file], { env: { CLI_REFRESH: 'rt-RECOGNISABLE-2' } });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('cli@gmail.test');
    expect(r.stdout).toContain('token_url: ' + sandbox.tokenUrl('google'));
    for (const secret of ['cs-RECOGNISABLE-1', 'rt-RECOGNISABLE-2', 'pw-RECOGNISABLE-3']) {
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
  });

  it('a config error exits 2 and names the key and why', () => {
    const unknown = writeYaml(dir, { listen: { host: '127.0.0.1', prot: 25 } }, 'unknown.yaml');
    const r1 = runCli(['check-config', '--config', unknown]);
    expect(r1.status).toBe(2);
    expect(r1.stderr).toContain('listen.prot');
    const missingEnv = writeYaml(dir, { accounts: [{ email: 'a@b.test', provider: 'google', client_id: 'x', refresh_token: '${NOT_SET_ANYWHERE}' }] }, 'env.yaml');
    const r2 = runCli(['serve', '--config', missingEnv]);
    expect(r2.status).toBe(2);
    expect(r2.stderr).toMatch(/accounts\[0\]\.refresh_token.*NOT_SET_ANYWHERE/);
    const r3 = runCli(['serve', '--config', join(dir, 'absent.yaml')]);
    expect(r3.status).toBe(2);
    // A store path that cannot be a database file: under a regular file.
    const notDir = writeYaml(dir, { http: { enabled: false }, store: { path: join(missingEnv, 'sub', 'relay.db') } }, 'store.yaml');
    const r4 = runCli(['serve', '--config', notDir]);
    expect(r4.status).toBe(2);
    expect(r4.stderr).toContain('store.path');
  });

  it('serve relays mail and exits 0 on SIGTERM', async () => {
    const account = sandbox.addAccount({ email: 'serve@gmail.test', kind: 'google' });
    const doc = sandboxRelayConfig(sandbox, [{ account, senders: ['serve@gmail.test'] }], { store: { path: join(dir, 'serve', 'relay.db') } });
    const file = writeYaml(dir, doc, 'serve.yaml');
    const relay = await startServe(['--config', file], { env: KEY_ENV });
    try {
      const { client } = await RawSmtp.connect(relay.port);
      await client.cmd('EHLO mta.test');
      expect((await client.cmd('MAIL FROM:<serve@gmail.test>')).code).toBe(250);
      expect((await client.cmd('RCPT TO:<x@example.net>')).code).toBe(250);
      expect((await client.cmd('DATA')).code).toBe(354);
      const raw = rawMessage('serve@gmail.test', ['x@example.net'], 'serve-cli');
      client.write(raw + '.\r\n');
      expect((await client.read()).code).toBe(250);
      client.close();
      expect(sandbox.messages.some((m) => m.sha256 === sha256(raw))).toBe(true);
    } finally {
      relay.child.kill('SIGTERM');
    }
    expect(await relay.exited).toBe(0);
    expect(relay.output()).toContain('"event":"stopped"');
  });

  it('serve without relay.yaml starts on built-in defaults (127.0.0.1:2525) and says how to add an account', async () => {
    const empty = mkdtempSync(join(dir, 'empty-'));
    const relay = await startServe([], { cwd: empty, env: KEY_ENV });
    try {
      expect(relay.port).toBe(2525);
      expect(relay.output()).toContain('no accounts configured');
    } finally {
      relay.child.kill('SIGINT');
    }
    expect(await relay.exited).toBe(0);
  });
});
