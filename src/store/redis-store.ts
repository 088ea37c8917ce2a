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
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { RelayError } from '../errors/registry.js';
import { RELEASE_LUA, RESERVE_LUA, UNLOCK_LUA } from './redis-scripts.js';
import { Sealer } from './sealer.js';
import type { AccountInput } from '../config/schema.js';
import type {
  AccountPause,
  AccountStore,
  Charge,
  Charged,
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
}

type Scripted = Redis & {
  xrReserve(numKeys: number, ...args: Array<string | number>): Promise<number[]>;
  xrRelease(numKeys: number, ...args: Array<string | number>): Promise<number>;
  xrUnlock(numKeys: number, ...args: Array<string | number>): Promise<number>;
};

const tokenKey = (email: string) => `token:{${email}}`;
const failureKey = (email: string) => `refresh-failure:{${email}}`;
const quotaKey = (email: string, counter: string) => `quota:{${email}}:${counter}`;
const PAUSES = 'pauses';
/** One hash for every stored account: listing is one HGETALL, an import one HSET. */
const ACCOUNTS = 'accounts';
// Distinct from a token's (the bare email), so a sealed account cannot be passed off as a token.
const accountAad = (email: string) => `account:${email}`;
const normalEmail = (email: string) => email.trim().toLowerCase();

/** host:port of a redis:// URL, for log lines: the URL itself may carry a password. */
export function redisEndpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '6379'}`;
  } catch {
    return 'redis';
  }
}

export class RedisStore implements Store, FleetCoordination, AccountStore {
  readonly fleet: FleetCoordination = this;
  private up = false;
  private closing = false;

  private constructor(
    private readonly redis: Scripted,
    private readonly sealer: Sealer,
    logger: Logger,
    private readonly endpoint: string,
  ) {
    redis.on('ready', () => {
      if (!this.up) logger.info({ event: 'store_connected', store: endpoint }, 'shared store reachable');
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
  }

  static async open(opts: RedisStoreOptions, env: NodeJS.ProcessEnv, logger: Logger): Promise<RedisStore> {
    const sealer = Sealer.fromSharedEnv(env);
    const redis = new Redis(opts.url, {
      keyPrefix: opts.keyPrefix,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: opts.commandTimeoutMs ?? 2_000,
      connectTimeout: 2_000,
      // Reconnect for ever, at most a second apart, so service resumes soon after Redis does.
      retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    }) as Scripted;
    redis.defineCommand('xrReserve', { lua: RESERVE_LUA });
    redis.defineCommand('xrRelease', { lua: RELEASE_LUA });
    redis.defineCommand('xrUnlock', { lua: UNLOCK_LUA });
    const store = new RedisStore(redis, sealer, logger, redisEndpoint(opts.url));
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
    await this.call('save a token', () => this.redis.set(tokenKey(email), this.sealer.seal(JSON.stringify(record), email)));
  }

  async deleteToken(email: string): Promise<void> {
    await this.call('delete a token', () => this.redis.del(tokenKey(email)));
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
    await this.call('save accounts', () => this.redis.hset(ACCOUNTS, ...fields));
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
    return (await this.call('delete an account', () => this.redis.hdel(ACCOUNTS, normalEmail(email)))) > 0;
  }

  async reserve(email: string, charges: readonly Charge[]): Promise<ReserveResult> {
    if (!charges.length) return { ok: true, charged: [], left: {} };
    const keys = charges.map((c) => quotaKey(email, c.counter.name));
    const args = charges.flatMap((c) => [c.counter.limit, c.counter.bucketMs, c.counter.buckets, c.amount]);
    const r = await this.call('count against sending limits', () => this.redis.xrReserve(keys.length, ...keys, ...args));
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
    await this.call('give back a reservation', () => this.redis.xrRelease(keys.length, ...keys, ...args));
  }

  async savePause(email: string, pause: AccountPause): Promise<void> {
    await this.call('share a pause', () => this.redis.hset(PAUSES, email, JSON.stringify(pause)));
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
    const r = await this.call('take a lock', () => this.redis.set(`lock:${name}`, owner, 'PX', ttlMs, 'NX'));
    return r === 'OK';
  }

  async unlock(name: string, owner: string): Promise<void> {
    await this.call('free a lock', () => this.redis.xrUnlock(1, `lock:${name}`, owner));
  }

  async saveRefreshFailure(email: string, failure: RefreshFailure | null): Promise<void> {
    if (!failure) {
      await this.call('clear a refresh failure', () => this.redis.del(failureKey(email)));
      return;
    }
    // It lapses with its backoff: nobody needs to clear a failure nobody will act on.
    const ttl = Math.max(1_000, failure.retryAt - Date.now());
    await this.call('share a refresh failure', () => this.redis.set(failureKey(email), JSON.stringify(failure), 'PX', ttl));
  }

  async loadRefreshFailure(email: string): Promise<RefreshFailure | null> {
    const json = await this.call('read a refresh failure', () => this.redis.get(failureKey(email)));
    return json ? (JSON.parse(json) as RefreshFailure) : null;
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.redis.quit().catch(() => this.redis.disconnect());
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
