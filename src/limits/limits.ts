// What a mailbox may send, as rolling-window counters, and the providers' published limits used
// as defaults (docs/limits.md cites each number). A limit of null means "not counted".
import type { Charge, WindowCounter } from '../store/store.js';

/**
 * Each counter is a rolling window cut into buckets. The relay sums `buckets + 1` buckets, so
 * what it counts always covers at least the whole window (the providers count over a rolling
 * window too: a "day" is the last 24 hours, not since midnight). The price is being stricter
 * than the provider by at most one bucket's worth of time: ≤ 10 s on a minute, ≤ 1 h on a day.
 */
export const WINDOWS = {
  messages_per_minute: { metric: 'messages', bucketMs: 10_000, buckets: 6 },
  messages_per_hour: { metric: 'messages', bucketMs: 300_000, buckets: 12 },
  messages_per_day: { metric: 'messages', bucketMs: 3_600_000, buckets: 24 },
  recipients_per_day: { metric: 'recipients', bucketMs: 3_600_000, buckets: 24 },
} as const;

export type CounterName = keyof typeof WINDOWS;
export const COUNTER_NAMES = Object.keys(WINDOWS) as CounterName[];

export type AccountLimits = Record<CounterName, number | null> & {
  /** More RCPTs in one transaction get 452 4.5.3 (the MTA sends them in another transaction). */
  recipients_per_message: number | null;
};

export const NO_LIMITS: AccountLimits = {
  messages_per_minute: null,
  messages_per_hour: null,
  messages_per_day: null,
  recipients_per_day: null,
  recipients_per_message: null,
};

/** The providers' published per-mailbox limits (docs/limits.md has the sources). */
export const PROVIDER_LIMITS: Record<'google' | 'microsoft', AccountLimits> = {
  // Google Workspace (paid): 2,000 messages and 10,000 recipients a day, 100 recipients per
  // message sent over SMTP. No per-minute or per-hour figure is published.
  google: { ...NO_LIMITS, messages_per_day: 2_000, recipients_per_day: 10_000, recipients_per_message: 100 },
  // Exchange Online: 30 messages a minute (SMTP client submission), 10,000 recipients a day,
  // 500 recipients per message. No messages-per-day figure beyond the recipient rate limit.
  microsoft: { ...NO_LIMITS, messages_per_minute: 30, recipients_per_day: 10_000, recipients_per_message: 500 },
};

/**
 * Default max_connections per provider kind. Exchange Online refuses a fourth concurrent SMTP
 * AUTH connection of a mailbox (432 4.3.2); Google publishes no such figure.
 */
export const PROVIDER_MAX_CONNECTIONS: Record<'google' | 'microsoft', number> = { google: 5, microsoft: 3 };

/** max_connections for an account that sends through another server than the provider's own (SPEC's example value). */
export const GENERIC_MAX_CONNECTIONS = 5;

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
