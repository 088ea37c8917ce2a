import { describe, it, expect, vi, afterEach } from 'vitest';
import { buildConfig } from '../../src/config/load.js';
import { accountFromConfig, type Account } from '../../src/routing/account.js';
import { TokenCache, type TokenCacheOptions } from '../../src/tokens/token-cache.js';
import { TokenGrantError, type Grant, type GrantResult } from '../../src/tokens/grant.js';
import type { FleetCoordination, RefreshFailure, TokenStore as Store, TokenRecord } from '../../src/store/store.js';
import { silentLogger } from '../../src/obs/logger.js';
import { enhancedCode } from '../../src/smtp/reply.js';
import { rejection } from '../helpers/thrown.js';

const HOUR = 3_600_000;

class MemoryStore implements Store {
  readonly records = new Map<string, TokenRecord>();
  saves = 0;
  async loadToken(email: string) {
    const r = this.records.get(email);
    return r ? { ...r } : null;
  }
  async saveToken(email: string, record: TokenRecord) {
    this.saves++;
    this.records.set(email, { ...record });
  }
  async deleteToken(email: string) {
    this.records.delete(email);
  }
  async close() {}
}

function makeAccounts(n: number, over: Record<string, unknown> = {}): Account[] {
  const cfg = buildConfig(
    {
      accounts: Array.from({ length: n }, (_, i) => ({
        email: `user${i}@gmail.com`,
        provider: 'google',
        client_id: 'client-id',
        refresh_token: `config-rt-${i}`,
        ...over,
      })),
    },
    null,
    { env: {}, checkHost: false },
  );
  return cfg.accounts.map((a) => accountFromConfig(a, cfg.providers));
}
const oneAccount = () => makeAccounts(1)[0]!;

interface FakeGrant {
  grant: Grant;
  calls: { email: string; refreshToken: string | null }[];
  inFlight: number;
  maxInFlight: number;
}

/**
 * A grant that answers after `delayMs` (0: on the next microtask) with access token
 * `at-<email>-<n>`. `result` may override the answer or throw.
 */
function fakeGrant(opts: { delayMs?: number; now?: () => number; result?: (n: number, account: Account) => Partial<GrantResult> } = {}): FakeGrant {
  const now = opts.now ?? Date.now;
  const state: FakeGrant = {
    calls: [],
    inFlight: 0,
    maxInFlight: 0,
    grant: async (account, refreshToken) => {
      state.calls.push({ email: account.email, refreshToken });
      const n = state.calls.length;
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      try {
        if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
        else await Promise.resolve();
        const over = opts.result?.(n, account) ?? {};
        return { accessToken: `at-${account.email}-${n}`, expiresAt: now() + HOUR, refreshToken: null, ...over };
      } finally {
        state.inFlight--;
      }
    },
  };
  return state;
}

const OPTS: TokenCacheOptions = { refreshBeforeExpiryMs: 15 * 60_000, requestTimeoutMs: 1_000, retryMinMs: 1_000, retryMaxMs: 60_000 };

const caches: TokenCache[] = [];
function makeCache(grant: Grant, store: Store = new MemoryStore(), opts: Partial<TokenCacheOptions> = {}, now?: () => number) {
  const cache = new TokenCache({ ...OPTS, ...opts }, { store, logger: silentLogger(), grant, ...(now ? { now } : {}) });
  caches.push(cache);
  return cache;
}

afterEach(() => {
  for (const c of caches.splice(0)) c.stop();
  vi.useRealTimers();
});


