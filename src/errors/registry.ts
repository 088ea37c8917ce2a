// Every failure the relay can report, declared once with a stable code and the SMTP reply it
// maps to. Callers branch on `code`, never on message text; the inbound stage turns any error
// into a reply with toReply() and nothing else decides a reply code.
//
// Policy (SPEC "On the wire"): problems that are the relay's or the account's, not the
// message's, are temporary (4xx) so the MTA keeps the message and retries.
import { ProtocolError } from '../smtp/protocol-error.js';
import {
  C421ServiceUnavailable,
  C451LocalError,
  C452InsufficientStorage,
  C454TempAuthFailure,
  C500SyntaxError,
  C503BadSequence,
  C530AuthRequired,
  C535AuthCredentialsInvalid,
  C538EncryptionRequired,
  C550MailboxUnavailable,
  C552StorageExceeded,
  C554TransactionFailed,
  C555ParamsNotRecognized,
  SeMsg6Other0,
  SeNet4BadConnection2,
  SeNet4Congestion5,
  SeNet4NoAnswer1,
  SeNet4Other0,
  SePol7AuthCredentialsInvalid8,
  SePol7CryptoFailure5,
  SePol7DeliveryUnauthorized1,
  SePol7EncryptionRequired11,
  SePol7Other0,
  SeProto5BadCmdOrSeq1,
  SeProto5BadParams4,
  SeProto5Other0,
  SeProto5Syntax2,
  SeProto5TooManyRcpts3,
  SeSys3MsgTooBig4,
  SeSys3NotAccepting2,
  SeSys3NotCapable3,
  SeSys3Other0,
} from '../smtp/codes.js';
import { coded, enhancedCode, formatReply, type Reply } from '../smtp/reply.js';

export type RelayErrorCode =
  | 'AUTH_REQUIRED'
  | 'AUTH_FAILED'
  | 'AUTH_NEEDS_TLS'
  | 'SENDER_NOT_ALLOWED'
  | 'NO_ROUTE'
  | 'TOKEN_UNAVAILABLE'
  | 'UPSTREAM_AUTH_REJECTED'
  | 'UPSTREAM_CONNECT_FAILED'
  | 'UPSTREAM_CLOSED'
  | 'UPSTREAM_TIMEOUT'
  | 'UPSTREAM_TLS'
  | 'UPSTREAM_PROTOCOL'
  | 'POOL_BUSY'
  | 'ACCOUNT_LIMIT'
  | 'STORE_UNAVAILABLE'
  | 'TOO_MANY_RECIPIENTS'
  | 'MESSAGE_TOO_BIG'
  | 'SHUTTING_DOWN'
  | 'ACCOUNT_REMOVED'
  | 'ACCOUNT_RECONFIGURED'
  | 'AUTH_LOCKED_OUT'
  | 'TOO_MANY_ERRORS'
  | 'CLIENT_TIMEOUT'
  | 'CLIENT_GONE'
  | 'SYNTAX'
  | 'BAD_SEQUENCE'
  | 'NOT_CARRIABLE'
  | 'TOO_MANY_CONNECTIONS'
  | 'NULL_SENDER_UNROUTED'
  | 'AUTH_DEADLINE'
  | 'EARLY_TALKER'
  | 'LINE_TOO_LONG'
  | 'API_THROTTLED'
  | 'API_SERVER_ERROR'
  | 'API_FORBIDDEN'
  | 'API_REFUSED'
  | 'API_HEADER_RECIPIENTS'
  | 'INTERNAL';

/**
 * Why the relay refused or deferred, in the operator's words: the `reason` label of
 * xoauth2_relay_refusals_total and of every `refused` log line (src/obs/refusals.ts).
 */
export type RefusalReason =
  | 'auth_required'
  | 'auth_failed'
  | 'auth_needs_tls'
  | 'auth_locked_out'
  | 'sender_not_allowed'
  | 'no_account'
  | 'no_token'
  | 'upstream_auth'
  | 'upstream_unreachable'
  | 'upstream'
  | 'pool_busy'
  | 'limit'
  | 'store'
  | 'too_many_recipients'
  | 'too_big'
  | 'syntax'
  | 'shutting_down'
  | 'account_changed'
  | 'too_many_errors'
  | 'timeout'
  | 'client_gone'
  | 'too_many_connections'
  | 'not_carriable'
  | 'throttled'
  | 'upstream_permission'
  | 'internal';

interface ErrorSpec {
  reply: Reply;
  reason: RefusalReason;
}

