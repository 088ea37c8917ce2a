// The whole relay process assembled from config: store → relay (tokens, pools) → inbound
// listener. `serve`, `demo` and the integration tests all run exactly this. The accounts are
// relay.yaml's and the store's; reload() re-reads both while the relay runs.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { loadConfigOffThread } from './config/load-off-thread.js';
import { restartNeeded } from './config/reload-diff.js';
import type { MergedAccounts } from './config/stored-accounts.js';
import type { Config } from './config/schema.js';
import { AccountAdmin, type ReloadReport } from './admin/accounts.js';
import { AccountHealthBoard, isHealthy } from './admin/health.js';
import { adminTokenPath, ensureAdminToken } from './admin/admin-token.js';
import { AdminServer } from './admin/http.js';
import { InboundServer } from './inbound/server.js';
import { effectiveLevel } from './obs/logger.js';
import { Metrics } from './obs/metrics.js';
import { Refusals } from './obs/refusals.js';
import { Relay } from './relay/relay.js';
import { openStore } from './store/open.js';
import { keyFileOf } from './store/sqlite-store.js';
import type { Store, StoredAccount } from './store/store.js';

export interface RelayAppOptions {
  logger: Logger;
  env?: NodeJS.ProcessEnv;
}

export class RelayApp {
  readonly relay: Relay;
  readonly inbound: InboundServer;
  readonly metrics: Metrics;
  /** Every 4xx/5xx given to an MTA: logged, counted, the recent ones kept for the status page. */
  readonly refusals: Refusals;
  readonly admin: AdminServer;
  /** Each account's health by what the operator must do, and whether it can send (/readyz, the API, the page). */
  readonly health: AccountHealthBoard;
  readonly accounts: AccountAdmin;
  private port: number | null = null;
  /** The ports `listeners` are bound to, in their order (port 0 in the config: the one picked). */
  readonly listenerPorts: number[] = [];
  private adminPortNumber: number | null = null;
  private stopping: Promise<void> | null = null;
  /** log.level of the config last loaded: a reload changes the logger's level only if it changes. */
  private logLevel: string;

  private constructor(
    /** The config the process started with; a reload changes what can change live (see reload()). */
    readonly config: Config,
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly env: NodeJS.ProcessEnv,
    stored: StoredAccount[],
    merged: MergedAccounts,
    adminToken: string,
  ) {
    this.logLevel = config.log.level;
    this.metrics = new Metrics({
      // A cold account's token lapses on purpose: no expiry to alert on.
      tokenExpiry: (email) => (this.relay.warmth.isWarm(email) ? this.relay.tokens.expiresAt(email) : null),
      accountHealth: () => {
        const { of, healths, counts } = this.health.pass(0);
        return { size: of.length, counts, email: (i) => of[i]!.email, state: (i) => healths[i]!.state, healthy: (i) => isHealthy(healths[i]!) };
      },
      pool: (email) => this.relay.pools.get(email)?.stats,
      inboundSessions: () => this.inbound.sessionCount,
      storeFailing: () => store.health?.failing ?? false,
      // Under per_account `active`: warm accounts, and those the operator must look at.
      isActive: (email, healthy) => !healthy || this.relay.warmth.isWarm(email),
    }, config.metrics.per_account);
    this.refusals = new Refusals(logger, this.metrics, config.log.recipients);
    this.relay = new Relay(config, AccountAdmin.accountsOf(merged, config), { store, logger, metrics: this.metrics });
    this.health = new AccountHealthBoard(this.relay, store);
    this.accounts = new AccountAdmin({ relay: this.relay, health: this.health, store, logger }, config, stored, merged);
    this.inbound = new InboundServer(config, { relay: this.relay, logger, metrics: this.metrics, refusals: this.refusals });
    this.admin = new AdminServer({
      relay: this.relay,
      health: this.health,
      refusals: this.refusals,
      metrics: this.metrics,
      accounts: this.accounts,
      reload: () => this.reload(),
      isListening: () => this.port !== null && !this.stopping,
      inboundSessions: () => this.inbound.sessionCount,
      host: config.http.host,
      bearerToken: adminToken,
      storeHealth: () => store.health?.state,
    });
    // Accounts added, changed or removed through another instance run here within a second or two.
    store.accountChanges?.onAccountsChanged(() => this.accounts.followStore());
    store.health?.onChange((s) =>
      s.failing
        ? logger.error({ event: 'store_failing', error: s.error }, 'the store refuses writes (disk full?): running from memory, saving again until it works')
        : logger.info({ event: 'store_recovered' }, 'the store takes writes again'),
    );
  }

