// The relay's real logger (redaction and all) writing into memory, so a test can read every line.
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { createLogger } from '../../src/obs/logger.js';

export interface CapturedLog {
  logger: Logger;
  /** Every line written so far, as written (JSON text). */
  lines: string[];
  /** The `event` field of every line at `minLevel` (pino numbers: 40 warn, 50 error) or above. */
  events(minLevel?: number): string[];
}

export function captureLog(level = 'debug'): CapturedLog {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(l);
      done();
    },
  });
  return {
    logger: createLogger(level, sink),
    lines,
    events: (minLevel = 0) =>
      lines.map((l) => JSON.parse(l) as { level: number; event?: string }).filter((l) => l.level >= minLevel).map((l) => l.event ?? '(none)'),
  };
}