describe('start()', () => {
  it('fetches every account, several grants in flight at once, at most `concurrency`', async () => {
    const g = fakeGrant({ delayMs: 20 });
    const accounts = makeAccounts(20);
    const cache = makeCache(g.grant);
    await cache.start(accounts, { waitMs: 10_000, concurrency: 8 });
    expect(g.calls).toHaveLength(20);
    expect(g.maxInFlight).toBeGreaterThan(1);
    expect(g.maxInFlight).toBe(8);
    for (const a of accounts) expect(cache.current(a.email)?.value).toMatch(new RegExp(`^at-${a.email}-`));
    expect(cache.status().every((s) => s.health === 'healthy')).toBe(true);
  });

  it('respects a small concurrency bound', async () => {
    const g = fakeGrant({ delayMs: 5 });
    const cache = makeCache(g.grant);
    await cache.start(makeAccounts(10), { waitMs: 10_000, concurrency: 3 });
    expect(g.calls).toHaveLength(10);
    expect(g.maxInFlight).toBe(3);
  });

  it('returns after waitMs even when grants hang; accounts stay pending', async () => {
    const cache = makeCache(() => new Promise<GrantResult>(() => undefined));
    const [a] = makeAccounts(1);
    const t0 = Date.now();
    await cache.start([a!], { waitMs: 50, concurrency: 4 });
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(cache.current(a!.email)).toBeNull();
    expect(cache.statusOf(a!.email)?.health).toBe('pending');
  });

  it('persists fetched tokens to the store with the config credentials they derive from', async () => {
    const store = new MemoryStore();
    const a = oneAccount();
    const cache = makeCache(fakeGrant().grant, store);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(store.records.get(a.email)).toMatchObject({
      accessToken: `at-${a.email}-1`,
      refreshToken: a.refreshToken,
      configRefreshToken: a.refreshToken,
      clientId: a.clientId,
    });
  });
});

describe('current() and get()', () => {
  it('serve the cached token without calling grant', async () => {
    const g = fakeGrant();
    const a = oneAccount();
    const cache = makeCache(g.grant);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(g.calls).toHaveLength(1);
    const t = cache.current(a.email);
    expect(t?.value).toBe(`at-${a.email}-1`);
    for (let i = 0; i < 5; i++) expect(await cache.get(a)).toEqual(t);
    expect(g.calls).toHaveLength(1);
  });

  it('current() is null for an unknown account and for a token about to expire', async () => {
    let now = 1_000_000;
    const g = fakeGrant({ now: () => now, result: () => ({ expiresAt: now + 20_000 }) });
    const a = oneAccount();
    const cache = makeCache(g.grant, new MemoryStore(), {}, () => now);
    expect(cache.current('nobody@gmail.com')).toBeNull();
    await cache.get(a).catch(() => undefined);
    // A 20-second token is usable while more than a quarter of its life is left (issue 10 item 5)...
    expect(cache.current(a.email)).not.toBeNull();
    now += 16_000;
    // ...and 4 s of life left is too little to start a handshake with.
    expect(cache.current(a.email)).toBeNull();
  });

  it('30-second tokens: one grant per token, not one per message (no refreshes in pairs)', async () => {
    let now = 1_000_000;
    const g = fakeGrant({ now: () => now, result: () => ({ expiresAt: now + 30_000 }) });
    const a = oneAccount();
    const cache = makeCache(g.grant, new MemoryStore(), {}, () => now);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    // Messages over the next 10 s, one every second, some in parallel: the first token serves them all.
    for (let i = 0; i < 10; i++) {
      await Promise.all([cache.get(a), cache.get(a)]);
      now += 1_000;
    }
    expect(g.calls).toHaveLength(1);
  });

  it('single-flight: 10 concurrent get() on an account without token make one grant call', async () => {
    const g = fakeGrant({ delayMs: 10 });
    const a = oneAccount();
    const cache = makeCache(g.grant);
    const tokens = await Promise.all(Array.from({ length: 10 }, () => cache.get(a)));
    expect(g.calls).toHaveLength(1);
    expect(new Set(tokens.map((t) => t.value)).size).toBe(1);
  });
});

