// The command line as SPEC fixes it: check-config output and exit codes, serve on a config
// file, serve on built-in defaults, and a clean exit on SIGTERM.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { sandboxRelayConfig } from '../../src/sandbox/relay-config.js';
import { runCli, startServe, writeYaml, type ServeProcess } from '../helpers/cli.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { KEY_ENV, rawMessage, sha256 } from '../helpers/stack.js';

/** The first log line containing `marker`, parsed, once the relay has printed it (bounded wait). */
async function waitForLine(relay: ServeProcess, marker: string, ms = 20_000): Promise<Record<string, unknown>> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 10))) {
    const line = relay.output().split('\n').find((l) => l.includes(marker));
    if (line) return JSON.parse(line) as Record<string, unknown>;
  }
  throw new Error(`${marker} not logged within ${ms} ms:\n${relay.output()}`);
}

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
      // The start-up line names where it listens, what it sends through and whom it trusts.
      const started = await waitForLine(relay, '"event":"started"');
      expect(started).toMatchObject({ smtp: `127.0.0.1:${relay.port}`, accounts: ['serve@gmail.test'], trusted_networks: ['127.0.0.0/8', '::1/128'] });
      expect(started.msg).toContain('(default: loopback only)');
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
    const exitedAt = Date.now();
    const stopped = await waitForLine(relay, '"event":"stopped"');
    // Nothing is left to wait for once it logs stopped (it used to linger ~2 s); generous for a loaded machine.
    // Promptly, not after a timer's second or two; with room for a loaded machine.
    expect(exitedAt - Date.parse(stopped.time as string)).toBeLessThan(3_000);
  });

  it('an unquoted *@domain sender exits 2 with the line, the column and the hint to quote', () => {
    const file = join(dir, 'alias.yaml');
    writeFileSync(file, ['accounts:', '  - email: a@b.test', '    provider: google', '    senders:', '      - *@newsletter.example', ''].join('\n'));
    const r = runCli(['check-config', '--config', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('line 5, column 9');
    expect(r.stderr).toContain('must be quoted: "*@newsletter.example"');
  });

  it('check-config: a syntax error does not hide the rest; key problems have their line and a misspelt key its suggestion', () => {
    const file = join(dir, 'several.yaml');
    writeFileSync(file, ['listen: { host: 127.0.0.1, prot: 2525 }', 'inbound:', '  max_conections: 5', 'log: { level: [ }', ''].join('\n'));
    const r = runCli(['check-config', '--config', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/line 4, column \d+: /);
    expect(r.stderr).toContain('at listen.prot (line 1): unknown key (did you mean port?)');
    expect(r.stderr).toContain('at inbound.max_conections (line 3): unknown key (did you mean max_connections?)');
  });

  it('every missing environment variable is named in one run', () => {
    const file = writeYaml(dir, { accounts: [{ email: 'a@b.test', provider: 'google', client_id: '${CID_UNSET}', client_secret: '${CS_UNSET}', refresh_token: '${RT_UNSET}' }] }, 'envs.yaml');
    const r = runCli(['check-config', '--config', file]);
    expect(r.status).toBe(2);
    for (const name of ['CID_UNSET', 'CS_UNSET', 'RT_UNSET']) expect(r.stderr).toContain(`environment variable ${name} is not set`);
    expect(r.stderr).not.toMatch(/more problem/);
  });

  it('check-config warns (exit 0) about a config that cannot work or is dangerous, and says whom it trusts', () => {
    const open = writeYaml(
      dir,
      { listen: { host: '0.0.0.0', port: 2525 }, inbound: { trusted_networks: ['0.0.0.0/0'] }, accounts: [{ email: 'a@b.test', provider: 'google', client_id: 'x', refresh_token: 'y', senders: ['*@b.test'] }] },
      'open.yaml',
    );
    const r1 = runCli(['check-config', '--config', open]);
    expect(r1.status).toBe(0);
    expect(r1.stderr).toMatch(/warning: inbound\.trusted_networks: 0\.0\.0\.0\/0 trusts every address/);
    const unreachable = writeYaml(dir, { inbound: { trusted_networks: ['10.0.0.0/8'] }, accounts: [{ email: 'a@b.test', provider: 'google', client_id: 'x', refresh_token: 'y', senders: ['*@b.test'] }] }, 'unreachable.yaml');
    const r2 = runCli(['check-config', '--config', unreachable]);
    expect(r2.status).toBe(0);
    expect(r2.stderr).toMatch(/warning: accounts\[0\]\.password: a@b\.test has no password and no trusted network can reach/);
    const plain = writeYaml(dir, { accounts: [{ email: 'a@b.test', provider: 'google', client_id: 'x', refresh_token: 'y', password: 'pw', senders: ['*@b.test'] }] }, 'plain.yaml');
    const r3 = runCli(['check-config', '--config', plain]);
    expect(r3.stderr).not.toContain('warning');
    expect(r3.stdout).toContain('# sessions from 127.0.0.0/8, ::1/128 may send without AUTH (the default: loopback only');
  });

  it('--version prints the package version', () => {
    const r = runCli(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('serve without relay.yaml starts on built-in defaults (127.0.0.1:2525), says how to add an account, and where its files went', async () => {
    const empty = mkdtempSync(join(dir, 'empty-'));
    // No XOAUTH2_RELAY_KEY: the key file is generated too (issue 18 item 1).
    const relay = await startServe([], { cwd: empty, env: { XOAUTH2_RELAY_KEY: undefined } });
    try {
      expect(relay.port).toBe(2525);
      expect(relay.output()).toContain('no accounts configured');
      // Nothing loose in the current directory: the store, its key and the API credential are in ./data/ ...
      expect(readdirSync(empty)).toEqual(['data']);
      const data = join(empty, 'data');
      expect(readdirSync(data)).toEqual(expect.arrayContaining(['admin.token', 'relay.db', 'relay.key']));
      expect(readdirSync(data).filter((f) => !f.startsWith('relay.db'))).toEqual(['admin.token', 'relay.key']);
      // ... and the start-up log names each one where it is.
      const files = relay
        .output()
        .split('\n')
        .filter((l) => l.includes('"event":"files"'))
        .map((l) => JSON.parse(l) as Record<string, string>);
      expect(files).toHaveLength(1);
      expect(files[0]).toMatchObject({ store: join(data, 'relay.db'), key: join(data, 'relay.key'), admin_token: join(data, 'admin.token') });
    } finally {
      relay.child.kill('SIGINT');
    }
    expect(await relay.exited).toBe(0);
  });
});
