// What an HTTP API's error answer means for the MTA and the account: the one mapping from
// Graph's and Gmail's status codes and error bodies to the relay's errors (whose replies are
// decided in src/errors/registry.ts). Every error here means the provider did not send the message.
import { RelayError } from '../../errors/registry.js';
import { RATE_PAUSE_MS, DAILY_PAUSE_MS } from '../../limits/quota-replies.js';
import {
  C451LocalError,
  C454TempAuthFailure,
  C554TransactionFailed,
  SeMsg6Other0,
  SeNet4Other0,
  SePol7DeliveryUnauthorized1,
  SePol7Other0,
} from '../../smtp/codes.js';
import { coded } from '../../smtp/reply.js';
import type { ApiResponse } from './http.js';

export type ApiName = 'graph' | 'gmail';

const LABEL: Record<ApiName, string> = { graph: 'Microsoft Graph', gmail: 'The Gmail API' };

/** What to grant, in the words an administrator needs (also `accounts test` advice). */
export const GRANT_ADVICE: Record<ApiName, string> = {
  graph:
    'grant the app the Microsoft Graph permissions Mail.Send and Mail.ReadWrite (application, with admin consent; or delegated, consented by the user) ' +
    'and, if an application access policy restricts the app, add the mailbox to its group',
  gmail:
    'the token needs the scope https://www.googleapis.com/auth/gmail.send (or https://mail.google.com/); ' +
    'for a service account, add it to the client id in the Admin console (domain-wide delegation)',
};

/** The provider's own error code and message, from either API's error body. Never holds a secret. */
export function errorOf(res: ApiResponse): { code: string; message: string; reason: string } {
  try {
    const e = (JSON.parse(res.body) as { error?: { code?: unknown; message?: unknown; status?: unknown; errors?: Array<{ reason?: unknown }> } }).error;
    const code = typeof e?.code === 'string' ? e.code : typeof e?.status === 'string' ? e.status : String(res.status);
    const message = typeof e?.message === 'string' ? e.message.split(/\r?\n/)[0]!.slice(0, 200) : '';
    const reason = typeof e?.errors?.[0]?.reason === 'string' ? e.errors[0].reason : '';
    return { code, message, reason };
  } catch {
    return { code: String(res.status), message: '', reason: '' };
  }
}

/** Gmail's reasons that mean "slow down", which it may send with 403 as well as 429. */
const GMAIL_THROTTLE_REASONS = new Set(['rateLimitExceeded', 'userRateLimitExceeded', 'dailyLimitExceeded', 'quotaExceeded', 'concurrentLimitExceeded']);

/**
 * How long the provider asked the account to wait: Retry-After (seconds or an HTTP date), or
 * Gmail's "Retry after <RFC 3339 time>" in the message; else a daily quota's or a rate's default.
 */
export function retryAfterMs(res: ApiResponse, now: number = Date.now()): number {
  const header = res.headers['retry-after'];
  const value = Array.isArray(header) ? header[0] : header;
  if (value) {
    const seconds = Number(value);
    if (Number.isFinite(seconds) && seconds >= 0) return Math.max(1000, seconds * 1000);
    const at = Date.parse(value);
    if (!Number.isNaN(at)) return Math.max(1000, at - now);
  }
  const { message, reason } = errorOf(res);
  const stamp = /retry after (\d{4}-\d\d-\d\dT[\d:.]+Z)/i.exec(message)?.[1];
  if (stamp) return Math.max(1000, Date.parse(stamp) - now);
  return reason === 'dailyLimitExceeded' || /daily/i.test(message) ? DAILY_PAUSE_MS : RATE_PAUSE_MS;
}

/** Whether the answer is the provider throttling the account (and not refusing a permission). */
export function isThrottle(api: ApiName, res: ApiResponse): boolean {
  if (res.status === 429) return true;
  return api === 'gmail' && res.status === 403 && GMAIL_THROTTLE_REASONS.has(errorOf(res).reason);
}

/** The relay's error for an error answer (not 401, which the caller retries, nor a throttle). */
export function apiFailure(api: ApiName, res: ApiResponse, step: string): RelayError {
  const { code, message } = errorOf(res);
  const said = `${code}${message ? `: ${message}` : ''}`;
  const detail = `${api} ${step}: HTTP ${res.status} ${said}`;
  const opts = { notSent: true };
  if (res.status === 401) return new RelayError('UPSTREAM_AUTH_REJECTED', detail, opts);
  // Exchange's Send As refusal: permanent until an admin grants it, as SMTP's 554 5.2.252 is
  // (an Exchange-only code; the relay's own reply says it with the standard 5.7.1).
  if (code === 'ErrorSendAsDenied') {
    return new RelayError('API_REFUSED', detail, {
      ...opts,
      reply: coded(C554TransactionFailed, SePol7DeliveryUnauthorized1, `SendAsDenied: ${LABEL[api]} refused the From address (${code}); grant the account Send As on that mailbox`),
    });
  }
  if (res.status === 403 || res.status === 404) {
    const why = res.status === 404 ? `${LABEL[api]} does not know the mailbox (${code})` : `${LABEL[api]} refused (${code})`;
    return new RelayError('API_FORBIDDEN', detail, { ...opts, reply: coded(C454TempAuthFailure, SePol7Other0, `${why}: ${GRANT_ADVICE[api]}`) });
  }
  // Exchange's answer for a message over the mailbox's size limit (a tenant's 35 MB by default).
  if (res.status === 413 || code === 'ErrorMessageSizeExceeded') return new RelayError('MESSAGE_TOO_BIG', detail, opts);
  if (res.status === 400) return new RelayError('API_REFUSED', detail, { ...opts, reply: coded(C554TransactionFailed, SeMsg6Other0, `${LABEL[api]} refused the message (${clean(said)})`) });
  // 5xx and anything unexpected: temporary. A gateway timeout may have sent it.
  const notSent = res.status !== 504;
  return new RelayError('API_SERVER_ERROR', detail, { notSent, reply: coded(C451LocalError, SeNet4Other0, `${LABEL[api]} failed (HTTP ${res.status}), try again later`) });
}

/** The throttle's error, with when to retry in the text (as accountLimitError does for limits). */
export function throttled(api: ApiName, waitMs: number, detail: string): RelayError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new RelayError('API_THROTTLED', detail, { notSent: true, reply: coded(C451LocalError, SePol7DeliveryUnauthorized1, `${LABEL[api]} is throttling the account, try again in ${seconds} s`) });
}

/** A provider's text inside our reply: one line, printable ASCII, bounded. */
const clean = (s: string) => s.replace(/[^\x20-\x7e]/g, ' ').slice(0, 160);
