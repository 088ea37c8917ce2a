// One JSON line per event (pino). Secrets are kept out by construction — no code logs a token,
// password or XOAUTH2 string — and redaction is the second line of defence for any object that
// carries one by mistake. On a terminal the same lines are printed readably (./pretty.ts).
import { pino, type Logger, type DestinationStream } from 'pino';
import { LogBatch } from './log-batch.js';
import { prettyDestination, wantsPretty } from './pretty.js';

export type { Logger };

export const REDACT_PATHS = [
  'password',
  'pass',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'clientSecret',
  'client_secret',
  'token',
  'xoauth2',
  // A service account's key and the assertion signed with it (an hour's access to the mailbox).
  'private_key',
  'privateKey',
  'assertion',
  '*.password',
  '*.pass',
  '*.accessToken',
  '*.access_token',
  '*.refreshToken',
  '*.refresh_token',
  '*.clientSecret',
  '*.client_secret',
  '*.token',
  '*.private_key',
  '*.privateKey',
  '*.assertion',
];

// At info the relay logs every transaction. Written line by line, each line is a hand-off to
// libuv's thread pool and a wake-up back (about 100 µs of CPU per message on the benchmark
// machine, docs/benchmarks.md); batched (./log-batch.ts). A hand-off costs about 19 µs of CPU
// whatever its size up to tens of KB (29 µs for 32 KB), and a transaction line is ~500
// characters: 4 KB batches (8 lines) still cost 2.2 µs a line, 32 KB ones (65 lines) 0.45.
// A line waits at most LOG_FLUSH_MS, and what is waiting is written when the process exits.
const LOG_BATCH_BYTES = 32 * 1024;
const LOG_FLUSH_MS = 1000;

/** LOG_LEVEL, when set, wins over the config's log.level (also across reloads). */
export const effectiveLevel = (configLevel: string, env: NodeJS.ProcessEnv = process.env): string => env.LOG_LEVEL ?? configLevel;

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const out = destination ?? (wantsPretty(process.stdout, process.env) ? prettyDestination(process.stdout) : undefined);
  return pino(
    {
      level: effectiveLevel(level),
      base: { service: 'xoauth2-relay' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    out ?? LogBatch.toFd(1, LOG_BATCH_BYTES, LOG_FLUSH_MS),
  );
}

/** For tests and library use: a logger that writes nothing. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
