// The accounts table of the embedded store: one sealed row per account. The email is the row's
// key in clear (listing needs no key); everything else, secrets included, is in the sealed blob.
import type Database from 'better-sqlite3';
import type { AccountInput } from '../config/schema.js';
import type { Sealer } from './sealer.js';
import type { AccountStore, StoredAccount } from './store.js';

const normalEmail = (email: string) => email.trim().toLowerCase();

// Distinct from a token row's (the bare email), so a sealed account cannot be passed off as a token.
const aad = (email: string) => `account:${email}`;

export class SqliteAccountTable implements AccountStore {
  private readonly upsert: Database.Statement<[string, Buffer, number]>;
  private readonly all: Database.Statement<[], { email: string; blob: Buffer; updated_at: number }>;
  private readonly remove: Database.Statement<[string]>;
  private readonly saveAll: (configs: readonly AccountInput[]) => void;

  constructor(
    db: Database.Database,
    private readonly sealer: Sealer,
    private readonly now: () => number,
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS accounts (
      email TEXT PRIMARY KEY,
      blob BLOB NOT NULL,
      updated_at INTEGER NOT NULL
    )`);
    this.upsert = db.prepare(
      'INSERT INTO accounts (email, blob, updated_at) VALUES (?, ?, ?) ON CONFLICT(email) DO UPDATE SET blob = excluded.blob, updated_at = excluded.updated_at',
    );
    this.all = db.prepare('SELECT email, blob, updated_at FROM accounts ORDER BY email');
    this.remove = db.prepare('DELETE FROM accounts WHERE email = ?');
    this.saveAll = db.transaction((configs: readonly AccountInput[]) => {
      for (const c of configs) this.write(c);
    });
  }

  async saveAccount(config: AccountInput): Promise<void> {
    this.write(config);
  }

  async saveAccounts(configs: readonly AccountInput[]): Promise<void> {
    this.saveAll(configs);
  }

  private write(config: AccountInput): void {
    const email = normalEmail(config.email);
    this.upsert.run(email, this.sealer.seal(JSON.stringify({ ...config, email }), aad(email)), this.now());
  }

  async listAccounts(): Promise<StoredAccount[]> {
    const out: StoredAccount[] = [];
    for (const row of this.all.all()) {
      const json = this.sealer.open(row.blob, aad(row.email));
      if (json) out.push({ config: JSON.parse(json) as AccountInput, updatedAt: row.updated_at });
    }
    return out;
  }

  async deleteAccount(email: string): Promise<boolean> {
    return this.remove.run(normalEmail(email)).changes > 0;
  }
}
