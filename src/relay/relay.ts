// The relay stage: route → limits → token → connection → transaction. Owns the router, the
// token cache, the limiter and one upstream pool per account; the inbound stage calls begin()
// at MAIL FROM and drives the returned transaction. Accounts change at run time through
// applyAccounts(): a new router is swapped in whole, pools of changed or removed accounts are
// closed gracefully, and the message path sees only the router and the pool map it looks up.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { Limiter, type Picked, type Reservation } from '../limits/limiter.js';
import { AccountPauses } from '../limits/pauses.js';
import type { Metrics } from '../obs/metrics.js';
import { SentCounts } from '../obs/sent-counts.js';
import { sameAccount, sameConnections, type Account } from '../routing/account.js';
import { Router, type SessionIdentity } from '../routing/router.js';
import { LocalConnectionSlots } from '../store/local-slots.js';
import type { ConnectionSlots, Store } from '../store/store.js';
import { TokenCache } from '../tokens/token-cache.js';
import type { UpstreamConnection } from '../upstream/connection.js';
import { connectorOptions, createConnector, type Connector } from '../upstream/connector.js';
import { AccountPool } from '../upstream/pool.js';
import { ApiUpstreams } from '../upstream/api/upstreams.js';
import { attribute, RelayError } from '../errors/registry.js';
import { LimitedTransaction } from './limited-transaction.js';
import { bounded } from './bounded.js';
import { Warmth } from './warmth.js';
import type { MailParams } from '../smtp/envelope.js';
import type { UpstreamReplyObserver } from '../upstream/observer.js';
import { RelayTransaction, settle, type Group } from './transaction.js';

/** Pooled connections are retired this long before the token they authenticated with expires. */
const TOKEN_MARGIN_MS = 60_000;
const SWEEP_INTERVAL_MS = 1_000;
/** How often the sweeper looks for accounts that went cold (their activity window is hours long). */
const WARMTH_CHECK_MS = 60_000;

export interface RelayDeps {
  store: Store;
  logger: Logger;
  metrics?: Metrics;
  /** Replaces the real connector (tests). */
  connector?: Connector;
}

/** What a provider can carry, as its EHLO said. `size` null: no limit announced. */
export interface Capabilities {
  size: number | null;
  smtputf8: boolean;
  eightBitMime: boolean;
}

/**
 * The group's RCPTs the account's limits allow, in order, reserved; DATA only when all were.
 * A refused one stops here: it and those after it go the ordinary way and get their refusal.
 * Synchronous unless a reservation needs a store round trip.
 */
function reserveGroup(reservation: Reservation, group: Group, n = 0): Group | Promise<Group> {
  for (; n < group.rcpts.length; n++) {
    let held;
    try {
      held = reservation.addRecipient();
    } catch {
      break;
    }
    if (held) {
      const next = n + 1;
      return held.then(
        () => reserveGroup(reservation, group, next),
        () => cleared(group, next - 1),
      );
    }
  }
  return cleared(group, n);
}

const cleared = (group: Group, n: number): Group =>
  n === group.rcpts.length ? { rcpts: group.rcpts, data: group.data && n > 0 } : { rcpts: group.rcpts.slice(0, n), data: false };

/** A limits refusal, attributed to the account when there was only one to pick. */
const whoseLimit = (candidates: readonly Account[], e: unknown): unknown => (candidates.length === 1 ? attribute(e, candidates[0]!.email) : e);

/** What applyAccounts() did, by email. */
export interface AccountChanges {
  added: string[];
  changed: string[];
  removed: string[];
  unchanged: number;
}

type Pool = AccountPool<UpstreamConnection>;

