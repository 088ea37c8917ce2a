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
import { writeExposition, type ExposedValues } from './exposition.js';

export type Outcome = 'accepted' | 'rejected' | 'deferred';
export type PerAccountSeries = 'all' | 'active' | 'none';

export interface MetricSources {
  /** When the account's cached access token expires (epoch ms); null: none, or none to alert on. */
  tokenExpiry(email: string): number | null;
  /** Every account's health from one fresh pass (src/admin/health.ts). */
  accountHealth(): HealthTable;
  /** Whether the account's own gauges are kept under per_account `active`: warm, or needing the operator. */
  isActive?(email: string, healthy: boolean): boolean;
  pool(email: string): { idle: number; busy: number; waiting: number } | undefined;
  inboundSessions(): number;
  /** Whether the store refuses writes (src/store/store-health.ts); absent: not known. */
  storeFailing?(): boolean;
}

/**
 * Every account's health, read by index: the scrape reads thousands of them a slice at a time,
 * and the pass they come from allocates nothing per account.
 */
export interface HealthTable {
  readonly size: number;
  /** Accounts by state. */
  readonly counts: Readonly<Partial<Record<string, number>>>;
  email(i: number): string;
  state(i: number): string;
  /** Nothing about the account needs fixing. */
  healthy(i: number): boolean;
}

/** Accounts read between two turns of the event loop while a scrape picks the shown ones. */
const ACCOUNTS_PER_TURN = 1_000;

/**
 * A counter counted on the message path. A prom-client inc() hashes its labels and validates
 * them on every call; the relay counts four times per message (the message and the provider's
 * replies to MAIL, RCPT and DATA), which a CPU profile showed at about 1 % of the relay's CPU.
 * Here a count is three map lookups by values the caller already holds (the account, a
 * constant, a number): a key joined from them was built, flattened and hashed again at every
 * count, 0.9 % of the relay's CPU at 50 connections. And the maps are the counter: a scrape
 * reads them as they are (listing a prom-client counter's label object, thousands of keys at 500
 * active accounts, was ≈ 1-2 ms in one go per scrape). The registry reads it like any metric.
 */
class CountedTotals<L extends string> {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Map<string, Map<number, { labels: Partial<Record<L, string>>; value: number }>>>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  add(a: string, b: string, c: number, labels: () => Partial<Record<L, string>>): void {
    let byB = this.series.get(a);
    if (byB === undefined) this.series.set(a, (byB = new Map()));
    let byC = byB.get(b);
    if (byC === undefined) byB.set(b, (byC = new Map()));
    const count = byC.get(c);
    if (count) count.value++;
    else byC.set(c, { labels: labels(), value: 1 });
  }

  async get(): Promise<ExposedValues> {
    const values: Array<{ labels: Partial<Record<L, string>>; value: number }> = [];
    for (const byB of this.series.values()) for (const byC of byB.values()) for (const count of byC.values()) values.push(count);
    return { name: this.name, help: this.help, type: this.type, values: values as NonNullable<ExposedValues['values']> };
  }

  reset(): void {
    this.series.clear();
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

/** The labels of one account's series, one object per series for as long as the account is shown (see labelText). */
class AccountLabels {
  readonly account: { account: string };
  private readonly states = new Map<string, { account: string; state: string }>();

  constructor(email: string) {
    this.account = { account: email };
  }

  state(state: string): { account: string; state: string } {
    let labels = this.states.get(state);
    if (!labels) this.states.set(state, (labels = { account: this.account.account, state }));
    return labels;
  }
}

type SeriesOut = (labels: Record<string, string>, value: number) => void;

/**
 * A gauge with a series per shown account, read from the relay at scrape time. Not a
 * prom-client Gauge: that one hashes each series' labels into a map at every set() and keeps the
 * map until the next scrape (≈ 3,000 series at 500 shown accounts); this one hands the registry
 * (and the exposition) its values straight from the shown accounts, with their lasting labels
 * objects. The registry reads it like any metric (get()).
 */
class AccountGauge<A> {
  readonly type = 'gauge';
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly accounts: () => Promise<readonly A[]>,
    private readonly series: (account: A, out: SeriesOut) => void,
  ) {}

  async get(): Promise<ExposedValues> {
    const values: NonNullable<ExposedValues['values']> = [];
    const out: SeriesOut = (labels, value) => values.push({ labels, value });
    for (const a of await this.accounts()) this.series(a, out);
    return { name: this.name, help: this.help, type: this.type, values };
  }

  reset(): void {}
}

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
  private readonly messages = new CountedTotals<string>(
    'xoauth2_relay_messages_total',
    'Messages by account and outcome (accepted = provider said 2xx, deferred = 4xx, rejected = 5xx)',
  );
  private readonly replies = new CountedTotals<string>('xoauth2_relay_upstream_replies_total', 'Provider replies by command and code');
  readonly relayLatency: Observed<'account'>;
  /** Every reply of 400 or above given to an MTA (src/obs/refusals.ts records them). */
  readonly refusals: Labelled<'stage' | 'class' | 'reason' | 'account'>;
  readonly tokenRefreshes: Labelled<'account' | 'result'>;
  readonly tokenRefreshLatency: Observed<'account'>;

  /** One message's outcome (see CountedTotals). */
  countMessage(account: string, code: number): void {
    const outcome = Metrics.outcome(code);
    if (outcome === 'accepted') this.totals.accepted++;
    if (this.perAccount === 'none') this.messages.add('', outcome, 0, () => ({ outcome }));
    else this.messages.add(account, outcome, 0, () => ({ account, outcome }));
  }

