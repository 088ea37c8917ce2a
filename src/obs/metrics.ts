// Prometheus metrics (prom-client), one registry per relay so tests and several relays in one
// process do not mix. Labels carry account emails and codes only, never a secret. Gauges that
// describe state (token expiry, pool sizes, sessions) are computed at scrape time, so the
// message path pays only for the counters it increments.
//
// Per-account series are bounded by `metrics.per_account` (issue 22): with thousands of accounts
// a series per account per gauge and histogram bucket made a 3 MB scrape that blocked the event
// loop for half a second. `all` keeps today's series; `active` (the default) keeps the per-account
// gauges only for accounts that are warm or need the operator, and the histograms without the
// account label; `none` drops the account label everywhere. Counts by state
// (xoauth2_relay_accounts) are always there, whatever the setting.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import { VERSION } from './version.js';

export type Outcome = 'accepted' | 'rejected' | 'deferred';
export type PerAccountSeries = 'all' | 'active' | 'none';

export interface MetricSources {
  tokenExpiries(): Array<{ email: string; expiresAt: number | null }>;
  /** Each account's health (src/admin/health.ts): its state's name, and whether nothing needs fixing. */
  accountHealth(): Array<{ email: string; state: string; healthy: boolean }>;
  /** Whether the account's own gauges are kept under per_account `active`: warm, or needing the operator. */
  isActive?(email: string, healthy: boolean): boolean;
  pools(): Array<{ email: string; idle: number; busy: number; waiting: number }>;
  inboundSessions(): number;
  /** Whether the store refuses writes (src/store/store-health.ts); absent: not known. */
  storeFailing?(): boolean;
}

/**
 * Counts made on the message path, added to their counter when it is collected (a scrape, or
 * get()). A prom-client inc() hashes its labels and validates them on every call; the relay
 * counts four times per message (the message and the provider's replies to MAIL, RCPT and
 * DATA), which a CPU profile showed at about 1 % of the relay's CPU. Here a count is three map
 * lookups by values the caller already holds (the account, a constant, a number): a key joined
 * from them was built, flattened and hashed again at every count, 0.9 % of the relay's CPU at
 * 50 connections.
 */
class PendingCounts<L extends string> {
  private readonly series = new Map<string, Map<string, Map<number, { labels: Partial<Record<L, string>>; n: number }>>>();

  add(a: string, b: string, c: number, labels: () => Partial<Record<L, string>>): void {
    let byB = this.series.get(a);
    if (byB === undefined) this.series.set(a, (byB = new Map()));
    let byC = byB.get(b);
    if (byC === undefined) byB.set(b, (byC = new Map()));
    const count = byC.get(c);
    if (count) count.n++;
    else byC.set(c, { labels: labels(), n: 1 });
  }

  flushInto(counter: Counter<L>): void {
    for (const byB of this.series.values()) {
      for (const byC of byB.values()) {
        for (const c of byC.values()) {
          if (c.n === 0) continue;
          counter.inc(c.labels, c.n);
          c.n = 0;
        }
      }
    }
  }
}

/** A series of a prom-client Histogram as it keeps it (lib/histogram.js, createBaseValues). */
interface HistogramSeries {
  labels: Record<string, string>;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

/**
 * prom-client's Histogram with a quicker observe for the message path: its own converts,
 * validates and hashes the labels at every call (1 % of the relay's CPU at 50 connections,
 * docs/benchmarks.md). Here a series, once prom-client made it, is kept by its label value and
 * added to as prom-client adds (the bucket of the first upper bound not below the value, sum,
 * count); the exposition stays prom-client's. That writes prom-client's internals, so
 * test/unit/metrics.test.ts holds the scrape to what prom-client's own observe gives.
 */
class QuickHistogram extends Histogram<string> {
  private readonly byValue = new Map<string, HistogramSeries>();
  private keptFrom: unknown = null;
  /** prom-client's own upper bounds, in its order (the order it looks for a value's bucket in). */
  private readonly bounds = (this as unknown as { upperBounds: readonly number[] }).upperBounds;
  /** Their keys in a series' bucketValues, made once (a number made a key is printed anew each time). */
  private readonly keys = this.bounds.map(String);

  /** A removed series must not be added to here any more (nothing removes them today). */
  override remove(...values: string[]): void;
  override remove(labels: LabelValues<string>): void;
  override remove(...args: [LabelValues<string>] | string[]): void {
    this.byValue.clear();
    (super.remove as (...a: unknown[]) => void)(...args);
  }

