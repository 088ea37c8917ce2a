// Messages each account sent (the provider answered 2xx) in the last hour and day, for
// `accounts list` and /api/accounts. In memory, per process: it starts at zero when the relay
// starts, and each instance of a fleet counts its own. (The sending limits count in the store,
// but only for accounts that have limits; these counts exist for every account.)
//
// A ring of 5-minute buckets per account: recording is a Map lookup and an increment, on the
// message path; the windows are exact to within one bucket.

const BUCKET_MS = 300_000;
const DAY_BUCKETS = 288;
const HOUR_BUCKETS = 12;

class Ring {
  readonly counts = new Uint32Array(DAY_BUCKETS);
  /** The bucket number each slot holds (0: never used). */
  readonly buckets = new Float64Array(DAY_BUCKETS);
}

export interface SentInWindows {
  last_hour: number;
  last_day: number;
}

export class SentCounts {
  private readonly rings = new Map<string, Ring>();

  constructor(private readonly now: () => number = Date.now) {}

  record(email: string): void {
    let ring = this.rings.get(email);
    if (!ring) this.rings.set(email, (ring = new Ring()));
    const bucket = Math.floor(this.now() / BUCKET_MS);
    const slot = bucket % DAY_BUCKETS;
    if (ring.buckets[slot] !== bucket) {
      ring.buckets[slot] = bucket;
      ring.counts[slot] = 0;
    }
    ring.counts[slot]!++;
  }

  /** The current bucket and the ones before it: 55-60 minutes, 23 h 55 min-24 h. */
  of(email: string): SentInWindows {
    const ring = this.rings.get(email);
    const out = { last_hour: 0, last_day: 0 };
    if (!ring) return out;
    const current = Math.floor(this.now() / BUCKET_MS);
    for (let i = 0; i < DAY_BUCKETS; i++) {
      const age = current - ring.buckets[i]!;
      if (age < 0 || age >= DAY_BUCKETS) continue;
      out.last_day += ring.counts[i]!;
      if (age < HOUR_BUCKETS) out.last_hour += ring.counts[i]!;
    }
    return out;
  }

  forget(email: string): void {
    this.rings.delete(email);
  }
}
