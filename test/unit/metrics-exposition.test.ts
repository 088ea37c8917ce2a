// Metrics.exposition() writes the Prometheus text itself, a slice at a time (issue 22): it must
// be byte for byte what prom-client's registry.metrics() writes for the same registry, label
// escaping and histograms included, and stay so from one scrape to the next while values and
// the accounts shown change (it keeps each labels object's text between scrapes).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Metrics, type PerAccountSeries } from '../../src/obs/metrics.js';

// Emails an operator could not configure, but label values must survive any text.
const ODD = ['quote"d@x.test', 'back\\slash@x.test', 'new\nline@x.test'];
const PLAIN = Array.from({ length: 300 }, (_, i) => `acct-${i}@x.test`);

interface Account {
  email: string;
  state: string;
  healthy: boolean;
  warm: boolean;
  pool?: { idle: number; busy: number; waiting: number };
  expiresAt: number | null;
}

function relayOf(): Account[] {
  return [...ODD, ...PLAIN].map((email, i) => ({
    email,
    state: i % 7 === 3 ? 'needs_consent' : i % 2 ? 'ok' : 'cold',
    healthy: i % 7 !== 3,
    warm: i % 2 === 1 || i < ODD.length,
    ...(i % 2 ? { pool: { idle: i % 3, busy: i % 2, waiting: 0 } } : {}),
    expiresAt: i % 2 ? Date.now() + 60_000 * i : null,
  }));
}

function metricsOf(accounts: Account[], perAccount: PerAccountSeries): Metrics {
  // The health is read first in a scrape: the index the other sources read is made then.
  let byEmail = new Map<string, Account>();
  const m = new Metrics(
    {
      tokenExpiry: (email) => byEmail.get(email)?.expiresAt ?? null,
      accountHealth: () => {
        const now = [...accounts];
        byEmail = new Map(now.map((a) => [a.email, a]));
        const counts: Record<string, number> = {};
        for (const a of now) counts[a.state] = (counts[a.state] ?? 0) + 1;
        return { size: now.length, counts, email: (i) => now[i]!.email, state: (i) => now[i]!.state, healthy: (i) => now[i]!.healthy };
      },
      isActive: (email, healthy) => !healthy || (byEmail.get(email)?.warm ?? false),
      pool: (email) => byEmail.get(email)?.pool,
      inboundSessions: () => 3,
      storeFailing: () => false,
    },
    perAccount,
  );
  // The process's own metrics change between two reads (CPU, heap, handles): compared elsewhere by promtool.
  for (const { name } of m.registry.getMetricsAsArray()) if (/^xoauth2_relay_(process_|nodejs_)/.test(name)) m.registry.removeSingleMetric(name);
  return m;
}

function traffic(m: Metrics, accounts: Account[], round: number): void {
  accounts.forEach((a, i) => {
    if (!a.warm) return;
    m.countMessage(a.email, i % 5 ? 250 : 451);
    m.countUpstreamReply(a.email, 'MAIL', 250);
    m.countUpstreamReply(a.email, 'DATA', i % 5 ? 250 : 451);
    m.relayLatency.observe({ account: a.email }, 0.001 * (i + round));
    if (i % 11 === 0) m.refusals.inc({ stage: 'data', class: '4xx', reason: 'upstream_deferred', account: a.email });
    if (i % 13 === 0) m.tokenRefreshes.inc({ account: a.email, result: 'ok' });
    if (i % 13 === 0) m.tokenRefreshLatency.observe({ account: a.email }, 0.3);
  });
}

describe('Metrics.exposition()', () => {
  beforeEach(() => vi.useFakeTimers({ toFake: ['Date'], now: 1_800_000_000_000 }));
  afterEach(() => vi.useRealTimers());

  for (const perAccount of ['all', 'active', 'none'] as const) {
    it(`writes what prom-client's registry writes, scrape after scrape (per_account ${perAccount})`, async () => {
      const accounts = relayOf();
      const m = metricsOf(accounts, perAccount);
      for (let round = 0; round < 3; round++) {
        traffic(m, accounts, round);
        const ours = await m.exposition();
        expect(ours).toBe(await m.registry.metrics());
        if (round === 0) {
          expect(ours).toMatch(/^# TYPE xoauth2_relay_messages_total counter$/m);
          const who = perAccount === 'none' ? '' : 'account="acct-0@x\\.test",';
          expect(ours).toMatch(new RegExp(`^xoauth2_relay_messages_total\\{${who}outcome="accepted"\\} ${perAccount === 'none' ? '\\d+' : '1'}$`, 'm'));
          expect(ours).toMatch(new RegExp(`^xoauth2_relay_upstream_replies_total\\{${who}command="MAIL",code="250"\\} ${perAccount === 'none' ? '\\d+' : '1'}$`, 'm'));
        }
        if (perAccount !== 'none' && round === 0) {
          expect(ours).toContain('account="quote\\"d@x.test"');
          expect(ours).toContain('account="back\\\\slash@x.test"');
          expect(ours).toContain('account="new\\nline@x.test"');
          expect(ours).toMatch(/^xoauth2_relay_upstream_connections\{account="acct-0@x\.test",state="busy"\} 1$/m);
          expect(ours).toMatch(/^xoauth2_relay_account_state\{account="acct-0@x\.test",state="needs_consent"\} 1$/m);
          expect(ours).toMatch(/^xoauth2_relay_token_expiry_seconds\{account="acct-0@x\.test"\} 180$/m);
        }
        // Between scrapes, accounts change state, warm up, cool down and leave.
        accounts.forEach((a, i) => {
          if (i % 3 === round) a.state = a.state === 'ok' ? 'cold' : 'ok';
          if (i % 4 === round) a.warm = !a.warm;
        });
        accounts.splice(10 + round, 5);
        vi.advanceTimersByTime(1_500);
      }
    });
  }

  it('lets the event loop run while it writes thousands of series', async () => {
    const accounts = Array.from({ length: 3_000 }, (_, i) => ({ email: `many-${i}@x.test`, state: 'ok', healthy: true, warm: true, pool: { idle: 1, busy: 0, waiting: 0 }, expiresAt: Date.now() + 60_000 }));
    const m = metricsOf(accounts, 'all');
    traffic(m, accounts, 0);
    // prom-client's registry collects every metric at once: the per-account gauges must wait for the accounts picked.
    const viaRegistry = await m.registry.metrics();
    let turns = 0;
    const count = () => {
      turns++;
      if (!done) setImmediate(count);
    };
    let done = false;
    setImmediate(count);
    const text = await m.exposition();
    done = true;
    // ≈ 36,000 series (a 17-series histogram per account among them): several ms of work in slices of ≈ 1 ms.
    expect(text.split('\n').length).toBeGreaterThan(30_000);
    expect(text).toBe(viaRegistry);
    // Slices end inside a metric too: the latency histogram (17 series an account here, ≈ 50,000
    // lines, many ms to format) goes out in several chunks, not in one hold.
    const chunks: string[] = [];
    await m.writeExposition((chunk) => chunks.push(chunk));
    expect(chunks.join('')).toBe(text);
    expect(chunks.filter((c) => c.includes('xoauth2_relay_data_seconds_bucket{')).length).toBeGreaterThan(3);
    expect(turns).toBeGreaterThan(3);
  });
});
