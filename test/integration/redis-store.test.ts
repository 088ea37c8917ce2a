// The shared store against a real redis-server: the quota and account conformance cases, sealed
// tokens and accounts, refresh locks and shared failures, and what happens while Redis is down
// and after it returns.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { NO_LIMITS } from '../../src/config/account-limits.js';
import { silentLogger } from '../../src/obs/logger.js';
import { RelayError } from '../../src/errors/registry.js';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { RedisStore } from '../../src/store/redis-store.js';
import type { TokenRecord } from '../../src/store/store.js';
import { accountStoreConformance, GMAIL } from '../helpers/account-store-conformance.js';
import { quotaConformance } from '../helpers/quota-conformance.js';
import { RedisServer } from '../helpers/redis-server.js';
import { line, RawSmtp, sendOnce } from '../helpers/smtp-client.js';
import { KEY_ENV, rawMessage, startStack, type Stack } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

let server: RedisServer;
let store: RedisStore;
let raw: Redis;
const PREFIX = 'store-test:';

beforeAll(async () => {
  server = await RedisServer.start();
  store = await RedisStore.open({ url: server.url, keyPrefix: PREFIX }, KEY_ENV, silentLogger());
  raw = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  raw.on('error', () => undefined); // it reconnects through the outage test like the store does
  await raw.connect();
});
afterAll(async () => {
  raw?.disconnect();
  await store?.close();
  await server?.stop();
});

describe('RedisStore quotas (conformance)', () => {
  quotaConformance(() => store);
});

describe('RedisStore', () => {
  const RECORD: TokenRecord = {
    accessToken: 'ya29.redis-access-secret-A1',
    expiresAt: 1_900_000_000_000,
    refreshToken: '1//redis-refresh-secret-R2',
    configRefreshToken: '1//redis-config-secret-C3',
    clientId: 'cid',
  };

  it('keeps tokens sealed: the bytes in Redis hold no secret, and the record reads back', async () => {
    await store.saveToken('t@x.test', RECORD);
    const bytes = await raw.getBuffer(`${PREFIX}token:{t@x.test}`);
    expect(bytes?.length).toBeGreaterThan(0);
    for (const secret of [RECORD.accessToken, RECORD.refreshToken!, RECORD.configRefreshToken!]) expect(bytes!.includes(Buffer.from(secret))).toBe(false);
    expect(await store.loadToken('t@x.test')).toEqual(RECORD);
    const other = await RedisStore.open({ url: server.url, keyPrefix: PREFIX }, { XOAUTH2_RELAY_KEY: 'b'.repeat(64) }, silentLogger());
    try {
      expect(await other.loadToken('t@x.test')).toBeNull(); // another key opens nothing
    } finally {
      await other.close();
    }
  });

  it('without XOAUTH2_RELAY_KEY it is a config error: every instance must share the key', async () => {
    await expect(RedisStore.open({ url: server.url, keyPrefix: PREFIX }, {}, silentLogger())).rejects.toBeInstanceOf(ConfigError);
  });

  it('a lock has one holder, is freed only by it, and lapses at its TTL', async () => {
    expect(await store.tryLock('refresh:{l@x.test}', 'one', 300)).toBe(true);
    expect(await store.tryLock('refresh:{l@x.test}', 'two', 300)).toBe(false);
    await store.unlock('refresh:{l@x.test}', 'two');
    expect(await store.tryLock('refresh:{l@x.test}', 'two', 300)).toBe(false);
    await store.unlock('refresh:{l@x.test}', 'one');
    expect(await store.tryLock('refresh:{l@x.test}', 'two', 150)).toBe(true);
    await sleep(250);
    expect(await store.tryLock('refresh:{l@x.test}', 'three', 150)).toBe(true);
  });

  it('a shared refresh failure reads back until its backoff ends, and can be cleared', async () => {
    const failure = { by: 'instance-a', at: Date.now(), retryAt: Date.now() + 1_000, kind: 'http', message: 'token endpoint answered HTTP 500' };
    await store.saveRefreshFailure('f@x.test', failure);
    expect(await store.loadRefreshFailure('f@x.test')).toEqual(failure);
    await store.saveRefreshFailure('f@x.test', null);
    expect(await store.loadRefreshFailure('f@x.test')).toBeNull();
  });

  it('the Lua reservation costs about a loopback round trip (measured for the comment in redis-scripts.ts)', async () => {
    const counters = ['messages_per_minute', 'messages_per_hour', 'messages_per_day', 'recipients_per_day'].map((name) => ({
      counter: { name, limit: 1_000_000, bucketMs: 10_000, buckets: 6 },
      amount: 1,
    }));
    const n = 2_000;
    const started = performance.now();
    for (let i = 0; i < n; i++) await store.reserve('bench@x.test', counters);
    const perOpMs = (performance.now() - started) / n;
    console.log(`[redis] RESERVE with 4 counters: ${(perOpMs * 1000).toFixed(0)} µs per call, sequential, ${n} calls`);
    expect(perOpMs).toBeLessThan(5);
  });

  it('Redis down: calls fail at once as STORE_UNAVAILABLE (451 4.3.0), and work again when it returns', async () => {
    const day = { counter: { name: 'messages_per_day', limit: 10, bucketMs: 3_600_000, buckets: 24 }, amount: 1 };
    expect((await store.reserve('down@x.test', [day])).ok).toBe(true);
    await server.pause();
    try {
      const started = performance.now();
      const err = await store.reserve('down@x.test', [day]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RelayError);
      expect((err as RelayError).code).toBe('STORE_UNAVAILABLE');
      expect((err as RelayError).reply.code).toBe(451);
      expect((err as RelayError).message).not.toContain('redis://');
      expect(performance.now() - started).toBeLessThan(2_500);
      await expect(store.loadToken('t@x.test')).rejects.toBeInstanceOf(RelayError);
    } finally {
      await server.resume();
    }
    await until(() => store.connected, 5_000, 'reconnected');
    // The restarted Redis kept nothing (no persistence): counting starts afresh.
    const r = await store.reserve('down@x.test', [day]);
    expect(r.ok && r.left.messages_per_day).toBe(9);
  });
});

