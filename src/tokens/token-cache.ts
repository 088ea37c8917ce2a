// The token cache: one entry per account, filled at start-up and refreshed in the background
// before expiry, so a message never waits for the token endpoint (300-500 ms on the real
// network). This is the one place a token is refreshed:
//  - scheduled: `refresh_before_expiry_ms` ahead of expiry (SPEC: while >= 10 minutes remain,
//    Exchange's high-volume endpoint refuses tokens about to expire);
//  - after a failure: retried with capped exponential backoff and jitter, so a broken endpoint
//    or a revoked grant is not hammered; messages in the meantime fail fast with 454;
//  - on demand, when the provider rejected a cached token (535): once, single-flight.
// Concurrent needs share one request (single-flight per account). With a shared store (Redis)
// the single flight spans the fleet: one instance takes the account's refresh lock and calls
// the endpoint, the others wait for the token it stores and read it (fetchInFleet).
// Accounts come and go at run time (reload, the HTTP API): install() adds or replaces entries,
// keeping the token of an account whose credentials did not change; remove() retires one.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { RelayError } from '../errors/registry.js';
import { sameCredentials, type Account } from '../routing/account.js';
import type { FleetCoordination, TokenRecord, TokenStore } from '../store/store.js';
import { accountGrant } from './account-grant.js';
import { TokenGrantError, type Grant, type GrantFailure, type GrantResult } from './grant.js';

export interface AccessToken {
  value: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export type TokenHealth = 'pending' | 'healthy' | 'failing' | 'needs_consent';

export interface TokenStatus {
  email: string;
  health: TokenHealth;
  expiresAt: number | null;
  lastError: string | null;
  /** Epoch ms of lastError. */
  lastErrorAt: number | null;
  lastRefreshAt: number | null;
  consecutiveFailures: number;
  /** Why the last refresh failed (null after a success): the operator's action depends on it. */
  lastFailure: TokenGrantError | null;
  /**
   * Why the latest token (and rotated refresh token) is not in the store yet, or null when it
   * is. Kept in memory meanwhile, used for the next refresh, and its save retried.
   */
  storeError: string | null;
}

/** The parts of an account's token state the health board reads (TokenCache.stateOf()). */
export type TokenState = Readonly<Pick<TokenStatus, 'health' | 'lastError' | 'lastErrorAt' | 'lastFailure'>>;

export interface TokenCacheOptions {
  refreshBeforeExpiryMs: number;
  requestTimeoutMs: number;
  retryMinMs: number;
  retryMaxMs: number;
}

export interface TokenCacheDeps {
  store: TokenStore;
  logger: Logger;
  grant?: Grant;
  now?: () => number;
  /** Called after every refresh attempt, for metrics. */
  onRefresh?: (email: string, ok: boolean, ms: number) => void;
  /**
   * Whether the account is kept warm (src/relay/warmth.ts): a cold one's token is neither fetched
   * at start-up nor refreshed ahead of expiry; its first message fetches one. Default: all warm.
   */
  keepWarm?: (email: string) => boolean;
  /** A stored token was found at start-up, obtained at `obtainedAt` (epoch ms): activity to seed warmth with. */
  restored?: (email: string, obtainedAt: number) => void;
}

/** Whether a stored token record derives from the account's configured credentials (else it is stale). */
export const recordMatches = (record: TokenRecord, account: Account): boolean =>
  record.configRefreshToken === account.refreshToken && record.clientId === account.clientId;

/** Whether the stored access token is for the account's current upstream (a Graph token is no good for SMTP). */
const tokenFits = (record: TokenRecord, account: Account): boolean =>
  record.scope === undefined ? account.upstream === 'smtp' : record.scope === account.scope;

/**
 * A token with less than this left is not handed out: it could expire mid-handshake. At most a
 * quarter of the token's life, though: a provider that issues 30-second tokens would otherwise
 * have every token unusable the moment it arrives, and each message would ask for another one
 * (refreshes in pairs, issue 10 item 5).
 */
const USABLE_MARGIN_MS = 30_000;
const usableMargin = (lifeMs: number) => Math.min(USABLE_MARGIN_MS, lifeMs / 4);
/** What a stored token without its life is taken to have lived (Google's and Microsoft's tokens: an hour). */
const DEFAULT_LIFE_MS = 3_600_000;
/** How often an instance waiting for another one's refresh looks for the new token. */
const PEER_POLL_MS = 100;
/** The refresh lock outlives the grant request by this much (time to store the token). */
const LOCK_MARGIN_MS = 5_000;
/** A 429 without Retry-After pauses the start-up's token requests this long (doubling). */
const RATE_LIMIT_PAUSE_MS = 1_000;
/** A token the store refused (full disk) is saved again at most this far apart. */
const SAVE_RETRY_MAX_MS = 60_000;

class Entry {
  token: AccessToken | null = null;
  /** How long the token had to live when this relay got it (for usableMargin). */
  tokenLifeMs = Infinity;
  /** Replaced or removed: its timers stop and what a late refresh brings is not kept. */
  retired = false;
  refreshToken: string | null;
  inflight: Promise<AccessToken> | null = null;
  timer: NodeJS.Timeout | null = null;
  failures = 0;
  /** No attempt before this time (backoff after failures). */
  retryAt = 0;
  health: TokenHealth = 'pending';
  lastError: string | null = null;
  lastErrorAt: number | null = null;
  lastFailure: TokenGrantError | null = null;
  lastRefreshAt: number | null = null;
  /** The token the provider refused (535): never taken back from the store. */
  rejected: string | null = null;
  /** Set while the latest token is not saved: the store's error. */
  storeError: string | null = null;
  saveFailures = 0;
  saveTimer: NodeJS.Timeout | null = null;