  /** `key`: the value of the one label, '' without labels. */
  observeAs(key: string, labels: Record<string, string>, value: number): void {
    const map = (this as unknown as { hashMap: Record<string, HistogramSeries> }).hashMap;
    if (map !== this.keptFrom) {
      // reset() replaced prom-client's map: the series kept here are no longer its.
      this.byValue.clear();
      this.keptFrom = map;
    }
    const series = this.byValue.get(key);
    if (series === undefined || !Number.isFinite(value)) {
      this.observe(labels, value);
      const made = Object.values(map).find((s) => Object.keys(labels).every((k) => s.labels[k] === labels[k]));
      if (made) this.byValue.set(key, made);
      return;
    }
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) series.bucketValues[this.keys[i]!]! += 1;
    series.sum += value;
    series.count += 1;
  }
}

/** What a labelled metric is given on the message path; the account label may be dropped (see the header). */
interface Labelled<L extends string> {
  inc(labels: Record<L, string>, value?: number): void;
}
interface Observed<L extends string> {
  observe(labels: Record<L, string>, value: number): void;
}

/** Without the account label: the same call, the label left out. */
const withoutAccount = <L extends string>(labels: Record<L, string>): Record<string, string> => {
  const { account: _dropped, ...rest } = labels as Record<string, string>;
  return rest;
};

/** Messages by outcome and MTA refusals by class since start, for the status page. */
export interface Totals {
  accepted: number;
  deferred: number;
  refused: number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly perAccount: PerAccountSeries;
  /** Since start; the status page shows them beside the version and uptime. */
  readonly totals: Totals = { accepted: 0, deferred: 0, refused: 0 };
  private readonly started = Date.now();
  private readonly pendingMessages = new PendingCounts<string>();
  private readonly pendingReplies = new PendingCounts<string>();
  private readonly messagesCounter: Counter<string>;
  private readonly repliesCounter: Counter<string>;
  readonly relayLatency: Observed<'account'>;
  /** Every reply of 400 or above given to an MTA (src/obs/refusals.ts records them). */
  readonly refusals: Labelled<'stage' | 'class' | 'reason' | 'account'>;
  readonly tokenRefreshes: Labelled<'account' | 'result'>;
  readonly tokenRefreshLatency: Observed<'account'>;

  /** One message's outcome (see PendingCounts). */
  countMessage(account: string, code: number): void {
    const outcome = Metrics.outcome(code);
    if (outcome === 'accepted') this.totals.accepted++;
    if (this.perAccount === 'none') this.pendingMessages.add('', outcome, 0, () => ({ outcome }));
    else this.pendingMessages.add(account, outcome, 0, () => ({ account, outcome }));
  }

  /** One reply of the provider to MAIL, RCPT or DATA (see PendingCounts). */
  countUpstreamReply(account: string, command: string, code: number): void {
    if (this.perAccount === 'none') this.pendingReplies.add('', command, code, () => ({ command, code: String(code) }));
    else this.pendingReplies.add(account, command, code, () => ({ account, command, code: String(code) }));
  }