describe('RedisStore accounts', () => {
  let n = 0;
  const extra: RedisStore[] = [];
  afterAll(async () => {
    for (const s of extra) await s.close();
  });
  const fresh = async (prefix = `accounts-test-${n++}:`, env: NodeJS.ProcessEnv = KEY_ENV) => {
    const s = await RedisStore.open({ url: server.url, keyPrefix: prefix }, env, silentLogger());
    extra.push(s);
    return s;
  };

  accountStoreConformance(() => fresh());

  it('keeps accounts sealed: the bytes in Redis hold no secret; another key reads none; an account is not a token', async () => {
    const store = await fresh('accounts-sealed:');
    await store.saveAccount(GMAIL);
    const bytes = Object.values(await raw.hgetallBuffer('accounts-sealed:accounts'));
    expect(bytes).toHaveLength(1);
    for (const secret of [GMAIL.client_secret!, GMAIL.refresh_token!]) expect(bytes[0]!.includes(Buffer.from(secret))).toBe(false);
    expect((await (await fresh('accounts-sealed:')).listAccounts())[0]!.config.refresh_token).toBe(GMAIL.refresh_token);
    expect(await (await fresh('accounts-sealed:', { XOAUTH2_RELAY_KEY: 'b'.repeat(64) })).listAccounts()).toEqual([]);
    // Copied into a token's place, the sealed account does not open as a token.
    await raw.set('accounts-sealed:token:{sender@gmail.com}', bytes[0]!);
    expect(await store.loadToken('sender@gmail.com')).toBeNull();
  });
});

describe('a relay whose Redis is unreachable from the start', () => {
  it('starts anyway; limited accounts get 451 4.3.0 at MAIL, unlimited ones keep sending', async () => {
    const stack = await startStack({
      accounts: [
        { email: 'limited@gmail.test', kind: 'google', senders: ['limited@gmail.test'], extra: { limits: { ...NO_LIMITS, messages_per_day: 100 } } },
        { email: 'free@gmail.test', kind: 'google', senders: ['free@gmail.test'] },
      ],
      // Nothing listens on port 1: every connection attempt is refused.
      overrides: { store: { url: 'redis://127.0.0.1:1' } },
    });
    try {
      const { client } = await RawSmtp.connect(stack.port);
      await client.cmd('EHLO mta.test');
      expect(line(await client.cmd('MAIL FROM:<limited@gmail.test>'))).toMatch(/^451 4\.3\.0 Sending limits cannot be checked/);
      expect((await client.cmd('MAIL FROM:<free@gmail.test>')).code).toBe(250);
      expect((await client.cmd('RCPT TO:<r@example.net>')).code).toBe(250);
      await client.cmd('DATA');
      client.write(rawMessage('free@gmail.test', ['r@example.net'], 'no-redis') + '.\r\n');
      expect(line(await client.read())).toMatch(/^250 /);
      client.close();
      // Tokens were fetched without the fleet lock rather than not at all.
      expect(stack.app.relay.tokens.healthOf('free@gmail.test')).toBe('healthy');
    } finally {
      await stack.stop();
    }
  });

  it('runs the stored accounts as soon as Redis answers', async () => {
    const sandbox = await SandboxProvider.start();
    const late = sandbox.addAccount({ email: 'late@gmail.test', kind: 'google' });
    const keyPrefix = 'late-accounts:';
    const seed = await RedisStore.open({ url: server.url, keyPrefix }, KEY_ENV, silentLogger());
    await seed.saveAccount({ email: late.email, provider: 'google', client_id: late.clientId, client_secret: late.clientSecret!, refresh_token: late.refreshToken, senders: [late.email] });
    await seed.close();
    // Snapshot to disk: the Redis that comes back loads it (the test server keeps nothing otherwise).
    await raw.save();
    await server.pause();
    let stack: Stack | null = null;
    try {
      stack = await startStack({ accounts: [{ email: 'free@gmail.test', kind: 'google' }], provider: sandbox, overrides: { store: { url: server.url, key_prefix: keyPrefix } } });
      expect(stack.app.relay.router.account(late.email)).toBeNull();
      await server.resume();
      await until(() => stack!.app.relay.router.account(late.email) !== null, 10_000, 'stored account loaded');
      expect(await sendOnce(stack.port, late.email, ['r@example.net'], rawMessage(late.email, ['r@example.net'], 'late'))).toMatch(/^250 /);
    } finally {
      await server.resume().catch(() => undefined);
      await stack?.stop();
      await sandbox.stop();
    }
  });
});
