// Prometheus metrics (prom-client), one registry per relay so tests and several relays in one
// process do not mix. Labels carry account emails and codes only, never a secret. Gauges that
// describe state (token expiry, pool sizes, sessions) are computed at scrape time, so the
// message path pays only for the counters it increments.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Outcome = 'accepted' | 'rejected' | 'deferred';

export interface MetricSources {
  tokenExpiries(): Array<{ email: string; expiresAt: number | null; healthy: boolean }>;
  pools(): Array<{ email: string; idle: number; busy: number; waiting: number }>;
  inboundSessions(): number;
  /**
   * Whether the store accepts writes now (tokens, rotated refresh tokens, counters). Without a
   * source the gauge says 1: the store's own health checks set it (docs/operations.md).
   */
  storeHealthy?(): boolean;
}

export class Metrics {
  readonly registry = new Registry();
  readonly messages = new Counter({
    name: 'xoauth2_relay_messages_total',
    help: 'Messages by account and outcome (accepted = provider said 2xx, deferred = 4xx, rejected = 5xx)',
    labelNames: ['account', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly relayLatency = new Histogram({
    name: 'xoauth2_relay_data_seconds',
    help: 'From DATA to the provider final reply, seconds',
    labelNames: ['account'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly upstreamReplies = new Counter({
    name: 'xoauth2_relay_upstream_replies_total',
    help: 'Provider replies by command and code',
    labelNames: ['account', 'command', 'code'] as const,
    registers: [this.registry],
  });
  /** Every reply of 400 or above given to an MTA (src/obs/refusals.ts records them). */
  readonly refusals = new Counter({
    name: 'xoauth2_relay_refusals_total',
    help: 'Replies of 400 or above given to MTAs, by stage, code class, reason and account (empty when none was picked)',
    labelNames: ['stage', 'class', 'reason', 'account'] as const,
    registers: [this.registry],
  });
  readonly tokenRefreshes = new Counter({
    name: 'xoauth2_relay_token_refreshes_total',
    help: 'Token refresh attempts by account and result',
    labelNames: ['account', 'result'] as const,
    registers: [this.registry],
  });
  readonly tokenRefreshLatency = new Histogram({
    name: 'xoauth2_relay_token_refresh_seconds',
    help: 'Token endpoint latency, seconds',
    labelNames: ['account'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    new Gauge({
      name: 'xoauth2_relay_token_expiry_seconds',
      help: 'Seconds until the cached access token of each account expires (negative or absent: none)',
      labelNames: ['account'] as const,
      registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const t of sources.tokenExpiries()) if (t.expiresAt !== null) this.set({ account: t.email }, (t.expiresAt - now) / 1000);
      },
    });
    new Gauge({
      name: 'xoauth2_relay_account_healthy',
      help: '1 when the account has a token and its last refresh succeeded',
      labelNames: ['account'] as const,
      registers,
      collect() {
        this.reset();
        for (const t of sources.tokenExpiries()) this.set({ account: t.email }, t.healthy ? 1 : 0);
      },
    });
    new Gauge({
      name: 'xoauth2_relay_upstream_connections',
      help: 'Upstream connections per account by state',
      labelNames: ['account', 'state'] as const,
      registers,
      collect() {
        this.reset();
        for (const p of sources.pools()) {
          this.set({ account: p.email, state: 'idle' }, p.idle);
          this.set({ account: p.email, state: 'busy' }, p.busy);
        }
      },
    });
    new Gauge({
      name: 'xoauth2_relay_upstream_waiting',
      help: 'Transactions waiting for a connection of the account',
      labelNames: ['account'] as const,
      registers,
      collect() {
        this.reset();
        for (const p of sources.pools()) this.set({ account: p.email }, p.waiting);
      },
    });
    new Gauge({
      name: 'xoauth2_relay_inbound_sessions',
      help: 'Inbound SMTP sessions open',
      registers,
      collect() {
        this.set(sources.inboundSessions());
      },
    });
    new Gauge({
      name: 'xoauth2_relay_store_healthy',
      help: '1 when the store (SQLite or Redis) takes writes, 0 while it fails (rotated refresh tokens are then kept in memory)',
      registers,
      collect() {
        this.set(sources.storeHealthy?.() === false ? 0 : 1);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'xoauth2_relay_' });
  }

  static outcome(code: number): Outcome {
    return code < 400 ? 'accepted' : code < 500 ? 'deferred' : 'rejected';
  }
}
