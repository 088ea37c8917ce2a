// The relay stage: route → limits → token → connection → transaction. Owns the router, the
// token cache, the limiter and one upstream pool per account; the inbound stage calls begin()
// at MAIL FROM and drives the returned transaction.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { Limiter } from '../limits/limiter.js';
import { AccountPauses } from '../limits/pauses.js';
import type { Metrics } from '../obs/metrics.js';
import type { Account } from '../routing/account.js';
import { Router, type SessionIdentity } from '../routing/router.js';
import type { Store } from '../store/store.js';
import { TokenCache } from '../tokens/token-cache.js';
import type { UpstreamConnection } from '../upstream/connection.js';
import { createConnector, type Connector } from '../upstream/connector.js';
import { AccountPool } from '../upstream/pool.js';
import { RelayError } from './errors.js';
import { LimitedTransaction } from './limited-transaction.js';
import { RelayTransaction, type MailParams } from './transaction.js';

/** Pooled connections are retired this long before the token they authenticated with expires. */
const TOKEN_MARGIN_MS = 60_000;
const SWEEP_INTERVAL_MS = 1_000;

export interface RelayDeps {
  store: Store;
  logger: Logger;
  metrics?: Metrics;
  /** Replaces the real connector (tests). */
  connector?: Connector;
}

export class Relay {
  readonly router: Router;
  readonly tokens: TokenCache;
  readonly pools = new Map<string, AccountPool<UpstreamConnection>>();
  readonly pauses: AccountPauses;
  readonly limiter: Limiter;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    private readonly config: Config,
    readonly accounts: readonly Account[],
    private readonly deps: RelayDeps,
  ) {
    this.router = new Router(accounts, config.inbound.trusted_networks);
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
      },
    );
    this.pauses = new AccountPauses(deps.store, deps.logger);
    this.limiter = new Limiter({ store: deps.store, pauses: this.pauses, health: (email) => this.tokens.healthOf(email), logger: deps.logger });
    const u = config.upstream;
    const connect =
      deps.connector ??
      createConnector(
        this.tokens,
        { connectTimeoutMs: u.connect_timeout_ms, commandTimeoutMs: u.command_timeout_ms, dataTimeoutMs: u.data_timeout_ms, ehloName: u.ehlo_name },
        deps.logger,
      );
    for (const account of accounts) {
      const pool = new AccountPool<UpstreamConnection>(
        account.email,
        () => connect(account),
        {
          maxConnections: account.maxConnections,
          minIdle: account.minIdle,
          messagesPerConnection: account.messagesPerConnection,
          acquireTimeoutMs: u.acquire_timeout_ms,
          idleTimeoutMs: u.idle_timeout_ms,
          tokenMarginMs: TOKEN_MARGIN_MS,
        },
        deps.logger,
      );
      this.pools.set(account.email, pool);
    }
  }

  /**
   * Tokens first (in parallel, bounded), then min_idle authenticated connections per account,
   * all within tokens.startup_wait_ms: the first message after start-up pays for neither.
   */
  async start(): Promise<void> {
    const started = Date.now();
    const { startup_wait_ms: waitMs, startup_concurrency: concurrency } = this.config.tokens;
    await this.pauses.start();
    await this.tokens.start(this.accounts, { waitMs, concurrency });
    const left = Math.max(0, waitMs - (Date.now() - started));
    const warm = Promise.allSettled(
      this.accounts.filter((a) => this.tokens.current(a.email)).map((a) => this.pools.get(a.email)!.warm()),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([warm, new Promise((r) => (timer = setTimeout(r, left)))]);
    clearTimeout(timer);
    this.sweeper = setInterval(() => {
      for (const [email, pool] of this.pools) if (this.tokens.current(email)) pool.sweep();
    }, SWEEP_INTERVAL_MS);
    this.sweeper.unref();
    const failing = this.tokens.status().filter((s) => s.health !== 'healthy');
    this.deps.logger.info(
      { event: 'relay_ready', accounts: this.accounts.length, unhealthy: failing.map((s) => s.email), ms: Date.now() - started },
      'relay ready',
    );
  }

  /**
   * Routes the transaction, reserves it against the picked account's limits and opens it
   * upstream; throws a RelayError/UpstreamReplyError to answer. When the provider answers MAIL
   * with a quota refusal, that account is paused and the next account of the pool is tried.
   */
  async begin(identity: SessionIdentity, mailFrom: string, params: MailParams): Promise<LimitedTransaction> {
    const candidates = this.router.candidates(identity, mailFrom);
    for (let attempt = 1; ; attempt++) {
      const { account, reservation } = await this.limiter.pick(candidates);
      const pool = this.pools.get(account.email);
      if (!pool) throw new RelayError('INTERNAL', `no pool for ${account.email}`);
      try {
        return new LimitedTransaction(await RelayTransaction.begin(account, pool, mailFrom, params), reservation, this.limiter);
      } catch (e) {
        reservation.unsent();
        const answer = this.limiter.providerRefusal(account, e);
        // A paused account is skipped by the next pick(); the others may still send.
        if (answer === e || attempt >= candidates.length) throw answer;
      }
    }
  }

  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.pauses.stop();
    this.tokens.stop();
    await Promise.allSettled([...this.pools.values()].map((p) => p.close()));
  }
}