  constructor(public account: Account) {
    this.refreshToken = account.refreshToken;
  }
}

const statusOfEntry = (e: Entry): TokenStatus => ({
  email: e.account.email,
  health: e.health,
  expiresAt: e.token?.expiresAt ?? null,
  lastError: e.lastError,
  lastErrorAt: e.lastErrorAt,
  lastRefreshAt: e.lastRefreshAt,
  consecutiveFailures: e.failures,
  lastFailure: e.lastFailure,
  storeError: e.storeError,
});

export interface InstallOptions {
  /** How long to wait for the tokens still missing; they keep being fetched in the background. */
  waitMs: number;
  /** Token requests in flight at once. */
  concurrency: number;
  /** Called when an account's token is there (fetched, or fresh from the store), so its connections open without waiting for the others'. */
  onToken?: (email: string) => void;
}

export class TokenCache {
  /** Names this process in the fleet's refresh locks and shared failures. */
  readonly instanceId = randomUUID();
  private readonly entries = new Map<string, Entry>();
  /** Accounts removed at run time: a connection still opening for one must not bring its entry back. */
  private readonly removed = new WeakSet<Account>();
  private readonly grant: Grant;
  private readonly now: () => number;
  private stopped = false;

  constructor(
    private readonly opts: TokenCacheOptions,
    private readonly deps: TokenCacheDeps,
  ) {
    this.grant = deps.grant ?? accountGrant;
    this.now = deps.now ?? Date.now;
  }

  /**
   * Registers the accounts, takes still-valid tokens from the store and fetches the rest in
   * parallel (at most `concurrency` at once). Resolves when all are settled or `waitMs` passed;
   * accounts still without a token stay `failing`/`pending` and keep being retried. Only warm
   * accounts (keepWarm) are fetched; a cold one's stays `pending` until a message needs it.
   */
  start(accounts: readonly Account[], opts: InstallOptions): Promise<void> {
    return this.install(accounts, opts);
  }