describe('store reuse', () => {
  const record = (a: Account, over: Partial<TokenRecord> = {}): TokenRecord => ({
    accessToken: 'stored-access-token',
    expiresAt: Date.now() + HOUR,
    refreshToken: 'stored-rotated-rt',
    configRefreshToken: a.refreshToken,
    clientId: a.clientId,
    ...over,
  });

  it('a stored unexpired record for the same config credentials means no grant at start', async () => {
    const a = oneAccount();
    const store = new MemoryStore();
    store.records.set(a.email, record(a));
    const g = fakeGrant();
    const cache = makeCache(g.grant, store);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(g.calls).toHaveLength(0);
    expect(cache.current(a.email)?.value).toBe('stored-access-token');
    expect(cache.statusOf(a.email)?.health).toBe('healthy');
  });

  it('an expired stored record still supplies the rotated refresh token', async () => {
    const a = oneAccount();
    const store = new MemoryStore();
    store.records.set(a.email, record(a, { expiresAt: Date.now() - 1_000 }));
    const g = fakeGrant();
    const cache = makeCache(g.grant, store);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(g.calls).toEqual([{ email: a.email, refreshToken: 'stored-rotated-rt' }]);
    expect(cache.current(a.email)?.value).toBe(`at-${a.email}-1`);
  });

  it('a record whose configRefreshToken differs from the config is discarded: the config refresh token is used', async () => {
    const a = oneAccount();
    const store = new MemoryStore();
    store.records.set(a.email, record(a, { configRefreshToken: 'an-older-config-rt' }));
    const g = fakeGrant();
    const cache = makeCache(g.grant, store);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(g.calls).toEqual([{ email: a.email, refreshToken: a.refreshToken }]);
    expect(cache.current(a.email)?.value).not.toBe('stored-access-token');
    expect(store.records.get(a.email)).toMatchObject({ refreshToken: a.refreshToken, configRefreshToken: a.refreshToken });
  });

  it('a record for another client_id is discarded too', async () => {
    const a = oneAccount();
    const store = new MemoryStore();
    store.records.set(a.email, record(a, { clientId: 'another-client' }));
    const g = fakeGrant();
    const cache = makeCache(g.grant, store);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(g.calls).toEqual([{ email: a.email, refreshToken: a.refreshToken }]);
  });

  it('a store that fails to read does not stop start-up', async () => {
    const a = oneAccount();
    const store = new MemoryStore();
    store.loadToken = async () => {
      throw new Error('disk on fire');
    };
    const g = fakeGrant();
    const cache = makeCache(g.grant, store);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(cache.current(a.email)).not.toBeNull();
  });
});

describe('refresh token rotation', () => {
  it('a rotated refresh token is used by the next grant and kept in the store', async () => {
    const a = oneAccount();
    const store = new MemoryStore();
    const g = fakeGrant({ result: (n) => ({ refreshToken: `rotated-rt-${n}` }) });
    const cache = makeCache(g.grant, store);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(store.records.get(a.email)).toMatchObject({ refreshToken: 'rotated-rt-1', configRefreshToken: a.refreshToken });

    await cache.replaceRejected(a, `at-${a.email}-1`);
    expect(g.calls.map((c) => c.refreshToken)).toEqual([a.refreshToken, 'rotated-rt-1']);
    expect(store.records.get(a.email)).toMatchObject({ accessToken: `at-${a.email}-2`, refreshToken: 'rotated-rt-2' });

    // after a restart the rotated token from the store is the one used
    const g2 = fakeGrant();
    store.records.set(a.email, { ...store.records.get(a.email)!, expiresAt: Date.now() - 1 });
    const cache2 = makeCache(g2.grant, store);
    await cache2.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(g2.calls).toEqual([{ email: a.email, refreshToken: 'rotated-rt-2' }]);
  });
});

