// What a mailbox may send, and the providers' published limits used as defaults (docs/limits.md
// cites each number). A limit of null means "not counted". Part of the configuration, below the
// stages that enforce it (src/limits/) and the store that counts it.

/** The counted limits; src/limits/limits.ts gives each its window. */
export const COUNTER_NAMES = ['messages_per_minute', 'messages_per_hour', 'messages_per_day', 'recipients_per_day'] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];

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
