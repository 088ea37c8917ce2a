// One JSON line per event (pino). Secrets are kept out by construction — no code logs a token,
// password or XOAUTH2 string — and redaction is the second line of defence for any object that
// carries one by mistake.
import { pino, type Logger, type DestinationStream } from 'pino';

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
  '*.password',
  '*.pass',
  '*.accessToken',
  '*.access_token',
  '*.refreshToken',
  '*.refresh_token',
  '*.clientSecret',
  '*.client_secret',
  '*.token',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const envLevel = process.env.LOG_LEVEL;
  return pino(
    {
      level: envLevel ?? level,
      base: { service: 'xoauth2-relay' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** For tests and library use: a logger that writes nothing. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
