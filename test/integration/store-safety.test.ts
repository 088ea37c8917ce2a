// A lost relay.key (issue 10 item 4) and a second relay on the same SQLite store (issue 11
// item 5), through the real command line: each is refused at start with exit 2 and a message
// that says what to do, before a single token is fetched; and the store's files are 0600.
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { sandboxRelayConfig } from '../../src/sandbox/relay-config.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { ConfigError } from '../../src/config/errors.js';
import { freePort, runCliAsync, startServe, writeYaml } from '../helpers/cli.js';

const EMAIL = 'kept@gmail.test';

describe('the store at start', () => {
  let sandbox: SandboxProvider;
  let dir: string;
  let file: string;

  beforeAll(async () => {
    sandbox = await SandboxProvider.start();
    dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-store-safety-'));
    const account = sandbox.addAccount({ email: EMAIL, kind: 'google' });
    const doc = sandboxRelayConfig(sandbox, [{ account, senders: [EMAIL] }], { store: { path: join(dir, 'data', 'relay.db') }, http: { host: '127.0.0.1', port: await freePort() } });
    file = writeYaml(dir, doc);
  });
  afterAll(async () => {
    await sandbox.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a second relay on the same store exits 2 before fetching a token; the first keeps serving', async () => {
    // No XOAUTH2_RELAY_KEY: the key is generated into data/relay.key at this first start.
    const env = { XOAUTH2_RELAY_KEY: undefined };
    const first = await startServe(['--config', file], { env });
    try {
      for (const f of ['relay.db', 'relay.db-wal', 'relay.db-shm', 'relay.key', 'admin.token']) {
        expect(statSync(join(dir, 'data', f)).mode & 0o777, f).toBe(0o600);
      }
      const grants = sandbox.state.tokenRequests(EMAIL);
      const second = await runCliAsync(['serve', '--config', file], { env, timeoutMs: 60_000 });
      expect(second.status).toBe(2);
      expect(second.stderr + second.stdout).toMatch(/relay\.db is in use by another relay process: stop it first\. Several instances share a store only through Redis \(store\.url\)/);
      expect(sandbox.state.tokenRequests(EMAIL)).toBe(grants);
      expect(first.child.exitCode).toBeNull();
    } finally {
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);
    }
  }, 90_000);

  it('an admin.token other users can read (a copied or committed one): exit 2, why and chmod 600; not adopted, not changed', async () => {
    const token = join(dir, 'data', 'admin.token');
    chmodSync(token, 0o644);
    try {
      const grants = sandbox.state.tokenRequests(EMAIL);
      const r = await runCliAsync(['serve', '--config', file], { env: { XOAUTH2_RELAY_KEY: undefined }, timeoutMs: 60_000 });
      expect(r.status).toBe(2);
      expect(r.stderr + r.stdout).toContain(`${token} (the HTTP API credential) has mode 0644: other users can read it`);
      expect(r.stderr + r.stdout).toContain(`chmod 600 ${token}`);
      expect(statSync(token).mode & 0o777).toBe(0o644);
      expect(sandbox.state.tokenRequests(EMAIL)).toBe(grants);
    } finally {
      chmodSync(token, 0o600);
    }
  }, 90_000);

  it('a deleted relay.key with rows in the store: exit 2, how to restore or reset; no new key made', async () => {
    unlinkSync(join(dir, 'data', 'relay.key'));
    const r = await runCliAsync(['serve', '--config', file], { env: { XOAUTH2_RELAY_KEY: undefined }, timeoutMs: 60_000 });
    expect(r.status).toBe(2);
    const said = r.stderr + r.stdout;
    expect(said).toMatch(/holds sealed accounts or tokens but its key .*relay\.key is missing; the relay will not make a new key/);
    expect(said).toMatch(/restore .*relay\.key from a backup .*XOAUTH2_RELAY_KEY.*move .*relay\.db \(with its -wal and -shm\) away/);
    expect(existsSync(join(dir, 'data', 'relay.key'))).toBe(false);
  }, 90_000);
});

describe('SqliteStore.open', () => {
  it('refuses a key that opens none of the rows, and a second lock holder in the same process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-store-key-'));
    try {
      const path = join(dir, 'relay.db');
      const store = SqliteStore.open(path, { XOAUTH2_RELAY_KEY: 'a'.repeat(64) }, { lock: true });
      await store.saveToken(EMAIL, { accessToken: 'at', expiresAt: Date.now() + 60_000, refreshToken: 'rt', configRefreshToken: 'rt', clientId: 'c' });
      expect(() => SqliteStore.open(path, { XOAUTH2_RELAY_KEY: 'a'.repeat(64) }, { lock: true })).toThrow(/in use by another relay process/);
      // The commands that edit the store beside a running relay do not lock.
      await SqliteStore.open(path, { XOAUTH2_RELAY_KEY: 'a'.repeat(64) }).close();
      await store.close();
      let err: unknown;
      try {
        SqliteStore.open(path, { XOAUTH2_RELAY_KEY: 'b'.repeat(64) }, { lock: true });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/the key does not open the rows of .*relay\.db/);
      // Refused, and the lock freed with it: the right key opens it.
      await SqliteStore.open(path, { XOAUTH2_RELAY_KEY: 'a'.repeat(64) }, { lock: true }).close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
