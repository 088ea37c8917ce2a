// The embedded store: one SQLite file (better-sqlite3, synchronous and fast enough for the few
// writes a token refresh makes), WAL so a crash mid-write never corrupts it. For one relay
// process: quota counters live in memory (no I/O on the message path) and are flushed to the
// file every second and on close, so a restart does not reset the day; a crash loses at most
// the last second of counts.
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Sealer } from './sealer.js';
import { checkKeyFitsStore, lockStore, privateDatabaseFiles, sealedRows } from './sqlite-files.js';
import { SqliteAccountTable } from './sqlite-accounts.js';
import { StoreHealth } from './store-health.js';
import type { AccountPause, AccountStore, Charge, Charged, LocalCounting, ReserveResult, Store, StoredAccount, TokenRecord } from './store.js';
import { WindowCounters, type BucketRow } from './window-counters.js';

const FLUSH_INTERVAL_MS = 1_000;

/** Where the encryption key of the store at `path` lives when XOAUTH2_RELAY_KEY is not set: beside it. */
export const keyFileOf = (path: string): string => join(dirname(path), 'relay.key');

export class SqliteStore implements Store, AccountStore {
  private readonly db: Database.Database;
  private readonly select: Database.Statement<[string], { blob: Buffer }>;
  private readonly upsert: Database.Statement<[string, Buffer, number]>;
  private readonly remove: Database.Statement<[string]>;
  private readonly counters: WindowCounters;
  private readonly flushTimer: NodeJS.Timeout;
  private readonly accounts: SqliteAccountTable;
  /** The relay's hold on the store (lockStore), when it was opened to run the relay. */
  private lock: Database.Database | null = null;
  /** Failing while writes fail (a full disk): nothing here throws out of a timer. */
  readonly health = new StoreHealth();

  constructor(
    path: string,
    private readonly sealer: Sealer,
    private readonly now: () => number = Date.now,
  ) {
    privateDatabaseFiles(path);
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS tokens (
      email TEXT PRIMARY KEY,
      blob BLOB NOT NULL,
      updated_at INTEGER NOT NULL
    )`);
    this.select = this.db.prepare('SELECT blob FROM tokens WHERE email = ?');
    this.upsert = this.db.prepare(
      'INSERT INTO tokens (email, blob, updated_at) VALUES (?, ?, ?) ON CONFLICT(email) DO UPDATE SET blob = excluded.blob, updated_at = excluded.updated_at',
    );
    this.remove = this.db.prepare('DELETE FROM tokens WHERE email = ?');
    this.accounts = new SqliteAccountTable(this.db, sealer, now);
    this.db.exec(`CREATE TABLE IF NOT EXISTS quota (
      email TEXT NOT NULL,
      counter TEXT NOT NULL,
      bucket INTEGER NOT NULL,
      count INTEGER NOT NULL,
      PRIMARY KEY (email, counter, bucket)
    );
    CREATE TABLE IF NOT EXISTS pauses (
      email TEXT PRIMARY KEY,
      until INTEGER NOT NULL,
      reason TEXT NOT NULL
    )`);
    this.counters = new WindowCounters(now);
    this.counters.load(this.db.prepare('SELECT email, counter, bucket, count FROM quota').all() as BucketRow[]);
    this.flushTimer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    this.flushTimer.unref();
  }

  /**
   * The store at `path`, its key from XOAUTH2_RELAY_KEY or `relay.key` beside the database (a
   * key is generated only for a store with no sealed rows). `lock`: this process runs the relay
   * on it, and no other may (the commands that edit the store alongside a running relay do not lock).
   */
  static open(path: string, env: NodeJS.ProcessEnv = process.env, opts: { lock?: boolean } = {}): SqliteStore {
    const lock = opts.lock ? lockStore(path) : null;
    try {
      const keyFile = keyFileOf(path);
      const keyKnown = env.XOAUTH2_RELAY_KEY !== undefined || existsSync(keyFile);
      const sealer = checkKeyFitsStore(path, keyFile, sealedRows(path), keyKnown, () => Sealer.fromEnvOrFile(env, keyFile));
      const store = new SqliteStore(path, sealer);
      store.lock = lock;
      return store;
    } catch (e) {
      lock?.close();
      throw e;
    }
  }

  async loadToken(email: string): Promise<TokenRecord | null> {
    const row = this.select.get(email);
    if (!row) return null;
    const json = this.sealer.open(row.blob, email);
    return json ? (JSON.parse(json) as TokenRecord) : null;
  }

  async saveToken(email: string, record: TokenRecord): Promise<void> {
    this.write(() => this.upsert.run(email, this.sealer.seal(JSON.stringify(record), email), Date.now()));
  }

  async deleteToken(email: string): Promise<void> {
    this.remove.run(email);
  }

  saveAccount(config: StoredAccount['config']): Promise<void> {
    return this.accounts.saveAccount(config);
  }

  saveAccounts(configs: readonly StoredAccount['config'][]): Promise<void> {
    return this.accounts.saveAccounts(configs);
  }

  listAccounts(): Promise<StoredAccount[]> {
    return this.accounts.listAccounts();
  }

  deleteAccount(email: string): Promise<boolean> {
    return this.accounts.deleteAccount(email);
  }

  get localCounting(): LocalCounting {
    return this.counters;
  }

  async reserve(email: string, charges: readonly Charge[]): Promise<ReserveResult> {
    return this.counters.reserve(email, charges);
  }

  async release(email: string, charged: readonly Charged[]): Promise<void> {
    this.counters.release(email, charged);
  }

  async savePause(email: string, pause: AccountPause): Promise<void> {
    this.write(() =>
      this.db
        .prepare('INSERT INTO pauses (email, until, reason) VALUES (?, ?, ?) ON CONFLICT(email) DO UPDATE SET until = excluded.until, reason = excluded.reason')
        .run(email, pause.until, pause.reason),
    );
  }

  async loadPauses(): Promise<Map<string, AccountPause>> {
    const rows = this.db.prepare('SELECT email, until, reason FROM pauses WHERE until > ?').all(this.now()) as Array<AccountPause & { email: string }>;
    return new Map(rows.map((r) => [r.email, { until: r.until, reason: r.reason }]));
  }

  /**
   * Writes the counters that changed since the last flush, each replaced whole, in one
   * transaction. Runs in a timer: it never throws. Counters it could not write (a full disk)
   * stay in memory, marked to be written again at the next flush.
   */
  flush(): void {
    if (!this.db.open) return;
    const changed = this.counters.takeDirty();
    if (!changed.length) return;
    try {
      this.write(() => {
        const clear = this.db.prepare('DELETE FROM quota WHERE email = ? AND counter = ?');
        const insert = this.db.prepare('INSERT INTO quota (email, counter, bucket, count) VALUES (?, ?, ?, ?)');
        this.db.transaction(() => {
          for (const c of changed) {
            clear.run(c.email, c.counter);
            for (const [bucket, count] of c.buckets) insert.run(c.email, c.counter, bucket, count);
          }
        })();
      });
    } catch {
      this.counters.markDirty(changed);
    }
  }

  /** A write, with its outcome recorded in `health`; its error is rethrown for the caller. */
  private write<T>(work: () => T): T {
    try {
      const result = work();
      this.health.succeeded();
      return result;
    } catch (e) {
      this.health.failed(e, this.now());
      throw e;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    this.flush();
    if (this.db.open) this.db.close();
    if (this.lock?.open) this.lock.close();
  }
}