export class Relay {
  readonly tokens: TokenCache;
  readonly pools = new Map<string, Pool>();
  readonly pauses: AccountPauses;
  readonly limiter: Limiter;
  /** Accounts with upstream: graph | gmail_api send through these instead of an SMTP pool. */
  readonly api: ApiUpstreams;
  /** Messages each account sent lately (`accounts list`). */
  readonly sent = new SentCounts();
  /** Which accounts are kept warm (token and min_idle connections); the others cost nothing while idle. */
  readonly warmth: Warmth;
  private current: readonly Account[];
  private currentRouter: Router;
  private trustedNetworks: readonly string[];
  private readonly connect: Connector;
  private readonly onReply: UpstreamReplyObserver;
  /** Account changes run one after another. */
  private changing: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private sweeper: NodeJS.Timeout | null = null;
  private lastWarmthCheck = Date.now();
  /** max_connections counted per mailbox: fleet-wide on a shared store, in this process otherwise. */
  private readonly slots: ConnectionSlots;
  /** What each account's provider offered on its last connection (EHLO of the relay follows it). */
  private readonly learned = new Map<string, Capabilities>();

  constructor(
    private readonly config: Config,
    accounts: readonly Account[],
    private readonly deps: RelayDeps,
  ) {
    this.current = accounts;
    this.trustedNetworks = config.inbound.trusted_networks;
    this.currentRouter = new Router(accounts, this.trustedNetworks);
    this.warmth = new Warmth(config.warm);
    this.warmth.setAccountCount(accounts.length);
    const t = config.tokens;
    this.tokens = new TokenCache(
      {
        refreshBeforeExpiryMs: t.refresh_before_expiry_ms,
        requestTimeoutMs: t.request_timeout_ms,
        retryMinMs: t.retry_min_ms,
        retryMaxMs: t.retry_max_ms,
      },
      {
        store: deps.store,
        logger: deps.logger,
        onRefresh: (account, ok, ms) => {
          deps.metrics?.tokenRefreshes.inc({ account, result: ok ? 'ok' : 'failed' });
          deps.metrics?.tokenRefreshLatency.observe({ account }, ms / 1000);
        },
        keepWarm: (email) => this.warmth.isWarm(email),
        restored: (email, at) => this.warmth.seen(email, at),
      },
    );
    this.pauses = new AccountPauses(deps.store, deps.logger);
    this.limiter = new Limiter({ store: deps.store, pauses: this.pauses, health: (email) => this.tokens.healthOf(email), logger: deps.logger });
    this.connect = deps.connector ?? createConnector(this.tokens, connectorOptions(config.upstream), deps.logger);
    const metrics = deps.metrics;
    this.onReply = metrics ? (account, command, code) => metrics.countUpstreamReply(account.email, command, code) : () => undefined;
    this.slots = deps.store.connectionSlots ?? new LocalConnectionSlots();
    this.api = new ApiUpstreams(config.upstream, this.tokens, this.pauses, this.slots, deps.logger);
    this.slots.onWanted((email) => this.pools.get(email)?.wanted());
    for (const account of accounts) this.pools.set(account.email, this.newPool(account));
  }

  /** Which account sends what; replaced whole when the accounts change. */
  get router(): Router {
    return this.currentRouter;
  }

  get accounts(): readonly Account[] {
    return this.current;
  }

  private newPool(account: Account): Pool {
    const u = this.config.upstream;
    return new AccountPool<UpstreamConnection>(
      account.email,
      () => this.connect(account).then((opened) => {
        const ext = opened.conn.extensions;
        this.learned.set(account.email, { size: opened.conn.maxMessageSize, smtputf8: ext.has('SMTPUTF8'), eightBitMime: ext.has('8BITMIME') });
        return opened;
      }),
      {
        maxConnections: account.maxConnections,
        // An API account's pool stays empty (no SMTP connection); its min_idle warms ApiUpstreams.
        minIdle: this.minIdleOf(account),
        messagesPerConnection: account.messagesPerConnection,
        acquireTimeoutMs: u.acquire_timeout_ms,
        idleTimeoutMs: u.idle_timeout_ms,
        tokenMarginMs: TOKEN_MARGIN_MS,
        slots: this.slots,
        slotTtlMs: u.slot_ttl_ms,
      },
      this.deps.logger,
    );
  }

  /** Ready connections kept for the account: its min_idle while warm, none while cold. */
  private minIdleOf(account: Account): number {
    return account.upstream === 'smtp' && this.warmth.isWarm(account.email) ? account.minIdle : 0;
  }