  constructor(sources: MetricSources, perAccount: PerAccountSeries = 'active') {
    this.perAccount = perAccount;
    const registers = [this.registry];
    const accountLabel = perAccount === 'none' ? [] : ['account'];
    const counter = (name: string, help: string, labelNames: string[], collect?: () => void) =>
      new Counter({ name, help, labelNames, registers, ...(collect ? { collect } : {}) });
    const labelled = <L extends string>(c: Counter<string>): Labelled<L> =>
      perAccount === 'none' ? { inc: (labels, value) => c.inc(withoutAccount(labels), value) } : c;
    // A histogram per account is 17 series per account: only `all` keeps them.
    const histogram = (name: string, help: string, buckets: number[]): Observed<'account'> => {
      const keep = perAccount === 'all';
      const h = new QuickHistogram({ name, help, labelNames: keep ? ['account'] : [], buckets, registers });
      const none = {};
      return keep ? { observe: (labels, value) => h.observeAs(labels.account, labels, value) } : { observe: (_labels, value) => h.observeAs('', none, value) };
    };
    this.messagesCounter = counter(
      'xoauth2_relay_messages_total',
      'Messages by account and outcome (accepted = provider said 2xx, deferred = 4xx, rejected = 5xx)',
      [...accountLabel, 'outcome'],
      () => this.pendingMessages.flushInto(this.messagesCounter),
    );
    this.relayLatency = histogram('xoauth2_relay_data_seconds', 'From DATA to the provider final reply, seconds', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
    this.repliesCounter = counter('xoauth2_relay_upstream_replies_total', 'Provider replies by command and code', [...accountLabel, 'command', 'code'], () =>
      this.pendingReplies.flushInto(this.repliesCounter),
    );
    const refusals = labelled<'stage' | 'class' | 'reason' | 'account'>(
      counter('xoauth2_relay_refusals_total', 'Replies of 400 or above given to MTAs, by stage, code class, reason and account (empty when none was picked)', ['stage', 'class', 'reason', ...accountLabel]),
    );
    this.refusals = {
      inc: (labels, value) => {
        this.totals[labels.class === '5xx' ? 'refused' : 'deferred'] += value ?? 1;
        refusals.inc(labels, value);
      },
    };
    this.tokenRefreshes = labelled(counter('xoauth2_relay_token_refreshes_total', 'Token refresh attempts by account and result', [...accountLabel, 'result']));
    this.tokenRefreshLatency = histogram('xoauth2_relay_token_refresh_seconds', 'Token endpoint latency, seconds', [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
    // The per-account gauges: every account, only the active ones, or none.
    const shown = (email: string, healthy: boolean): boolean =>
      perAccount === 'all' || (perAccount === 'active' && (sources.isActive?.(email, healthy) ?? true));
    let health: Array<{ email: string; state: string; healthy: boolean }> = [];
    let active = new Set<string>();
    // Health is built once per scrape (this gauge is registered first, so collected first) and read by the others.
    new Gauge({
      name: 'xoauth2_relay_accounts',
      help: 'Accounts by health state (ok, cold, starting, needs_consent, ...), whatever metrics.per_account says',
      labelNames: ['state'] as const,
      registers,
      collect() {
        this.reset();
        health = sources.accountHealth();
        active = new Set(health.filter((a) => shown(a.email, a.healthy)).map((a) => a.email));
        const counts = new Map<string, number>();
        for (const a of health) counts.set(a.state, (counts.get(a.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'xoauth2_relay_token_expiry_seconds',
      help: 'Seconds until the cached access token of each account expires (negative or absent: none)',
      labelNames: ['account'] as const,
      registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const t of sources.tokenExpiries()) if (t.expiresAt !== null && active.has(t.email)) this.set({ account: t.email }, (t.expiresAt - now) / 1000);
      },
    });
    new Gauge({
      name: 'xoauth2_relay_account_healthy',
      help: '1 when nothing about the account needs fixing (state ok, or at a sending limit, or paused by the provider\'s quota); 0 otherwise',
      labelNames: ['account'] as const,
      registers,
      collect() {
        this.reset();
        for (const a of health) if (active.has(a.email)) this.set({ account: a.email }, a.healthy ? 1 : 0);
      },
    });
    new Gauge({
      name: 'xoauth2_relay_account_state',
      help: 'Always 1, labelled with the account\'s health state (ok, starting, needs_consent, bad_client_credentials, provider_refuses_login, ...)',
      labelNames: ['account', 'state'] as const,
      registers,
      collect() {
        this.reset();
        for (const a of health) if (active.has(a.email)) this.set({ account: a.email, state: a.state }, 1);
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
          if (!active.has(p.email)) continue;
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
        for (const p of sources.pools()) if (active.has(p.email)) this.set({ account: p.email }, p.waiting);
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
    new Gauge({
      name: 'xoauth2_relay_build_info',
      help: 'Always 1, labelled with the relay\'s version and the Node.js version running it',
      labelNames: ['version', 'node_version'] as const,
      registers,
    }).set({ version: VERSION, node_version: process.versions.node }, 1);
    const started = this.started;
    new Gauge({
      name: 'xoauth2_relay_uptime_seconds',
      help: 'Seconds since the relay started',
      registers,
      collect() {
        this.set((Date.now() - started) / 1000);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'xoauth2_relay_' });
    // prom-client's active handles/requests/resources are gauges named like counters (`_total`),
    // which `promtool check metrics` refuses: without them the exposition passes it.
    for (const m of this.registry.getMetricsAsArray()) {
      if (m.name.endsWith('_total') && m instanceof Gauge) this.registry.removeSingleMetric(m.name);
    }
  }

  /**
   * The exposition GET /metrics serves, the same text as registry.metrics(), but one metric at a
   * time with the event loop free between them: registry.metrics() collects and formats every
   * metric before it yields, which with 500 active accounts of 5,000 (≈ 5,500 series) held every
   * SMTP reply ≈ 50 ms per scrape (issue 22). Now the longest hold is the largest single metric
   * (at the default per_account, one per-account gauge: a few ms).
   */
  async exposition(): Promise<string> {
    const parts: string[] = [];
    for (const { name } of this.registry.getMetricsAsArray()) {
      parts.push(await this.registry.getSingleMetricAsString(name));
      await nextTurn();
    }
    return `${parts.join('\n\n')}\n`;
  }

  /** Seconds since the relay started. */
  get uptimeSeconds(): number {
    return Math.round((Date.now() - this.started) / 1000);
  }

  static outcome(code: number): Outcome {
    return code < 400 ? 'accepted' : code < 500 ? 'deferred' : 'rejected';
  }
}