  /** Tokens and ready connections first, then the listener: the first message waits for nothing. */
  static async start(config: Config, opts: RelayAppOptions): Promise<RelayApp> {
    const env = opts.env ?? process.env;
    const store = await openStore(config.store, env, opts.logger, { lock: true });
    let adminToken: string;
    try {
      // Made (or read) before any token is fetched: a relay whose API has no credential does not start.
      adminToken = config.http.enabled ? ensureAdminToken(config) : randomBytes(32).toString('hex');
    } catch (e) {
      await store.close();
      throw e;
    }
    logFiles(opts.logger, config, env);
    const stored = await AccountAdmin.readStore(store, opts.logger);
    const merged = AccountAdmin.merge(config, stored ?? [], opts.logger);
    const app = new RelayApp(config, store, opts.logger, env, stored ?? [], merged, adminToken);
    if (!stored) app.accounts.retryStore();
    try {
      // Health answers from the first moment; readiness waits for the tokens and the listener.
      if (config.http.enabled) app.adminPortNumber = await app.listenAdmin();
      await app.relay.start();
      app.port = await app.inbound.listen(config.listen);
      for (const l of config.listeners) app.listenerPorts.push(await app.inbound.listen(l));
    } catch (e) {
      app.accounts.stop();
      await app.admin.close();
      await app.relay.stop();
      await store.close();
      throw e;
    }
    opts.logger.info({ event: 'listening', host: config.listen.host, port: app.port }, `listening on ${config.listen.host}:${app.port}`);
    config.listeners.forEach((l, i) => {
      const port = app.listenerPorts[i];
      const how = [l.implicit_tls ? 'implicit TLS' : null, l.proxy_protocol ? 'PROXY protocol' : null].filter(Boolean).join(', ');
      opts.logger.info({ event: 'listening', host: l.host, port, implicit_tls: l.implicit_tls, proxy_protocol: !!l.proxy_protocol }, `listening on ${l.host}:${port}${how ? ` (${how})` : ''}`);
    });
    return app;
  }

  /**
   * SIGHUP, `xoauth2-relay reload`, POST /api/reload: re-reads relay.yaml (or takes `next`, already
   * validated) and the stored accounts, and runs the new accounts without dropping a session
   * (Relay.applyAccounts). A config that does not load throws its ConfigError, logged, and the
   * running one stays. Settings read only at start-up are reported as needing a restart.
   */
  async reload(next?: Config): Promise<ReloadReport> {
    let config: Config;
    try {
      config = next ?? (await loadConfigOffThread(this.config.source ?? undefined, { env: this.env }));
    } catch (e) {
      this.logger.error({ event: 'reload_failed', error: (e as Error).message }, 'new config refused; the running one stays');
      throw e;
    }
    const restart = restartNeeded(this.config, config);
    const report = await this.accounts.reload(config, restart);
    if (config.log.level !== this.logLevel) {
      this.logLevel = config.log.level;
      this.logger.level = effectiveLevel(config.log.level, this.env);
    }
    if (restart.length) {
      this.logger.warn({ event: 'reload_restart_needed', keys: restart }, `changed settings that take effect only after a restart: ${restart.join(', ')}`);
    }
    this.logger.info({ event: 'reloaded', source: config.source, ...report.accounts }, 'config reloaded');
    return report;
  }

  /**
   * The operator's HTTP port is an aid, not the service: if its address is taken (a second relay
   * on the defaults, another exporter on 9090) mail still flows, and the error says what to change.
   */
  private async listenAdmin(): Promise<number | null> {
    const { host, port } = this.config.http;
    try {
      return await this.admin.listen(host, port);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' && code !== 'EADDRNOTAVAIL') throw e;
      this.logger.error(
        { event: 'http_unavailable', host, port, error: code },
        `HTTP port ${host}:${port} unavailable (${code}): running without /healthz, /readyz, /metrics and the API; set http.port or http.enabled: false`,
      );
      return null;
    }
  }

  get adminPort(): number | null {
    return this.adminPortNumber;
  }

  get smtpPort(): number {
    if (this.port === null) throw new Error('not listening');
    return this.port;
  }

  /** Graceful: stop accepting, let transactions finish (bounded), close upstream, close the store. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info({ event: 'stopping' }, 'stopping: no new sessions, finishing transactions in flight');
      this.accounts.stop();
      await this.inbound.close(this.config.shutdown_timeout_ms);
      await this.relay.stop();
      await this.admin.close();
      await this.store.close();
      this.logger.info({ event: 'stopped' }, 'stopped');
    })();
    return this.stopping;
  }
}

/**
 * Where the relay keeps its files, said once at start: without relay.yaml they go to ./data/,
 * and an operator must not find a credential somewhere they never chose without having been told.
 * A Redis URL may carry a password, so the store is named by its key only.
 */
function logFiles(logger: Logger, config: Config, env: NodeJS.ProcessEnv): void {
  const sqlite = 'path' in config.store ? config.store.path : null;
  const files = {
    store: sqlite ?? 'Redis (store.url)',
    key: env.XOAUTH2_RELAY_KEY !== undefined || !sqlite ? 'XOAUTH2_RELAY_KEY' : keyFileOf(sqlite),
    admin_token: !config.http.enabled ? 'none (http.enabled: false)' : config.http.bearer_token ? 'http.bearer_token' : adminTokenPath(config),
  };
  logger.info({ event: 'files', ...files }, `files: store ${files.store}; encryption key ${files.key}; HTTP API credential ${files.admin_token}`);
}
