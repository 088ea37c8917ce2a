// The credential of the HTTP API when relay.yaml sets no http.bearer_token: generated at the
// relay's first start into `admin.token` (mode 0600, like relay.key), where the CLI on the same
// host, run as the relay's user, reads it. Operators notice nothing; other local users and web
// pages cannot use the API. Where the file lives:
//  - SQLite store: beside the store (`<store dir>/admin.token`), with relay.key;
//  - Redis store (no local data dir): beside relay.yaml; without one, in ./data/ (where the default
//    store would be), never loose in the current directory.
// A file another user owns or can read is refused, not adopted (store/credential-file.ts).
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError } from '../config/errors.js';
import { DEFAULT_STORE_PATH, type Config } from '../config/schema.js';
import { assertPrivateCredential } from '../store/credential-file.js';

export const ADMIN_TOKEN_FILE = 'admin.token';

export function adminTokenPath(config: Pick<Config, 'store' | 'source'>): string {
  if ('path' in config.store) return join(dirname(config.store.path), ADMIN_TOKEN_FILE);
  return config.source ? join(dirname(config.source), ADMIN_TOKEN_FILE) : resolve(dirname(DEFAULT_STORE_PATH), ADMIN_TOKEN_FILE);
}

/** The token in the file, or null when there is none yet. Throws (with the path) when it cannot be read. */
export function readAdminToken(file: string): string | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw new Error(`cannot read the HTTP API credential ${file} (${code}): run this command as the relay's user, or set http.bearer_token`, { cause: e });
  }
  const token = text.trim();
  return token.length >= 16 ? token : null;
}

/** The configured http.bearer_token, else the one in admin.token, made now if there is none. */
export function ensureAdminToken(config: Pick<Config, 'store' | 'source' | 'http'>): string {
  if (config.http.bearer_token) return config.http.bearer_token;
  const file = adminTokenPath(config);
  const existing = readAdminToken(file);
  if (existing) {
    assertPrivateCredential(file, 'the HTTP API credential', 'http.bearer_token');
    return existing;
  }
  const token = randomBytes(32).toString('base64url');
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST') {
      // A read-only config folder (systemd's ProtectSystem=strict) with a Redis store, say.
      throw new ConfigError(`cannot create ${file} (${code}) for the HTTP API credential: set http.bearer_token, or http.enabled: false`, 'http.bearer_token');
    }
    // Another instance beside the same config made it first: use that one.
    const theirs = readAdminToken(file);
    if (theirs) {
      assertPrivateCredential(file, 'the HTTP API credential', 'http.bearer_token');
      return theirs;
    }
    // An empty or truncated file (a disk that filled up mid-write): replaced.
    writeFileSync(file, token + '\n', { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  return token;
}
