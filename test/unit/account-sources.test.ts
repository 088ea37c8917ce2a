// Where a running relay's accounts come from and what a reload may change: relay.yaml's and
// the store's accounts merged (the file wins an email in both; a stored account that does not
// load is left out, not fatal), accounts from outside the file checked like the file's, and
// the settings a reload reports as needing a restart.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { buildConfig, resolveAccountInput } from '../../src/config/load.js';
import { restartNeeded } from '../../src/config/reload-diff.js';
import { mergeAccounts } from '../../src/config/stored-accounts.js';
import type { AccountInput } from '../../src/config/schema.js';
import { thrown } from '../helpers/thrown.js';

const account = (email: string, extra: Partial<AccountInput> = {}): AccountInput => ({ email, provider: 'google', client_id: 'cid', refresh_token: `rt-${email}`, ...extra });
const config = (doc: Record<string, unknown> = {}) => buildConfig({ accounts: [account('file@x.test')], ...doc }, null, { env: {}, checkHost: false });
const stored = (...inputs: AccountInput[]) => inputs.map((config) => ({ config, updatedAt: 1 }));

describe('mergeAccounts', () => {
  it("relay.yaml's accounts first, then the store's; an email in both is the file's, and reported", () => {
    const merged = mergeAccounts(config(), stored(account('FILE@x.test', { client_id: 'other' }), account('kept@x.test', { max_connections: 2 })), { checkHost: false });
    expect(merged.accounts.map((a) => [a.config.email, a.source])).toEqual([
      ['file@x.test', 'config'],
      ['kept@x.test', 'store'],
    ]);
    expect(merged.accounts[0]!.config.client_id).toBe('cid');
    // Provider defaults are filled in as for the file's accounts.
    expect(merged.accounts[1]!.config).toMatchObject({ max_connections: 2, min_idle: 1, limits: { messages_per_day: 2000 } });
    expect(merged.shadowed).toEqual(['file@x.test']);
  });

  it('leaves out a stored account that does not load, says why, and keeps the others', () => {
    const merged = mergeAccounts(config(), stored(account('gone@x.test', { provider: 'removed' }), account('ok@x.test')), { checkHost: false });
    expect(merged.accounts.map((a) => a.config.email)).toEqual(['file@x.test', 'ok@x.test']);
    expect(merged.invalid).toEqual([{ email: 'gone@x.test', error: 'config error at provider: unknown provider "removed" (known: google, microsoft)' }]);
  });
});

describe('resolveAccountInput', () => {
  it("checks an account from outside the file like the file's, naming the key within the account", () => {
    const c = config();
    expect(thrown(() => resolveAccountInput({ email: 'a@x.test', provider: 'google' }, c), ConfigError)).toMatchObject({
      path: 'client_id',
      problems: [
        { path: 'client_id', reason: 'required when auth is refresh_token (the default)' },
        { path: 'refresh_token', reason: 'required when auth is refresh_token (the default)' },
      ],
    });
    expect(thrown(() => resolveAccountInput({ ...account('a@x.test'), min_idle: 9 }, c), ConfigError)).toMatchObject({ path: 'min_idle' });
    expect(thrown(() => resolveAccountInput({ ...account('a@x.test'), limits: { per_week: 1 } }, c), ConfigError).path).toBe('limits.per_week');
    expect(resolveAccountInput(account(' A@X.test '), c).email).toBe('a@x.test');
  });
});

describe('restartNeeded', () => {
  it('names the settings read only at start-up; accounts, providers, trusted networks and the log level are live', () => {
    const running = config();
    const live = config({
      accounts: [account('other@x.test')],
      providers: { google: { token_url: 'https://example.test/token' } },
      inbound: { trusted_networks: ['10.0.0.0/8'] },
      log: { level: 'debug' },
    });
    expect(restartNeeded(running, live)).toEqual([]);
    const restart = config({
      listen: { host: '127.0.0.1', port: 2526 },
      store: { url: 'redis://127.0.0.1:6379' },
      inbound: { max_recipients: 5 },
      upstream: { acquire_timeout_ms: 1_000 },
      tokens: { refresh_before_expiry_ms: 700_000 },
    });
    expect(restartNeeded(running, restart)).toEqual(['listen', 'store', 'inbound.max_recipients', 'upstream.acquire_timeout_ms', 'tokens.refresh_before_expiry_ms']);
  });
});
