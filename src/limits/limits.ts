// How an account's limits (src/config/account-limits.ts) are counted: rolling-window counters
// cut into buckets, and what each message and recipient is charged against.
import { COUNTER_NAMES, type AccountLimits, type CounterName } from '../config/account-limits.js';
import type { Charge, WindowCounter } from '../store/store.js';

/**
 * Each counter is a rolling window cut into buckets. The relay sums `buckets + 1` buckets, so
 * what it counts always covers at least the whole window (the providers count over a rolling
 * window too: a "day" is the last 24 hours, not since midnight). The price is being stricter
 * than the provider by at most one bucket's worth of time: ≤ 10 s on a minute, ≤ 1 h on a day.
 */
export const WINDOWS: Record<CounterName, { metric: 'messages' | 'recipients'; bucketMs: number; buckets: number }> = {
  messages_per_minute: { metric: 'messages', bucketMs: 10_000, buckets: 6 },
  messages_per_hour: { metric: 'messages', bucketMs: 300_000, buckets: 12 },
  messages_per_day: { metric: 'messages', bucketMs: 3_600_000, buckets: 24 },
  recipients_per_day: { metric: 'recipients', bucketMs: 3_600_000, buckets: 24 },
};

function counter(name: CounterName, limit: number): WindowCounter {
  const w = WINDOWS[name];
  return { name, limit, bucketMs: w.bucketMs, buckets: w.buckets };
}

/** What one message (at MAIL) and each further recipient (at RCPT) are charged against. */
export interface ChargePlan {
  message: Charge[];
  recipient: Charge[];
}

export function chargePlan(limits: AccountLimits): ChargePlan {
  const plan: ChargePlan = { message: [], recipient: [] };
  for (const name of COUNTER_NAMES) {
    const limit = limits[name];
    if (limit === null) continue;
    const c = { counter: counter(name, limit), amount: 1 };
    // Every message has at least one recipient: its first is reserved with the message, so a
    // one-recipient transaction costs one store round trip, not two.
    if (WINDOWS[name].metric === 'recipients') plan.recipient.push(c);
    plan.message.push(c);
  }
  return plan;
}

export const hasCounters = (plan: ChargePlan): boolean => plan.message.length > 0;
