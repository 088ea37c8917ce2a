// What the relay keeps across restarts and shares between instances. One interface, so the
// embedded SQLite default and the shared Redis store are interchangeable. The message path
// touches it only to count against sending limits (and only for accounts that have any);
// tokens are served from memory, the store sees start-up and refreshes.
import type { AccountInput } from '../config/schema.js';
import type { StoreHealth } from './store-health.js';

/** An account's token state. Every field is secret except `expiresAt` and is sealed at rest. */
export interface TokenRecord {
  accessToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** The refresh token to use next: the provider's rotated one, or the config's; null for grants without one. */
  refreshToken: string | null;
  /**
   * The config's refresh_token and client_id this record derives from. When the operator
   * changes either, the record is stale and the config's value wins (issue #2, rotation).
   */
  configRefreshToken: string | null;
  clientId: string;
  /**
   * How long the token had to live when it was obtained, so an instance that takes it from the
   * store judges a short-lived token by its own life (absent in records of older versions).
   */
  lifeMs?: number;
  /**
   * The scope the access token was granted for (it follows the account's upstream: SMTP, Graph or
   * the Gmail API). Absent in records written before API upstreams existed: those were for SMTP.
   */
  scope?: string | null;
}

/** One rolling-window counter of an account (src/limits/limits.ts defines them). */
export interface WindowCounter {
  name: string;
  limit: number;
  bucketMs: number;
  /** The window is `buckets` buckets long; `buckets + 1` are summed (see WINDOWS). */
  buckets: number;
}

export interface Charge {
  counter: WindowCounter;
  amount: number;
}

/** Where a reservation was counted, so it can be given back exactly. */
export interface Charged {
  counter: string;
  bucket: number;
  amount: number;
}

export type ReserveResult =
  | { ok: true; charged: Charged[]; /** What each charged counter has left after this charge. */ left: Record<string, number> }
  | { ok: false; counter: string; limit: number; /** When enough of the window has rolled by for the charge to fit. */ retryInMs: number };

/** An account the provider said is over its quota: not used until `until` (epoch ms). */
export interface AccountPause {
  until: number;
  reason: string;
}

/** A token refresh that failed on some instance, so the others back off instead of retrying. */
export interface RefreshFailure {
  /** The instance that tried (TokenCache.instanceId). */
  by: string;
  at: number;
  retryAt: number;
  kind: string;
  message: string;
}

/**
 * Coordination between relay instances that share a store. Absent for the embedded store: one
 * process, whose token cache is its own single-flight.
 */
export interface FleetCoordination {
  /** SET NX with a TTL: true when `owner` now holds `name`. A holder that dies frees it at the TTL. */
  tryLock(name: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Frees `name` if `owner` still holds it. */
  unlock(name: string, owner: string): Promise<void>;
  /** null clears it (after a successful refresh). */
  saveRefreshFailure(email: string, failure: RefreshFailure | null): Promise<void>;
  loadRefreshFailure(email: string): Promise<RefreshFailure | null>;
}

/**
 * A mailbox's upstream connections counted for the whole fleet (issue 22): an instance takes a
 * slot before it opens a connection and gives it back when the connection closes. A slot is held
 * until its expiry; the holder renews it while the connection lives, so the slots of an instance
 * that dies free themselves within the TTL. `cap` is the account's max_connections, passed on
 * every call so a changed setting applies at once.
 */
export interface ConnectionSlots {
  /** Takes one slot of `email` for `holder` until now + ttlMs; false when `cap` are held. */
  take(email: string, holder: string, cap: number, ttlMs: number): Promise<boolean>;
  /** Extends the holders' slots; answers those no longer held (expired and taken by others). */
  renew(email: string, holders: readonly string[], cap: number, ttlMs: number): Promise<string[]>;
  give(email: string, holder: string): Promise<void>;
  /** Tells the other instances that this one waits for a slot of `email` (they close an idle connection). */
  want(email: string): void;
  /** Called when another instance waits for a slot of `email`. */
  onWanted(listener: (email: string) => void): void;
}

/** Stored accounts changed through another instance (or the CLI): re-read them. */
export interface AccountChangeFeed {
  onAccountsChanged(listener: () => void): void;
}

/** What the token cache needs. */
export interface TokenStore {
  loadToken(email: string): Promise<TokenRecord | null>;
  saveToken(email: string, record: TokenRecord): Promise<void>;
  deleteToken(email: string): Promise<void>;
  readonly fleet?: FleetCoordination | null;
  /** Whether writes succeed; the token cache reports its own failed and retried saves here. */
  readonly health?: StoreHealth;
}

/**
 * Counters kept in this process (the embedded store's): the limiter uses them directly, so a
 * message's reservation costs no promise. A store shared by a fleet (Redis) has none.
 */
export interface LocalCounting {
  reserve(email: string, charges: readonly Charge[]): ReserveResult;
  release(email: string, charged: readonly Charged[]): void;
}

export interface Store extends TokenStore {
  /** Charges every counter, or none when any would go over its limit (atomic, fleet-wide with Redis). */
  reserve(email: string, charges: readonly Charge[]): Promise<ReserveResult>;
  /** Gives back a reservation that was not used (the message was not sent). */
  release(email: string, charged: readonly Charged[]): Promise<void>;
  /** reserve() and release() answered synchronously, when the counting is this process's own. */
  readonly localCounting?: LocalCounting;
  /** Upstream connections per mailbox, counted fleet-wide on a shared store (absent: counted in this process). */
  readonly connectionSlots?: ConnectionSlots;
  /** Present on a shared store: changes other instances made to the stored accounts. */
  readonly accountChanges?: AccountChangeFeed;
  savePause(email: string, pause: AccountPause): Promise<void>;
  /** Pauses still in force, by account. */
  loadPauses(): Promise<Map<string, AccountPause>>;
  close(): Promise<void>;
}

/**
 * An account kept in the store rather than in relay.yaml (what `auth --store`, `accounts add`,
 * `accounts import` and the HTTP API save): its keys exactly as relay.yaml writes them, so
 * loading it goes through the same schema (src/config/stored-accounts.ts).
 * Sealed at rest as a whole: it holds secrets (refresh_token, client_secret, password).
 */
export interface StoredAccount {
  /** relay.yaml account keys: email, provider, auth, client_id, client_secret, refresh_token, tenant, ... */
  config: AccountInput;
  /** Epoch milliseconds of the last save. */
  updatedAt: number;
}

/** A store that keeps accounts: both the embedded SQLite store and Redis do. */
export interface AccountStore {
  /** Inserts, or replaces the account with the same email (compared lower-case). */
  saveAccount(config: AccountInput): Promise<void>;
  /** saveAccount for several, all or none (one transaction): what `accounts import` writes. */
  saveAccounts(configs: readonly AccountInput[]): Promise<void>;
  /** Every account, by email. One sealed under another key (XOAUTH2_RELAY_KEY changed) is left out. */
  listAccounts(): Promise<StoredAccount[]>;
  /** False when there was no such account. */
  deleteAccount(email: string): Promise<boolean>;
}

export const isAccountStore = (store: object): store is AccountStore =>
  typeof (store as Partial<AccountStore>).saveAccount === 'function' &&
  typeof (store as Partial<AccountStore>).saveAccounts === 'function' &&
  typeof (store as Partial<AccountStore>).listAccounts === 'function' &&
  typeof (store as Partial<AccountStore>).deleteAccount === 'function';
