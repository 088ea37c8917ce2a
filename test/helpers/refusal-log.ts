// What a test reads of the relay's refusal record (src/obs/refusals.ts): the `refused` log lines
// and the xoauth2_relay_refusals_total counts, the two places an operator looks.
import type { CapturedLog } from './log-capture.js';

/** One `refused` log line. */
export interface Refused {
  event?: string;
  stage: string;
  code: number;
  reason: string;
  account?: string;
  remote?: string;
  reply: string;
}

/** The `refused` lines written so far, in order. */
export const refusedLines = (log: CapturedLog): Refused[] => log.lines.map((l) => JSON.parse(l) as Refused).filter((l) => l.event === 'refused');

/** Every xoauth2_relay_refusals_total series of the relay's /metrics, by its label text. */
export async function refusalCounts(adminPort: number | null): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^xoauth2_relay_refusals_total\{([^}]*)\} (\d+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** One series' count (0 when it does not exist yet). */
export const refusalCount = async (adminPort: number | null, labels: string): Promise<number> => (await refusalCounts(adminPort)).get(labels) ?? 0;

/** Both, for a test that starts its relay later: `adminPort` is read at each call. */
export function refusalRecord(log: CapturedLog, adminPort: () => number | null) {
  return { refused: () => refusedLines(log), count: (labels: string) => refusalCount(adminPort(), labels) };
}
