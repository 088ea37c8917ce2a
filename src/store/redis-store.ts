// The shared store (`store: { url: redis://host:port }`): several relay instances on one Redis
// act as one relay. Tokens are sealed with the same AES-256-GCM as the embedded store (the key
// from XOAUTH2_RELAY_KEY, the same on every instance); quotas are counted by Lua scripts,
// atomically across the fleet; refresh locks and failures coordinate token refreshes. Accounts
// kept in the store (not in relay.yaml) are sealed like tokens, one hash field per account.
//
// Redis unreachable: commands fail at once (no offline queue, so nothing waits on a dead
// socket) and every caller turns that into a 4xx or a log line; ioredis reconnects in the
// background and the store works again as soon as Redis answers.
//
// Every key of one account carries the account in a hash tag ({email}) so a multi-key script
// stays within one slot should the store ever be a Redis Cluster.
//
// Fleet coordination beyond counting (issue 22): upstream connection slots per mailbox (a sorted
// set per mailbox, SLOT_* scripts), one pub/sub channel on which instances say they wait for a
// slot or changed the stored accounts, and an accounts version counter polled every second in
// case a message on the channel was missed. Writes refused by a Redis that answers are tracked
// like the SQLite store's (StoreHealth): /readyz answers 503 until a write succeeds; a probe
// write every few seconds notices failure and recovery when no message is flowing.
import { randomBytes } from 'node:crypto';
import { Redis, ReplyError } from 'ioredis';
import type { Logger } from 'pino';
import { RelayError } from '../errors/registry.js';
import { RELEASE_LUA, RESERVE_LUA, SLOT_RENEW_LUA, SLOT_TAKE_LUA, UNLOCK_LUA } from './redis-scripts.js';
import { INSTANCE_ID } from './instance.js';
import { redisTarget } from './redis-target.js';
import { Sealer } from './sealer.js';
import { StoreHealth } from './store-health.js';
import type { AccountInput } from '../config/schema.js';
import type {
  AccountPause,
  AccountChangeFeed,
  AccountStore,
  Charge,
  Charged,
  ConnectionSlots,
  FleetCoordination,
  RefreshFailure,
  ReserveResult,
  Store,
  StoredAccount,
  TokenRecord,
} from './store.js';

export interface RedisStoreOptions {
  url: string;
  keyPrefix: string;
  /** How long open() waits for the first connection before going on without it. */
  connectWaitMs?: number;
  /** Bound on every command, so a Redis that hangs cannot hold a message. */
  commandTimeoutMs?: number;
  /** How often the accounts version is polled (the fallback of the pub/sub channel). */
  pollMs?: number;
  /** How often a write is tried to see that writes work (more often while they fail). */
  probeMs?: number;
}

type Scripted = Redis & {
  xrReserve(numKeys: number, ...args: Array<string | number>): Promise<number[]>;
  xrRelease(numKeys: number, ...args: Array<string | number>): Promise<number>;
  xrUnlock(numKeys: number, ...args: Array<string | number>): Promise<number>;
  xrSlotTake(key: string, ...args: Array<string | number>): Promise<number>;
  xrSlotRenew(key: string, ...args: Array<string | number>): Promise<string[]>;
};

/** What instances tell each other on the channel. */
type FleetEvent = { kind: 'want'; from: string; email: string } | { kind: 'accounts'; from: string };

const tokenKey = (email: string) => `token:{${email}}`;
const failureKey = (email: string) => `refresh-failure:{${email}}`;
const quotaKey = (email: string, counter: string) => `quota:{${email}}:${counter}`;
const slotsKey = (email: string) => `conn-slots:{${email}}`;
const PAUSES = 'pauses';
/** Bumped after every change of the stored accounts: the fallback of the channel's message. */
const ACCOUNTS_VERSION = 'accounts-version';
/** One hash for every stored account: listing is one HGETALL, an import one HSET. */
const ACCOUNTS = 'accounts';
// Distinct from a token's (the bare email), so a sealed account cannot be passed off as a token.
const accountAad = (email: string) => `account:${email}`;
const normalEmail = (email: string) => email.trim().toLowerCase();

export class RedisStore implements Store, FleetCoordination, AccountStore, ConnectionSlots, AccountChangeFeed {
  readonly fleet: FleetCoordination = this;
  readonly connectionSlots: ConnectionSlots = this;
  readonly accountChanges: AccountChangeFeed = this;
  readonly health = new StoreHealth();
  /** Tells this store's messages on the channel from the others' (two may share a process: the CLI's, tests). */
  private readonly instance = randomBytes(6).toString('hex');
  private readonly wantedListeners = new Set<(email: string) => void>();
  private readonly accountListeners = new Set<() => void>();
  private subscriber: Redis | null = null;
  private accountsVersion: string | null = null;
  private readonly timers: NodeJS.Timeout[] = [];
  private up = false;
  private closing = false;