describe('failures and backoff', () => {
  it('a failed grant makes get() throw TOKEN_UNAVAILABLE 454 4.7.0; within the backoff window grant is not called again', async () => {
    let now = 5_000_000;
    let fail = true;
    const g = fakeGrant({
      now: () => now,
      result: () => {
        if (fail) throw new TokenGrantError('http', 'token endpoint answered HTTP 503', 503);
        return {};
      },
    });
    const a = oneAccount();
    const cache = makeCache(g.grant, new MemoryStore(), { retryMinMs: 10_000, retryMaxMs: 60_000 }, () => now);

    const first = await rejection(cache.get(a));
    expect(first.code).toBe('TOKEN_UNAVAILABLE');
    expect(first.reply.code).toBe(454);
    expect(enhancedCode(first.reply)).toBe('4.7.0');
    expect(first.message).not.toContain(a.refreshToken);
    expect(g.calls).toHaveLength(1);
    expect(cache.statusOf(a.email)).toMatchObject({ health: 'failing', consecutiveFailures: 1 });

    // still inside the backoff window (>= 0.8 × retryMinMs): fail fast, no grant
    now += 5_000;
    for (let i = 0; i < 5; i++) {
      const err = await rejection(cache.get(a));
      expect(err.code).toBe('TOKEN_UNAVAILABLE');
      expect(err.reply.code).toBe(454);
    }
    expect(g.calls).toHaveLength(1);

    // after the window the next get() tries again, and succeeds
    now += 60_000;
    fail = false;
    const t = await cache.get(a);
    expect(t.value).toBe(`at-${a.email}-2`);
    expect(g.calls).toHaveLength(2);
    expect(cache.statusOf(a.email)).toMatchObject({ health: 'healthy', consecutiveFailures: 0, lastError: null });
  });

  it('invalid_grant marks the account needs_consent and backs off at the slowest pace', async () => {
    let now = 5_000_000;
    const g = fakeGrant({
      result: () => {
        throw new TokenGrantError('invalid_grant', 'token endpoint answered HTTP 400 invalid_grant', 400);
      },
    });
    const a = oneAccount();
    const cache = makeCache(g.grant, new MemoryStore(), { retryMinMs: 1_000, retryMaxMs: 100_000 }, () => now);
    await rejection(cache.get(a));
    expect(cache.statusOf(a.email)?.health).toBe('needs_consent');
    now += 50_000; // far beyond retryMinMs, still below 0.8 × retryMaxMs
    await rejection(cache.get(a));
    expect(g.calls).toHaveLength(1);
  });

  it('a non-TokenGrantError thrown by grant is still TOKEN_UNAVAILABLE', async () => {
    const cache = makeCache(async () => {
      throw new Error('boom');
    });
    const err = await rejection(cache.get(oneAccount()));
    expect(err.code).toBe('TOKEN_UNAVAILABLE');
  });
});

describe('replaceRejected()', () => {
  it('refreshes once even though the cached token is still valid', async () => {
    const g = fakeGrant();
    const a = oneAccount();
    const cache = makeCache(g.grant);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    const before = cache.current(a.email)!;
    const after = await cache.replaceRejected(a, before.value);
    expect(g.calls).toHaveLength(2);
    expect(after.value).not.toBe(before.value);
    expect(cache.current(a.email)?.value).toBe(after.value);
  });

  it('concurrent replaceRejected for the same rejected token share one grant; a late one gets the new token', async () => {
    const g = fakeGrant({ delayMs: 10 });
    const a = oneAccount();
    const cache = makeCache(g.grant);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    const rejected = cache.current(a.email)!.value;
    const results = await Promise.all(Array.from({ length: 8 }, () => cache.replaceRejected(a, rejected)));
    expect(g.calls).toHaveLength(2);
    expect(new Set(results.map((t) => t.value))).toEqual(new Set([`at-${a.email}-2`]));
    // someone who saw the old token refused only now: no further grant, the new token
    expect((await cache.replaceRejected(a, rejected)).value).toBe(`at-${a.email}-2`);
    expect(g.calls).toHaveLength(2);
  });

  it('a refused refresh surfaces as TOKEN_UNAVAILABLE', async () => {
    let fail = false;
    const g = fakeGrant({
      result: () => {
        if (fail) throw new TokenGrantError('timeout', 'token endpoint did not answer within 1000 ms');
        return {};
      },
    });
    const a = oneAccount();
    const cache = makeCache(g.grant);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    fail = true;
    const err = await rejection(cache.replaceRejected(a, cache.current(a.email)!.value));
    expect(err.code).toBe('TOKEN_UNAVAILABLE');
  });

  it('the same token reported again after its refresh failed backs off instead of asking again (one request per failure, not per connection)', async () => {
    let fail = false;
    const g = fakeGrant({
      result: () => {
        if (fail) throw new TokenGrantError('http', 'token endpoint answered HTTP 500', 500);
        return {};
      },
    });
    const a = oneAccount();
    const cache = makeCache(g.grant);
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    const rejected = cache.current(a.email)!.value;
    fail = true;
    expect((await rejection(cache.replaceRejected(a, rejected))).code).toBe('TOKEN_UNAVAILABLE');
    // Four more pooled connections that had authenticated with the same token see it refused.
    for (let i = 0; i < 4; i++) expect((await rejection(cache.replaceRejected(a, rejected))).code).toBe('TOKEN_UNAVAILABLE');
    expect(g.calls).toHaveLength(2); // start-up, and the one refresh
  });
});

