// Counts made on the message path wait in src/obs/metrics.ts's PendingCounts until a scrape adds
// them to their prom-client counter: the scrape must show the same series and totals as counting
// straight into prom-client would, under per_account active (the default) and none.
import { describe, expect, it } from 'vitest';
import { Metrics, type PerAccountSeries } from '../../src/obs/metrics.js';

const sources = { tokenExpiries: () => [], accountHealth: () => [], pools: () => [], inboundSessions: () => 0 };

const count = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

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
    const first = await m.registry.metrics();
    expect(count(first, 'xoauth2_relay_messages_total{account="a@x.test",outcome="accepted"}')).toBe(2);
    expect(count(first, 'xoauth2_relay_messages_total{account="a@x.test",outcome="rejected"}')).toBe(1);
    expect(count(first, 'xoauth2_relay_messages_total{account="b@x.test",outcome="deferred"}')).toBe(1);
    expect(count(first, 'xoauth2_relay_messages_total{account="b@x.test",outcome="accepted"}')).toBe(1);
    expect(count(first, 'xoauth2_relay_upstream_replies_total{account="a@x.test",command="MAIL",code="250"}')).toBe(2);
    expect(count(first, 'xoauth2_relay_upstream_replies_total{account="a@x.test",command="RCPT",code="550"}')).toBe(1);
    expect(count(first, 'xoauth2_relay_upstream_replies_total{account="b@x.test",command="MAIL",code="250"}')).toBe(1);
    expect(count(first, 'xoauth2_relay_upstream_replies_total{account="b@x.test",command="RCPT",code="250"}')).toBe(1);
    expect(count(first, 'xoauth2_relay_upstream_replies_total{account="a@x.test",command="RCPT",code="250"}')).toBeUndefined();
    // Counted once: a second scrape adds only what came since.
    m.countMessage('a@x.test', 250);
    m.countUpstreamReply('a@x.test', 'RCPT', 550);
    const second = await m.registry.metrics();
    expect(count(second, 'xoauth2_relay_messages_total{account="a@x.test",outcome="accepted"}')).toBe(3);
    expect(count(second, 'xoauth2_relay_messages_total{account="b@x.test",outcome="accepted"}')).toBe(1);
    expect(count(second, 'xoauth2_relay_upstream_replies_total{account="a@x.test",command="RCPT",code="550"}')).toBe(2);
    expect(m.totals.accepted).toBe(4);
  });

  it('per_account none: the same counts summed over the accounts, without the label', async () => {
    const m = new Metrics(sources, 'none');
    traffic(m);
    const text = await m.registry.metrics();
    expect(count(text, 'xoauth2_relay_messages_total{outcome="accepted"}')).toBe(3);
    expect(count(text, 'xoauth2_relay_messages_total{outcome="deferred"}')).toBe(1);
    expect(count(text, 'xoauth2_relay_upstream_replies_total{command="MAIL",code="250"}')).toBe(3);
    expect(count(text, 'xoauth2_relay_upstream_replies_total{command="RCPT",code="550"}')).toBe(1);
    expect(text).not.toContain('x.test');
  });
});
