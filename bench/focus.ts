// `tsx bench/focus.ts [OTHER_MAIN ...]`: the figures item 8 of issue 9 is about, and only those,
// in about a minute, for working on the relay's CPU: direct to the sandbox, the bare byte pipe,
// this checkout's relay and any other builds given (another checkout's dist/cli/main.js), all in
// alternating short rounds against one sandbox (plus the minimal faithful relay of
// bench/lib/minimal-relay.ts, without and with connection retirement), 2 KB messages at 1, 10
// and 50 connections. MPC=n sets the relays' messages_per_connection.
// Prints msg/s, CPU µs per message (the pipe's and the relays' own processes) and p50.
// `npm run bench` remains the full report; this is the quick loop between two measurements.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BytePipeProcess } from './lib/byte-pipe.js';
import { BenchContext, FULL } from './lib/context.js';
import { prepareMessage, type LoadConnection, type Target } from './lib/load-client.js';
import { openConnections, runLoad, type LoadResult } from './lib/load.js';
import { median, percentile, round } from './lib/stats.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const others = process.argv.slice(2);
const rounds = Number(process.env.ROUNDS ?? 4);
const measureMs = Number(process.env.MEASURE_MS ?? 1500);
const connectionCounts = (process.env.CONNECTIONS ?? '1,10,50').split(',').map(Number);

const ctx = await BenchContext.open({ scale: FULL, root, entry: { main: resolve('dist/cli/main.js') }, profileDir: null, progress: () => undefined });
try {
  const [from] = await ctx.accounts('focus', 1);
  const extra = { max_connections: 64, ...(process.env.MPC ? { messages_per_connection: Number(process.env.MPC) } : {}) };
  const sides: { name: string; target: Target; cpu?: () => number }[] = [{ name: 'direct', target: await ctx.directTarget(from!) }];
  const token: string = await ctx.sandbox.call('issueAccessToken', { email: from! });
  const up = { ...ctx.smtp, ca: ctx.ca.toString(), user: from!, token };
  const pipe = await BytePipeProcess.start(root, up);
  sides.push({ name: 'pipe', target: { host: '127.0.0.1', port: pipe.port }, cpu: () => pipe.cpuSeconds() });
  const minimal = await BytePipeProcess.start(root, up, 'minimal');
  sides.push({ name: 'minimal relay', target: { host: '127.0.0.1', port: minimal.port }, cpu: () => minimal.cpuSeconds() });
  const retiring = await BytePipeProcess.start(root, up, 'minimal-retiring');
  sides.push({ name: 'minimal, retiring', target: { host: '127.0.0.1', port: retiring.port }, cpu: () => retiring.cpuSeconds() });
  for (const [i, main] of [resolve('dist/cli/main.js'), ...others.map((o) => resolve(o))].entries()) {
    const relay = await ctx.startRelay({ emails: [from!], extra, entry: { main } });
    await ctx.warm(ctx.relayTarget(relay), from!);
    sides.push({ name: i === 0 ? 'relay' : `relay:${others[i - 1]}`, target: ctx.relayTarget(relay), cpu: () => relay.cpuSeconds() });
  }
  const message = prepareMessage(from!, 'rcpt@example.net', 2 * 1024, 'focus');
  const rows = [];
  for (const connections of connectionCounts) {
    const conns = new Map<string, LoadConnection[]>();
    for (const s of sides) conns.set(s.name, await openConnections(s.target, connections));
    const runs = new Map<string, LoadResult[]>(sides.map((s) => [s.name, []]));
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? sides : [...sides].reverse();
      for (const s of order) {
        runs.get(s.name)!.push(
          await runLoad({ target: s.target, connections, message, warmupMs: 300, measureMs, latencies: true, ...(s.cpu ? { sample: s.cpu } : {}) }, conns.get(s.name)),
        );
      }
    }
    for (const cs of conns.values()) for (const c of cs) c.close();
    const direct = runs.get('direct')!;
    for (const s of sides) {
      const xs = runs.get(s.name)!;
      const lat = xs.flatMap((x) => x.latenciesMs);
      rows.push({
        side: s.name,
        connections,
        'msg/s': round(median(xs.map((x) => x.perSecond)), 0),
        'vs direct': round(median(xs.map((x, i) => x.perSecond / direct[i]!.perSecond)), 2),
        'cpu µs/msg': s.cpu ? round((xs.reduce((t, x) => t + x.sampled, 0) / xs.reduce((n, x) => n + x.messages, 0)) * 1e6, 0) : '',
        'p50 ms': round(percentile(lat, 50), 3),
      });
    }
  }
  console.table(rows);
  await pipe.stop();
  await minimal.stop();
  await retiring.stop();
} finally {
  await ctx.close();
}
