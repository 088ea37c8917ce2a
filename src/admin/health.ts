// Each account's health, named by what the operator must do, and whether it can send now. One
// place derives it from what the relay knows (the token cache, what the provider said when the
// pool last tried to open a connection, quota pauses, sending limits, the store), and every view
// shows the same: /api/accounts and `accounts list`, /readyz, the account_healthy and
// account_state metrics, the status page.
import type { Relay } from '../relay/relay.js';
import { RelayError } from '../errors/registry.js';
import type { Account } from '../routing/account.js';
import type { Store } from '../store/store.js';
import type { GrantFailure } from '../tokens/grant.js';
import { hasCounters } from '../limits/limits.js';
import { UpstreamAuthError } from '../upstream/connection.js';
import { formatReply } from '../smtp/reply.js';
import { adviceFor } from './advice.js';

/** In the order they win when several hold: what needs the operator first, what passes by itself last. */
export const ACCOUNT_STATES = [
  'needs_consent',
  'bad_client_credentials',
  'client_not_authorized',
  'provider_refuses_login',
  'token_endpoint_failing',
  'provider_unreachable',
  'store_failing',
  'paused_by_quota',
  'at_limit_until',
  'starting',
  'cold',
  'ok',
] as const;

export type AccountState = (typeof ACCOUNT_STATES)[number];

/** The state in a few words, for the status page and `accounts list` readers. */
export const STATE_WORDS: Record<AccountState, string> = {
  needs_consent: 'Needs new consent (refresh token refused)',
  bad_client_credentials: 'OAuth client refused: fix client_id / client_secret',
  client_not_authorized: 'OAuth client not authorised for this grant',
  provider_refuses_login: 'Provider refuses login with a fresh token',
  token_endpoint_failing: 'Token endpoint failing, retrying',
  provider_unreachable: 'Provider unreachable, retrying',
  store_failing: 'Store failing: sending limits cannot be counted',
  paused_by_quota: 'Paused: the provider says it is over its quota',
  at_limit_until: 'At its sending limit',
  starting: 'Starting: fetching its first token',
  cold: 'Idle: its next message waits for one token request and one login',
  ok: 'Sending',
};

export interface AccountHealth {
  state: AccountState;
  /** Whether a message for it would go upstream now. */
  can_send: boolean;
  /** What went wrong, as the token endpoint or the provider said it; null when nothing did. Never a secret. */
  error: string | null;
  /** Epoch ms of that error, when known. */
  error_at: number | null;
  /** What to do about it, in a sentence; null when nothing is to be done. */
  advice: string | null;
  /** paused_by_quota, at_limit_until: when it frees. */
  until: number | null;
}

/**
 * What the store says about itself: a reason when it is failing, else null. The hook for the
 * store's own failing flag: a store that counts limits and cannot answer stops every account
 * with counted limits (451 4.3.0 at MAIL). Today only the shared Redis store says so (`connected`).
 */
export function storeProblem(store: Store): string | null {
  const s = store as Store & { connected?: boolean };
  if (s.connected === false) return 'the shared store (Redis) is unreachable';
  // A shared store that refuses writes cannot count limits either (the embedded one counts in memory).
  if (!store.localCounting && store.health?.failing) return `the shared store refuses writes (${store.health.state.error ?? 'unknown error'})`;
  return null;
}

const CONSENT_STATES: Partial<Record<GrantFailure, AccountState>> = {
  invalid_grant: 'needs_consent',
  invalid_client: 'bad_client_credentials',
  unauthorized_client: 'client_not_authorized',
};

/** Failures of opening a connection that belong to the token (the token cache reports those) or to the relay's own life. */
const NOT_UPSTREAM = new Set(['TOKEN_UNAVAILABLE', 'ACCOUNT_REMOVED', 'ACCOUNT_RECONFIGURED', 'SHUTTING_DOWN']);

interface Finding {
  state: AccountState;
  error: string | null;
  errorAt?: number | null;
  advice?: string | null;
  until?: number | null;
  /** This finding by itself keeps the account from sending. */
  blocks: boolean;
}

/** One pass over every account: what the views that need all of them at once share. */
export interface HealthPass {
  /** Epoch ms it was taken. */
  readonly at: number;
  /** The relay's accounts it covers (replaced whole when they change: a reload, a live change), in the relay's order. */
  readonly of: readonly Account[];
  /**
   * Each account's health, at its index in `of`. The states without an error (ok, cold,
   * starting) share one frozen object each: a pass over thousands of accounts allocates only
   * for the accounts with a problem.
   */
  readonly healths: readonly AccountHealth[];
  /** Every account by state. */
  readonly counts: Readonly<Partial<Record<AccountState, number>>>;
}

