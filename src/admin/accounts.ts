// The accounts of a running relay, as the operator manages them: relay.yaml's (read-only here:
// the file is changed by editing it and reloading) and the store's (added, changed and removed
// through the HTTP API, or by the CLI followed by a reload). Every change is written to the
// store first, then the whole set is handed to the relay (Relay.applyAccounts), so what runs
// is always what a restart would load. Changes are serialised.
import type { Logger } from 'pino';
import { ConfigError } from '../config/errors.js';
import { MASK, maskTree } from '../config/mask.js';
import { resolveAccountInput } from '../config/load.js';
import type { AccountInput, Config, ResolvedAccountConfig } from '../config/schema.js';
import { mergeAccounts, type MergedAccounts, type SourcedAccount } from '../config/stored-accounts.js';
import type { AccountChanges, Relay } from '../relay/relay.js';
import { accountFromConfig, sameConnections, type Account } from '../routing/account.js';
import { isAccountStore, type AccountStore, type StoredAccount, type Store } from '../store/store.js';
import { connectorOptions } from '../upstream/connector.js';
import type { PoolStats } from '../upstream/pool.js';
import { checkAccount, freshToken, type CheckResult } from './account-check.js';
import type { AccountHealthBoard, AccountState } from './health.js';
import { TestGate, TestRateLimited } from './test-gate.js';

/** A refusal with the HTTP status that says whose fault it is; `body` joins `error` in the answer. */
export class AdminError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'AdminError';
  }
}

/** One account as `accounts list` and GET /api/accounts show it. Secrets are masked. */
export interface AccountView {
  email: string;
  provider: string;
  auth: string;
  /** Where it is defined: relay.yaml (`config`, read-only here) or the store. */
  source: SourcedAccount['source'];
  senders: readonly string[];
  /** What the operator must do, by name (src/admin/health.ts): `ok`, `needs_consent`, `provider_refuses_login`, ... */
  health: AccountState;
  /** Whether a message for it would go upstream now. */
  can_send: boolean;
  token_expires_at: string | null;
  last_refresh_at: string | null;
  /** What the token endpoint or the provider last said that made it unhealthy; null when healthy. */
  last_error: string | null;
  last_error_at: string | null;
  /** What to do about it. */
  advice: string | null;
  /** Why its latest token is not saved yet (the store refuses writes), or null. */
  store_error: string | null;
  sent_last_hour: number;
  sent_last_day: number;
  connections: PoolStats | null;
  paused: { until: string; reason: string } | null;
  /** At a sending limit (health at_limit_until): when its window frees. */
  at_limit_until: string | null;
  /** The account's keys as the relay runs them, secrets masked. */
  settings: unknown;
}

export interface ReloadReport {
  accounts: AccountChanges;
  /** Changed settings that take effect only after a restart. */
  restart_needed: string[];
  shadowed: string[];
  invalid: MergedAccounts['invalid'];
}

export interface AccountAdminDeps {
  relay: Relay;
  health: AccountHealthBoard;
  store: Store;
  logger: Logger;
}

const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);

/** Retries of a store that could not list its accounts at start: from 1 s, doubling, at most a minute apart. */
const STORE_RETRY_MIN_MS = 1_000;
const STORE_RETRY_MAX_MS = 60_000;

export class AccountAdmin {
  private sources = new Map<string, SourcedAccount>();
  private queue: Promise<unknown> = Promise.resolve();
  /** Whether the store's accounts have been read since start (else they are retried). */
  private storeRead = false;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly tests = new TestGate();
  /** A re-read for another instance's change is queued and not started yet: later news joins it. */
  private followPending = false;

  constructor(
    private readonly deps: AccountAdminDeps,
    /** The config the accounts were last built from (start-up or the last reload). */
    private config: Config,
    /** The store's accounts as last read. */
    private stored: StoredAccount[],
    merged: MergedAccounts,
  ) {
    this.remember(merged);
  }

