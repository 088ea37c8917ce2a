// `tsx bench/compare.ts OLD_MAIN [NEW_MAIN]`: two builds of the relay side by side against one
// sandbox, in alternating short rounds (so load from elsewhere on the machine hits both alike),
// at 1 and 50 connections with 2 KB messages. How the "before / after" figures in
// docs/benchmarks.md were taken: OLD_MAIN is another checkout's dist/cli/main.js.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchContext, FULL } from './lib/context.js';
import { prepareMessage } from './lib/load-client.js';
import { openConnections, runLoad, type LoadResult } from './lib/load.js';
import type { RelayProcess } from './lib/relay-process.js';
import { median, percentile, round } from './lib/stats.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const [oldMain, newMain = 'dist/cli/main.js'] = process.argv.slice(2);
if (!oldMain) throw new Error('usage: tsx bench/compare.ts OLD_MAIN [NEW_MAIN]');
const rounds = Number(process.env.ROUNDS ?? 6);

const ctx = await BenchContext.open({ scale: FULL, root, entry: { main: resolve(newMain) }, profileDir: null, progress: () => undefined });
try {
  const [from] = await ctx.accounts('compare', 1);
  const extra = { max_connections: 64 };
  const relays: Record<'old' | 'new', RelayProcess> = {
    old: await ctx.startRelay({ emails: [from!], extra, entry: { main: resolve(oldMain) } }),
    new: await ctx.startRelay({ emails: [from!], extra }),
  };
  for (const relay of Object.values(relays)) await ctx.warm(ctx.relayTarget(relay), from!);
  const message = prepareMessage(from!, 'rcpt@example.net', 2 * 1024, 'compare');
  const rows = [];
  for (const connections of [1, 50]) {
    const conns = { old: await openConnections(ctx.relayTarget(relays.old), connections), new: await openConnections(ctx.relayTarget(relays.new), connections) };
    const runs: Record<'old' | 'new', LoadResult[]> = { old: [], new: [] };
    for (let r = 0; r < rounds; r++) {
      for (const side of r % 2 === 0 ? (['old', 'new'] as const) : (['new', 'old'] as const)) {
        const relay = relays[side];
        runs[side].push(
          await runLoad(
            { target: ctx.relayTarget(relay), connections, message, warmupMs: 300, measureMs: 1500, latencies: true, sample: () => relay.cpuSeconds() },
            conns[side],
          ),
        );
      }
    }
    for (const c of [...conns.old, ...conns.new]) c.close();
    for (const side of ['old', 'new'] as const) {
      const xs = runs[side];
      const lat = xs.flatMap((x) => x.latenciesMs);
      rows.push({
        build: side,
        connections,
        perSecond: round(median(xs.map((x) => x.perSecond)), 0),
        cpuUsPerMessage: round((xs.reduce((s, x) => s + x.sampled, 0) / xs.reduce((n, x) => n + x.messages, 0)) * 1e6, 0),
        p50Ms: round(percentile(lat, 50)),
        p99Ms: round(percentile(lat, 99)),
      });
    }
  }
  console.table(rows);
} finally {
  await ctx.close();
}
