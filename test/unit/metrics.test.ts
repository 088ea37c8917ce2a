// Counts made on the message path wait in src/obs/metrics.ts's PendingCounts until a scrape adds
// them to their prom-client counter: the scrape must show the same series and totals as counting
// straight into prom-client would, under per_account active (the default) and none. Latencies go
// into prom-client's histograms by a quicker path: the scrape must be what prom-client's own
// observe() gives for the same values.
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Metrics, type PerAccountSeries } from '../../src/obs/metrics.js';

const sources = { tokenExpiries: () => [], accountHealth: () => [], pools: () => [], inboundSessions: () => 0 };

const count = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

/** Each series (undefined: absent) as the scrape gives it. */
const expectCounts = (text: string, want: Record<string, number | undefined>): void => {
  expect(Object.fromEntries(Object.keys(want).map((series) => [series, count(text, series)]))).toEqual(want);
};

const MSG = 'xoauth2_relay_messages_total';
const UP = 'xoauth2_relay_upstream_replies_total';

function traffic(m: Metrics): void {
  for (const [account, code] of [['a@x.test', 250], ['a@x.test', 250], ['a@x.test', 550], ['b@x.test', 451], ['b@x.test', 250]] as const) m.countMessage(account, code);
  for (const [account, command, code] of [['a@x.test', 'MAIL', 250], ['a@x.test', 'MAIL', 250], ['a@x.test', 'RCPT', 550], ['b@x.test', 'MAIL', 250], ['b@x.test', 'RCPT', 250]] as const) {
    m.countUpstreamReply(account, command, code);
  }
}

describe('Metrics: counts kept until a scrape', () => {
  it.each<PerAccountSeries>(['active', 'all'])('per_account %s: a series per account, outcome, command and code', async (per) => {
    const m = new Metrics(sources, per);
    traffic(m);
    expectCounts(await m.registry.metrics(), {
      [`${MSG}{account="a@x.test",outcome="accepted"}`]: 2,
      [`${MSG}{account="a@x.test",outcome="rejected"}`]: 1,
      [`${MSG}{account="b@x.test",outcome="deferred"}`]: 1,
      [`${MSG}{account="b@x.test",outcome="accepted"}`]: 1,
      [`${UP}{account="a@x.test",command="MAIL",code="250"}`]: 2,
      [`${UP}{account="a@x.test",command="RCPT",code="550"}`]: 1,
      [`${UP}{account="b@x.test",command="MAIL",code="250"}`]: 1,
      [`${UP}{account="b@x.test",command="RCPT",code="250"}`]: 1,
      [`${UP}{account="a@x.test",command="RCPT",code="250"}`]: undefined,
    });
    // Counted once: a second scrape adds only what came since.
    m.countMessage('a@x.test', 250);
    m.countUpstreamReply('a@x.test', 'RCPT', 550);
    expectCounts(await m.registry.metrics(), {
      [`${MSG}{account="a@x.test",outcome="accepted"}`]: 3,
      [`${MSG}{account="b@x.test",outcome="accepted"}`]: 1,
      [`${UP}{account="a@x.test",command="RCPT",code="550"}`]: 2,
    });
    expect(m.totals.accepted).toBe(4);
  });

  it('per_account none: the same counts summed over the accounts, without the label', async () => {
    const m = new Metrics(sources, 'none');
    traffic(m);
    const text = await m.registry.metrics();
    expectCounts(text, {
      [`${MSG}{outcome="accepted"}`]: 3,
      [`${MSG}{outcome="deferred"}`]: 1,
      [`${UP}{command="MAIL",code="250"}`]: 3,
      [`${UP}{command="RCPT",code="550"}`]: 1,
    });
    expect(text).not.toContain('x.test');
  });
});

describe('Metrics: latency histograms', () => {
  // Bounds themselves, between them, above the last one, zero, a repeat.
  const values = [0, 0.0004, 0.001, 0.0010001, 0.0025, 0.003, 0.007, 0.2, 0.2, 1, 4.9, 29.99, 30, 31, 120];

  it.each<PerAccountSeries>(['all', 'active', 'none'])('per_account %s: the scrape prom-client gives for the same observations', async (per) => {
    const m = new Metrics(sources, per);
    for (const name of ['xoauth2_relay_data_seconds', 'xoauth2_relay_token_refresh_seconds']) {
      const ours = m.registry.getSingleMetric(name) as Histogram<string> & { help: string; upperBounds: number[]; labelNames: string[] };
      const reference = new Registry();
      const plain = new Histogram({ name, help: ours.help, labelNames: ours.labelNames, buckets: ours.upperBounds, registers: [reference] });
      const observed = name === 'xoauth2_relay_data_seconds' ? m.relayLatency : m.tokenRefreshLatency;
      values.forEach((v, i) => {
        const account = ['a@x.test', 'b@x.test', 'c@x.test'][i % 3]!;
        observed.observe({ account }, v);
        if (per === 'all') plain.observe({ account }, v);
        else plain.observe(v);
      });
      expect(await m.registry.getSingleMetricAsString(name)).toBe(await reference.getSingleMetricAsString(name));
      expect(await ours.get()).toEqual(await plain.get());
      expect(() => observed.observe({ account: 'a@x.test' }, Number.NaN)).toThrow();
      // A series removed, or all of them reset, comes back from zero as prom-client's would.
      if (per === 'all') {
        ours.remove({ account: 'a@x.test' });
        plain.remove({ account: 'a@x.test' });
      } else {
        ours.reset();
        plain.reset();
      }
      for (const v of values.slice(0, 4)) {
        observed.observe({ account: 'a@x.test' }, v);
        if (per === 'all') plain.observe({ account: 'a@x.test' }, v);
        else plain.observe(v);
      }
      expect(await m.registry.getSingleMetricAsString(name)).toBe(await reference.getSingleMetricAsString(name));
    }
  });
});
