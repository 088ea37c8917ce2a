// The token cache: one entry per account, filled at start-up and refreshed in the background
// before expiry, so a message never waits for the token endpoint (300-500 ms on the real
// network). This is the one place a token is refreshed:
//  - scheduled: `refresh_before_expiry_ms` ahead of expiry (SPEC: while >= 10 minutes remain,
//    Exchange's high-volume endpoint refuses tokens about to expire);
//  - after a failure: retried with capped exponential backoff and jitter, so a broken endpoint
//    or a revoked grant is not hammered; messages in the meantime fail fast with 454;
//  - on demand, when the provider rejected a cached token (535): once, single-flight.
// Concurrent needs share one request (single-flight per account).
import type { Logger } from 'pino';
import { RelayError } from '../relay/errors.js';
import type { Account } from '../routing/account.js';
import type { Store, TokenRecord } from '../store/store.js';
import { refreshGrant, TokenGrantError, type Grant, type GrantResult } from './grant.js';

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
  lastRefreshAt: number | null;
  consecutiveFailures: number;
}

export interface TokenCacheOptions {
  refreshBeforeExpiryMs: number;
  requestTimeoutMs: number;
  retryMinMs: number;
  retryMaxMs: number;
}

export interface TokenCacheDeps {
  store: Store;
  logger: Logger;
  grant?: Grant;
  now?: () => number;
  /** Called after every refresh attempt, for metrics. */
  onRefresh?: (email: string, ok: boolean, ms: number) => void;
}

/** A token with less than this left is not handed out: it could expire mid-handshake. */
const USABLE_MARGIN_MS = 30_000;

class Entry {
  token: AccessToken | null = null;
  refreshToken: string;
  inflight: Promise<AccessToken> | null = null;
  timer: NodeJS.Timeout | null = null;
  failures = 0;
  /** No attempt before this time (backoff after failures). */
  retryAt = 0;
  health: TokenHealth = 'pending';
  lastError: string | null = null;
  lastRefreshAt: number | null = null;

  constructor(readonly account: Account) {
    this.refreshToken = account.refreshToken;
  }
}