  /** One reply of the provider to MAIL, RCPT or DATA (see CountedTotals). */
  countUpstreamReply(account: string, command: string, code: number): void {
    if (this.perAccount === 'none') this.replies.add('', command, code, () => ({ command, code: String(code) }));
    else this.replies.add(account, command, code, () => ({ account, command, code: String(code) }));
  }

  constructor(sources: MetricSources, perAccount: PerAccountSeries = 'active') {
    this.perAccount = perAccount;
    const registers = [this.registry];
    const accountLabel = perAccount === 'none' ? [] : ['account'];
    const counter = (name: string, help: string, labelNames: string[]) => new Counter({ name, help, labelNames, registers });
    const labelled = <L extends string>(c: Counter<string>): Labelled<L> =>
      perAccount === 'none' ? { inc: (labels, value) => c.inc(withoutAccount(labels), value) } : c;
    // A histogram per account is 17 series per account: only `all` keeps them.
    const histogram = (name: string, help: string, buckets: number[]): Observed<'account'> => {
      const keep = perAccount === 'all';
      const h = new QuickHistogram({ name, help, labelNames: keep ? ['account'] : [], buckets, registers });
      const none = {};
      return keep ? { observe: (labels, value) => h.observeAs(labels.account, labels, value) } : { observe: (_labels, value) => h.observeAs('', none, value) };
    };
    this.registry.registerMetric(this.messages as unknown as Counter);
    this.relayLatency = histogram('xoauth2_relay_data_seconds', 'From DATA to the provider final reply, seconds', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);
    this.registry.registerMetric(this.replies as unknown as Counter);
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
    // The accounts whose gauges are shown, with their health: built once per scrape (this gauge
    // is registered first, so collected first) and read by the others. Only the shown ones are
    // kept (≈ 500 of 5,000 at the default), each with one labels object per series that lives as
    // long as the account is shown: the exposition formats a labels object once (see SeriesText).
    let shownNow: Array<{ email: string; state: string; healthy: boolean; labels: AccountLabels }> = [];
    const labelsOf = new Map<string, AccountLabels>();
    // registry.metrics() collects every metric at once: the per-account gauges wait for the pick.
    let shownReady: Promise<void> = Promise.resolve();
    const pickShown = async (table: HealthTable): Promise<void> => {
      const next: typeof shownNow = [];
      for (let i = 0; perAccount !== 'none' && i < table.size; i++) {
        if (i % ACCOUNTS_PER_TURN === ACCOUNTS_PER_TURN - 1) await nextTurn();
        const email = table.email(i);
        const healthy = table.healthy(i);
        if (shown(email, healthy)) next.push({ email, state: table.state(i), healthy, labels: labelsOf.get(email) ?? new AccountLabels(email) });
      }
      shownNow = next;
      labelsOf.clear();
      for (const a of next) labelsOf.set(a.email, a.labels);
    };
    new Gauge({
      name: 'xoauth2_relay_accounts',
      help: 'Accounts by health state (ok, cold, starting, needs_consent, ...), whatever metrics.per_account says',
      labelNames: ['state'] as const,
      registers,
      collect() {
        this.reset();
        const table = sources.accountHealth();
        for (const [state, n] of Object.entries(table.counts)) if (n) this.set({ state }, n);
        return (shownReady = pickShown(table));
      },
    });
    const accountGauge = (name: string, help: string, series: (a: (typeof shownNow)[number], out: SeriesOut) => void) =>
      this.registry.registerMetric(new AccountGauge(name, help, async () => (await shownReady, shownNow), series) as unknown as Gauge);
    accountGauge('xoauth2_relay_token_expiry_seconds', 'Seconds until the cached access token of each account expires (negative or absent: none)', (a, out) => {
      const expiresAt = sources.tokenExpiry(a.email);
      if (expiresAt !== null) out(a.labels.account, (expiresAt - Date.now()) / 1000);
    });
    accountGauge(
      'xoauth2_relay_account_healthy',
      '1 when nothing about the account needs fixing (state ok, or at a sending limit, or paused by the provider\'s quota); 0 otherwise',
      (a, out) => out(a.labels.account, a.healthy ? 1 : 0),
    );
    accountGauge(
      'xoauth2_relay_account_state',
      'Always 1, labelled with the account\'s health state (ok, starting, needs_consent, bad_client_credentials, provider_refuses_login, ...)',
      (a, out) => out(a.labels.state(a.state), 1),
    );
    accountGauge('xoauth2_relay_upstream_connections', 'Upstream connections per account by state', (a, out) => {
      const p = sources.pool(a.email);
      if (!p) return;
      out(a.labels.state('idle'), p.idle);
      out(a.labels.state('busy'), p.busy);
    });
    accountGauge('xoauth2_relay_upstream_waiting', 'Transactions waiting for a connection of the account', (a, out) => {
      const p = sources.pool(a.email);
      if (p) out(a.labels.account, p.waiting);
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

  /** The exposition, whole (see writeExposition()): the same bytes as registry.metrics(). */
  async exposition(): Promise<string> {
    const chunks: string[] = [];
    await this.writeExposition((chunk) => chunks.push(chunk));
    return chunks.join('');
  }

  /**
   * The exposition GET /metrics serves, the same bytes as registry.metrics(), handed to `write`
   * a slice at a time with the event loop free between slices (./exposition.ts).
   */
  writeExposition(write: (chunk: string) => void): Promise<void> {
    return writeExposition(this.registry, write);
  }

  /** Seconds since the relay started. */
  get uptimeSeconds(): number {
    return Math.round((Date.now() - this.started) / 1000);
  }

  static outcome(code: number): Outcome {
    return code < 400 ? 'accepted' : code < 500 ? 'deferred' : 'rejected';
  }
}
