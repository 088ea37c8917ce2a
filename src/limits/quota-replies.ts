// Provider replies that mean "this account is over its quota", not "this message is wrong", and
// how long to leave the account alone after one. Sending on would only collect more refusals
// and, at Google, risk suspension; so the account is paused (fleet-wide with Redis) and the MTA
// hears 451 4.7.1, never a 5xx that would bounce a message that did nothing wrong.
import { enhancedCode, type Reply } from '../smtp/reply.js';

export interface QuotaSignal {
  kind: 'daily' | 'rate' | 'concurrency';
  pauseMs: number;
}

/**
 * A daily quota is counted over a rolling 24 hours and frees up gradually; an hour's pause
 * probes again with one message rather than waiting a whole day for capacity that returns
 * sooner, and is no hammering (24 refused messages a day at most).
 */
export const DAILY_PAUSE_MS = 60 * 60_000;
/** Exchange's 30 messages a minute: wait out the minute. */
export const RATE_PAUSE_MS = 60_000;
/** Exchange's 3 connections a mailbox: long enough for transactions in flight on the others to end. */
export const CONCURRENCY_PAUSE_MS = 15_000;

const DAILY_TEXT = /daily (user )?(sending )?(limit|quota)|sending (limit|quota) exceeded|quota ?exceeded|SubmissionQuotaExceeded/i;
const RATE_TEXT = /message rate limit|submission rate|too many messages/i;
const CONCURRENCY_TEXT = /thread limit exceeded|concurrent connection limit/i;

/**
 * Gmail: 550 5.4.5 "Daily user sending limit exceeded" (also "quota"); 421/454 4.7.0 with the
 * same words. Exchange Online: 554 5.2.0 "STOREDRV.Submission.Exception:
 * SubmissionQuotaExceededException"; 432 4.3.2 "STOREDRV.ClientSubmit; sender thread limit
 * exceeded" or "concurrent connection limit exceeded" (a fourth connection). Matched on the
 * enhanced code where it is specific (5.4.5), on the words where it is not (4.7.0, 5.2.0 and
 * 4.3.2 have other meanings too).
 */
export function quotaSignal(r: Reply): QuotaSignal | null {
  if (r.code < 400) return null;
  const text = r.lines.join(' ');
  if (enhancedCode(r) === '5.4.5' || DAILY_TEXT.test(text)) return { kind: 'daily', pauseMs: DAILY_PAUSE_MS };
  if (CONCURRENCY_TEXT.test(text)) return { kind: 'concurrency', pauseMs: CONCURRENCY_PAUSE_MS };
  if (RATE_TEXT.test(text)) return { kind: 'rate', pauseMs: RATE_PAUSE_MS };
  return null;
}
