// What must hold about the embedded store's files before the relay uses them (issue 10 item 4,
// issue 11 item 5):
//  - relay.db and its -wal and -shm are readable by the relay's user only (0600, like relay.key):
//    SQLite creates the -wal and -shm with the mode of the database file, so the file is made
//    0600 before SQLite first opens it, and modes loosened by hand are tightened back;
//  - a store that holds sealed rows is never given a new key: without relay.key (and without
//    XOAUTH2_RELAY_KEY), or with a key that opens none of its rows, the relay refuses to start;
//  - one relay process per store: a second one is refused before it fetches a single token.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../config/errors.js';
import type { Sealer } from './sealer.js';

const PRIVATE = 0o600;

/** Creates `path` (and its folder) 0600 if missing; tightens it and its -wal/-shm if loosened. */
export function privateDatabaseFiles(path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  if (!existsSync(path)) closeSync(openSync(path, 'a', PRIVATE));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    if (existsSync(file) && (statSync(file).mode & 0o077) !== 0) chmodSync(file, PRIVATE);
  }
}

interface SealedRow {
  blob: Buffer;
  aad: string;
}

/** One sealed token row and one sealed account row, if the store has any (read-only look). */
export function sealedRows(path: string): SealedRow[] {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch {
    return [];
  }
  try {
    const rows: SealedRow[] = [];
    const first = (table: string, aad: (email: string) => string) => {
      try {
        const row = db.prepare(`SELECT email, blob FROM ${table} LIMIT 1`).get() as { email: string; blob: Buffer } | undefined;
        if (row) rows.push({ blob: row.blob, aad: aad(row.email) });
      } catch {
        // No such table yet: a store made by an older version, or a new one.
      }
    };
    first('tokens', (email) => email);
    first('accounts', (email) => `account:${email}`);
    return rows;
  } finally {
    db.close();
  }
}

/** How a store with rows and no key to open them is put back, or reset on purpose. */
const howToRecover = (path: string, keyFile: string) =>
  `restore ${keyFile} from a backup (or set XOAUTH2_RELAY_KEY to the key the store was written with); ` +
  `or, to start over on purpose and lose the stored accounts and tokens, move ${path} (with its -wal and -shm) away`;

/** Refuses a key that would make the rows already in the store unreadable. */
export function checkKeyFitsStore(path: string, keyFile: string, rows: readonly SealedRow[], keyKnown: boolean, sealer: () => Sealer): Sealer {
  if (rows.length && !keyKnown) {
    throw new ConfigError(`${path} holds sealed accounts or tokens but its key ${keyFile} is missing; the relay will not make a new key. ${howToRecover(path, keyFile)}`, 'store.path');
  }
  const s = sealer();
  if (rows.length && !rows.some((r) => s.open(r.blob, r.aad) !== null)) {
    throw new ConfigError(`the key does not open the rows of ${path} (they were sealed with another one). ${howToRecover(path, keyFile)}`, 'store.path');
  }
  return s;
}

/**
 * Holds `<path>.lock` for the life of the process: an exclusive SQLite lock (fcntl), which the
 * kernel frees when the process dies, so a crash leaves no stale lock behind.
 */
export function lockStore(path: string): Database.Database {
  const lockPath = `${path}.lock`;
  privateDatabaseFiles(lockPath);
  const db = new Database(lockPath, { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    // The first write takes the exclusive lock, and EXCLUSIVE locking mode keeps it until close.
    db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL); DELETE FROM holder;');
    db.prepare('INSERT INTO holder (pid) VALUES (?)').run(process.pid);
    return db;
  } catch (e) {
    db.close();
    if ((e as { code?: string }).code?.startsWith('SQLITE_BUSY') || (e as { code?: string }).code?.startsWith('SQLITE_LOCKED')) {
      throw new ConfigError(
        `${path} is in use by another relay process: stop it first. Several instances share a store only through Redis (store.url), not one SQLite file`,
        'store.path',
      );
    }
    throw e;
  }
}
