// GET /status.json: what the status page (./status-page.ts) shows, read-only and without a
// secret: readiness, each account's health in words with its connections, sends against its
// limits and last error, and the most recent replies of 400 or above given to MTAs.
import type { Refusals } from '../obs/refusals.js';
import { refusalAdvice } from './advice.js';
import type { Relay } from '../relay/relay.js';
import type { AccountAdmin } from './accounts.js';
import { STATE_WORDS, type AccountHealthBoard, type AccountState, type Readiness } from './health.js';

export interface StatusDeps {
  relay: Relay;
  accounts: AccountAdmin;
  health: AccountHealthBoard;
  refusals: Refusals;
  isListening: () => boolean;
  inboundSessions: () => number;
}

export interface AccountStatus {
  email: string;
  provider: string;
  health: AccountState;
  /** The state in words. */
  words: string;
  can_send: boolean;
  advice: string | null;
  token_expires_at: string | null;
  connections: { busy: number; idle: number; opening: number; waiting: number } | null;
  sent: { last_hour: number; last_day: number };
  /** The counted limits the two windows above are measured against; null: not counted. */
  limits: { messages_per_hour: number | null; messages_per_day: number | null };
  at_limit_until: string | null;
  paused: { until: string; reason: string } | null;
  last_error: string | null;
  last_error_at: string | null;
}

export interface StatusSnapshot {
  generated_at: string;
  listening: boolean;
  inbound_sessions: number;
  readiness: Readiness;
  accounts: AccountStatus[];
  /** Newest first. */
  recent_refusals: Array<{ at: string; stage: string; code: number; reason: string; account: string | null; mail_from: string | null; reply: string; advice: string | null }>;
}

const RECENT_REFUSALS = 20;

export function statusSnapshot(deps: StatusDeps): StatusSnapshot {
  const listening = deps.isListening();
  return {
    generated_at: new Date().toISOString(),
    listening,
    inbound_sessions: deps.inboundSessions(),
    readiness: deps.health.readiness(listening),
    accounts: deps.accounts.list().map((v) => {
      const limits = deps.relay.router.account(v.email)?.limits;
      return {
        email: v.email,
        provider: v.provider,
        health: v.health,
        words: STATE_WORDS[v.health],
        can_send: v.can_send,
        advice: v.advice,
        token_expires_at: v.token_expires_at,
        connections: v.connections && { busy: v.connections.busy, idle: v.connections.idle, opening: v.connections.opening, waiting: v.connections.waiting },
        sent: { last_hour: v.sent_last_hour, last_day: v.sent_last_day },
        limits: { messages_per_hour: limits?.messages_per_hour ?? null, messages_per_day: limits?.messages_per_day ?? null },
        at_limit_until: v.at_limit_until,
        paused: v.paused,
        last_error: v.last_error,
        last_error_at: v.last_error_at,
      };
    }),
    recent_refusals: deps.refusals.recent(RECENT_REFUSALS).map((r) => ({
      at: new Date(r.at).toISOString(),
      stage: r.stage,
      code: r.code,
      reason: r.reason,
      account: r.account,
      mail_from: r.mailFrom,
      reply: r.reply,
      advice: refusalAdvice(r.reply),
    })),
  };
}
