// The embedded store's sending-limit counters: the shared conformance cases, the rolling window
// on a fake clock, and counters that survive a restart.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sealer } from '../../src/store/sealer.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { WindowCounter } from '../../src/store/store.js';
import { WindowCounters } from '../../src/store/window-counters.js';
import { quotaConformance } from '../helpers/quota-conformance.js';

const HOUR = 3_600_000;
const DAY: WindowCounter = { name: 'messages_per_day', limit: 3, bucketMs: HOUR, buckets: 24 };
const sealer = Sealer.fromKey(Buffer.alloc(32, 7));

let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-quota-'));
  store = new SqliteStore(join(dir, 'relay.db'), sealer);
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('SqliteStore quotas (conformance)', () => {
  quotaConformance(() => store);
});

describe('rolling windows', () => {
  it('a day counts the last 24 to 25 hours: capacity returns bucket by bucket as old ones leave', () => {
    let now = 10 * HOUR + 30 * 60_000; // half-way through a bucket
    const c = new WindowCounters(() => now);
    expect(c.reserve('a', [{ counter: DAY, amount: 2 }]).ok).toBe(true);
    now += 5 * HOUR;
    expect(c.reserve('a', [{ counter: DAY, amount: 1 }]).ok).toBe(true);
    const full = c.reserve('a', [{ counter: DAY, amount: 1 }]);
    // The first two leave when the bucket they are in is 25 buckets old: 19.5 h from now.
    expect(full).toEqual({ ok: false, counter: 'messages_per_day', limit: 3, retryInMs: 19.5 * HOUR });
    now += 19.5 * HOUR - 1;
    expect(c.reserve('a', [{ counter: DAY, amount: 1 }]).ok).toBe(false);
    now += 1;
    const r = c.reserve('a', [{ counter: DAY, amount: 2 }]);
    expect(r.ok && r.left.messages_per_day).toBe(0);
  });

  it('the retry time is when enough has left for the amount asked, not just the oldest bucket', () => {
    let now = 0;
    const c = new WindowCounters(() => now);
    c.reserve('a', [{ counter: DAY, amount: 1 }]);
    now = 2 * HOUR;
    c.reserve('a', [{ counter: DAY, amount: 2 }]);
    now = 3 * HOUR;
    const r = c.reserve('a', [{ counter: DAY, amount: 3 }]);
    expect(r).toEqual({ ok: false, counter: 'messages_per_day', limit: 3, retryInMs: 27 * HOUR - 3 * HOUR });
  });

  it('a release into a bucket that already left the window changes nothing', () => {
    let now = 0;
    const c = new WindowCounters(() => now);
    const r = c.reserve('a', [{ counter: DAY, amount: 3 }]);
    now = 30 * HOUR;
    expect(c.reserve('a', [{ counter: DAY, amount: 3 }]).ok).toBe(true);
    if (r.ok) c.release('a', r.charged);
    expect(c.reserve('a', [{ counter: DAY, amount: 1 }]).ok).toBe(false);
  });
});

describe('restarts', () => {
  it('counters and pauses survive closing and reopening the store: a restart does not reset the day', async () => {
    for (let i = 0; i < 3; i++) expect((await store.reserve('a@x.test', [{ counter: DAY, amount: 1 }])).ok).toBe(true);
    await store.savePause('b@x.test', { until: Date.now() + 60_000, reason: 'daily quota' });
    await store.close();
    store = new SqliteStore(join(dir, 'relay.db'), sealer);
    expect((await store.reserve('a@x.test', [{ counter: DAY, amount: 1 }])).ok).toBe(false);
    expect((await store.loadPauses()).get('b@x.test')?.reason).toBe('daily quota');
  });

  it('the periodic flush writes counts without a close (a crash loses at most the last second)', async () => {
    const r = await store.reserve('a@x.test', [{ counter: DAY, amount: 2 }]);
    expect(r.ok).toBe(true);
    store.flush();
    const second = new SqliteStore(join(dir, 'relay.db'), sealer);
    try {
      const left = await second.reserve('a@x.test', [{ counter: DAY, amount: 1 }]);
      expect(left.ok && left.left.messages_per_day).toBe(0);
    } finally {
      await second.close();
    }
  });
});
