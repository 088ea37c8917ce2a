// The whole relay process assembled from config: store → relay (tokens, pools) → inbound
// listener. `serve`, `demo` and the integration tests all run exactly this.
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { InboundServer } from './inbound/server.js';
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
  private port: number | null = null;
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly config: Config,
    private readonly store: Store,
    private readonly logger: Logger,
  ) {
    this.relay = new Relay(config, accountsFromConfig(config), { store, logger });
    this.inbound = new InboundServer(config, { relay: this.relay, logger });
  }

  /** Tokens and ready connections first, then the listener: the first message waits for nothing. */
  static async start(config: Config, opts: RelayAppOptions): Promise<RelayApp> {
    const store = openStore(config.store, opts.env ?? process.env);
    const app = new RelayApp(config, store, opts.logger);
    try {
      await app.relay.start();
      app.port = await app.inbound.listen(config.listen.host, config.listen.port);
    } catch (e) {
      await app.relay.stop();
      await store.close();
      throw e;
    }
    opts.logger.info({ event: 'listening', host: config.listen.host, port: app.port }, `listening on ${config.listen.host}:${app.port}`);
    return app;
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
      await this.store.close();
      this.logger.info({ event: 'stopped' }, 'stopped');
    })();
    return this.stopping;
  }
}