  private constructor(
    private readonly redis: Scripted,
    private readonly sealer: Sealer,
    private readonly logger: Logger,
    private readonly endpoint: string,
    private readonly channel: string,
  ) {
    redis.on('ready', () => {
      if (!this.up) logger.info({ event: 'store_connected', store: endpoint, instance: INSTANCE_ID }, 'shared store reachable');
      this.up = true;
    });
    // ioredis emits 'error' on every failed reconnect attempt: one line per outage, not per attempt.
    const down = (err?: Error) => {
      if (this.up && !this.closing) {
        logger.warn({ event: 'store_unreachable', store: endpoint, error: err?.message ?? 'connection closed' }, 'shared store unreachable; sending limits answer 451 until it returns');
      }
      this.up = false;
    };
    redis.on('error', down);
    redis.on('close', () => down());
    this.restartWhenEnded(redis);
  }

  /**
   * ioredis gives a Sentinel connection up for good (status `end`, no more retries) when its
   * failover detector hears +switch-master while a reconnection is still asking a sentinel: the
   * detector clears the connector's `connecting` flag, the reconnection then rejects with
   * "Connection is closed." and Redis#_connect takes that for a deliberate close
   * (ioredis 6.0.0, SentinelConnector#connect). Nothing here closed it, so it starts again.
   */
  private restartWhenEnded(redis: Redis): void {
    redis.on('end', () => {
      if (this.closing) return;
      setTimeout(() => {
        if (!this.closing && redis.status === 'end') redis.connect().catch(() => undefined);
      }, 100).unref();
    });
  }

