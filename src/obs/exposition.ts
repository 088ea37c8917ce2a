// The Prometheus text of a registry, written a slice at a time (issue 22): prom-client's
// registry.metrics() collects and formats every metric before it yields, which with 500 active
// accounts of 5,000 (≈ 5,500 series) held every SMTP reply ≈ 50 ms per scrape, and one metric at
// a time still held it for the largest metric (a few ms, plus the garbage). The text is
// prom-client's byte for byte (`test/unit/metrics-exposition.test.ts` compares the two).
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Registry } from 'prom-client';

/**
 * How long the exposition runs before it lets the event loop take what waits (an SMTP reply):
 * the target is no reply delayed more than 10 ms by a scrape (issue 22).
 */
const SLICE_MS = 1;

/** A registered metric as the exposition reads it (prom-client's registry reads the same). */
interface ExposedMetric {
  get(): Promise<ExposedValues>;
  /** Histograms: their values with the bucket's `le` apart from the labels they share. */
  getForPromString?(): Promise<ExposedValues>;
}
export interface ExposedValues {
  name: string;
  help: string;
  type: string;
  values?: Array<{ metricName?: string; labels: Record<string, string | number>; sharedLabels?: Record<string, string | number>; value: number }>;
}

// As prom-client's lib/registry.js writes them.
const escapeString = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabelValue = (v: string | number): string | number => (typeof v === 'string' ? escapeString(v).replace(/"/g, '\\"') : v);
const valueText = (v: number): string => (Number.isNaN(v) ? 'Nan' : Number.isFinite(v) ? `${v}` : v < 0 ? '-Inf' : '+Inf');
const formatLabels = (labels: Record<string, string | number>, except?: Record<string, unknown>): string[] => {
  const out: string[] = [];
  for (const name in labels) if (!except || !Object.hasOwn(except, name)) out.push(`${name}="${escapeLabelValue(labels[name]!)}"`);
  return out;
};

/**
 * The `{...}` of a series by its labels object: prom-client's counters keep theirs for life, and
 * the relay's per-account gauges theirs while the account is shown (src/obs/metrics.ts), so the
 * series of an account that stays shown cost a lookup.
 */
const labelTexts = new WeakMap<object, string>();
function labelText(labels: Record<string, string | number>, shared?: Record<string, string | number>): string {
  // A histogram's bucket: a fresh `le` object each time, and the labels its series share.
  if (shared) {
    let sharedText = labelTexts.get(shared);
    if (sharedText === undefined) labelTexts.set(shared, (sharedText = formatLabels(shared).join(',')));
    const parts = formatLabels(labels, shared);
    if (sharedText) parts.push(sharedText);
    return parts.length ? `{${parts.join(',')}}` : '';
  }
  let text = labelTexts.get(labels);
  if (text === undefined) {
    const parts = formatLabels(labels);
    labelTexts.set(labels, (text = parts.length ? `{${parts.join(',')}}` : ''));
  }
  return text;
}

/**
 * The registry's exposition, the same bytes as registry.metrics(), handed to `write` a slice at
 * a time with the event loop free between slices. A slice ends when it has run SLICE_MS, within a
 * metric too, and goes out at once (to the socket: the text of a whole scrape is never alive at
 * once, so a GC meanwhile has less to copy).
 */
export async function writeExposition(registry: Registry, write: (chunk: string) => void): Promise<void> {
  let text = '';
  let sliceStart = performance.now();
  const breathe = async () => {
    write(text);
    text = '';
    await nextTurn();
    sliceStart = performance.now();
  };
  let first = true;
  for (const metric of registry.getMetricsAsArray() as unknown as ExposedMetric[]) {
    const m = await (metric.getForPromString?.() ?? metric.get());
    const name = escapeString(m.name);
    text += `${first ? '' : '\n\n'}# HELP ${name} ${escapeString(m.help)}\n# TYPE ${name} ${m.type}`;
    first = false;
    const values = m.values ?? [];
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      text += `\n${v.metricName ?? name}${labelText(v.labels, v.sharedLabels)} ${valueText(v.value)}`;
      if ((i & 63) === 63 && performance.now() - sliceStart >= SLICE_MS) await breathe();
    }
    if (performance.now() - sliceStart >= SLICE_MS) await breathe();
  }
  write(`${text}\n`);
}