/**
 * How long the status page's pass over every account is reused (see pass()): a pass is well
 * under a ms of CPU at 5,000 accounts now, but several open status pages each ask every 2 s.
 */
export const PASS_MAX_AGE_MS = 1_000;

/** The healths without an error, shared (see HealthPass.healths). */
const quiet = (state: AccountState, can_send: boolean): AccountHealth => Object.freeze({ state, can_send, error: null, error_at: null, advice: null, until: null });
const OK = quiet('ok', true);
const COLD = quiet('cold', true);
const STARTING = quiet('starting', false);

export class AccountHealthBoard {
  private lastPass: HealthPass | null = null;

  /**
   * When the board first saw an account's current error, for findings whose source keeps no
   * time (a pause read from the store, a limit, the store's outage): an error is never shown
   * without a time beside it.
   */
  private readonly firstSeen = new Map<string, { key: string; at: number }>();

  constructor(
    private readonly relay: Relay,
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  of(account: Account): AccountHealth {
    return this.healthOf(account, storeProblem(this.store));
  }

  /**
   * The account's health; `storeIssue` is storeProblem(), asked once per pass. Most accounts of
   * a large relay have nothing to report: they are told apart by a few map lookups, and get a
   * shared health (no finding, no object); the others go through their findings.
   */
  private healthOf(account: Account, storeIssue: string | null): AccountHealth {
    const { email } = account;
    const { tokens, pools, pauses, limiter } = this.relay;
    const hasToken = tokens.current(email) !== null;
    if (
      !tokens.stateOf(email)?.lastFailure &&
      !pools.get(email)?.openFailure &&
      !(storeIssue && hasCounters(limiter.plan(account))) &&
      !pauses.get(email) &&
      !limiter.atLimit(email)
    ) {
      if (this.firstSeen.size) this.firstSeen.delete(email);
      // A cold account sends: its message fetches the token (src/relay/warmth.ts).
      return hasToken ? OK : this.relay.warmth.isWarm(email) ? STARTING : COLD;
    }
    const findings = this.findings(account, storeIssue, hasToken);
    const top = findings.length < 2 ? findings[0] : findings.sort((a, b) => RANK[a.state] - RANK[b.state])[0];
    const canSend = (hasToken || top?.state === 'cold') && !findings.some((f) => f.blocks);
    if (!top?.error) this.firstSeen.delete(email);
    if (!top) return hasToken ? OK : STARTING;
    return { state: top.state, can_send: canSend, error: top.error, error_at: this.errorTime(email, top), advice: top.advice ?? null, until: top.until ?? null };
  }

  private errorTime(email: string, f: Finding): number | null {
    if (!f.error) return null;
    if (f.errorAt != null) return f.errorAt;
    const key = `${f.state}\0${f.error}`;
    const seen = this.firstSeen.get(email);
    if (seen?.key === key) return seen.at;
    const at = this.now();
    this.firstSeen.set(email, { key, at });
    return at;
  }

  /**
   * Every account's health and the counts by state, from a pass at most `maxAgeMs` old over the
   * same accounts: the status page's counts, problems-first order and banner need all of them,
   * and several viewers (or one polling every 2 s beside a scrape) then share one pass instead of
   * one each. /readyz and the metrics take their own, fresh pass (pass(0), which the next status
   * requests then share): a load balancer and an alert act on them, and they must not be a
   * second behind.
   */
  pass(maxAgeMs = PASS_MAX_AGE_MS): HealthPass {
    const of = this.relay.accounts;
    const last = this.lastPass;
    const now = this.now();
    if (last && last.of === of && now - last.at < maxAgeMs && now >= last.at) return last;
    const storeIssue = storeProblem(this.store);
    const counts: Partial<Record<AccountState, number>> = {};
    const healths = new Array<AccountHealth>(of.length);
    for (let i = 0; i < of.length; i++) {
      const health = (healths[i] = this.healthOf(of[i]!, storeIssue));
      counts[health.state] = (counts[health.state] ?? 0) + 1;
    }
    return (this.lastPass = { at: now, of, healths, counts });
  }

  private findings(account: Account, storeIssue: string | null, hasToken: boolean): Finding[] {
    const out: Finding[] = [];
    const { tokens, pools, pauses, limiter } = this.relay;
    const token = tokens.stateOf(account.email);
    if (token?.lastFailure) {
      const state = CONSENT_STATES[token.lastFailure.kind] ?? 'token_endpoint_failing';
      // A token still cached keeps serving until it expires: hasToken decides sending.
      out.push({ state, error: token.lastError, errorAt: token.lastErrorAt, advice: adviceFor('token', token.lastFailure, account), blocks: false });
    } else if (!hasToken) {
      // No usable token: a warm account's is being fetched; a cold one's (never fetched, or
      // lapsed while the account was idle) is fetched by its next message.
      out.push(this.relay.warmth.isWarm(account.email) ? { state: 'starting', error: null, blocks: true } : { state: 'cold', error: null, blocks: false });
    }
    const pool = pools.get(account.email);
    const failure = pool?.openFailure;
    if (pool && failure && !(failure.error instanceof RelayError && NOT_UPSTREAM.has(failure.error.code))) {
      const cause = failure.error instanceof RelayError ? failure.error.cause : undefined;
      const auth = failure.error instanceof UpstreamAuthError ? failure.error : cause instanceof UpstreamAuthError ? cause : null;
      out.push({
        state: auth ? 'provider_refuses_login' : 'provider_unreachable',
        error: auth ? `the provider answered AUTH with ${formatReply(auth.upstreamReply)}` : (failure.error as Error).message,
        errorAt: failure.at,
        advice: adviceFor(auth ? 'auth' : 'connect', auth ?? failure.error, account),
        // With no connection left, the next message would most likely fail the same way. A pool
        // that keeps min_idle reopens by itself and clears this; one with min_idle 0 tries again
        // only for a message, so it must not be called unable (a load balancer would then send
        // it none, and it would never find out that the provider is back).
        blocks: pool.retriesAlone && pool.stats.idle + pool.stats.busy === 0,
      });
    }
    if (storeIssue && hasCounters(limiter.plan(account))) {
      out.push({ state: 'store_failing', error: storeIssue, advice: 'Bring the store back: messages of accounts with sending limits get 451 4.3.0 until it answers.', blocks: true });
    }
    const pause = pauses.get(account.email);
    if (pause) out.push({ state: 'paused_by_quota', error: pause.reason, until: pause.until, advice: null, blocks: true });
    const full = limiter.atLimit(account.email);
    if (full) out.push({ state: 'at_limit_until', error: `at ${full.why}`, until: full.until, advice: null, blocks: true });
    return out;
  }

  /**
   * /readyz: ready when the listener is up and at least one account can send now. `reasons` say
   * why not; `unable` names the accounts that cannot send (also when ready), with their state.
   */
  readiness(listening: boolean): Readiness {
    return this.readinessOf(listening, this.pass(0));
  }

  /** readiness() from a pass already taken (the status snapshot shares one for both). */
  readinessOf(listening: boolean, { of, healths }: HealthPass): Readiness {
    const unable: Readiness['unable'] = [];
    let unableTotal = 0;
    // One pass, linear in the accounts; only the first UNABLE_LISTED are written out.
    for (let i = 0; i < of.length; i++) {
      const health = healths[i]!;
      if (health.can_send) continue;
      if (++unableTotal <= UNABLE_LISTED) unable.push({ email: of[i]!.email, state: health.state, error: health.error });
    }
    const reasons: string[] = [];
    if (!listening) reasons.push('the SMTP listener is not up (starting or stopping)');
    if (!of.length) reasons.push('no account is configured');
    else if (unableTotal === of.length) {
      const more = unableTotal > unable.length ? ` and ${unableTotal - unable.length} more` : '';
      reasons.push(`no account can send: ${unable.map((u) => `${u.email} ${u.state}`).join(', ')}${more}`);
    }
    return { ready: reasons.length === 0, reasons, unable, unable_total: unableTotal, store_problem: storeProblem(this.store) };
  }
}

/** Each state's rank in ACCOUNT_STATES, by lookup (the health of thousands of accounts is built per scrape). */
const RANK = Object.fromEntries(ACCOUNT_STATES.map((s, i) => [s, i])) as Record<AccountState, number>;
/** /readyz names at most this many accounts that cannot send; `unable_total` counts them all. */
const UNABLE_LISTED = 50;

export interface Readiness {
  ready: boolean;
  reasons: string[];
  /** The first 50 accounts that cannot send (`unable_total` counts them all). */
  unable: Array<{ email: string; state: AccountState; error: string | null }>;
  unable_total: number;
  /** The store's own failure, if any (it stops only the accounts with counted limits). */
  store_problem: string | null;
}

/** 1 when nothing about the account needs fixing (at a limit or paused by quota, it works as it should). */
export const isHealthy = (h: AccountHealth): boolean => h.state === 'ok' || h.state === 'cold' || h.state === 'paused_by_quota' || h.state === 'at_limit_until';
