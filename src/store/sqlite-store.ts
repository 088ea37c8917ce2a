// The embedded store: one SQLite file (better-sqlite3, synchronous and fast enough for the few
// writes a token refresh makes), WAL so a crash mid-write never corrupts it.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Sealer } from './sealer.js';
import type { Store, TokenRecord } from './store.js';

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly select: Database.Statement<[string], { blob: Buffer }>;
  private readonly upsert: Database.Statement<[string, Buffer, number]>;
  private readonly remove: Database.Statement<[string]>;

  constructor(
    path: string,
    private readonly sealer: Sealer,
  ) {
    mkdirSync(dirname(path), { recursive: true });
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
  }

  /** The store at `path`, its key from XOAUTH2_RELAY_KEY or `relay.key` beside the database. */
  static open(path: string, env: NodeJS.ProcessEnv = process.env): SqliteStore {
    return new SqliteStore(path, Sealer.fromEnvOrFile(env, join(dirname(path), 'relay.key')));
  }

  async loadToken(email: string): Promise<TokenRecord | null> {
    const row = this.select.get(email);
    if (!row) return null;
    const json = this.sealer.open(row.blob, email);
    return json ? (JSON.parse(json) as TokenRecord) : null;
  }

  async saveToken(email: string, record: TokenRecord): Promise<void> {
    this.upsert.run(email, this.sealer.seal(JSON.stringify(record), email), Date.now());
  }

  async deleteToken(email: string): Promise<void> {
    this.remove.run(email);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
