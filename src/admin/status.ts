// GET /status.json: what the status page (./status-page.ts) shows, read-only and without a
// secret: readiness, each account's health in words with its connections, sends against its
// limits and last error, and the most recent replies of 400 or above given to MTAs.
//
// Accounts come a page at a time, problems first (what needs the operator, then what cannot
// send, then the rest, each group in the accounts' own order), filtered by `q` (part of an email, a provider or a state): with
// thousands of accounts one document of all of them cost half a second and 800 KB (issue 22).
// The counts by state, the order and the readiness banner come from the health board's pass over
// every account (AccountHealthBoard.pass(): shared by the requests of the same second, the order
// and the banner computed once per pass, none of them allocating per account); a request itself
// costs the page's accounts, which get their full view, live (plus, with `q`, one filter over
// the ordered list).
import type { Metrics, Totals } from '../obs/metrics.js';
import type { Refusals } from '../obs/refusals.js';
import { VERSION } from '../obs/version.js';
import { refusalAdvice } from './advice.js';
import type { Relay } from '../relay/relay.js';
import type { Account } from '../routing/account.js';
import { ACCOUNT_STATES, isHealthy, STATE_WORDS, type AccountHealth, type AccountHealthBoard, type AccountState, type HealthPass, type Readiness } from './health.js';

export interface StatusDeps {
  relay: Relay;
  health: AccountHealthBoard;
  refusals: Refusals;
  isListening: () => boolean;
  inboundSessions: () => number;
  metrics?: Metrics;
}

/** Which accounts, and which page of them (GET /status.json?q=...&page=...&per_page=...). */
export interface StatusQuery {
  /** Part of an email, a provider name or a state name, case-insensitive; empty: all. */
  q: string;
  /** 1-based. */
  page: number;
  perPage: number;
}

export const DEFAULT_PER_PAGE = 50;
export const MAX_PER_PAGE = 500;

/** The query from the URL's parameters; what is missing or not a number takes its default. */
export function statusQuery(params: URLSearchParams): StatusQuery {
  const int = (name: string, dflt: number, max: number) => {
    const n = Number.parseInt(params.get(name) ?? '', 10);
    return Number.isFinite(n) && n >= 1 ? Math.min(n, max) : dflt;
  };
  return { q: (params.get('q') ?? '').trim().toLowerCase(), page: int('page', 1, Number.MAX_SAFE_INTEGER), perPage: int('per_page', DEFAULT_PER_PAGE, MAX_PER_PAGE) };
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
  version: string;
  uptime_s: number;
  /** Since start: messages the providers accepted, and replies of 4xx (deferred) and 5xx (refused) given to MTAs. */
  totals: Totals | null;
  /** Every account by state, whatever the page and the search. */
  account_states: Partial<Record<AccountState, number>>;
  /** The accounts matching `q`, and which page of them `accounts` is. */
  page: { q: string; number: number; per_page: number; pages: number; matching: number; total: number };
  listening: boolean;
  inbound_sessions: number;
  readiness: Readiness;
  accounts: AccountStatus[];
  /** Newest first. */
  recent_refusals: Array<{ at: string; stage: string; code: number; reason: string; account: string | null; mail_from: string | null; client: string | null; reply: string; advice: string | null }>;
}

const RECENT_REFUSALS = 20;

const RANK = Object.fromEntries(ACCOUNT_STATES.map((s, i) => [s, i])) as Record<AccountState, number>;

const KEYS = 4 * ACCOUNT_STATES.length;
const sortKey = (h: AccountHealth): number => (isHealthy(h) ? 2 * ACCOUNT_STATES.length : 0) + (h.can_send ? ACCOUNT_STATES.length : 0) + RANK[h.state];

/**
 * The accounts' indices in the pass, by sortKey and in the accounts' own order within a key: a
 * counting sort into one typed array, not a comparison sort (with thousands of accounts nearly
 * all share one key, ok or cold) and no object per account.
 */
function problemsFirst({ healths }: HealthPass): Uint32Array {
  const keys = new Uint8Array(healths.length);
  const starts = new Uint32Array(KEYS + 1);
  for (let i = 0; i < healths.length; i++) starts[(keys[i] = sortKey(healths[i]!)) + 1]!++;
  for (let k = 1; k <= KEYS; k++) starts[k]! += starts[k - 1]!;
  const order = new Uint32Array(healths.length);
  for (let i = 0; i < healths.length; i++) order[starts[keys[i]!]!++] = i;
  return order;
}