  /**
   * Adds accounts at start-up or at run time, as start() describes. An account already here
   * with the same credentials keeps its entry, token and schedule (only its settings change);
   * one whose credentials changed gets a new entry, and the old one is retired.
   */
  async install(accounts: readonly Account[], { waitMs, concurrency, onToken }: InstallOptions): Promise<void> {
    const needFetch: Entry[] = [];
    for (const account of accounts) {
      const existing = this.entries.get(account.email);
      if (existing && sameCredentials(existing.account, account)) {
        existing.account = account;
        continue;
      }
      if (existing) this.retire(existing);
      const entry = new Entry(account);
      this.entries.set(account.email, entry);
      await this.restore(entry);
      if (this.fresh(entry)) {
        entry.health = 'healthy';
        this.schedule(entry);
        onToken?.(account.email);
      } else if (this.keepWarm(entry)) {
        needFetch.push(entry);
      }
    }
    // The endpoint's 429 pauses every worker (it limits the client, not the account) for its
    // Retry-After, and the refused account goes back in the queue rather than to its own backoff.
    let next = 0;
    let pausedUntil = 0;
    let pauses = 0;
    const worker = async () => {
      while (next < needFetch.length && !this.stopped) {
        const wait = pausedUntil - this.now();
        if (wait > 0) {
          await sleep(wait, undefined, { ref: false });
          continue;
        }
        const entry = needFetch[next++]!;
        // A message got there first (it joined or started the refresh), or the account left.
        if (entry.retired || this.fresh(entry)) continue;
        try {
          await this.refresh(entry);
          pauses = 0;
          onToken?.(entry.account.email);
        } catch (e) {
          if (!(e instanceof TokenGrantError) || e.status !== 429) continue;
          pausedUntil = Math.max(pausedUntil, this.now() + (e.retryAfterMs ?? RATE_LIMIT_PAUSE_MS * 2 ** Math.min(pauses++, 6)));
          needFetch.push(entry);
        }
      }
    };
    const all = Promise.all(Array.from({ length: Math.min(concurrency, needFetch.length) }, worker));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
    await Promise.race([all, timeout]);
    clearTimeout(timer);
  }

  /** The hot path: the cached token if it is usable, without any I/O. */
  current(email: string): AccessToken | null {
    const entry = this.entries.get(email);
    const token = entry?.token;
    return token && token.expiresAt - this.now() > usableMargin(entry.tokenLifeMs) ? token : null;
  }

  /**
   * A usable token for the account. From memory in steady state; otherwise joins the refresh in
   * flight or starts one — unless the account is backing off, then fails at once with 454.
   */
  async get(account: Account): Promise<AccessToken> {
    const token = this.current(account.email);
    if (token) return token;
    const entry = this.entry(account);
    if (!entry.inflight && this.now() < entry.retryAt) {
      throw new RelayError('TOKEN_UNAVAILABLE', `${account.email}: token endpoint failing (${entry.lastError ?? 'no token yet'}); next attempt in ${Math.round(entry.retryAt - this.now())} ms`);
    }
    return this.refreshOrFail(entry);
  }

  /**
   * The provider refused `rejected` (535 on AUTH): one refresh, shared by every caller that saw
   * the same token refused. If the token was already replaced, the new one is returned.
   */
  async replaceRejected(account: Account, rejected: string): Promise<AccessToken> {
    const entry = this.entry(account);
    const token = this.current(account.email);
    if (token && token.value !== rejected) return token;
    entry.rejected = rejected;
    if (entry.token?.value === rejected) entry.token = null;
    // Another connection reported the same token first and its refresh failed: back off with
    // it (454 now) rather than ask the failing endpoint once per pooled connection.
    else if (!entry.inflight && this.now() < entry.retryAt) return this.get(account);
    return this.refreshOrFail(entry);
  }

  status(): TokenStatus[] {
    return [...this.entries.values()].map(statusOfEntry);
  }

  /** The account's token health without building the whole status (the pool picker asks per message). */
  healthOf(email: string): TokenHealth | null {
    return this.entries.get(email)?.health ?? null;
  }

  /**
   * What the health board reads of one account on every pass over thousands of them: the
   * account's own entry behind a read-only view, so a pass allocates nothing per account (issue 22).
   */
  stateOf(email: string): TokenState | undefined {
    return this.entries.get(email);
  }

  /** When the account's cached token expires (epoch ms), usable or not; null: none. */
  expiresAt(email: string): number | null {
    return this.entries.get(email)?.token?.expiresAt ?? null;
  }

  /** One account's status, by a map lookup: health and status views ask once per account (issue 22). */
  statusOf(email: string): TokenStatus | undefined {
    const entry = this.entries.get(email);
    return entry && statusOfEntry(entry);
  }

  /**
   * A new token now, whatever the cached one's age (`accounts test`: proof that the grant still
   * works). Joins a refresh in flight; rotated refresh tokens are stored as usual.
   */
  async refreshNow(email: string): Promise<AccessToken> {
    const entry = this.entries.get(email);
    if (!entry) throw new RelayError('ACCOUNT_REMOVED', `${email} is not an account of this relay`);
    return this.refresh(entry);
  }

