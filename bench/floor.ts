// `npx tsx bench/floor.ts`: table 6 of `npm run bench` alone (bench/scenarios/floor.ts), in about
// two minutes, for comparing builds on a quiet moment of a shared machine without the whole run.
//   RELAY_MAIN=path/to/main.js  measure another build (an older checkout's dist/cli/main.js)
//   MPC=n                       the relay's messages_per_connection (100: retires as the retiring
//                               minimal relay does; unset: the relay's default)
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchContext, FULL } from './lib/context.js';
import { round } from './lib/stats.js';
import { floorTable } from './report.js';
import { floorScenario } from './scenarios/floor.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const load = () => loadavg().map((x) => round(x, 2)).join(' / ');
const before = load();
const main = process.env.RELAY_MAIN ?? join(root, 'dist', 'cli', 'main.js');
const ctx = await BenchContext.open({ scale: FULL, root, entry: { main }, profileDir: null, progress: (l) => process.stderr.write(`bench: ${l}\n`) });
try {
  const [from] = await ctx.accounts('floor', 1);
  const extra = { max_connections: 64, ...(process.env.MPC ? { messages_per_connection: Number(process.env.MPC) } : {}) };
  const relay = await ctx.startRelay({ emails: [from!], extra });
  await ctx.warm(ctx.relayTarget(relay), from!);
  const rows = await floorScenario(ctx, relay, from!);
  process.stdout.write(
    `Relay: ${main}${process.env.MPC ? `, messages_per_connection ${process.env.MPC}` : ''}. Load average ${before} before, ${load()} after.\n\n` +
      `${floorTable(rows, FULL.rounds, FULL.measureMs)}\n`,
  );
} finally {
  await ctx.close();
}
