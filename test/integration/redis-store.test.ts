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

describe('RedisStore connection slots (fleet-wide max_connections)', () => {
  let other: RedisStore;
  beforeAll(async () => {
    other = await RedisStore.open({ url: server.url, keyPrefix: PREFIX }, KEY_ENV, silentLogger());
  });
  afterAll(async () => {
    await other?.close();
  });

  it('two instances share one cap: a slot freed by one is taken by the other; an unrenewed slot lapses at its TTL', async () => {
    const mbox = 'slots@outlook.test';
    expect(await store.take(mbox, 'a:1', 3, 10_000)).toBe(true);
    expect(await other.take(mbox, 'b:1', 3, 10_000)).toBe(true);
    expect(await other.take(mbox, 'b:2', 3, 400)).toBe(true);
    expect(await store.take(mbox, 'a:2', 3, 10_000)).toBe(false);
    // Taking a slot one already holds is a renewal, not a fourth.
    expect(await other.take(mbox, 'b:1', 3, 10_000)).toBe(true);
    await store.give(mbox, 'a:1');
    expect(await store.take(mbox, 'a:2', 3, 10_000)).toBe(true);
    expect(await store.take(mbox, 'a:3', 3, 10_000)).toBe(false);
    // b:2 dies with its instance: nobody renews it, and its slot is free after its TTL.
    await sleep(500);
    expect(await store.take(mbox, 'a:3', 3, 10_000)).toBe(true);
    // One sorted set per mailbox, its name carrying the mailbox in a hash tag (one Cluster slot).
    expect(await raw.zrange(`${PREFIX}conn-slots:{${mbox}}`, '0', '-1')).toEqual(expect.arrayContaining(['a:2', 'a:3', 'b:1']));
  });

  it('renewal keeps held slots, takes a lapsed one back when there is room, and reports it lost when not', async () => {
    const mbox = 'renew@outlook.test';
    expect(await store.take(mbox, 'a:1', 2, 300)).toBe(true);
    expect(await store.renew(mbox, ['a:1'], 2, 10_000)).toEqual([]);
    await sleep(400);
    expect(await store.take(mbox, 'x:1', 2, 300)).toBe(true); // a:1 kept: renewed past 300 ms
    expect(await store.take(mbox, 'x:2', 2, 10_000)).toBe(false);
    await sleep(400); // x:1 lapses
    expect(await store.renew(mbox, ['x:1'], 2, 10_000)).toEqual([]); // room: taken back
    await store.give(mbox, 'x:1');
    expect(await other.take(mbox, 'b:1', 2, 10_000)).toBe(true);
    expect(await store.renew(mbox, ['x:1'], 2, 10_000)).toEqual(['x:1']); // full: lost
  });

  it('a waiting instance is heard by the others, not by itself', async () => {
    const heard: string[] = [];
    const mine: string[] = [];
    other.onWanted((email) => heard.push(email));
    store.onWanted((email) => mine.push(email));
    store.want('busy@outlook.test');
    await until(() => heard.length > 0, 2_000, 'the want heard');
    expect(heard).toEqual(['busy@outlook.test']);
    await sleep(100);
    expect(mine).toEqual([]);
  });
});

describe('RedisStore account changes across instances', () => {
  it('a change saved through one instance is announced to the others within 2 s (and by the version poll if the message is missed)', async () => {
    const prefix = 'feed-test:';
    const a = await RedisStore.open({ url: server.url, keyPrefix: prefix }, KEY_ENV, silentLogger());
    const b = await RedisStore.open({ url: server.url, keyPrefix: prefix }, KEY_ENV, silentLogger());
    const c = await RedisStore.open({ url: server.url, keyPrefix: prefix, pollMs: 200 }, KEY_ENV, silentLogger());
    try {
      let seenB = 0;
      let seenA = 0;
      b.onAccountsChanged(() => seenB++);
      a.onAccountsChanged(() => seenA++);
      await sleep(300); // b's subscription and first poll
      const started = Date.now();
      await a.saveAccount(GMAIL);
      await until(() => seenB > 0, 2_000, 'b told of the change');
      expect(Date.now() - started).toBeLessThan(2_000);
      await a.deleteAccount(GMAIL.email);
      await until(() => seenB > 1, 2_000, 'b told of the removal');
      await sleep(1_200); // a's own poll must not take its own change for news
      expect(seenA).toBe(0);
      // A message nobody hears (as while a subscriber reconnects): the version poll still tells c.
      let seenC = 0;
      c.onAccountsChanged(() => seenC++);
      await sleep(300);
      await raw.incr(`${prefix}accounts-version`);
      await until(() => seenC > 0, 2_000, 'c saw the version move');
    } finally {
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });
});

describe('RedisStore write health', () => {
  it('writes refused (min-replicas-to-write with no replica): /readyz 503, the metric, the status; then recovery', async () => {
    const stack = await startStack({
      accounts: [{ email: 'health@gmail.test', kind: 'google', senders: ['health@gmail.test'], extra: { limits: { ...NO_LIMITS, messages_per_day: 100 } } }],
      overrides: { store: { url: server.url, key_prefix: 'health-test:' }, http: { host: '127.0.0.1', port: 0 } },
    });
    const get = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${stack.app.adminPort}${path}`, { headers: stack.adminAuth() });
      return { status: res.status, text: await res.text() };
    };
    try {
      expect((await get('/readyz')).status).toBe(200);
      expect((await get('/metrics')).text).toMatch(/^xoauth2_relay_store_failing 0$/m);
      await raw.config('SET', 'min-replicas-to-write', '1');
      // A message with a counted limit writes at MAIL: refused as a 4xx, nothing sent.
      const { client } = await RawSmtp.connect(stack.port);
      await client.cmd('EHLO mta.test');
      expect(line(await client.cmd('MAIL FROM:<health@gmail.test>'))).toMatch(/^451 4\.3\.0 /);
      client.close();
      const down = await get('/readyz');
      expect(down.status).toBe(503);
      expect(down.text).toMatch(/NOREPLICAS/);
      expect((await get('/metrics')).text).toMatch(/^xoauth2_relay_store_failing 1$/m);
      expect(JSON.parse((await get('/api/status')).text).store.failing).toBe(true);
      // The status page shows it, and the account with a counted limit as unable to send.
      const page = JSON.parse((await get('/status.json')).text) as { readiness: { store_problem: string | null; unable: Array<{ email: string; state: string }> } };
      expect(page.readiness.store_problem).toMatch(/^the shared store refuses writes \(.*NOREPLICAS/);
      expect(page.readiness.unable).toEqual([expect.objectContaining({ email: 'health@gmail.test', state: 'store_failing' })]);
      await raw.config('SET', 'min-replicas-to-write', '0');
      // No message needed: the store's probe write sees writes work again.
      const deadline = Date.now() + 5_000;
      while ((await get('/readyz')).status !== 200) {
        if (Date.now() > deadline) throw new Error('not ready again within 5 s of writes working');
        await sleep(100);
      }
      expect((await get('/metrics')).text).toMatch(/^xoauth2_relay_store_failing 0$/m);
      expect(await sendOnce(stack.port, 'health@gmail.test', ['r@example.net'], rawMessage('health@gmail.test', ['r@example.net'], 'health'))).toMatch(/^250 /);
    } finally {
      await raw.config('SET', 'min-replicas-to-write', '0');
      await stack.stop();
    }
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
