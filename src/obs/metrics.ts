// Prometheus metrics (prom-client), one registry per relay so tests and several relays in one
// process do not mix. Labels carry account emails and codes only, never a secret. Gauges that
// describe state (token expiry, pool sizes, sessions) are computed at scrape time, so the
// message path pays only for the counters it increments.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Outcome = 'accepted' | 'rejected' | 'deferred';

export interface MetricSources {
  tokenExpiries(): Array<{ email: string; expiresAt: number | null }>;
  /** Each account's health (src/admin/health.ts): its state's name, and whether nothing needs fixing. */
  accountHealth(): Array<{ email: string; state: string; healthy: boolean }>;
  pools(): Array<{ email: string; idle: number; busy: number; waiting: number }>;
  inboundSessions(): number;
  /** Whether the store refuses writes (src/store/store-health.ts); absent: not known. */
  storeFailing?(): boolean;
}

/**
 * Counts made on the message path, added to their counter when it is collected (a scrape, or
 * get()). A prom-client inc() hashes its labels and validates them on every call; the relay
 * counts four times per message (the message and the provider's replies to MAIL, RCPT and
 * DATA), which a CPU profile showed at about 1 % of the relay's CPU. Here a count is a map
 * lookup by a string key.
 */
class PendingCounts<L extends string> {
  private readonly counts = new Map<string, { labels: Partial<Record<L, string>>; n: number }>();

  add(key: string, labels: () => Partial<Record<L, string>>): void {
    const c = this.counts.get(key);
    if (c) c.n++;
    else this.counts.set(key, { labels: labels(), n: 1 });
  }

  flushInto(counter: Counter<L>): void {
    for (const c of this.counts.values()) {
      if (c.n === 0) continue;
      counter.inc(c.labels, c.n);
      c.n = 0;
    }
  }
}

export class Metrics {
  readonly registry = new Registry();
  private readonly pendingMessages = new PendingCounts<'account' | 'outcome'>();
  private readonly pendingReplies = new PendingCounts<'account' | 'command' | 'code'>();
  readonly messages: Counter<'account' | 'outcome'> = new Counter({
    name: 'xoauth2_relay_messages_total',
    help: 'Messages by account and outcome (accepted = provider said 2xx, deferred = 4xx, rejected = 5xx)',
    labelNames: ['account', 'outcome'] as const,
    registers: [this.registry],
    collect: () => this.pendingMessages.flushInto(this.messages),
  });
  readonly relayLatency = new Histogram({
    name: 'xoauth2_relay_data_seconds',
    help: 'From DATA to the provider final reply, seconds',
    labelNames: ['account'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly upstreamReplies: Counter<'account' | 'command' | 'code'> = new Counter({
    name: 'xoauth2_relay_upstream_replies_total',
    help: 'Provider replies by command and code',
    labelNames: ['account', 'command', 'code'] as const,
    registers: [this.registry],
    collect: () => this.pendingReplies.flushInto(this.upstreamReplies),
  });

  /** One message's outcome (see PendingCounts). */
  countMessage(account: string, code: number): void {
    const outcome = Metrics.outcome(code);
    this.pendingMessages.add(`${outcome} ${account}`, () => ({ account, outcome }));
  }

  /** One reply of the provider to MAIL, RCPT or DATA (see PendingCounts). */
  countUpstreamReply(account: string, command: string, code: number): void {
    this.pendingReplies.add(`${command} ${code} ${account}`, () => ({ account, command, code: String(code) }));
  }
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
      help: '1 when nothing about the account needs fixing (state ok, or at a sending limit, or paused by the provider\'s quota); 0 otherwise',
      labelNames: ['account'] as const,
      registers,
      collect() {
        this.reset();
        for (const a of sources.accountHealth()) this.set({ account: a.email }, a.healthy ? 1 : 0);
      },
    });
    new Gauge({
      name: 'xoauth2_relay_account_state',
      help: 'Always 1, labelled with the account\'s health state (ok, starting, needs_consent, bad_client_credentials, provider_refuses_login, ...)',
      labelNames: ['account', 'state'] as const,
      registers,
      collect() {
        this.reset();
        for (const a of sources.accountHealth()) this.set({ account: a.email, state: a.state }, 1);
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
      name: 'xoauth2_relay_store_failing',
      help: '1 while the store refuses writes (disk full, I/O error): tokens are kept in memory and saved again until it works',
      registers,
      collect() {
        this.set(sources.storeFailing?.() ? 1 : 0);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'xoauth2_relay_' });
  }

  static outcome(code: number): Outcome {
    return code < 400 ? 'accepted' : code < 500 ? 'deferred' : 'rejected';
  }
}