  /** The account left the relay: its refresh timer stops and its entry is forgotten. */
  remove(email: string): void {
    const entry = this.entries.get(email);
    if (!entry) return;
    this.entries.delete(email);
    this.removed.add(entry.account);
    this.retire(entry);
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) {
      if (e.timer) clearTimeout(e.timer);
      if (e.saveTimer) clearTimeout(e.saveTimer);
    }
  }

  /**
   * Resolves when no refresh is in flight. A refresh started before stop() (a 535 answered while
   * the relay was stopping) may bring a rotated refresh token that must reach the store, so the
   * store is closed only after this.
   */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.entries.values()].map((e) => e.inflight));
  }

  /** Its token needs no refresh before the scheduled one (more than the refresh lead left). */
  private fresh(entry: Entry): boolean {
    return entry.token !== null && entry.token.expiresAt - this.now() > this.opts.refreshBeforeExpiryMs;
  }

  private keepWarm(entry: Entry): boolean {
    return this.deps.keepWarm?.(entry.account.email) ?? true;
  }

  private retire(entry: Entry): void {
    entry.retired = true;
    if (entry.timer) clearTimeout(entry.timer);
    if (entry.saveTimer) clearTimeout(entry.saveTimer);
    entry.timer = null;
    entry.saveTimer = null;
  }

  private entry(account: Account): Entry {
    let entry = this.entries.get(account.email);
    if (!entry) {
      if (this.removed.has(account)) throw new RelayError('ACCOUNT_REMOVED', `${account.email} was removed from the relay`);
      entry = new Entry(account);
      this.entries.set(account.email, entry);
    }
    return entry;
  }

  private async refreshOrFail(entry: Entry): Promise<AccessToken> {
    try {
      return await this.refresh(entry);
    } catch (e) {
      throw new RelayError('TOKEN_UNAVAILABLE', `${entry.account.email}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Single-flight: every caller during a refresh shares its promise. */
  private refresh(entry: Entry): Promise<AccessToken> {
    entry.inflight ??= this.fetch(entry).finally(() => {
      entry.inflight = null;
    });
    return entry.inflight;
  }

  private fetch(entry: Entry): Promise<AccessToken> {
    const fleet = this.deps.store.fleet;
    return fleet ? this.fetchInFleet(entry, fleet) : this.grantNow(entry, null);
  }

  /**
   * One refresh per account across the fleet: take the token another instance stored since
   * ours if there is one; else take the account's refresh lock and call the endpoint; else
   * (another instance holds the lock) wait for its token, or its failure, and take that. A
   * holder that dies frees the lock at its TTL and a waiter takes over. Redis unreachable: this
   * instance refreshes on its own, since no token at all would be worse than a second refresh.
   */
  private async fetchInFleet(entry: Entry, fleet: FleetCoordination): Promise<AccessToken> {
    const lockName = `refresh:{${entry.account.email}}`;
    const lockTtlMs = this.opts.requestTimeoutMs + LOCK_MARGIN_MS;
    const deadline = this.now() + lockTtlMs + this.opts.requestTimeoutMs;
    for (let first = true; ; first = false) {
      if (!first) await sleep(PEER_POLL_MS, undefined, { ref: false });
      const shared = await this.fromFleet(entry, fleet);
      if (shared) return shared;
      let locked: boolean;
      try {
        locked = await fleet.tryLock(lockName, this.instanceId, lockTtlMs);
      } catch (e) {
        this.deps.logger.warn(
          { event: 'token_refresh_unlocked', account: entry.account.email, error: (e as Error).message },
          'shared store unreachable: refreshing without the fleet lock',
        );
        return this.grantNow(entry, fleet);
      }
      if (locked) {
        try {
          // The holder before us may have stored its token just before freeing the lock.
          return (await this.fromFleet(entry, fleet)) ?? (await this.grantNow(entry, fleet));
        } finally {
          await fleet.unlock(lockName, this.instanceId).catch(() => undefined);
        }
      }
      if (this.stopped || this.now() >= deadline) {
        const err = new TokenGrantError('timeout', `another instance held the refresh lock and stored no token within ${lockTtlMs + this.opts.requestTimeoutMs} ms`);
        this.fail(entry, err);
        throw err;
      }
    }
  }

  /**
   * What the fleet knows that this instance does not: a token stored after ours (taken, with
   * the refresh token that came with it), or a refresh that failed on another instance since
   * our last success and is still backing off (taken as our own failure, and thrown).
   */
  private async fromFleet(entry: Entry, fleet: FleetCoordination): Promise<AccessToken | null> {
    const { account } = entry;
    let record: TokenRecord | null;
    let failure;
    try {
      [record, failure] = await Promise.all([this.deps.store.loadToken(account.email), fleet.loadRefreshFailure(account.email)]);
    } catch {
      return null;
    }
    const now = this.now();
    const mine = entry.token?.expiresAt ?? 0;
    if (record && recordMatches(record, account)) {
      // A peer may have rotated the refresh token; the newer record has the one to use.
      if (record.expiresAt >= mine) entry.refreshToken = record.refreshToken;
      if (record.expiresAt > mine && record.expiresAt - now > usableMargin(record.lifeMs ?? Infinity) && record.accessToken !== entry.rejected && tokenFits(record, account)) {
        this.succeed(entry, { value: record.accessToken, expiresAt: record.expiresAt });
        if (record.lifeMs) entry.tokenLifeMs = record.lifeMs;
        this.deps.logger.info(
          { event: 'token_shared', account: account.email, expires_in_s: Math.round((record.expiresAt - now) / 1000) },
          'token taken from the shared store (refreshed by another instance)',
        );
        return entry.token;
      }
    }
    if (failure && failure.by !== this.instanceId && failure.retryAt > now && failure.at >= (entry.lastRefreshAt ?? 0)) {
      const err = new TokenGrantError(failure.kind as GrantFailure, `${failure.message} (refresh failed on another instance)`);
      this.fail(entry, err);
      throw err;
    }
    return null;
  }

  private async grantNow(entry: Entry, fleet: FleetCoordination | null): Promise<AccessToken> {
    const { account } = entry;
    const started = this.now();
    let result: GrantResult;
    try {
      result = await this.grant(account, entry.refreshToken, this.opts.requestTimeoutMs);
    } catch (e) {
      const ms = this.now() - started;
      this.deps.onRefresh?.(account.email, false, ms);
      const err = this.fail(entry, e);
      // The rest of the fleet backs off with us instead of trying the same endpoint again.
      await fleet
        ?.saveRefreshFailure(account.email, { by: this.instanceId, at: this.now(), retryAt: entry.retryAt, kind: err.kind, message: err.message })
        .catch(() => undefined);
      throw e;
    }
    const ms = this.now() - started;
    this.deps.onRefresh?.(account.email, true, ms);
    const rotated = result.refreshToken !== null && result.refreshToken !== entry.refreshToken;
    if (result.refreshToken) entry.refreshToken = result.refreshToken;
    const token = this.succeed(entry, { value: result.accessToken, expiresAt: result.expiresAt });
    await this.persist(entry);
    await fleet?.saveRefreshFailure(account.email, null).catch(() => undefined);
    this.deps.logger.info(
      { event: 'token_refresh', account: account.email, ok: true, ms, expires_in_s: Math.round((result.expiresAt - this.now()) / 1000), rotated },
      'token refreshed',
    );
    return token;
  }

  private succeed(entry: Entry, token: AccessToken): AccessToken {
    entry.token = token;
    entry.tokenLifeMs = token.expiresAt - this.now();
    entry.failures = 0;
    entry.retryAt = 0;
    entry.health = 'healthy';
    entry.lastError = null;
    entry.lastErrorAt = null;
    entry.lastFailure = null;
    entry.lastRefreshAt = this.now();
    entry.rejected = null;
    this.schedule(entry);
    return token;
  }

  private fail(entry: Entry, e: unknown): TokenGrantError {
    const err = e instanceof TokenGrantError ? e : new TokenGrantError('network', (e as Error).message);
    entry.failures++;
    entry.lastError = err.message;
    entry.lastErrorAt = this.now();
    entry.lastFailure = err;
    entry.health = err.needsConsent ? 'needs_consent' : 'failing';
    // A dead grant is retried at the slowest pace: only the operator's new consent fixes it, but
    // the relay must notice when the config or the endpoint changes its mind.
    const exp = err.needsConsent ? this.opts.retryMaxMs : this.opts.retryMinMs * 2 ** Math.min(entry.failures - 1, 20);
    // The endpoint's Retry-After (429, 503) is a floor: asking sooner only earns another refusal.
    const delay = Math.max(err.retryAfterMs ?? 0, Math.min(this.opts.retryMaxMs, exp) * (0.8 + Math.random() * 0.4));
    entry.retryAt = this.now() + delay;
    this.deps.logger.warn(
      { event: 'token_refresh', account: entry.account.email, ok: false, error: err.message, kind: err.kind, failures: entry.failures, retry_in_ms: Math.round(delay) },
      'token refresh failed',
    );
    this.arm(entry, delay);
    return err;
  }

  /** Next background refresh: ahead of expiry, or at half the life of a short-lived token. */
  private schedule(entry: Entry): void {
    if (!entry.token) return;
    const life = entry.token.expiresAt - this.now();
    const lead = Math.min(this.opts.refreshBeforeExpiryMs, life / 2);
    this.arm(entry, Math.max(0, life - lead));
  }

  private arm(entry: Entry, delayMs: number): void {
    if (this.stopped || entry.retired) return;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      entry.timer = null;
      // Gone cold since: its token lapses, and its next message fetches one.
      if (!this.keepWarm(entry)) return;
      this.refresh(entry).catch(() => undefined);
    }, Math.min(delayMs, 2 ** 31 - 1));
    entry.timer.unref();
  }

  /** Reuses a stored token and a rotated refresh token — unless the operator changed the config's. */
  private async restore(entry: Entry): Promise<void> {
    const { account } = entry;
    let record: TokenRecord | null = null;
    try {
      record = await this.deps.store.loadToken(account.email);
    } catch (e) {
      this.deps.logger.warn({ event: 'store_error', account: account.email, error: (e as Error).message }, 'could not read stored token');
    }
    if (!record) return;
    if (!recordMatches(record, account)) {
      this.deps.logger.info({ event: 'token_restore', account: account.email, used: false }, 'config credentials changed; stored token discarded');
      return;
    }
    entry.refreshToken = record.refreshToken;
    this.deps.restored?.(account.email, record.expiresAt - (record.lifeMs ?? DEFAULT_LIFE_MS));
    if (record.expiresAt - this.now() > usableMargin(record.lifeMs ?? Infinity) && tokenFits(record, account)) {
      entry.token = { value: record.accessToken, expiresAt: record.expiresAt };
      entry.tokenLifeMs = record.lifeMs ?? Infinity;
    }
  }

  /**
   * Saves the entry's token and refresh token. Never throws: when the store refuses (a full
   * disk), the rotated refresh token stays in memory — the next refresh uses it — and the save
   * is retried with backoff until the store takes it, with no one's help.
   */
  private async persist(entry: Entry): Promise<void> {
    // A retired entry's token belongs to credentials the relay no longer has.
    if (!entry.token || entry.retired) return;
    if (entry.saveTimer) clearTimeout(entry.saveTimer);
    entry.saveTimer = null;
    try {
      await this.deps.store.saveToken(entry.account.email, {
        accessToken: entry.token.value,
        expiresAt: entry.token.expiresAt,
        refreshToken: entry.refreshToken,
        configRefreshToken: entry.account.refreshToken,
        clientId: entry.account.clientId,
        ...(Number.isFinite(entry.tokenLifeMs) ? { lifeMs: entry.tokenLifeMs } : {}),
        scope: entry.account.scope,
      });
    } catch (e) {
      entry.storeError = (e as Error).message;
      entry.saveFailures++;
      const delay = Math.min(SAVE_RETRY_MAX_MS, this.opts.retryMinMs * 2 ** Math.min(entry.saveFailures - 1, 20));
      this.deps.logger.error(
        { event: 'store_error', account: entry.account.email, error: entry.storeError, failures: entry.saveFailures, retry_in_ms: delay },
        'could not store the token; kept in memory (the next refresh uses it), saving again later',
      );
      if (!this.stopped && !entry.retired) {
        entry.saveTimer = setTimeout(() => void this.persist(entry), delay);
        entry.saveTimer.unref();
      }
      return;
    }
    if (entry.storeError) {
      this.deps.logger.info({ event: 'token_saved', account: entry.account.email, failures: entry.saveFailures }, 'token saved after the store recovered');
    }
    entry.storeError = null;
    entry.saveFailures = 0;
  }
}
