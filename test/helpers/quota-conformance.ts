// What every Store's quota counting must do, run against each implementation (the embedded
// store's in-memory counters and the Redis store's Lua), so the two cannot drift apart.
// Time-travel cases live in the embedded store's unit test: Redis counts on its own clock.
import { expect, it } from 'vitest';
import type { Charge, Store, WindowCounter } from '../../src/store/store.js';

const counter = (name: string, limit: number, bucketMs = 3_600_000, buckets = 24): WindowCounter => ({ name, limit, bucketMs, buckets });
const charge = (c: WindowCounter, amount = 1): Charge => ({ counter: c, amount });

/** Registers the shared cases; `store()` is the store under test, fresh for each case. */
export function quotaConformance(store: () => Store): void {
  it('reserves up to the limit exactly, then refuses with a retry time within one window', async () => {
    const day = counter('messages_per_day', 5);
    const results = await Promise.all(Array.from({ length: 8 }, () => store().reserve('a@x.test', [charge(day)])));
    expect(results.filter((r) => r.ok)).toHaveLength(5);
    const refused = results.filter((r) => !r.ok);
    expect(refused).toHaveLength(3);
    for (const r of refused) {
      if (r.ok) continue;
      expect(r.counter).toBe('messages_per_day');
      expect(r.limit).toBe(5);
      // The current bucket leaves the window after 24 to 25 hours.
      expect(r.retryInMs).toBeGreaterThan(24 * 3_600_000 - 1);
      expect(r.retryInMs).toBeLessThanOrEqual(25 * 3_600_000);
    }
    const lefts = results.flatMap((r) => (r.ok ? [r.left.messages_per_day] : [])).sort();
    expect(lefts).toEqual([0, 1, 2, 3, 4]);
  });

  it('is all or nothing across counters: a refused charge takes nothing from the others', async () => {
    const day = counter('messages_per_day', 10);
    const rcpt = counter('recipients_per_day', 2);
    expect((await store().reserve('b@x.test', [charge(day), charge(rcpt, 2)])).ok).toBe(true);
    const r = await store().reserve('b@x.test', [charge(day), charge(rcpt)]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.counter).toBe('recipients_per_day');
    const again = await store().reserve('b@x.test', [charge(day)]);
    expect(again.ok && again.left.messages_per_day).toBe(8);
  });

  it('counts per account and per counter', async () => {
    const min = counter('messages_per_minute', 1, 10_000, 6);
    expect((await store().reserve('c@x.test', [charge(min)])).ok).toBe(true);
    expect((await store().reserve('d@x.test', [charge(min)])).ok).toBe(true);
    expect((await store().reserve('c@x.test', [charge(min)])).ok).toBe(false);
    const r = await store().reserve('c@x.test', [charge(min)]);
    // A minute counter frees within 60 to 70 s.
    expect(!r.ok && r.retryInMs).toBeGreaterThan(50_000);
    expect(!r.ok && r.retryInMs).toBeLessThanOrEqual(70_000);
  });

  it('a release gives the reservation back; releasing more than was counted stops at zero', async () => {
    const day = counter('messages_per_day', 2);
    const a = await store().reserve('e@x.test', [charge(day)]);
    const b = await store().reserve('e@x.test', [charge(day)]);
    expect(a.ok && b.ok).toBe(true);
    expect((await store().reserve('e@x.test', [charge(day)])).ok).toBe(false);
    if (!a.ok) return;
    await store().release('e@x.test', a.charged);
    const c = await store().reserve('e@x.test', [charge(day)]);
    expect(c.ok && c.left.messages_per_day).toBe(0);
    for (let i = 0; i < 4; i++) await store().release('e@x.test', a.charged);
    const lefts = [];
    for (let i = 0; i < 3; i++) {
      const r = await store().reserve('e@x.test', [charge(day)]);
      lefts.push(r.ok ? r.left.messages_per_day : 'refused');
    }
    expect(lefts).toEqual([1, 0, 'refused']);
  });

  it('an amount over the limit itself never fits: retry after a whole window', async () => {
    const r = await store().reserve('f@x.test', [charge(counter('recipients_per_day', 3), 4)]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.retryInMs).toBe(25 * 3_600_000);
  });

  it('pauses are shared through the store until they lapse', async () => {
    const until = Date.now() + 60_000;
    await store().savePause('g@x.test', { until, reason: 'daily quota: 550 5.4.5' });
    await store().savePause('h@x.test', { until: Date.now() - 1, reason: 'over' });
    const pauses = await store().loadPauses();
    expect(pauses.get('g@x.test')).toEqual({ until, reason: 'daily quota: 550 5.4.5' });
    expect(pauses.has('h@x.test')).toBe(false);
  });
}
