// Log lines for a person at a terminal: `serve` run by hand prints one readable line per event
// instead of JSON. Only for a terminal: under systemd, in a container or piped to a collector
// stdout is not a TTY and the lines stay JSON, one object per line. The line is made from the
// JSON pino wrote, after redaction, so it can show nothing the JSON would not.

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Shown in the line's head, or not at all. */
const HEAD = new Set(['level', 'time', 'event', 'msg', 'service', 'pid', 'hostname']);

/**
 * Readable or JSON: LOG_FORMAT=json|pretty decides when set; otherwise readable exactly when
 * the output is a terminal.
 */
export function wantsPretty(out: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  if (env.LOG_FORMAT === 'json') return false;
  if (env.LOG_FORMAT === 'pretty') return true;
  return out.isTTY === true;
}

const show = (v: unknown) => (typeof v === 'string' ? (/^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)) : JSON.stringify(v));

/** `12:00:01.234 INFO  transaction: transaction account=a@b.test reply=250 ms=12.5` */
export function prettyLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : json + '\n';
  }
  const time = typeof o.time === 'string' ? o.time.slice(11, 23) : '';
  const level = (LEVELS[o.level as number] ?? String(o.level)).padEnd(5);
  const what = o.event && o.event !== o.msg ? `${String(o.event)}: ${String(o.msg ?? '')}` : String(o.msg ?? o.event ?? '');
  const fields = Object.entries(o)
    .filter(([k]) => !HEAD.has(k))
    .map(([k, v]) => `${k}=${show(v)}`);
  return [time, level, what, ...fields].filter(Boolean).join(' ') + '\n';
}

/** A pino destination that writes readable lines to `out`. */
export function prettyDestination(out: NodeJS.WritableStream): { write(line: string): void } {
  return { write: (line) => void out.write(prettyLine(line)) };
}