// RFC 5321 §4.2.2/§4.3.2 and RFC 3463 for the codes; RFC 4954 §6 for the AUTH ones.
const SPECS: Record<RelayErrorCode, ErrorSpec> = {
  AUTH_REQUIRED: { reply: coded(C530AuthRequired, SePol7Other0, 'Authentication required'), reason: 'auth_required' },
  AUTH_FAILED: { reply: coded(C535AuthCredentialsInvalid, SePol7AuthCredentialsInvalid8, 'Authentication credentials invalid'), reason: 'auth_failed' },
  AUTH_NEEDS_TLS: { reply: coded(C538EncryptionRequired, SePol7EncryptionRequired11, 'Encryption required for requested authentication mechanism'), reason: 'auth_needs_tls' },
  SENDER_NOT_ALLOWED: { reply: coded(C550MailboxUnavailable, SePol7DeliveryUnauthorized1, 'Sender address not allowed for this account'), reason: 'sender_not_allowed' },
  NO_ROUTE: { reply: coded(C550MailboxUnavailable, SePol7DeliveryUnauthorized1, 'No account is configured to send as this address'), reason: 'no_account' },
  TOKEN_UNAVAILABLE: { reply: coded(C454TempAuthFailure, SePol7Other0, 'Temporary authentication failure: no access token for the account, try again later'), reason: 'no_token' },
  UPSTREAM_AUTH_REJECTED: { reply: coded(C454TempAuthFailure, SePol7Other0, 'Temporary authentication failure: the provider refused the account\'s token, try again later'), reason: 'upstream_auth' },
  UPSTREAM_CONNECT_FAILED: { reply: coded(C451LocalError, SeNet4NoAnswer1, 'Provider unreachable, try again later'), reason: 'upstream_unreachable' },
  UPSTREAM_CLOSED: { reply: coded(C451LocalError, SeNet4BadConnection2, 'Provider closed the connection, try again later'), reason: 'upstream' },
  UPSTREAM_TIMEOUT: { reply: coded(C451LocalError, SeNet4BadConnection2, 'Provider timed out, try again later'), reason: 'upstream' },
  UPSTREAM_TLS: { reply: coded(C451LocalError, SePol7CryptoFailure5, 'Could not secure the connection to the provider, try again later'), reason: 'upstream_unreachable' },
  UPSTREAM_PROTOCOL: { reply: coded(C451LocalError, SeProto5Other0, 'Unexpected reply from the provider, try again later'), reason: 'upstream' },
  POOL_BUSY: { reply: coded(C451LocalError, SeNet4Congestion5, 'All connections of the account are busy, try again later'), reason: 'pool_busy' },
  ACCOUNT_LIMIT: { reply: coded(C451LocalError, SePol7DeliveryUnauthorized1, 'Account over its sending limits, try again later'), reason: 'limit' },
  STORE_UNAVAILABLE: { reply: coded(C451LocalError, SeSys3Other0, 'Sending limits cannot be checked (shared state store unreachable), try again later'), reason: 'store' },
  TOO_MANY_RECIPIENTS: { reply: coded(C452InsufficientStorage, SeProto5TooManyRcpts3, 'Too many recipients'), reason: 'too_many_recipients' },
  MESSAGE_TOO_BIG: { reply: coded(C552StorageExceeded, SeSys3MsgTooBig4, 'Message size exceeds fixed maximum message size'), reason: 'too_big' },
  SHUTTING_DOWN: { reply: coded(C421ServiceUnavailable, SeSys3NotAccepting2, 'Relay shutting down, try again later'), reason: 'shutting_down' },
  // An account removed at run time (reload, the HTTP API) while a session that authenticated as
  // it is still open. Not 535 (AUTH did succeed) and not 5xx: the message is not at fault, and
  // an operator's change must not bounce mail. The MTA retries; its next AUTH then says why.
  ACCOUNT_REMOVED: { reply: coded(C451LocalError, SePol7Other0, 'Account no longer configured on this relay, try again later'), reason: 'account_changed' },
  // A message waited for a connection of an account whose pool was replaced by a change to it.
  ACCOUNT_RECONFIGURED: { reply: coded(C451LocalError, SeSys3Other0, 'Account reconfigured while the message waited, try again later'), reason: 'account_changed' },
  // The three below end the session (421, RFC 5321 §3.8): the client is guessing, erring or stalling.
  AUTH_LOCKED_OUT: { reply: coded(C421ServiceUnavailable, SePol7Other0, 'Too many failed authentication attempts from your address, try again later'), reason: 'auth_locked_out' },
  TOO_MANY_ERRORS: { reply: coded(C421ServiceUnavailable, SePol7Other0, 'Too many errors in this session, closing connection'), reason: 'too_many_errors' },
  CLIENT_TIMEOUT: { reply: coded(C421ServiceUnavailable, SeNet4BadConnection2, 'Timeout waiting for the client, closing connection'), reason: 'timeout' },
  // The message stream broke off: the client is gone, so the reply is for the log's sake.
  CLIENT_GONE: { reply: coded(C421ServiceUnavailable, SeNet4BadConnection2, 'Message not received in full, closing connection'), reason: 'client_gone' },
  // The inbound engine's protocol replies (RFC 5321 §4.2.4); the detail varies by command.
  SYNTAX: { reply: coded(C500SyntaxError, SeProto5Syntax2, 'Syntax error, command unrecognized'), reason: 'syntax' },
  BAD_SEQUENCE: { reply: coded(C503BadSequence, SeProto5BadCmdOrSeq1, 'Bad sequence of commands'), reason: 'syntax' },
  // A MAIL parameter (SMTPUTF8, BODY=8BITMIME) the picked account's provider does not offer.
  NOT_CARRIABLE: { reply: coded(C555ParamsNotRecognized, SeProto5BadParams4, 'Parameter not supported by this account\'s provider'), reason: 'not_carriable' },
  TOO_MANY_CONNECTIONS: { reply: coded(C421ServiceUnavailable, SePol7Other0, 'Too many connections, try again later'), reason: 'too_many_connections' },
  NULL_SENDER_UNROUTED: { reply: coded(C550MailboxUnavailable, SePol7DeliveryUnauthorized1, 'Null sender (MAIL FROM:<>) without AUTH needs inbound.null_sender_account to be set on the relay'), reason: 'no_account' },
  // A session from outside trusted_networks that did not authenticate within inbound.auth_deadline_ms.
  AUTH_DEADLINE: { reply: coded(C421ServiceUnavailable, SePol7Other0, 'Authentication required within the time allowed, closing connection'), reason: 'auth_required' },
  EARLY_TALKER: { reply: coded(C421ServiceUnavailable, SeProto5Other0, 'You talk too soon, closing connection'), reason: 'syntax' },
  LINE_TOO_LONG: { reply: coded(C421ServiceUnavailable, SeProto5Other0, 'Command line too long, closing connection'), reason: 'syntax' },
  // HTTP upstreams (src/upstream/api/). The provider throttles the account (429, Gmail's rate
  // limit errors): the account is paused for the Retry-After, and the text says how long.
  API_THROTTLED: { reply: coded(C451LocalError, SePol7DeliveryUnauthorized1, 'The provider is throttling the account, try again later'), reason: 'throttled' },
  API_SERVER_ERROR: { reply: coded(C451LocalError, SeNet4Other0, 'The provider\'s API failed, try again later'), reason: 'upstream' },
  // 403: the token is good but lacks a permission; the text (and `accounts test`) says which.
  API_FORBIDDEN: { reply: coded(C454TempAuthFailure, SePol7Other0, 'The provider refused the account\'s permission to send, try again later'), reason: 'upstream_permission' },
  // 400 about the message itself (malformed MIME, an invalid recipient address): the provider's words follow.
  API_REFUSED: { reply: coded(C554TransactionFailed, SeMsg6Other0, 'The provider\'s API refused the message'), reason: 'upstream' },
  // The Gmail API sends to every To/Cc/Bcc address of the message and takes no envelope: a
  // header recipient outside the envelope (already delivered, or another transaction's) would
  // receive it again. Permanent: the same message through the same account can never go.
  API_HEADER_RECIPIENTS: { reply: coded(C554TransactionFailed, SeSys3NotCapable3, 'The Gmail API would also send to header recipients that are not in the envelope'), reason: 'upstream' },
  INTERNAL: { reply: coded(C451LocalError, SeSys3Other0, 'Local error in processing, try again later'), reason: 'internal' },
};

