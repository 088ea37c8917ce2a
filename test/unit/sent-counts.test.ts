// Messages sent per account in the last hour and day (`accounts list`): 5-minute buckets in a
// ring, exact to within one bucket, old buckets reused without leaking into the windows.
import { describe, expect, it } from 'vitest';
import { SentCounts } from '../../src/obs/sent-counts.js';

const MIN = 60_000;

describe('SentCounts', () => {
  it('counts per account in the last hour and the last day, to within a 5-minute bucket', () => {
    const clock = { now: 1_700_000_000_000 - (1_700_000_000_000 % (5 * MIN)) };
    const sent = new SentCounts(() => clock.now);
    expect(sent.of('a@x.test')).toEqual({ last_hour: 0, last_day: 0 });
    for (let i = 0; i < 3; i++) sent.record('a@x.test');
    sent.record('b@x.test');
    expect(sent.of('a@x.test')).toEqual({ last_hour: 3, last_day: 3 });

    clock.now += 59 * MIN; // the first bucket is still within the hour (55-60 minutes)
    sent.record('a@x.test');
    expect(sent.of('a@x.test')).toEqual({ last_hour: 4, last_day: 4 });
    clock.now += 23 * 60 * MIN; // 24 h minus one minute after the first three
    expect(sent.of('a@x.test')).toEqual({ last_hour: 0, last_day: 4 });
    clock.now += 2 * MIN;
    expect(sent.of('a@x.test')).toEqual({ last_hour: 0, last_day: 1 });
    // The first bucket's slot comes round again: it starts from zero.
    sent.record('a@x.test');
    expect(sent.of('a@x.test')).toEqual({ last_hour: 1, last_day: 2 });
    expect(sent.of('b@x.test')).toEqual({ last_hour: 0, last_day: 0 });
    sent.forget('a@x.test');
    expect(sent.of('a@x.test')).toEqual({ last_hour: 0, last_day: 0 });
  });
});