  static async open(opts: RedisStoreOptions, env: NodeJS.ProcessEnv, logger: Logger): Promise<RedisStore> {
    const sealer = Sealer.fromSharedEnv(env);
    const target = redisTarget(opts.url);
    const options = {
      ...target.options,
      keyPrefix: opts.keyPrefix,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: opts.commandTimeoutMs ?? 2_000,
      connectTimeout: 2_000,
      // Reconnect for ever, at most a second apart, so service resumes soon after Redis does.
      retryStrategy: (attempt: number) => Math.min(attempt * 100, 1_000),
      // Sentinel: ask the sentinels again at once when one announces a new primary, and
      // reconnect when a demoted primary answers a write with READONLY.
      failoverDetector: true,
      sentinelRetryStrategy: (attempt: number) => Math.min(attempt * 100, 1_000),
      // Without it a sentinel that accepts the connection but never answers (a frozen host)
      // holds a reconnection for ever: ioredis would ask it and wait, never trying the next.
      sentinelCommandTimeout: 2_000,
      reconnectOnError: (err: Error) => err.message.startsWith('READONLY'),
    };
    const redis = (target.url ? new Redis(target.url, options) : new Redis(options)) as Scripted;
    redis.defineCommand('xrReserve', { lua: RESERVE_LUA });
    redis.defineCommand('xrRelease', { lua: RELEASE_LUA });
    redis.defineCommand('xrUnlock', { lua: UNLOCK_LUA });
    redis.defineCommand('xrSlotTake', { numberOfKeys: 1, lua: SLOT_TAKE_LUA });
    redis.defineCommand('xrSlotRenew', { numberOfKeys: 1, lua: SLOT_RENEW_LUA });
    const store = new RedisStore(redis, sealer, logger, target.endpoint, `${opts.keyPrefix}events`);
    store.follow(opts.pollMs ?? 1_000, opts.probeMs ?? 5_000);
    // Start-up reads stored tokens: give the first connection a moment, but never hang on it.
    if (redis.status !== 'ready') {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise((resolve) => redis.once('ready', resolve)),
        new Promise((resolve) => (timer = setTimeout(resolve, opts.connectWaitMs ?? 3_000))),
      ]);
      clearTimeout(timer);
    }
    if (!store.up) logger.warn({ event: 'store_unreachable', store: store.endpoint }, 'shared store unreachable at start-up; retrying in the background');
    return store;
  }

  get connected(): boolean {
    return this.up;
  }

  async loadToken(email: string): Promise<TokenRecord | null> {
    const blob = await this.call('load a token', () => this.redis.getBuffer(tokenKey(email)));
    if (!blob) return null;
    const json = this.sealer.open(blob, email);
    return json ? (JSON.parse(json) as TokenRecord) : null;
  }

  async saveToken(email: string, record: TokenRecord): Promise<void> {
    await this.write('save a token', () => this.redis.set(tokenKey(email), this.sealer.seal(JSON.stringify(record), email)));
  }

  async deleteToken(email: string): Promise<void> {
    await this.write('delete a token', () => this.redis.del(tokenKey(email)));
  }

  async saveAccount(config: AccountInput): Promise<void> {
    await this.saveAccounts([config]);
  }

  async saveAccounts(configs: readonly AccountInput[]): Promise<void> {
    if (!configs.length) return;
    const updatedAt = Date.now();
    const fields = configs.flatMap((c) => {
      const email = normalEmail(c.email);
      const record: StoredAccount = { config: { ...c, email }, updatedAt };
      return [email, this.sealer.seal(JSON.stringify(record), accountAad(email))];
    });
    // One HSET with every field: atomic, so an import lands whole or not at all.
    await this.write('save accounts', () => this.redis.hset(ACCOUNTS, ...fields));
    await this.accountsChanged();
  }

  async listAccounts(): Promise<StoredAccount[]> {
    const all = await this.call('read accounts', () => this.redis.hgetallBuffer(ACCOUNTS));
    const out: StoredAccount[] = [];
    for (const email of Object.keys(all).sort()) {
      const json = this.sealer.open(all[email]!, accountAad(email));
      if (json) out.push(JSON.parse(json) as StoredAccount);
    }
    return out;
  }

  async deleteAccount(email: string): Promise<boolean> {
    const deleted = (await this.write('delete an account', () => this.redis.hdel(ACCOUNTS, normalEmail(email)))) > 0;
    if (deleted) await this.accountsChanged();
    return deleted;
  }

  /**
   * The other instances run the change within a second or two: a message on the channel, and the
   * version they poll should that message be lost (a subscriber reconnecting). Best effort after
   * the write succeeded: the caller's change is saved either way.
   */
  private async accountsChanged(): Promise<void> {
    try {
      // This instance has run its own change: its poll should not take the new version for news.
      this.accountsVersion = String(await this.redis.incr(ACCOUNTS_VERSION));
      await this.publish({ kind: 'accounts', from: this.instance });
    } catch (e) {
      this.logger.warn({ event: 'store_error', error: (e as Error).message }, 'accounts saved; the other instances will see the change at their next reload');
    }
  }

  onAccountsChanged(listener: () => void): void {
    this.accountListeners.add(listener);
  }

  async take(email: string, holder: string, cap: number, ttlMs: number): Promise<boolean> {
    return (await this.write('take a connection slot', () => this.redis.xrSlotTake(slotsKey(email), holder, cap, ttlMs))) === 1;
  }

  async renew(email: string, holders: readonly string[], cap: number, ttlMs: number): Promise<string[]> {
    if (!holders.length) return [];
    return this.write('renew connection slots', () => this.redis.xrSlotRenew(slotsKey(email), cap, ttlMs, ...holders));
  }

  async give(email: string, holder: string): Promise<void> {
    await this.write('give back a connection slot', () => this.redis.zrem(slotsKey(email), holder));
  }

  want(email: string): void {
    this.publish({ kind: 'want', from: this.instance, email }).catch(() => undefined);
  }

  onWanted(listener: (email: string) => void): void {
    this.wantedListeners.add(listener);
  }

  private async publish(event: FleetEvent): Promise<void> {
    await this.redis.publish(this.channel, JSON.stringify(event));
  }

  /** Subscribes to the channel and starts the version poll and the write probe. */
  private follow(pollMs: number, probeMs: number): void {
    // A subscribed connection takes no other command; its own queue holds SUBSCRIBE until it connects.
    const sub = this.redis.duplicate({ enableOfflineQueue: true, keyPrefix: '' });
    this.subscriber = sub;
    this.restartWhenEnded(sub);
    sub.on('error', () => undefined); // the main connection logs outages
    sub.on('message', (_channel: string, raw: string) => this.heard(raw));
    sub.subscribe(this.channel).catch(() => undefined);
    const every = (ms: number, fn: () => Promise<void>) => {
      let busy = false;
      const t = setInterval(() => {
        if (busy || this.closing) return;
        busy = true;
        fn().finally(() => (busy = false));
      }, ms);
      t.unref();
      this.timers.push(t);
    };
    every(pollMs, () => this.pollAccountsVersion());
    // Every probeMs, and every second while writes fail so the recovery is seen soon.
    let lastProbe = 0;
    every(Math.min(1_000, probeMs), async () => {
      if (!this.health.failing && Date.now() - lastProbe < probeMs) return;
      lastProbe = Date.now();
      await this.write('check that writes work', () => this.redis.set(`alive:${this.instance}`, '1', 'PX', 60_000)).catch(() => undefined);
    });
  }

  private heard(raw: string): void {
    let event: FleetEvent;
    try {
      event = JSON.parse(raw) as FleetEvent;
    } catch {
      return;
    }
    if (event.from === this.instance) return;
    if (event.kind === 'want') for (const l of this.wantedListeners) l(event.email);
    else this.emitAccountsChanged();
  }

  private async pollAccountsVersion(): Promise<void> {
    const version = await this.redis.get(ACCOUNTS_VERSION).then((v) => v ?? '0', () => null);
    if (version === null) return;
    const before = this.accountsVersion;
    this.accountsVersion = version;
    // The first read sets the mark: the accounts loaded at start-up are that version or later.
    if (before !== null && version !== before) this.emitAccountsChanged();
  }

  private emitAccountsChanged(): void {
    for (const l of this.accountListeners) {
      try {
        l();
      } catch (e) {
        this.logger.warn({ event: 'store_error', error: (e as Error).message }, 'could not follow a change of the stored accounts');
      }
    }
  }

  async reserve(email: string, charges: readonly Charge[]): Promise<ReserveResult> {
    if (!charges.length) return { ok: true, charged: [], left: {} };
    const keys = charges.map((c) => quotaKey(email, c.counter.name));
    const args = charges.flatMap((c) => [c.counter.limit, c.counter.bucketMs, c.counter.buckets, c.amount]);
    const r = await this.write('count against sending limits', () => this.redis.xrReserve(keys.length, ...keys, ...args));
    if (r[0] !== 1) {
      const c = charges[r[1]! - 1]!.counter;
      return { ok: false, counter: c.name, limit: c.limit, retryInMs: r[2]! };
    }
    const left: Record<string, number> = {};
    const charged = charges.map((c, i) => {
      left[c.counter.name] = r[2 + 2 * i]!;
      return { counter: c.counter.name, bucket: r[1 + 2 * i]!, amount: c.amount };
    });
    return { ok: true, charged, left };
  }

  async release(email: string, charged: readonly Charged[]): Promise<void> {
    if (!charged.length) return;
    const keys = charged.map((c) => quotaKey(email, c.counter));
    const args = charged.flatMap((c) => [c.bucket, c.amount]);
    await this.write('give back a reservation', () => this.redis.xrRelease(keys.length, ...keys, ...args));
  }

  async savePause(email: string, pause: AccountPause): Promise<void> {
    await this.write('share a pause', () => this.redis.hset(PAUSES, email, JSON.stringify(pause)));
  }

  async loadPauses(): Promise<Map<string, AccountPause>> {
    const all = await this.call('read pauses', () => this.redis.hgetall(PAUSES));
    const now = Date.now();
    const out = new Map<string, AccountPause>();
    const expired: string[] = [];
    for (const [email, json] of Object.entries(all)) {
      const p = JSON.parse(json) as AccountPause;
      if (p.until > now) out.set(email, p);
      else expired.push(email);
    }
    if (expired.length) await this.redis.hdel(PAUSES, ...expired).catch(() => undefined);
    return out;
  }

  async tryLock(name: string, owner: string, ttlMs: number): Promise<boolean> {
    const r = await this.write('take a lock', () => this.redis.set(`lock:${name}`, owner, 'PX', ttlMs, 'NX'));
    return r === 'OK';
  }

  async unlock(name: string, owner: string): Promise<void> {
    await this.write('free a lock', () => this.redis.xrUnlock(1, `lock:${name}`, owner));
  }

  async saveRefreshFailure(email: string, failure: RefreshFailure | null): Promise<void> {
    if (!failure) {
      await this.write('clear a refresh failure', () => this.redis.del(failureKey(email)));
      return;
    }
    // It lapses with its backoff: nobody needs to clear a failure nobody will act on.
    const ttl = Math.max(1_000, failure.retryAt - Date.now());
    await this.write('share a refresh failure', () => this.redis.set(failureKey(email), JSON.stringify(failure), 'PX', ttl));
  }

  async loadRefreshFailure(email: string): Promise<RefreshFailure | null> {
    const json = await this.call('read a refresh failure', () => this.redis.get(failureKey(email)));
    return json ? (JSON.parse(json) as RefreshFailure) : null;
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.timers) clearInterval(t);
    this.subscriber?.disconnect();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /**
   * call() for a command that writes: its outcome is the store's write health. Only a refusal
   * by a Redis that answers counts (NOREPLICAS, OOM, MISCONF, READONLY: writes failing like a
   * full disk); a Redis out of reach is reported as such (`connected`, src/admin/health.ts), and
   * accounts that need no store keep the instance ready meanwhile.
   */
  private async write<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      const r = await this.call(what, fn);
      this.health.succeeded();
      return r;
    } catch (e) {
      if ((e as Error).cause instanceof ReplyError) this.health.failed(e);
      throw e;
    }
  }

  /** Every command fails as STORE_UNAVAILABLE (451 4.3.0 on a message's path), never as a crash. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw new RelayError('STORE_UNAVAILABLE', `could not ${what} (${this.endpoint}): ${(e as Error).message}`, { cause: e });
    }
  }
}
