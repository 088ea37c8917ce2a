// Accounts kept in the embedded store (what `auth --store`, `accounts add|import` and the HTTP API
// save): round trip, sealing at rest,
// and that a sealed account and a sealed token cannot stand in for each other.
import Database from 'better-sqlite3';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sealer } from '../../src/store/sealer.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { isAccountStore } from '../../src/store/store.js';
import { accountStoreConformance, GMAIL } from '../helpers/account-store-conformance.js';

let dir: string;
const opened: SqliteStore[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-accounts-'));
});
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

const KEY_A = { XOAUTH2_RELAY_KEY: 'a'.repeat(64) };
const KEY_B = { XOAUTH2_RELAY_KEY: 'b'.repeat(64) };

function open(env: NodeJS.ProcessEnv = KEY_A): SqliteStore {
  const store = SqliteStore.open(join(dir, 'relay.db'), env);
  opened.push(store);
  return store;
}

function rawBytes(): Buffer {
  return Buffer.concat(readdirSync(dir).filter((f) => f.startsWith('relay.db')).map((f) => readFileSync(join(dir, f))));
}

describe('SqliteStore accounts', () => {
  it('is an AccountStore', () => {
    expect(isAccountStore(open())).toBe(true);
    expect(isAccountStore({ loadToken: () => null })).toBe(false);
  });

  accountStoreConformance(async () => open());

  it('survives a restart; the files hold no secret in clear', async () => {
    const first = open();
    await first.saveAccount(GMAIL);
    await first.close();
    for (const secret of [GMAIL.client_secret!, GMAIL.refresh_token!]) expect(rawBytes().includes(Buffer.from(secret))).toBe(false);
    expect((await open().listAccounts())[0]!.config.refresh_token).toBe(GMAIL.refresh_token);
  });

  it('leaves out accounts sealed under another key', async () => {
    const first = open(KEY_A);
    await first.saveAccount(GMAIL);
    await first.close();
    // Opened by the relay, such a store is refused (test/integration/store-safety.test.ts); a
    // row that does not open among rows that do is still left out, not an error.
    expect(() => open(KEY_B)).toThrow(/the key does not open the rows/);
    const other = new SqliteStore(join(dir, 'relay.db'), Sealer.fromKey(Buffer.from(KEY_B.XOAUTH2_RELAY_KEY, 'hex')));
    opened.push(other);
    expect(await other.listAccounts()).toEqual([]);
  });

  it('a sealed account cannot be read as a token, nor a token row as an account', async () => {
    const store = open();
    await store.saveAccount(GMAIL);
    await store.saveToken('ops@contoso.test', { accessToken: 'at', expiresAt: 1, refreshToken: 'rt', configRefreshToken: 'rt', clientId: 'c' });
    // Swap the blobs between the two tables, as someone with write access to the file might.
    const db = new Database(join(dir, 'relay.db'));
    const accountBlob = (db.prepare('SELECT blob FROM accounts').get() as { blob: Buffer }).blob;
    const tokenBlob = (db.prepare('SELECT blob FROM tokens').get() as { blob: Buffer }).blob;
    db.prepare('INSERT INTO tokens (email, blob, updated_at) VALUES (?, ?, 0)').run('sender@gmail.com', accountBlob);
    db.prepare('INSERT INTO accounts (email, blob, updated_at) VALUES (?, ?, 0)').run('ops@contoso.test', tokenBlob);
    db.close();
    expect(await store.loadToken('sender@gmail.com')).toBeNull();
    expect((await store.listAccounts()).map((a) => a.config.email)).toEqual(['sender@gmail.com']);
  });
});
