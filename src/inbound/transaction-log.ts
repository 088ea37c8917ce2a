// The `transaction` log line, one per message: written by hand into the logger's own stream
// instead of through pino's generic path. Its fields are fixed and secret-free, so pino's
// per-key serialisation, redaction pass and child bindings buy nothing here, and they were the
// largest single item of the relay's own JavaScript in a CPU profile of the message path
// (docs/benchmarks.md). The line is byte-for-byte what pino would write for the same object:
// level, time (ISO, as src/obs/logger.ts configures), the logger's bindings, the fields, msg.
//
// It answers "did mail to X go out" as Postfix's log does: the sender, each recipient with the
// reply the client got for it, the Message-ID, the client's address, the provider's reply to the
// message and its queue id (docs/operations.md, "Finding a message").
import { pino, type Logger } from 'pino';
import type { Metrics } from '../obs/metrics.js';
import { loggedAddress, type RecipientLogging } from '../obs/recipients.js';
import type { RecipientReply } from '../relay/limited-transaction.js';
import { formatReply, type Reply } from '../smtp/reply.js';
import { queueIdOf } from './queue-id.js';

/** A recipient as logged: `to` is absent with log.recipients: drop. */
export interface LoggedRecipient {
  to?: string;
  reply: string;
}

/** Fields of the line, in the order they are written; undefined ones are left out (as pino does). */
export interface TransactionFields {
  event: 'transaction';
  session: string;
  client: string;
  account: string;
  mail_from: string;
  rcpts: LoggedRecipient[];
  /** Recipients the provider accepted: those the message went to if `reply` is 2xx. */
  rcpt_count: number;
  message_id?: string | undefined;
  size: number;
  reply: number;
  upstream?: string | undefined;
  queue_id?: string | undefined;
  ms: number;
  error?: string | undefined;
}

/** What the session knows at the end of a message. */
export interface TransactionRecord {
  session: string;
  client: string;
  account: string;
  mailFrom: string;
  recipients: readonly RecipientReply[];
  accepted: number;
  messageId: string | undefined;
  size: number;
  reply: number;
  /** The provider's reply to the message, when it gave one. */
  upstream?: Reply | undefined;
  error?: string | undefined;
}

interface Stream {
  write(line: string): unknown;
}

export class TransactionLog {
  constructor(
    private readonly logger: Logger,
    private readonly recipients: RecipientLogging = 'full',
  ) {}

  /** The line for one message, `ms` from DATA to its reply (nothing is built when the level hides it). */
  record(t: TransactionRecord, ms: number): void {
    if (!this.logger.isLevelEnabled('info')) return;
    const mode = this.recipients;
    // The fields in TransactionFields' order, serialised as they are read: no object to build
    // and walk again (JSON.stringify of the whole was the line's largest cost in a profile).
    let rcpts = '';
    for (const r of t.recipients) {
      const to = loggedAddress(mode, r.to);
      rcpts += `${rcpts === '' ? '' : ','}{${to === undefined ? '' : `"to":${str(to)},`}"reply":${str(formatReply(r.reply))}}`;
    }
    const up = t.upstream;
    const queueId = up && up.code < 300 ? queueIdOf(up.lines[up.lines.length - 1] ?? '') : undefined;
    this.emit(
      `"event":"transaction","session":${str(t.session)},"client":${str(t.client)},"account":${str(t.account)},"mail_from":${str(t.mailFrom)},"rcpts":[${rcpts}],"rcpt_count":${num(t.accepted)}` +
        `${opt('message_id', t.messageId)},"size":${num(t.size)},"reply":${num(t.reply)}${opt('upstream', up ? formatReply(up) : undefined)}${opt('queue_id', queueId)},"ms":${num(ms)}${opt('error', t.error)}`,
    );
  }

  write(fields: TransactionFields): void {
    // Follows the logger's level (which a reload may change).
    if (!this.logger.isLevelEnabled('info')) return;
    this.emit(JSON.stringify(fields).slice(1, -1));
  }

  /** `body`: the fields as JSON members, without braces. */
  private emit(body: string): void {
    const logger = this.logger;
    const l = logger as unknown as Record<symbol, unknown>;
    const stream = l[pino.symbols.streamSym] as Stream;
    const bindings = l[pino.symbols.chindingsSym] as string;
    stream.write(`{"level":${logger.levels.values.info},"time":"${isoNow()}"${bindings},${body},"msg":"transaction"}\n`);
  }
}

// toISOString() cost about as much as the rest of the line's fields together (0.8 µs on the
// benchmark machine), and at a few thousand messages a second most milliseconds are new: it is
// called once a second, the milliseconds put after what it gave.
let isoSecond = Number.NaN;
let isoPrefix = '';
const MILLIS = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(3, '0')}Z`);

/** The time as pino's isoTime writes it (new Date(Date.now()).toISOString()). */
function isoNow(): string {
  const now = Date.now();
  if (now < 0) return new Date(now).toISOString(); // before 1970: only a test's clock
  const ms = now % 1000;
  const second = now - ms;
  if (second !== isoSecond) {
    // "2026-12-06T03:04:05." (what precedes "mmmZ"; years 0-9999, as pino would write them).
    isoPrefix = new Date(second).toISOString().slice(0, -4);
    isoSecond = second;
  }
  return isoPrefix + MILLIS[ms]!;
}

/** What JSON.stringify would escape in a string (quote, backslash, controls, lone surrogates). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** A string as JSON.stringify writes it; most need no escaping and are quoted as they are. */
const str = (s: string): string => (NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`);

/** A number as JSON.stringify writes it. */
const num = (n: number): string => (Number.isFinite(n) ? String(n) : 'null');

/** A member left out when undefined, as JSON.stringify leaves it. */
const opt = (key: string, v: string | undefined): string => (v === undefined ? '' : `,"${key}":${str(v)}`);

/** Where a finished transaction is counted besides its line. */
export interface TransactionSinks {
  transactionLog: TransactionLog;
  metrics?: Metrics | undefined;
  relay: { readonly sent: { record(account: string): void } };
}

/**
 * The one place a message's outcome is recorded: sent counts, metrics, the `transaction` line.
 * The line's `ms` is measured here, from `startedAt` (performance.now() at DATA).
 */
export function recordTransaction(sinks: TransactionSinks, startedAt: number, t: TransactionRecord): void {
  const { metrics } = sinks;
  const ms = performance.now() - startedAt;
  if (t.reply < 300) sinks.relay.sent.record(t.account);
  metrics?.countMessage(t.account, t.reply);
  metrics?.relayLatency.observe({ account: t.account }, ms / 1000);
  sinks.transactionLog.record(t, Math.round(ms * 100) / 100);
}
