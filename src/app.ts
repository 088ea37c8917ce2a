// The whole relay process assembled from config: store → relay (tokens, pools) → inbound
// listener. `serve`, `demo` and the integration tests all run exactly this.
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { AdminServer } from './admin/http.js';
import { InboundServer } from './inbound/server.js';
import { Metrics } from './obs/metrics.js';
import { Relay } from './relay/relay.js';
import { accountsFromConfig } from './routing/account.js';
import { openStore } from './store/open.js';
import type { Store } from './store/store.js';

export interface RelayAppOptions {
  logger: Logger;
  env?: NodeJS.ProcessEnv;
}

export class RelayApp {
  readonly relay: Relay;
  readonly inbound: InboundServer;
  readonly metrics: Metrics;
  readonly admin: AdminServer;
  private port: number | null = null;
  private adminPortNumber: number | null = null;
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly config: Config,
    private readonly store: Store,
    private readonly logger: Logger,
  ) {
    this.metrics = new Metrics({
      tokenExpiries: () => this.relay.tokens.status().map((t) => ({ email: t.email, expiresAt: t.expiresAt, healthy: t.health === 'healthy' })),
      pools: () => [...this.relay.pools].map(([email, p]) => ({ email, ...p.stats })),
      inboundSessions: () => this.inbound.sessionCount,
    });
    this.relay = new Relay(config, accountsFromConfig(config), { store, logger, metrics: this.metrics });
    this.inbound = new InboundServer(config, { relay: this.relay, logger, metrics: this.metrics });
    this.admin = new AdminServer({
      relay: this.relay,
      metrics: this.metrics,
      isListening: () => this.port !== null && !this.stopping,
      inboundSessions: () => this.inbound.sessionCount,
      bearerToken: config.http.bearer_token ?? null,
    });
  }

  /** Tokens and ready connections first, then the listener: the first message waits for nothing. */
  static async start(config: Config, opts: RelayAppOptions): Promise<RelayApp> {
    const store = await openStore(config.store, opts.env ?? process.env, opts.logger);
    const app = new RelayApp(config, store, opts.logger);
    try {
      // Health answers from the first moment; readiness waits for the tokens and the listener.
      if (config.http.enabled) app.adminPortNumber = await app.admin.listen(config.http.host, config.http.port);
      await app.relay.start();
      app.port = await app.inbound.listen(config.listen.host, config.listen.port);
    } catch (e) {
      await app.admin.close();
      await app.relay.stop();
      await store.close();
      throw e;
    }
    opts.logger.info({ event: 'listening', host: config.listen.host, port: app.port }, `listening on ${config.listen.host}:${app.port}`);
    return app;
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
      await this.inbound.close(this.config.shutdown_timeout_ms);
      await this.relay.stop();
      await this.admin.close();
      await this.store.close();
      this.logger.info({ event: 'stopped' }, 'stopped');
    })();
    return this.stopping;
  }
}
