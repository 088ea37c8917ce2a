// The accounts a relay runs with: those of relay.yaml, then those kept in the store (added by
// `auth --store`, `accounts add|import` or the HTTP API). An email in both is the file's: the
// file is what the operator reviews and deploys, so a stale stored copy must not override it;
// the stored one is reported (`shadowed`) so the operator can delete it. A stored account that
// no longer loads (a provider removed from relay.yaml, a key file gone) is left out and
// reported, and the others run: one bad row must not stop the relay.
import { ConfigError } from './errors.js';
import { resolveAccountInput } from './load.js';
import type { AccountInput, Config, ResolvedAccountConfig } from './schema.js';

export type AccountSource = 'config' | 'store';

export interface SourcedAccount {
  config: ResolvedAccountConfig;
  source: AccountSource;
}

export interface MergedAccounts {
  /** Config order first, then stored accounts by email. */
  accounts: SourcedAccount[];
  /** Stored accounts whose email relay.yaml also configures (the file's is used). */
  shadowed: string[];
  /** Stored accounts that do not load, with why (never a secret: ConfigError names keys). */
  invalid: Array<{ email: string; error: string }>;
}

/** `stored`: the store's accounts (src/store/store.ts StoredAccount), of which only the keys are read. */
export function mergeAccounts(config: Config, stored: ReadonlyArray<{ config: AccountInput }>, opts: { checkHost?: boolean } = {}): MergedAccounts {
  const accounts: SourcedAccount[] = config.accounts.map((a) => ({ config: a, source: 'config' }));
  const inFile = new Set(config.accounts.map((a) => a.email));
  const shadowed: string[] = [];
  const invalid: MergedAccounts['invalid'] = [];
  for (const { config: input } of stored) {
    const email = String(input.email).trim().toLowerCase();
    if (inFile.has(email)) {
      shadowed.push(email);
      continue;
    }
    try {
      accounts.push({ config: resolveAccountInput(input, config, opts), source: 'store' });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      invalid.push({ email, error: e.message });
    }
  }
  return { accounts, shadowed, invalid };
}