/** What every request reading the same pass shares: its order, and its readiness by listener state. */
interface PassViews {
  ordered: Uint32Array;
  readiness: Map<boolean, Readiness>;
}

const passViews = new WeakMap<HealthPass, PassViews>();

function viewsOf(pass: HealthPass): PassViews {
  let views = passViews.get(pass);
  if (!views) passViews.set(pass, (views = { ordered: problemsFirst(pass), readiness: new Map() }));
  return views;
}

/** The ordered indices of the accounts matching `q` (part of an email, a provider or a state). */
function matching({ of, healths }: HealthPass, ordered: Uint32Array, q: string): Uint32Array {
  if (!q) return ordered;
  const found: number[] = [];
  for (const i of ordered) {
    const a = of[i]!;
    if (a.email.includes(q) || a.provider.name.toLowerCase().includes(q) || healths[i]!.state.includes(q)) found.push(i);
  }
  return Uint32Array.from(found);
}

const iso = (ms: number | null | undefined): string | null => (ms ? new Date(ms).toISOString() : null);

/**
 * One account of the page, live: what the accounts API shows of it (./accounts.ts), less its
 * settings (masking them was a fifth of a page's cost, and the page does not show them).
 */
function accountStatus({ relay, health: board }: StatusDeps, account: Account): AccountStatus {
  const { email, limits } = account;
  const health = board.of(account);
  const pool = relay.pools.get(email)?.stats;
  const pause = relay.pauses.get(email);
  const sent = relay.sent.of(email);
  return {
    email,
    provider: account.provider.name,
    health: health.state,
    words: STATE_WORDS[health.state],
    can_send: health.can_send,
    advice: health.advice,
    token_expires_at: iso(relay.tokens.expiresAt(email)),
    connections: pool ? { busy: pool.busy, idle: pool.idle, opening: pool.opening, waiting: pool.waiting } : null,
    sent: { last_hour: sent.last_hour, last_day: sent.last_day },
    limits: { messages_per_hour: limits?.messages_per_hour ?? null, messages_per_day: limits?.messages_per_day ?? null },
    at_limit_until: iso(relay.limiter.atLimit(email)?.until),
    paused: pause ? { until: new Date(pause.until).toISOString(), reason: pause.reason } : null,
    last_error: health.error,
    last_error_at: iso(health.error_at),
  };
}

export function statusSnapshot(deps: StatusDeps, query: StatusQuery = { q: '', page: 1, perPage: DEFAULT_PER_PAGE }): StatusSnapshot {
  const listening = deps.isListening();
  const pass = deps.health.pass();
  const views = viewsOf(pass);
  let readiness = views.readiness.get(listening);
  if (!readiness) views.readiness.set(listening, (readiness = deps.health.readinessOf(listening, pass)));
  const found = matching(pass, views.ordered, query.q);
  const pages = Math.max(1, Math.ceil(found.length / query.perPage));
  const number = Math.min(query.page, pages);
  const shown = Array.from(found.subarray((number - 1) * query.perPage, number * query.perPage), (i) => pass.of[i]!);
  return {
    generated_at: new Date().toISOString(),
    version: VERSION,
    uptime_s: deps.metrics?.uptimeSeconds ?? 0,
    totals: deps.metrics ? { ...deps.metrics.totals } : null,
    account_states: { ...pass.counts },
    page: { q: query.q, number, per_page: query.perPage, pages, matching: found.length, total: pass.of.length },
    listening,
    inbound_sessions: deps.inboundSessions(),
    readiness,
    accounts: shown.map((account) => accountStatus(deps, account)),
    recent_refusals: deps.refusals.recent(RECENT_REFUSALS).map((r) => ({
      at: new Date(r.at).toISOString(),
      stage: r.stage,
      code: r.code,
      reason: r.reason,
      account: r.account,
      mail_from: r.mailFrom,
      client: r.client,
      reply: r.reply,
      advice: refusalAdvice(r.reply),
    })),
  };
}