  /**
   * The stored accounts, or null (logged) when the store cannot say: the file's run meanwhile,
   * and retryStore() brings the stored ones in once the store answers.
   */
  static async readStore(store: Store, logger: Logger): Promise<StoredAccount[] | null> {
    if (!isAccountStore(store)) return [];
    try {
      return await store.listAccounts();
    } catch (e) {
      logger.error({ event: 'store_error', error: (e as Error).message }, 'could not read the stored accounts; running without them until the store answers');
      return null;
    }
  }

  /** Reads the store's accounts again, less and less often, until it answers; then runs them. */
  retryStore(delayMs = STORE_RETRY_MIN_MS): void {
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.serial(async () => {
        if (this.storeRead) return; // a reload got there first
        try {
          await accountStore(this.deps.store).listAccounts();
        } catch {
          this.retryStore(Math.min(delayMs * 2, STORE_RETRY_MAX_MS));
          return;
        }
        await this.apply(this.config);
      }).catch((e: Error) => this.deps.logger.warn({ event: 'store_error', error: e.message }, 'could not run the stored accounts'));
    }, delayMs);
    this.retryTimer.unref();
  }

  /**
   * Another instance (or the CLI) changed the stored accounts: they are read again and run the
   * way a reload runs them, with this instance's relay.yaml as last loaded (a reload elsewhere
   * never applies another host's file). Queued behind any change in progress; news arriving
   * while a re-read waits joins it.
   */
  followStore(): void {
    if (this.followPending || this.stopped) return;
    this.followPending = true;
    this.serial(async () => {
      this.followPending = false;
      if (this.stopped) return;
      const { changes } = await this.apply(this.config);
      if (changes.added.length || changes.changed.length || changes.removed.length) {
        this.deps.logger.info({ event: 'accounts_followed', ...changes }, 'stored accounts changed through another instance: running them');
      }
    }).catch((e: Error) => this.deps.logger.warn({ event: 'store_error', error: e.message }, 'could not run the stored accounts another instance changed'));
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.storeRead = true;
  }

  /** relay.yaml's accounts and the store's, with what was left out logged. */
  static merge(config: Config, stored: readonly StoredAccount[], logger: Logger): MergedAccounts {
    const merged = mergeAccounts(config, stored);
    for (const email of merged.shadowed) {
      logger.warn({ event: 'account_shadowed', account: email }, `${email} is in relay.yaml and in the store: the relay.yaml account is used`);
    }
    for (const { email, error } of merged.invalid) {
      logger.error({ event: 'account_invalid', account: email, error }, `stored account ${email} does not load; left out`);
    }
    return merged;
  }

  static accountsOf(merged: MergedAccounts, config: Config): Account[] {
    return merged.accounts.map((a) => accountFromConfig(a.config, config.providers));
  }

  list(): AccountView[] {
    return this.deps.relay.accounts.map((a) => this.view(a));
  }

  get(email: string): AccountView {
    return this.view(this.live(email));
  }

  /** POST /api/accounts: a new stored account, verified first unless `verify` is false. */
  add(input: unknown, verify: boolean): Promise<AccountView> {
    return this.serial(async () => {
      refuseFileKeys(input);
      const resolved = this.resolve(input);
      const existing = this.sources.get(resolved.email);
      if (existing?.source === 'config') throw readOnly(resolved.email);
      // A stored account that does not load is still there: it is changed, not added over.
      if (existing || this.findStored(resolved.email)) throw new AdminError(409, `${resolved.email} already exists; change it with PUT or PATCH /api/accounts/${resolved.email}`);
      await this.save(input as AccountInput, resolved, verify);
      return this.get(resolved.email);
    });
  }

  /** PUT: the stored account's keys replaced by `input` (its email may be left out). */
  replace(email: string, input: unknown, verify: boolean): Promise<AccountView> {
    return this.serial(async () => {
      const current = this.storedInput(email);
      if (!isObject(input)) throw new AdminError(400, 'the body must be a JSON object of account keys');
      refuseFileKeys(input);
      if (input.email !== undefined && String(input.email).trim().toLowerCase() !== email) {
        throw new AdminError(400, `the email in the body (${String(input.email)}) is not the one in the path (${email}); remove the account and add the new one`, { key: 'email' });
      }
      await this.change(current, { ...input, email } as AccountInput, verify);
      return this.get(email);
    });
  }

  /** PATCH: the given keys set, a key given as null removed, the rest kept. */
  patch(email: string, changes: unknown, verify: boolean): Promise<AccountView> {
    return this.serial(async () => {
      if (!isObject(changes)) throw new AdminError(400, 'the body must be a JSON object of account keys');
      refuseFileKeys(changes);
      if (changes.email !== undefined) throw new AdminError(400, 'email cannot be changed; remove the account and add the new one', { key: 'email' });
      const current = this.storedInput(email);
      const merged: Record<string, unknown> = { ...current };
      for (const [k, v] of Object.entries(changes)) {
        if (v === null) delete merged[k];
        else merged[k] = v;
      }
      await this.change(current, merged as AccountInput, verify);
      return this.get(email);
    });
  }

  remove(email: string): Promise<void> {
    return this.serial(async () => {
      this.storedInput(email);
      await accountStore(this.deps.store).deleteAccount(email);
      await this.apply(this.config);
    });
  }

  /** A fresh token through the relay's own cache, then an authenticated connection: nothing sent. */
  async test(email: string): Promise<CheckResult> {
    const account = this.live(email);
    try {
      return await this.tests.run(account.email, async () => {
        // The check's connection counts against the account's max_connections like a pooled one.
        const giveBack = await (this.deps.relay.pools.get(account.email)?.borrowSlot() ?? (() => undefined));
        if (!giveBack) {
          throw new AdminError(503, `every connection of ${account.email} is busy (max_connections ${account.maxConnections}): test again in a moment`, { retry_after_s: 5 });
        }
        try {
          return await checkAccount(account, {
            token: (a) => this.deps.relay.tokens.refreshNow(a.email),
            upstream: connectorOptions(this.config.upstream),
          });
        } finally {
          giveBack();
        }
      });
    } catch (e) {
      if (e instanceof TestRateLimited) throw new AdminError(429, e.message, { retry_after_s: e.retryAfterS });
      throw e;
    }
  }

  /** Runs `next` (already validated) with the store's accounts; `restartNeeded` says what it cannot change live. */
  reload(next: Config, restartNeeded: string[]): Promise<ReloadReport> {
    return this.serial(async () => {
      const { changes, merged } = await this.apply(next);
      return { accounts: changes, restart_needed: restartNeeded, shadowed: merged.shadowed, invalid: merged.invalid };
    });
  }

  private async change(current: AccountInput, next: AccountInput, verify: boolean): Promise<void> {
    const resolved = this.resolve(next);
    // What runs now (none when the stored account did not load). Only what affects the token
    // or the connection is worth a round trip to the provider.
    const before = this.deps.relay.router.account(current.email.trim().toLowerCase());
    const credentialsChanged = !before || !sameConnections(before, accountFromConfig(resolved, this.config.providers));
    await this.save(next, resolved, verify && credentialsChanged);
  }

  private async save(input: AccountInput, resolved: ResolvedAccountConfig, verify: boolean): Promise<void> {
    const store = accountStore(this.deps.store);
    if (verify) {
      const result = await this.verify(accountFromConfig(resolved, this.config.providers));
      if (!result.ok) {
        throw new AdminError(422, `verification failed at ${result.stage}: ${result.error}`, { check: result, hint: 'fix the credentials, or add ?verify=false to save without checking' });
      }
    }
    await store.saveAccount({ ...input, email: resolved.email });
    await this.apply(this.config);
  }

  /** The token is fetched (and stored, with any rotated refresh token) as the relay will use it. */
  private verify(account: Account): Promise<CheckResult> {
    return checkAccount(account, {
      token: (a) => freshToken(a, this.deps.store, this.config.tokens.request_timeout_ms),
      upstream: connectorOptions(this.config.upstream),
    });
  }

  /** Re-reads the store and hands the relay the whole set. */
  private async apply(config: Config): Promise<{ changes: AccountChanges; merged: MergedAccounts }> {
    const { logger, relay, store } = this.deps;
    try {
      if (isAccountStore(store)) this.stored = await store.listAccounts();
      this.storeRead = true;
    } catch (e) {
      logger.warn({ event: 'store_error', error: (e as Error).message }, 'could not read the stored accounts; keeping the ones last read');
    }
    const merged = AccountAdmin.merge(config, this.stored, logger);
    const changes = await relay.applyAccounts(AccountAdmin.accountsOf(merged, config), config.inbound.trusted_networks);
    this.config = config;
    this.remember(merged);
    return { changes, merged };
  }

  private remember(merged: MergedAccounts): void {
    this.sources = new Map(merged.accounts.map((a) => [a.config.email, a]));
  }

  private resolve(input: unknown): ResolvedAccountConfig {
    for (const key of ['client_secret', 'refresh_token', 'password']) {
      // What GET shows in place of a secret, sent back as if it were one.
      if (isObject(input) && input[key] === MASK) {
        throw new AdminError(400, `${key}: "${MASK}" is the mask GET shows, not the secret; send the secret, or leave the key out (PATCH keeps it)`, { key });
      }
    }
    try {
      return resolveAccountInput(input, this.config);
    } catch (e) {
      if (e instanceof ConfigError) throw new AdminError(400, e.path ? `${e.path}: ${e.reason}` : e.reason, { key: e.path });
      throw e;
    }
  }

  private live(email: string): Account {
    const account = this.deps.relay.router.account(email);
    if (!account) throw new AdminError(404, `no account ${email}`);
    return account;
  }

  /** The account's keys as stored; 404 if unknown, 409 if relay.yaml defines it. */
  private storedInput(email: string): AccountInput {
    if (this.sources.get(email)?.source === 'config') throw readOnly(email);
    const found = this.findStored(email);
    if (!found) throw new AdminError(404, `no account ${email} in the store`);
    return found;
  }

  private findStored(email: string): AccountInput | undefined {
    return this.stored.find((s) => String(s.config.email).trim().toLowerCase() === email)?.config;
  }

  private view(a: Account): AccountView {
    const { relay } = this.deps;
    const token = relay.tokens.statusOf(a.email);
    const pause = relay.pauses.get(a.email);
    const sent = relay.sent.of(a.email);
    const sourced = this.sources.get(a.email);
    const health = this.deps.health.of(a);
    return {
      email: a.email,
      provider: a.provider.name,
      auth: a.auth,
      source: sourced?.source ?? 'config',
      senders: a.senders,
      health: health.state,
      can_send: health.can_send,
      token_expires_at: iso(token?.expiresAt),
      last_refresh_at: iso(token?.lastRefreshAt),
      last_error: health.error,
      last_error_at: iso(health.error_at),
      advice: health.advice,
      store_error: token?.storeError ?? null,
      sent_last_hour: sent.last_hour,
      sent_last_day: sent.last_day,
      connections: relay.pools.get(a.email)?.stats ?? null,
      paused: pause ? { until: new Date(pause.until).toISOString(), reason: pause.reason } : null,
      at_limit_until: iso(relay.limiter.atLimit(a.email)?.until),
      settings: maskTree(sourced?.config ?? {}),
    };
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/**
 * Keys that name a file on the relay's disk. Through the API they would let any caller make the
 * relay read (and sign with) whatever key file the operator keeps, and its errors would tell
 * which paths exist: such accounts are configured on the host (relay.yaml, `accounts add`).
 */
const FILE_KEYS = ['service_account_file'] as const;

function refuseFileKeys(input: unknown): void {
  if (!isObject(input)) return;
  for (const key of FILE_KEYS) {
    if (input[key] !== undefined) {
      throw new AdminError(400, `${key} cannot be set through the HTTP API (it names a file on the relay's host): add this account in relay.yaml or with \`xoauth2-relay accounts add\` on the host`, { key });
    }
  }
}

const readOnly = (email: string) =>
  new AdminError(409, `${email} is defined in relay.yaml, which the API does not change: edit the file and reload (SIGHUP or xoauth2-relay reload)`);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function accountStore(store: Store): AccountStore {
  if (!isAccountStore(store)) throw new AdminError(501, 'this store does not keep accounts');
  return store;
}
