// The `transaction` log line, one per message: written by hand into the logger's own stream
// instead of through pino's generic path. Its fields are fixed and secret-free, so pino's
// per-key serialisation, redaction pass and child bindings buy nothing here, and they were the
// largest single item of the relay's own JavaScript in a CPU profile of the message path
// (docs/benchmarks.md). The line is byte-for-byte what pino would write for the same object:
// level, time (ISO, as src/obs/logger.ts configures), the logger's bindings, the fields, msg.
import { pino, type Logger } from 'pino';
import type { Metrics } from '../obs/metrics.js';

/** Fields of the line, in the order they are written; undefined ones are left out (as pino does). */
export interface TransactionFields {
  event: 'transaction';
  session: string;
  account: string;
  mail_from: string;
  rcpt_count: number;
  size: number;
  reply: number;
  upstream?: string | undefined;
  ms: number;
  error?: string | undefined;
}

interface Stream {
  write(line: string): unknown;
}

export class TransactionLog {
  constructor(private readonly logger: Logger) {}

  write(fields: TransactionFields): void {
    const logger = this.logger;
    // Follows the logger's level (which a reload may change).
    if (!logger.isLevelEnabled('info')) return;
    const l = logger as unknown as Record<symbol, unknown>;
    const stream = l[pino.symbols.streamSym] as Stream;
    const bindings = l[pino.symbols.chindingsSym] as string;
    const body = JSON.stringify(fields);
    stream.write(`{"level":${logger.levels.values.info},"time":"${new Date().toISOString()}"${bindings},${body.slice(1, -1)},"msg":"transaction"}\n`);
  }
}

/** Where a finished transaction is counted besides its line. */
export interface TransactionSinks {
  transactionLog: TransactionLog;
  metrics?: Metrics | undefined;
  relay: { readonly sent: { record(account: string): void } };
}

/**
 * The one place a message's outcome is recorded: sent counts, metrics, the `transaction` line.
 * `fields.ms` is filled in here, from `startedAt` (performance.now() at DATA).
 */
export function recordTransaction(sinks: TransactionSinks, startedAt: number, fields: TransactionFields): void {
  const { metrics } = sinks;
  const ms = performance.now() - startedAt;
  if (fields.reply < 300) sinks.relay.sent.record(fields.account);
  metrics?.countMessage(fields.account, fields.reply);
  metrics?.relayLatency.observe({ account: fields.account }, ms / 1000);
  fields.ms = Math.round(ms * 100) / 100;
  sinks.transactionLog.write(fields);
}