/** Every code of the registry, for the tests that check each one's reply. */
export const RELAY_ERROR_CODES = Object.keys(SPECS) as readonly RelayErrorCode[];

export class RelayError extends Error {
  readonly code: RelayErrorCode;
  readonly reply: Reply;
  /** The account the failure belongs to, once one was picked (for the refusal's log line and count). */
  account?: string;

  /**
   * @param detail for logs only; never put a secret here. The MTA sees `reply`.
   * @param replyOverride a more precise reply than the code's default (same class of code).
   */
  /**
   * The provider certainly does not have the message (an HTTP API answered before or instead of
   * sending it): its reservation is given back (see certainlyNotSent).
   */
  readonly notSent: boolean;

  constructor(code: RelayErrorCode, detail?: string, options?: { cause?: unknown; reply?: Reply; notSent?: boolean }) {
    const r = options?.reply ?? SPECS[code].reply;
    super(detail ? `${code}: ${detail}` : `${code}: ${formatReply(r)}`, { cause: options?.cause });
    this.name = 'RelayError';
    this.code = code;
    this.reply = r;
    this.notSent = options?.notSent ?? false;
  }
}

/** An upstream reply we pass through to the MTA as it is (or nearly: see upstreamReplyForClient). */
export class UpstreamReplyError extends Error {
  readonly reply: Reply;
  /** The account whose provider gave this reply (set by the relay; for the refusal's log line and count). */
  account?: string;
  constructor(r: Reply) {
    super(`upstream replied ${formatReply(r)}`);
    this.name = 'UpstreamReplyError';
    this.reply = r;
  }
}