describe('background refresh', () => {
  it('refreshes refreshBeforeExpiryMs ahead of expiry, without anyone asking', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const g = fakeGrant(); // tokens live one hour
    const a = oneAccount();
    const cache = makeCache(g.grant, new MemoryStore(), { refreshBeforeExpiryMs: 15 * 60_000 }, () => Date.now());
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(g.calls).toHaveLength(1);

    await vi.advanceTimersByTimeAsync(45 * 60_000 - 1_000);
    expect(g.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(g.calls).toHaveLength(2);
    expect(cache.current(a.email)?.value).toBe(`at-${a.email}-2`);
    // and again for the new token
    await vi.advanceTimersByTimeAsync(45 * 60_000);
    expect(g.calls).toHaveLength(3);
  });

  it('a failed background attempt is retried after the backoff delay', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    let fail = true;
    const g = fakeGrant({
      result: () => {
        if (fail) throw new TokenGrantError('network', 'token endpoint unreachable (ECONNREFUSED)');
        return {};
      },
    });
    const a = oneAccount();
    const cache = makeCache(g.grant, new MemoryStore(), { retryMinMs: 1_000, retryMaxMs: 60_000 }, () => Date.now());
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    expect(g.calls).toHaveLength(1);
    fail = false;
    await vi.advanceTimersByTimeAsync(1_300); // retryMinMs × at most 1.2 jitter
    expect(g.calls).toHaveLength(2);
    expect(cache.current(a.email)).not.toBeNull();
  });

  it('stop() cancels scheduled refreshes', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const g = fakeGrant();
    const a = oneAccount();
    const cache = makeCache(g.grant, new MemoryStore(), {}, () => Date.now());
    await cache.start([a], { waitMs: 1_000, concurrency: 1 });
    cache.stop();
    await vi.advanceTimersByTimeAsync(2 * HOUR);
    expect(g.calls).toHaveLength(1);
  });
});

/** Several instances' view of one shared store: tokens, refresh locks with TTLs, shared failures. */
class FleetMemoryStore extends MemoryStore implements FleetCoordination {
  readonly fleet: FleetCoordination = this;
  readonly locks = new Map<string, { owner: string; until: number }>();
  readonly failures = new Map<string, RefreshFailure>();
  down = false;

  async tryLock(name: string, owner: string, ttlMs: number) {
    if (this.down) throw new Error('store unreachable');
    const held = this.locks.get(name);
    if (held && held.until > Date.now()) return false;
    this.locks.set(name, { owner, until: Date.now() + ttlMs });
    return true;
  }
  async unlock(name: string, owner: string) {
    if (this.locks.get(name)?.owner === owner) this.locks.delete(name);
  }
  async saveRefreshFailure(email: string, failure: RefreshFailure | null) {
    if (failure) this.failures.set(email, failure);
    else this.failures.delete(email);
  }
  async loadRefreshFailure(email: string) {
    if (this.down) throw new Error('store unreachable');
    return this.failures.get(email) ?? null;
  }
  override async loadToken(email: string) {
    if (this.down) throw new Error('store unreachable');
    return super.loadToken(email);
  }
}

