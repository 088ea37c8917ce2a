// `npx tsx bench/scale.ts`: the scale scenario alone (bench/scenarios/scale.ts), for a machine
// where the whole `npm run bench` would take too long; prints its table with the load average.
// RELAY_MAIN=path/to/main.js runs another build (to compare two versions on the same machine).
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { BenchContext, FULL } from './lib/context.js';
import { round } from './lib/stats.js';
import { scaleScenario, scaleTable } from './scenarios/scale.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const before = loadavg().map((x) => round(x, 2));
const ctx = await BenchContext.open({ scale: FULL, root, entry: { main: process.env.RELAY_MAIN ?? join(root, 'dist', 'cli', 'main.js') }, profileDir: null, progress: (l) => process.stderr.write(`bench: ${l}\n`) });
try {
  const r = await scaleScenario(ctx);
  process.stdout.write(`Load average ${before.join(' / ')} before, ${loadavg().map((x) => round(x, 2)).join(' / ')} after.\n\n${scaleTable(r)}\n\n${JSON.stringify(r)}\n`);
} finally {
  await ctx.close();
}