export const relayError = (code: RelayErrorCode, detail?: string, cause?: unknown) =>
  new RelayError(code, detail, { cause });

/**
 * The reply the MTA gets for an upstream reply. Faithful except that an upstream 421 (the
 * provider closing its channel) must not reach the MTA as 421, which would close *our*
 * session with it: it becomes 451 with the provider's own text.
 */
export function upstreamReplyForClient(r: Reply): Reply {
  return withEnhancedCode(r.code === C421ServiceUnavailable ? { code: C451LocalError, lines: r.lines } : r);
}

/**
 * The relay advertises ENHANCEDSTATUSCODES, and then every reply carries one (RFC 2034 §3). A
 * provider reply without one gets its class's "other undefined status" (RFC 3463: X.0.0) on
 * each line, not a guessed detail: smtp-server's own table would call any 550 "5.1.1 bad
 * destination mailbox", which is wrong for a refused sender.
 */
export function withEnhancedCode(r: Reply): Reply {
  if (enhancedCode(r)) return r;
  const other = `${Math.floor(r.code / 100)}.0.0`;
  return { code: r.code, lines: r.lines.map((l) => (l ? `${other} ${l}` : other)) };
}

/** Marks a failure as the account's (the first account it is attributed to stays). */
export function attribute<E>(err: E, account: string): E {
  if ((err instanceof RelayError || err instanceof UpstreamReplyError) && err.account === undefined) err.account = account;
  return err;
}

/** The account a failure was attributed to, if any. */
export const accountOf = (err: unknown): string | undefined =>
  err instanceof RelayError || err instanceof UpstreamReplyError ? err.account : undefined;

/** The one place that turns anything thrown on a message's path into the MTA's reply. */
export function toReply(err: unknown): Reply {
  if (err instanceof RelayError) return err.reply;
  if (err instanceof ProtocolError) return err.reply ?? SPECS[err.code].reply;
  if (err instanceof UpstreamReplyError) return upstreamReplyForClient(err.reply);
  return SPECS.INTERNAL.reply;
}

/**
 * ACCOUNT_LIMIT with when to retry in the text (RFC 5321 leaves 4yz text free; MTAs log it, and
 * an operator reading a deferral wants the time): "451 4.7.1 <why>, try again in N s".
 */
export function accountLimitError(why: string, retryInMs: number, detail: string): RelayError {
  const seconds = Math.max(1, Math.ceil(retryInMs / 1000));
  return new RelayError('ACCOUNT_LIMIT', detail, { reply: coded(C451LocalError, SePol7DeliveryUnauthorized1, `${why}, try again in ${seconds} s`) });
}

/**
 * Whether a failure at DATA means the provider certainly does not have the message: it refused
 * it, it was too big to send, or an HTTP API answered with an error before sending. A connection
 * lost after the body went (or an API request that timed out) may have delivered it.
 */
export function certainlyNotSent(err: unknown): boolean {
  if (err instanceof UpstreamReplyError) return true;
  return err instanceof RelayError && (err.code === 'MESSAGE_TOO_BIG' || err.notSent);
}

export function defaultReply(code: RelayErrorCode): Reply {
  return SPECS[code].reply;
}

/**
 * The reason label for anything thrown on a message's path: a RelayError's own, `upstream` for a
 * provider reply passed through (its code says the rest), `internal` for anything else.
 */
export function reasonOf(err: unknown): RefusalReason {
  if (err instanceof RelayError || err instanceof ProtocolError) return SPECS[err.code].reason;
  if (err instanceof UpstreamReplyError) return 'upstream';
  return 'internal';
}

/** A refusal the relay, the protocol's rules or the provider decided; anything else is a bug. */
export const isRefusal = (err: unknown): boolean =>
  err instanceof RelayError || err instanceof ProtocolError || err instanceof UpstreamReplyError;
