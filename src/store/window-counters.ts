// Rolling-window counters in memory: the embedded store's quota engine. The Redis store runs the
// same arithmetic in a Lua script (redis-scripts.ts); test/helpers/quota-conformance.ts holds
// both to the same behaviour.
import type { Charge, Charged, ReserveResult, WindowCounter } from './store.js';

type Buckets = Map<number, number>;

/** A counter's state as persisted: one row per non-empty bucket. */
export interface BucketRow {
  email: string;
  counter: string;
  bucket: number;
  count: number;
}

/** Drops buckets that left the window; returns the live ones' total. */
function prune(buckets: Buckets, c: WindowCounter, now: number): number {
  const oldest = Math.floor(now / c.bucketMs) - c.buckets;
  let used = 0;
  for (const [b, n] of buckets) {
    if (b < oldest) buckets.delete(b);
    else used += n;
  }
  return used;
}

/**
 * How long until enough old buckets leave the window for `amount` more to fit. Bucket b is
 * summed while the current bucket is at most b + buckets, so it leaves at (b + buckets + 1) ·
 * bucketMs. An amount over the limit itself never fits: one whole window is the answer.
 */
export function retryInMs(buckets: Buckets, c: WindowCounter, used: number, amount: number, now: number): number {
  let need = used + amount - c.limit;
  for (const b of [...buckets.keys()].sort((x, y) => x - y)) {
    need -= buckets.get(b)!;
    if (need <= 0) return (b + c.buckets + 1) * c.bucketMs - now;
  }
  return (c.buckets + 1) * c.bucketMs;
}

/** One account's counter: its buckets, and what it is called in the store. */
interface Counter {
  email: string;
  counter: string;
  buckets: Buckets;
}

export class WindowCounters {
  /**
   * By account, then counter name. Looked up at every reservation: two lookups on strings
   * whose hashes are known, rather than a key concatenated (and hashed anew) per charge.
   */
  private readonly counts = new Map<string, Map<string, Counter>>();
  /** Counters changed since the last takeDirty(), for the embedded store's periodic flush. */
  private dirty = new Set<Counter>();

  constructor(private readonly now: () => number = Date.now) {}

  reserve(email: string, charges: readonly Charge[]): ReserveResult {
    const now = this.now();
    const left: Record<string, number> = {};
    const charged: Charged[] = [];
    const counters = this.account(email);
    for (const { counter: c, amount } of charges) {
      const { buckets } = this.counter(counters, email, c.name);
      const used = prune(buckets, c, now);
      if (used + amount > c.limit) return { ok: false, counter: c.name, limit: c.limit, retryInMs: retryInMs(buckets, c, used, amount, now) };
      left[c.name] = c.limit - used - amount;
      charged.push({ counter: c.name, bucket: Math.floor(now / c.bucketMs), amount });
    }
    for (const ch of charged) {
      const counter = counters.get(ch.counter)!;
      counter.buckets.set(ch.bucket, (counter.buckets.get(ch.bucket) ?? 0) + ch.amount);
      this.dirty.add(counter);
    }
    return { ok: true, charged, left };
  }

  release(email: string, charged: readonly Charged[]): void {
    const counters = this.counts.get(email);
    for (const ch of charged) {
      const counter = counters?.get(ch.counter);
      const n = counter?.buckets.get(ch.bucket);
      if (!counter || n === undefined) continue; // the bucket already left the window
      if (n <= ch.amount) counter.buckets.delete(ch.bucket);
      else counter.buckets.set(ch.bucket, n - ch.amount);
      this.dirty.add(counter);
    }
  }

  load(rows: Iterable<BucketRow>): void {
    for (const r of rows) this.counter(this.account(r.email), r.email, r.counter).buckets.set(r.bucket, r.count);
  }

  /** The counters changed since the last call, with their current buckets. */
  takeDirty(): Array<{ email: string; counter: string; buckets: Array<[number, number]> }> {
    const out = [...this.dirty].map(({ email, counter, buckets }) => ({ email, counter, buckets: [...buckets] }));
    this.dirty = new Set();
    return out;
  }

  /** Counters taken by takeDirty() whose write failed: written again at the next flush. */
  markDirty(counters: ReadonlyArray<{ email: string; counter: string }>): void {
    for (const c of counters) this.dirty.add(this.counter(this.account(c.email), c.email, c.counter));
  }

  private account(email: string): Map<string, Counter> {
    let counters = this.counts.get(email);
    if (!counters) this.counts.set(email, (counters = new Map()));
    return counters;
  }

  private counter(counters: Map<string, Counter>, email: string, name: string): Counter {
    let c = counters.get(name);
    if (!c) counters.set(name, (c = { email, counter: name, buckets: new Map() }));
    return c;
  }
}