export class TokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly grant: Grant;
  private readonly now: () => number;
  private stopped = false;

  constructor(
    private readonly opts: TokenCacheOptions,
    private readonly deps: TokenCacheDeps,
  ) {
    this.grant = deps.grant ?? refreshGrant;
    this.now = deps.now ?? Date.now;
  }

  /**
   * Registers the accounts, takes still-valid tokens from the store and fetches the rest in
   * parallel (at most `concurrency` at once). Resolves when all are settled or `waitMs` passed;
   * accounts still without a token stay `failing`/`pending` and keep being retried.
   */
  async start(accounts: readonly Account[], { waitMs, concurrency }: { waitMs: number; concurrency: number }): Promise<void> {
    const needFetch: Entry[] = [];
    for (const account of accounts) {
      const entry = new Entry(account);
      this.entries.set(account.email, entry);
      await this.restore(entry);
      if (entry.token && entry.token.expiresAt - this.now() > this.opts.refreshBeforeExpiryMs) {
        entry.health = 'healthy';
        this.schedule(entry);
      } else {
        needFetch.push(entry);
      }
    }
    let next = 0;
    const worker = async () => {
      while (next < needFetch.length && !this.stopped) {
        const entry = needFetch[next++]!;
        await this.refresh(entry).catch(() => undefined);
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
    const token = this.entries.get(email)?.token;
    return token && token.expiresAt - this.now() > USABLE_MARGIN_MS ? token : null;
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
      throw new RelayError('TOKEN_UNAVAILABLE', `${account.email}: token endpoint failing (${entry.lastError ?? 'no token yet'}); next attempt in ${entry.retryAt - this.now()} ms`);
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
    if (entry.token?.value === rejected) entry.token = null;
    return this.refreshOrFail(entry);
  }

  status(): TokenStatus[] {
    return [...this.entries.values()].map((e) => ({
      email: e.account.email,
      health: e.health,
      expiresAt: e.token?.expiresAt ?? null,
      lastError: e.lastError,
      lastRefreshAt: e.lastRefreshAt,
      consecutiveFailures: e.failures,
    }));
  }

  statusOf(email: string): TokenStatus | undefined {
    return this.status().find((s) => s.email === email);
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
  }

  private entry(account: Account): Entry {
    let entry = this.entries.get(account.email);
    if (!entry) {
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

  private async fetch(entry: Entry): Promise<AccessToken> {
    const { account } = entry;
    const started = this.now();
    let result: GrantResult;
    try {
      result = await this.grant(account, entry.refreshToken, this.opts.requestTimeoutMs);
    } catch (e) {
      const ms = this.now() - started;
      this.deps.onRefresh?.(account.email, false, ms);
      this.fail(entry, e);
      throw e;
    }
    const ms = this.now() - started;
    this.deps.onRefresh?.(account.email, true, ms);
    const rotated = result.refreshToken !== null && result.refreshToken !== entry.refreshToken;
    if (result.refreshToken) entry.refreshToken = result.refreshToken;
    entry.token = { value: result.accessToken, expiresAt: result.expiresAt };
    entry.failures = 0;
    entry.retryAt = 0;
    entry.health = 'healthy';
    entry.lastError = null;
    entry.lastRefreshAt = this.now();
    await this.persist(entry);
    this.deps.logger.info(
      { event: 'token_refresh', account: account.email, ok: true, ms, expires_in_s: Math.round((result.expiresAt - this.now()) / 1000), rotated },
      'token refreshed',
    );
    this.schedule(entry);
    return entry.token;
  }

  private fail(entry: Entry, e: unknown): void {
    const err = e instanceof TokenGrantError ? e : new TokenGrantError('network', (e as Error).message);
    entry.failures++;
    entry.lastError = err.message;
    entry.health = err.needsConsent ? 'needs_consent' : 'failing';
    // A dead grant is retried at the slowest pace: only the operator's new consent fixes it, but
    // the relay must notice when the config or the endpoint changes its mind.
    const exp = err.needsConsent ? this.opts.retryMaxMs : this.opts.retryMinMs * 2 ** Math.min(entry.failures - 1, 20);
    const delay = Math.min(this.opts.retryMaxMs, exp) * (0.8 + Math.random() * 0.4);
    entry.retryAt = this.now() + delay;
    this.deps.logger.warn(
      { event: 'token_refresh', account: entry.account.email, ok: false, error: err.message, kind: err.kind, failures: entry.failures, retry_in_ms: Math.round(delay) },
      'token refresh failed',
    );
    this.arm(entry, delay);
  }

  /** Next background refresh: ahead of expiry, or at half the life of a short-lived token. */
  private schedule(entry: Entry): void {
    if (!entry.token) return;
    const life = entry.token.expiresAt - this.now();
    const lead = Math.min(this.opts.refreshBeforeExpiryMs, life / 2);
    this.arm(entry, Math.max(0, life - lead));
  }

  private arm(entry: Entry, delayMs: number): void {
    if (this.stopped) return;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      entry.timer = null;
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
    if (record.configRefreshToken !== account.refreshToken || record.clientId !== account.clientId) {
      this.deps.logger.info({ event: 'token_restore', account: account.email, used: false }, 'config credentials changed; stored token discarded');
      return;
    }
    entry.refreshToken = record.refreshToken;
    if (record.expiresAt - this.now() > USABLE_MARGIN_MS) entry.token = { value: record.accessToken, expiresAt: record.expiresAt };
  }

  private async persist(entry: Entry): Promise<void> {
    if (!entry.token) return;
    try {
      await this.deps.store.saveToken(entry.account.email, {
        accessToken: entry.token.value,
        expiresAt: entry.token.expiresAt,
        refreshToken: entry.refreshToken,
        configRefreshToken: entry.account.refreshToken,
        clientId: entry.account.clientId,
      });
    } catch (e) {
      // A rotated refresh token that could not be saved is still in memory; the next refresh retries the write.
      this.deps.logger.error({ event: 'store_error', account: entry.account.email, error: (e as Error).message }, 'could not store token');
    }
  }
}
