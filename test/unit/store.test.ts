import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { Sealer } from '../../src/store/sealer.js';
import type { TokenRecord } from '../../src/store/store.js';
import { ConfigError } from '../../src/config/errors.js';

let dir: string;
const open: SqliteStore[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-store-'));
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

function openStore(env: NodeJS.ProcessEnv = {}, path = join(dir, 'data', 'relay.db')): SqliteStore {
  const s = SqliteStore.open(path, env);
  open.push(s);
  return s;
}

const RECORD = {
  accessToken: 'ya29.AccessTokenSecret-recognisable-A1',
  expiresAt: 1_900_000_000_000,
  refreshToken: '1//RotatedRefreshSecret-recognisable-R2',
  configRefreshToken: '1//ConfigRefreshSecret-recognisable-C3',
  clientId: 'client-id.apps.googleusercontent.com',
} satisfies TokenRecord;
const EMAIL = 'sender@gmail.com';
const HEX_KEY = 'a'.repeat(64);

/** Every byte the store wrote: the database and its WAL / shared-memory files. */
function rawBytes(): Buffer {
  const data = join(dir, 'data');
  return Buffer.concat(readdirSync(data).filter((f) => f.startsWith('relay.db')).map((f) => readFileSync(join(data, f))));
}

describe('SqliteStore', () => {
  it('round-trips a TokenRecord, overwrites it, and deletes it', async () => {
    const store = openStore();
    expect(await store.loadToken(EMAIL)).toBeNull();
    await store.saveToken(EMAIL, RECORD);
    expect(await store.loadToken(EMAIL)).toEqual(RECORD);
    const updated = { ...RECORD, accessToken: 'second-access', expiresAt: RECORD.expiresAt + 1 };
    await store.saveToken(EMAIL, updated);
    expect(await store.loadToken(EMAIL)).toEqual(updated);
    expect(await store.loadToken('other@gmail.com')).toBeNull();
    await store.deleteToken(EMAIL);
    expect(await store.loadToken(EMAIL)).toBeNull();
  });

  it('the files on disk contain none of the secrets', async () => {
    const store = openStore();
    await store.saveToken(EMAIL, RECORD);
    await store.saveToken('two@gmail.com', { ...RECORD, accessToken: 'another-access-secret-recognisable-A4' });
    const bytes = rawBytes();
    expect(bytes.length).toBeGreaterThan(0);
    for (const secret of [RECORD.accessToken, RECORD.refreshToken, RECORD.configRefreshToken, 'another-access-secret-recognisable-A4']) {
      expect(bytes.includes(Buffer.from(secret))).toBe(false);
    }
    await store.close();
    const after = rawBytes();
    for (const secret of [RECORD.accessToken, RECORD.refreshToken, RECORD.configRefreshToken]) {
      expect(after.includes(Buffer.from(secret))).toBe(false);
    }
  });

  it('without XOAUTH2_RELAY_KEY a key file with mode 0600 is created beside the database and reused on reopen', async () => {
    const keyFile = join(dir, 'data', 'relay.key');
    const store = openStore({});
    expect(existsSync(keyFile)).toBe(true);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    await store.saveToken(EMAIL, RECORD);
    await store.close();
    const key = readFileSync(keyFile, 'utf8');

    const reopened = openStore({});
    expect(readFileSync(keyFile, 'utf8')).toBe(key);
    expect(await reopened.loadToken(EMAIL)).toEqual(RECORD);
  });

  it('a key file whose mode was loosened is refused, not adopted: the error says chmod 600', async () => {
    const keyFile = join(dir, 'data', 'relay.key');
    await openStore({}).close();
    chmodSync(keyFile, 0o644);
    expect(() => openStore({})).toThrow(ConfigError);
    expect(() => openStore({})).toThrow(/relay\.key \(the store's encryption key\) has mode 0644: other users can read it.*chmod 600 /);
    // Left as found: the operator decides whether the key may have been copied.
    expect(statSync(keyFile).mode & 0o777).toBe(0o644);
  });

  it('with XOAUTH2_RELAY_KEY (64 hex digits) no key file is created and the same key reads the record back', async () => {
    const store = openStore({ XOAUTH2_RELAY_KEY: HEX_KEY });
    await store.saveToken(EMAIL, RECORD);
    await store.close();
    expect(existsSync(join(dir, 'data', 'relay.key'))).toBe(false);
    const reopened = openStore({ XOAUTH2_RELAY_KEY: HEX_KEY });
    expect(await reopened.loadToken(EMAIL)).toEqual(RECORD);
  });

  it('XOAUTH2_RELAY_KEY as base64 of 32 bytes is accepted', async () => {
    const key = randomBytes(32).toString('base64');
    const store = openStore({ XOAUTH2_RELAY_KEY: key });
    await store.saveToken(EMAIL, RECORD);
    expect(await store.loadToken(EMAIL)).toEqual(RECORD);
  });

  it('a store whose rows were sealed with another key is refused (ConfigError), not silently emptied', async () => {
    const store = openStore({ XOAUTH2_RELAY_KEY: HEX_KEY });
    await store.saveToken(EMAIL, RECORD);
    await store.close();
    expect(() => openStore({ XOAUTH2_RELAY_KEY: 'b'.repeat(64) })).toThrow(ConfigError);
  });

  it('a blob moved to another account row reads as null (the email is authenticated data)', async () => {
    const path = join(dir, 'data', 'relay.db');
    const store = openStore({ XOAUTH2_RELAY_KEY: HEX_KEY }, path);
    await store.saveToken(EMAIL, RECORD);
    await store.saveToken('victim@gmail.com', { ...RECORD, accessToken: 'victim-token' });
    await store.close();

    const db = new Database(path);
    db.prepare('UPDATE tokens SET blob = (SELECT blob FROM tokens WHERE email = ?) WHERE email = ?').run(EMAIL, 'victim@gmail.com');
    db.close();

    const reopened = openStore({ XOAUTH2_RELAY_KEY: HEX_KEY }, path);
    expect(await reopened.loadToken(EMAIL)).toEqual(RECORD);
    expect(await reopened.loadToken('victim@gmail.com')).toBeNull();
  });

  it.each(['', 'not-a-key', 'a'.repeat(63), 'g'.repeat(64), randomBytes(16).toString('base64')])(
    'an invalid XOAUTH2_RELAY_KEY (%j) is a ConfigError naming the variable',
    (key) => {
      let err: unknown;
      try {
        openStore({ XOAUTH2_RELAY_KEY: key });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).path).toBe('XOAUTH2_RELAY_KEY');
      expect(existsSync(join(dir, 'data', 'relay.key'))).toBe(false);
    },
  );
});

describe('Sealer', () => {
  const key = randomBytes(32);

  it('seals with a random nonce: the same plaintext twice gives different blobs that both open', () => {
    const s = Sealer.fromKey(key);
    const a = s.seal('secret text', EMAIL);
    const b = s.seal('secret text', EMAIL);
    expect(a.equals(b)).toBe(false);
    expect(a.includes(Buffer.from('secret text'))).toBe(false);
    expect(s.open(a, EMAIL)).toBe('secret text');
    expect(s.open(b, EMAIL)).toBe('secret text');
  });

  it('open() returns null for another AAD, another key, a tampered or truncated blob', () => {
    const s = Sealer.fromKey(key);
    const blob = s.seal('secret text', EMAIL);
    expect(s.open(blob, 'other@gmail.com')).toBeNull();
    expect(Sealer.fromKey(randomBytes(32)).open(blob, EMAIL)).toBeNull();
    const tampered = Buffer.from(blob);
    tampered[tampered.length - 1]! ^= 1;
    expect(s.open(tampered, EMAIL)).toBeNull();
    expect(s.open(blob.subarray(0, 10), EMAIL)).toBeNull();
    const otherVersion = Buffer.from(blob);
    otherVersion[0] = 99;
    expect(s.open(otherVersion, EMAIL)).toBeNull();
  });

  it('fromKey rejects keys that are not 32 bytes', () => {
    expect(() => Sealer.fromKey(randomBytes(16))).toThrow();
  });
});
