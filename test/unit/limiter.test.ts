// Which account of a pool the limiter picks, and what it answers when none can send.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildConfig } from '../../src/config/load.js';
import { Limiter } from '../../src/limits/limiter.js';
import { AccountPauses } from '../../src/limits/pauses.js';
import { silentLogger } from '../../src/obs/logger.js';
import { RelayError } from '../../src/errors/registry.js';
import { accountsFromConfig } from '../../src/routing/account.js';
import { Sealer } from '../../src/store/sealer.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { TokenHealth } from '../../src/tokens/token-cache.js';

const accounts = accountsFromConfig(
  buildConfig(
    {
      accounts: ['a', 'b', 'c'].map((n) => ({ email: `${n}@gmail.test`, provider: 'google', client_id: 'cid', refresh_token: 'rt', limits: { messages_per_day: 2 } })),
    },
    null,
    { env: {}, checkHost: false },
  ),
);
const [a, b, c] = accounts as [(typeof accounts)[0], (typeof accounts)[0], (typeof accounts)[0]];

let dir: string;
let store: SqliteStore;
let health: Record<string, TokenHealth>;
let limiter: Limiter;
let pauses: AccountPauses;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-limiter-'));
  store = new SqliteStore(join(dir, 'relay.db'), Sealer.fromKey(Buffer.alloc(32, 1)));
  health = { 'a@gmail.test': 'healthy', 'b@gmail.test': 'healthy', 'c@gmail.test': 'healthy' };
  pauses = new AccountPauses(store, silentLogger());
  limiter = new Limiter({ store, pauses, health: (e) => health[e] ?? null, logger: silentLogger() });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const failure = async (p: Promise<unknown>) => {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(RelayError);
  return e as RelayError;
};

describe('Limiter.pick', () => {
  it('skips a pool account that needs new consent, but a lone account is still tried (its token error is the answer)', async () => {
    health['a@gmail.test'] = 'needs_consent';
    expect((await limiter.pick([a, b])).account).toBe(b);
    expect((await limiter.pick([a])).account).toBe(a);
    health['b@gmail.test'] = 'needs_consent';
    expect((await failure(limiter.pick([a, b]))).code).toBe('TOKEN_UNAVAILABLE');
  });

  it('prefers an account whose token works over one that is failing', async () => {
    health['a@gmail.test'] = 'failing';
    expect((await limiter.pick([a, b])).account).toBe(b);
  });

  it('paused and full accounts are skipped without asking the store; the earliest retry time is the answer', async () => {
    pauses.pause('a@gmail.test', 120_000, 'daily quota: 550 5.4.5');
    for (let i = 0; i < 2; i++) expect((await limiter.pick([b])).account).toBe(b);
    const err = await failure(limiter.pick([a, b]));
    expect(err.code).toBe('ACCOUNT_LIMIT');
    expect(err.reply.code).toBe(451);
    expect(err.reply.lines[0]).toMatch(/^4\.7\.1 No account for this sender is under its sending limits, try again in 12\d s$/);
    expect(err.message).toContain('a@gmail.test: paused: daily quota');
    expect(err.message).toContain('b@gmail.test: messages_per_day 2');
    expect((await limiter.pick([a, b, c])).account).toBe(c);
  });

  it('answers without a promise when the store counts in this process, and throws a known-full refusal at once', () => {
    const first = limiter.choose([c]);
    expect(first).not.toBeInstanceOf(Promise);
    expect((first as { account: unknown }).account).toBe(c);
    limiter.choose([c]);
    expect(() => limiter.choose([c])).toThrow(RelayError);
    // Known full now: refused again without asking the store.
    expect(() => limiter.choose([c])).toThrow(/messages_per_day 2/);
  });

  it('a reservation given back makes room again on this instance at once', async () => {
    const first = await limiter.pick([c]);
    await limiter.pick([c]);
    expect((await failure(limiter.pick([c]))).code).toBe('ACCOUNT_LIMIT');
    first.reservation.unsent();
    await new Promise((r) => setImmediate(r));
    expect((await limiter.pick([c])).account).toBe(c);
  });
});
