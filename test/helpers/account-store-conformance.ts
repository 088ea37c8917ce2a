// What every AccountStore must do, run against the embedded SQLite store and Redis, so the two
// keep accounts the same way. Sealing at rest and other keys are checked per store (how to read
// the raw bytes differs).
import { expect, it } from 'vitest';
import { accountSchema, type AccountInput } from '../../src/config/schema.js';
import { isAccountStore, type AccountStore } from '../../src/store/store.js';

export const GMAIL: AccountInput = {
  email: 'Sender@Gmail.com',
  provider: 'google',
  client_id: '1234.apps.googleusercontent.com',
  client_secret: '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1',
  refresh_token: '1//refresh-token-recognisable-R1',
};
export const OUTLOOK: AccountInput = { email: 'ops@contoso.test', provider: 'microsoft', client_id: 'app', refresh_token: 'M.refresh-recognisable-R2', tenant: 'contoso.test' };

/** Registers the shared cases; `fresh()` gives a store with no account, for each case. */
export function accountStoreConformance(fresh: () => Promise<AccountStore>): void {
  it('saves, lists by email, replaces by email (case-insensitively) and deletes', async () => {
    const store = await fresh();
    expect(isAccountStore(store)).toBe(true);
    expect(await store.listAccounts()).toEqual([]);
    await store.saveAccount(GMAIL);
    await store.saveAccount(OUTLOOK);
    const listed = await store.listAccounts();
    expect(listed.map((a) => a.config.email)).toEqual(['ops@contoso.test', 'sender@gmail.com']);
    expect(listed[1]!.config).toEqual({ ...GMAIL, email: 'sender@gmail.com' });
    expect(listed[1]!.updatedAt).toBeGreaterThan(Date.now() - 60_000);
    // What was stored loads as a relay.yaml account.
    for (const a of listed) expect(accountSchema.safeParse(a.config).success).toBe(true);

    await store.saveAccount({ ...GMAIL, email: 'SENDER@gmail.com', refresh_token: '1//second-refresh-R3' });
    const replaced = await store.listAccounts();
    expect(replaced).toHaveLength(2);
    expect(replaced.find((a) => a.config.email === 'sender@gmail.com')!.config.refresh_token).toBe('1//second-refresh-R3');

    expect(await store.deleteAccount('Sender@Gmail.com')).toBe(true);
    expect(await store.deleteAccount('sender@gmail.com')).toBe(false);
    expect((await store.listAccounts()).map((a) => a.config.email)).toEqual(['ops@contoso.test']);
  });

  it('saves several at once (an import), replacing those it names', async () => {
    const store = await fresh();
    await store.saveAccount(OUTLOOK);
    const many = Array.from({ length: 5 }, (_, i) => ({ ...GMAIL, email: `user${i}@gmail.com` }));
    await store.saveAccounts([...many, { ...OUTLOOK, client_id: 'app-2' }]);
    const listed = await store.listAccounts();
    expect(listed.map((a) => a.config.email)).toEqual(['ops@contoso.test', ...many.map((a) => a.email)]);
    expect(listed[0]!.config.client_id).toBe('app-2');
    await store.saveAccounts([]);
    expect(await store.listAccounts()).toHaveLength(6);
  });
}