describe('a fleet sharing one store', () => {
  const fleetOf = (n: number, grant: Grant, store: FleetMemoryStore) => Array.from({ length: n }, () => makeCache(grant, store));

  it('instances starting together make one grant per account; the others read the stored token', async () => {
    const g = fakeGrant({ delayMs: 30 });
    const store = new FleetMemoryStore();
    const accounts = makeAccounts(3);
    const caches = fleetOf(3, g.grant, store);
    await Promise.all(caches.map((c) => c.start(accounts, { waitMs: 5_000, concurrency: 4 })));
    expect(g.calls).toHaveLength(3);
    for (const a of accounts) {
      const values = new Set(caches.map((c) => c.current(a.email)?.value));
      expect(values.size).toBe(1);
      expect([...values][0]).toMatch(/^at-/);
      for (const c of caches) expect(c.healthOf(a.email)).toBe('healthy');
    }
    expect(store.locks.size).toBe(0); // every lock was freed
  });

  it('30-second tokens: the other instances take the stored one instead of asking for their own', async () => {
    const g = fakeGrant({ delayMs: 30, result: () => ({ expiresAt: Date.now() + 30_000 }) });
    const store = new FleetMemoryStore();
    const accounts = makeAccounts(2);
    const caches = fleetOf(3, g.grant, store);
    await Promise.all(caches.map((c) => c.start(accounts, { waitMs: 5_000, concurrency: 4 })));
    for (const a of accounts) {
      // Every instance hands out the one token the fleet got for the account, and asks for none of its own.
      const values = await Promise.all(caches.map(async (c) => (await c.get(a)).value));
      expect(new Set(values).size).toBe(1);
      expect(values[0]).toMatch(new RegExp(`^at-${a.email}-[12]$`));
    }
    expect(g.calls).toHaveLength(2);
  });

  it('a token the provider refused on every instance is replaced once for the fleet', async () => {
    const g = fakeGrant({ delayMs: 20 });
    const store = new FleetMemoryStore();
    const a = oneAccount();
    const caches = fleetOf(2, g.grant, store);
    for (const c of caches) await c.start([a], { waitMs: 5_000, concurrency: 1 });
    expect(g.calls).toHaveLength(1);
    const refused = caches[0]!.current(a.email)!.value;
    const fresh = await Promise.all(caches.map((c) => c.replaceRejected(a, refused)));
    expect(g.calls).toHaveLength(2);
    expect(fresh[0]!.value).toBe(fresh[1]!.value);
    expect(fresh[0]!.value).not.toBe(refused);
  });

  it('a refresh that fails on the lock holder fails the waiters too, without a second request', async () => {
    const g = fakeGrant({
      delayMs: 30,
      result: () => {
        throw new TokenGrantError('http', 'token endpoint answered HTTP 500', 500);
      },
    });
    const store = new FleetMemoryStore();
    const a = oneAccount();
    const caches = fleetOf(2, g.grant, store);
    const results = await Promise.allSettled(caches.map((c) => c.get(a)));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    expect(g.calls).toHaveLength(1);
    for (const c of caches) expect(c.healthOf(a.email)).toBe('failing');
    expect(store.failures.get(a.email)?.kind).toBe('http');
  });

  it('a lock whose holder died lapses at its TTL and a waiter refreshes', async () => {
    const g = fakeGrant();
    const store = new FleetMemoryStore();
    const a = oneAccount();
    store.locks.set(`refresh:{${a.email}}`, { owner: 'a dead instance', until: Date.now() + 300 });
    const started = Date.now();
    const token = await makeCache(g.grant, store).get(a);
    expect(token.value).toBe(`at-${a.email}-1`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(g.calls).toHaveLength(1);
  });

  it('store unreachable: the instance refreshes on its own rather than serve no token', async () => {
    const g = fakeGrant();
    const store = new FleetMemoryStore();
    store.down = true;
    const a = oneAccount();
    const token = await makeCache(g.grant, store).get(a);
    expect(token.value).toBe(`at-${a.email}-1`);
    expect(g.calls).toHaveLength(1);
  });

  it('a refresh token rotated by another instance is the one the next grant uses', async () => {
    let n = 0;
    const g = fakeGrant({ result: () => ({ refreshToken: `rotated-${++n}` }) });
    const store = new FleetMemoryStore();
    const a = oneAccount();
    const [first, second] = fleetOf(2, g.grant, store);
    await first!.get(a); // grant 1 with the config's token, rotated to rotated-1
    const token = second!.current(a.email) ?? (await second!.get(a)); // reads it from the store
    expect(g.calls).toHaveLength(1);
    await second!.replaceRejected(a, token.value);
    expect(g.calls.map((c) => c.refreshToken)).toEqual([a.refreshToken, 'rotated-1']);
  });
});

describe('accounts changing at run time', () => {
  const WAIT = { waitMs: 1_000, concurrency: 4 };

  it('install() keeps the token of an account whose credentials did not change, and fetches for new ones', async () => {
    const g = fakeGrant();
    const cache = makeCache(g.grant);
    const [a, b] = makeAccounts(2);
    await cache.start([a!], WAIT);
    const token = cache.current(a!.email);
    // The same account with other settings (senders), and a new one.
    await cache.install([{ ...a!, senders: ['*@gmail.com'] }, b!], WAIT);
    expect(cache.current(a!.email)).toEqual(token);
    expect(g.calls.map((c) => c.email)).toEqual([a!.email, b!.email]);
    expect(cache.status().map((s) => s.email)).toEqual([a!.email, b!.email]);
  });

  it('install() with new credentials fetches a new token and retires the old entry: its timer no longer refreshes', async () => {
    vi.useFakeTimers();
    const g = fakeGrant({ now: () => Date.now() });
    const cache = makeCache(g.grant);
    const [a] = makeAccounts(1);
    await cache.start([a!], WAIT);
    await cache.install([{ ...a!, refreshToken: 'config-rt-new' }], WAIT);
    expect(g.calls.map((c) => c.refreshToken)).toEqual(['config-rt-0', 'config-rt-new']);
    expect(cache.current(a!.email)?.value).toBe(`at-${a!.email}-2`);
    // One entry, one schedule: a refresh ahead of expiry uses the new credentials only.
    await vi.advanceTimersByTimeAsync(HOUR - OPTS.refreshBeforeExpiryMs + 1_000);
    expect(g.calls.map((c) => c.refreshToken)).toEqual(['config-rt-0', 'config-rt-new', 'config-rt-new']);
  });

  it('remove() forgets the account and stops its refreshes; refreshNow() fetches anew, or refuses an unknown account', async () => {
    vi.useFakeTimers();
    const g = fakeGrant({ now: () => Date.now() });
    const cache = makeCache(g.grant);
    const [a, b] = makeAccounts(2);
    await cache.start([a!, b!], WAIT);
    const before = cache.current(b!.email)!;
    expect((await cache.refreshNow(b!.email)).value).not.toBe(before.value);
    cache.remove(a!.email);
    expect(cache.statusOf(a!.email)).toBeUndefined();
    await vi.advanceTimersByTimeAsync(2 * HOUR);
    expect(g.calls.filter((c) => c.email === a!.email)).toHaveLength(1);
    expect(g.calls.filter((c) => c.email === b!.email).length).toBeGreaterThan(2);
    expect((await rejection(cache.refreshNow(a!.email))).code).toBe('ACCOUNT_REMOVED');
    // A connection still opening for the removed account does not bring it back.
    expect((await rejection(cache.get(a!))).code).toBe('ACCOUNT_REMOVED');
    expect(cache.statusOf(a!.email)).toBeUndefined();
  });
});