  /**
   * Tokens first (in parallel, bounded), then min_idle authenticated connections per account,
   * all within tokens.startup_wait_ms: the first message after start-up pays for neither. Only
   * warm accounts (src/relay/warmth.ts) get either. Each account's connections open as soon as
   * its token is there. With more than warm.all_up_to accounts, start() returns as soon as one
   * account can send (the listener opens, /readyz says ready) and the rest warm meanwhile: a
   * message for an account still without a token joins its token request.
   */
  async start(): Promise<void> {
    const started = Date.now();
    const { startup_wait_ms: waitMs, startup_concurrency: concurrency } = this.config.tokens;
    await this.pauses.start();
    // Restoring stored tokens seeds warmth, so the pools' min_idle is known after it.
    let firstReady: () => void = () => undefined;
    const oneReady = new Promise<void>((resolve) => (firstReady = resolve));
    const warming = new Set<Promise<unknown>>();
    const warmed = new Set<string>();
    const logins = bounded(concurrency);
    // Each warm account's connections open as soon as its token is there, `concurrency` at a time.
    const warmOne = (account: Account) => {
      if (warmed.has(account.email) || !this.warmth.isWarm(account.email) || !this.tokens.current(account.email)) return;
      warmed.add(account.email);
      const pool = this.pools.get(account.email);
      const done = logins(() => {
        pool?.setMinIdle(this.minIdleOf(account));
        return Promise.allSettled([pool?.warm(), this.api.warm([account])]);
      }).then(firstReady);
      warming.add(done);
    };
    const tokens = this.tokens.start(this.current, {
      waitMs,
      concurrency,
      onToken: (email) => {
        const account = this.router.account(email);
        if (account) warmOne(account);
      },
    });
    const everything = tokens.then(async () => {
      // Those whose token came another way (a message fetched it meanwhile).
      for (const a of this.current) warmOne(a);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(warming), new Promise((r) => (timer = setTimeout(r, Math.max(0, waitMs - (Date.now() - started)))))]);
      clearTimeout(timer);
    });
    await (this.warmth.allWarm ? everything : Promise.race([everything, oneReady]));
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
    // A cold account has no token on purpose: not something for the operator to look at.
    const failing = this.tokens.status().filter((s) => s.health !== 'healthy' && (s.health !== 'pending' || this.warmth.isWarm(s.email)));
    this.deps.logger.info(
      { event: 'relay_ready', accounts: this.current.length, unhealthy: failing.map((s) => s.email), ms: Date.now() - started },
      'relay ready',
    );
  }

  /**
   * Every second: pools keep their min_idle and close what idled too long; an account that went
   * cold stops keeping connections ready (its idle ones close at upstream.idle_timeout_ms).
   */
  private sweep(): void {
    const check = Date.now() - this.lastWarmthCheck >= WARMTH_CHECK_MS;
    if (check) this.lastWarmthCheck = Date.now();
    for (const account of this.current) {
      const pool = this.pools.get(account.email);
      if (!pool) continue;
      if (check) pool.setMinIdle(this.minIdleOf(account));
      if (this.tokens.current(account.email)) pool.sweep();
    }
  }

  /** min_idle ready connections for the accounts that have a token, waiting at most `waitMs`. */
  private async warm(accounts: readonly Account[], waitMs: number): Promise<void> {
    const ready = accounts.filter((a) => this.tokens.current(a.email));
    const warm = Promise.allSettled([...ready.map((a) => this.pools.get(a.email)?.warm()), this.api.warm(ready)]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([warm, new Promise((r) => (timer = setTimeout(r, Math.max(0, waitMs))))]);
    clearTimeout(timer);
  }

  /**
   * Runs the relay with `next` as its accounts from now on, without dropping anything in flight:
   *  - an account whose credentials did not change keeps its token; a new or re-credentialed
   *    one gets its token first (within tokens.startup_wait_ms, as at start-up);
   *  - an account whose connections would differ (credentials, provider, source_ip, pool sizes)
   *    gets a new pool, and the old one is closed: transactions in flight finish on their
   *    connections, idle ones are closed, waiters get 451 (ACCOUNT_RECONFIGURED);
   *  - a removed account's pool is closed likewise (waiters: ACCOUNT_REMOVED), its token
   *    timer stops; sessions that authenticated as it get 451 at their next MAIL;
   *  - the router (senders, passwords, trusted networks) is replaced in one assignment.
   * Calls are serialised: a second change waits for the first.
   */
  applyAccounts(next: readonly Account[], trustedNetworks: readonly string[] = this.trustedNetworks): Promise<AccountChanges> {
    const run = this.changing.then(() => this.apply(next, trustedNetworks));
    this.changing = run.catch(() => undefined);
    return run;
  }

  private async apply(next: readonly Account[], trustedNetworks: readonly string[]): Promise<AccountChanges> {
    const started = Date.now();
    const before = new Map(this.current.map((a) => [a.email, a]));
    const changes: AccountChanges = { added: [], changed: [], removed: [], unchanged: 0 };
    const fresh: Account[] = [];
    for (const a of next) {
      const old = before.get(a.email);
      if (!old) changes.added.push(a.email);
      else if (sameAccount(old, a)) changes.unchanged++;
      else changes.changed.push(a.email);
      if (!old || !sameConnections(old, a)) fresh.push(a);
    }
    const staying = new Set(next.map((a) => a.email));
    for (const email of before.keys()) if (!staying.has(email)) changes.removed.push(email);

    const { startup_wait_ms: waitMs, startup_concurrency: concurrency } = this.config.tokens;
    this.warmth.setAccountCount(next.length);
    await this.tokens.install(next, { waitMs, concurrency });
    if (this.stopped) throw new RelayError('SHUTTING_DOWN', 'the relay stopped while accounts were being changed');

    // The switch itself is synchronous: a transaction sees the old accounts or the new ones.
    const retired: Array<[Pool, RelayError]> = [];
    for (const a of fresh) {
      const old = this.pools.get(a.email);
      if (old) retired.push([old, new RelayError('ACCOUNT_RECONFIGURED', `${a.email} was reconfigured`)]);
      this.pools.set(a.email, this.newPool(a));
    }
    for (const email of changes.removed) {
      retired.push([this.pools.get(email)!, new RelayError('ACCOUNT_REMOVED', `${email} was removed`)]);
      this.pools.delete(email);
    }
    this.current = next;
    this.trustedNetworks = trustedNetworks;
    this.currentRouter = new Router(next, trustedNetworks);
    for (const email of [...changes.changed, ...changes.removed]) this.limiter.forget(email);
    for (const email of changes.removed) this.tokens.remove(email);
    for (const email of changes.removed) this.warmth.forget(email);

    // Old connections go before new ones open, so a mailbox is not briefly over its provider's
    // connection limit (Exchange refuses a 4th).
    await Promise.allSettled(retired.map(([pool, reason]) => pool.close(reason)));
    await this.warm(fresh.filter((a) => this.warmth.isWarm(a.email)), waitMs - (Date.now() - started));
    this.deps.logger.info({ event: 'accounts_changed', ...changes, ms: Date.now() - started }, 'accounts changed');
    return changes;
  }

  /**
   * Routes the transaction, reserves it against the picked account's limits and opens it
   * upstream; throws a RelayError/UpstreamReplyError to answer. When the provider answers MAIL
   * with a quota refusal, that account is paused and the next account of the pool is tried.
   *
   * `group`: RCPTs (and DATA) the client pipelined behind this MAIL. Those the account's limits
   * allow are reserved now and go upstream in the same write as MAIL; the transaction's rcpt()
   * and data() then answer from their replies. A backend that is not SMTP ignores it.
   */
  begin(identity: SessionIdentity, mailFrom: string, params: MailParams, group?: Group): Promise<LimitedTransaction> {
    // Synchronous up to the upstream MAIL when the answers are at hand (limits counted in this
    // process, an idle pooled connection): the one promise is the provider's reply.
    return settle(() => this.attempt(this.candidates(identity, mailFrom), mailFrom, params, group, 1));
  }

  /** One pick and its opening. What is known at once is thrown at once: begin() makes it a rejection. */
  private attempt(candidates: readonly Account[], mailFrom: string, params: MailParams, group: Group | undefined, attempt: number): Promise<LimitedTransaction> {
    let picked;
    try {
      picked = this.limiter.choose(candidates);
    } catch (e) {
      throw whoseLimit(candidates, e);
    }
    if (picked instanceof Promise) {
      return picked.then(
        (p) => this.open(p, candidates, mailFrom, params, group, attempt),
        (e: unknown) => {
          throw whoseLimit(candidates, e);
        },
      );
    }
    return this.open(picked, candidates, mailFrom, params, group, attempt);
  }

  /** Opens the transaction on the picked account; a quota refusal there moves on to the next candidate. */
  private open({ account, reservation }: Picked, candidates: readonly Account[], mailFrom: string, params: MailParams, group: Group | undefined, attempt: number): Promise<LimitedTransaction> {
    const pool = this.pools.get(account.email);
    // A cold account's first message makes it warm: from now on it keeps min_idle ready.
    if (pool && this.warmth.seen(account.email)) pool.setMinIdle(this.minIdleOf(account));
    if (!pool) {
      // Removed while its reservation was being counted.
      reservation.unsent();
      throw new RelayError('ACCOUNT_REMOVED', `${account.email} was removed`);
    }
    const failed = (e: unknown): Promise<LimitedTransaction> => {
      reservation.unsent();
      const answer = this.limiter.providerRefusal(account, e);
      // A paused account is skipped by the next pick(); the others may still send.
      if (answer === e || attempt >= candidates.length) throw attribute(answer, account.email);
      return this.attempt(candidates, mailFrom, params, group, attempt + 1);
    };
    try {
      if (account.upstream !== 'smtp') {
        // An HTTP API takes the message whole at the end: the relay answers MAIL and each RCPT itself.
        return this.api.begin(account, mailFrom, params, this.onReply).then((tx) => new LimitedTransaction(tx, reservation, this.limiter), failed);
      }
      const opened = (c: Group | undefined) =>
        RelayTransaction.begin(account, pool, mailFrom, params, this.onReply, c).then((tx) => new LimitedTransaction(tx, reservation, this.limiter, c?.rcpts.length ?? 0), failed);
      const ready = group ? reserveGroup(reservation, group) : undefined;
      return ready instanceof Promise ? ready.then(opened) : opened(ready);
    } catch (e) {
      return failed(e);
    }
  }

  /** The router's candidates, and the null sender of a trusted client without AUTH (SPEC "Routing" 4). */
  private candidates(identity: SessionIdentity, mailFrom: string): readonly Account[] {
    if (mailFrom === '' && !identity.account && this.router.isTrusted(identity.remoteAddress)) {
      const name = this.config.inbound.null_sender_account;
      const account = name ? this.router.account(name.toLowerCase()) : null;
      if (!account) throw new RelayError('NULL_SENDER_UNROUTED', name ? `null_sender_account ${name} is not an account` : 'inbound.null_sender_account is not set');
      return [account];
    }
    return this.router.candidates(identity, mailFrom);
  }

  /**
   * What the relay can promise in EHLO before it knows the account: the least that the
   * providers' connections seen so far offer (SIZE the smallest, SMTPUTF8 and 8BITMIME only if
   * all have them); for an authenticated session, its own account's. Until a connection has been
   * seen, the relay's own limits and both extensions (Gmail and Microsoft 365 offer them); MAIL
   * then refuses what the picked account cannot carry.
   */
  capabilities(account: Account | null): Capabilities {
    const seen = account ? [this.learned.get(account.email)].filter((c) => c !== undefined) : [...this.learned.values()];
    if (seen.length === 0) return { size: null, smtputf8: true, eightBitMime: true };
    let size: number | null = null;
    for (const c of seen) if (c.size !== null) size = size === null ? c.size : Math.min(size, c.size);
    return { size, smtputf8: seen.every((c) => c.smtputf8), eightBitMime: seen.every((c) => c.eightBitMime) };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.pauses.stop();
    this.tokens.stop();
    await Promise.allSettled([...[...this.pools.values()].map((p) => p.close()), this.api.close()]);
    // Connections being opened (and the refresh a refused login triggers) have finished above;
    // a refresh still in flight must save its rotated token before the store closes.
    await this.tokens.settled();
  }
}
