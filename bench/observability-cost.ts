// `npx tsx bench/observability-cost.ts`: what /status.json and /metrics cost a relay of 5,000
// accounts (ACCOUNTS, ACTIVE env to change), in this process against the sandbox, without the
// whole scale scenario (bench/scenarios/scale.ts, minutes): the CPU of one status snapshot and
// one readiness pass (median of 21), and the wall time and longest event-loop block of one
// /metrics collection (a 1 ms timer's worst lateness meanwhile: what an SMTP reply waits), and
// the time of SMTP transactions one after another, quiet and while scraped every 500 ms.
import { loadavg } from 'node:os';
import { statusSnapshot } from '../src/admin/status.js';
import { SandboxProvider } from '../src/sandbox/provider.js';
import { sendPipelined } from '../test/helpers/smtp-client.js';
import { rawMessage, startStack } from '../test/helpers/stack.js';
import { longestBlockDuring } from '../test/helpers/loop-block.js';
import { percentile, round } from './lib/stats.js';

const N = Number(process.env.ACCOUNTS ?? 5_000);
const ACTIVE = Number(process.env.ACTIVE ?? 500);
const email = (i: number) => `acct-${String(i).padStart(4, '0')}@${i % 2 ? 'outlook' : 'gmail'}.test`;

const cpuMs = (work: () => unknown): number => {
  const before = process.cpuUsage();
  work();
  const d = process.cpuUsage(before);
  return (d.user + d.system) / 1000;
};
const median = (xs: number[]) => round(percentile(xs, 50), 2);

/** PROFILE=1: where 200 status snapshots (PROFILE=metrics: 20 scrapes) spend their CPU, by function (self time), to stderr. */
async function topFunctions(work: () => unknown, runs = 200): Promise<void> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  for (let i = 0; i < runs; i++) await work();
  const { profile } = await session.post('Profiler.stop');
  const self = new Map<string, number>();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const dt = profile.timeDeltas ?? [];
  (profile.samples ?? []).forEach((id, i) => {
    const f = byId.get(id)!.callFrame;
    const key = `${f.functionName || '(anon)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0) / 1000);
  });
  const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 25);
  // The inspector's own `dispatch` collects the time the loop sat idle between two awaits: left out.
  for (const [k, ms] of top) if (k !== 'dispatch :0') process.stderr.write(`${(ms / runs).toFixed(3)} ms/run  ${k}\n`);
  session.disconnect();
}

const provider = await SandboxProvider.start();
const accounts = Array.from({ length: N }, (_, i) => ({ email: email(i), kind: i % 2 ? ('microsoft' as const) : ('google' as const), senders: [email(i)] }));
for (const a of accounts) provider.addAccount({ email: a.email, kind: a.kind, clientId: `app-${a.kind}`, clientSecret: `secret-${a.kind}` });
const stack = await startStack({ accounts, provider });
try {
  for (let i = 0; i < ACTIVE; i += 25) {
    await Promise.all(accounts.slice(i, Math.min(i + 25, ACTIVE)).map((a) => sendPipelined(stack.port, a.email, 'to@example.net', rawMessage(a.email, ['to@example.net'], `obs-${a.email}`))));
  }
  const { app } = stack;
  const deps = { relay: app.relay, accounts: app.accounts, health: app.health, refusals: app.refusals, metrics: app.metrics, isListening: () => true, inboundSessions: () => 0 };
  const runs = 21;
  const status = Array.from({ length: runs }, () => cpuMs(() => JSON.stringify(statusSnapshot(deps))));
  const readyz = Array.from({ length: runs }, () => cpuMs(() => JSON.stringify(app.health.readiness(true))));
  // The health pass alone (what a status request that shares none, /readyz and a scrape each take).
  const passes = Array.from({ length: 101 }, () => cpuMs(() => app.health.pass(0)));
  // One viewer polling every 2 s finds no pass of the last second to share: what it pays.
  const statusAlone: number[] = [];
  for (let i = 0; i < 7; i++) {
    await new Promise((r) => setTimeout(r, 1_050));
    statusAlone.push(cpuMs(() => JSON.stringify(statusSnapshot(deps))));
  }
  process.stderr.write(`status snapshot alone ${median(statusAlone)} ms CPU, `);
  process.stderr.write(`status snapshot ${median(status)} ms CPU (first ${round(status[0]!, 2)} ms), readiness ${median(readyz)} ms, health pass ${median(passes)} ms\n`);
  // prom-client's registry.metrics() (everything in one go) against the relay's exposition().
  const scrape = async (how: () => Promise<string>) => {
    const runs: Array<{ wallMs: number; blockMs: number; blockCpuMs: number; bytes: number }> = [];
    for (let i = 0; i < Number(process.env.SCRAPES ?? 7); i++) {
      const t0 = performance.now();
      const { value, longestMs, longestCpuMs } = await longestBlockDuring(how);
      runs.push({ wallMs: performance.now() - t0, blockMs: longestMs, blockCpuMs: longestCpuMs, bytes: value.length });
    }
    return { wallMs: median(runs.map((r) => r.wallMs)), longestBlockMs: median(runs.map((r) => r.blockMs)), longestBlockCpuMs: median(runs.map((r) => r.blockCpuMs)), worstBlockMs: round(Math.max(...runs.map((r) => r.blockMs)), 1), bytes: runs[0]!.bytes };
  };
  const oneGo = await scrape(() => app.metrics.registry.metrics());
  const sliced = await scrape(() => app.metrics.exposition());
  // What a scrape does to SMTP transactions: one after another for 5 s (a connection each, an
  // active account), quiet, then with /metrics, /readyz and /status.json fetched every 500 ms;
  // the transactions that overlapped a scrape apart from the others.
  const transactions = async (scrapeEveryMs: number | null) => {
    const during: number[] = [];
    const outside: number[] = [];
    const scrapes: Array<[number, number]> = [];
    let stop = false;
    const scraper = (async () => {
      while (scrapeEveryMs !== null && !stop) {
        const s0 = performance.now();
        for (const path of ['/metrics', '/readyz', '/status.json']) await (await fetch(`http://127.0.0.1:${app.adminPort}${path}`)).text();
        scrapes.push([s0, performance.now()]);
        await new Promise((r) => setTimeout(r, scrapeEveryMs));
      }
    })();
    const until = performance.now() + 5_000;
    const spans: Array<[number, number]> = [];
    for (let i = 0; performance.now() < until; i++) {
      const from = accounts[i % ACTIVE]!.email;
      const t0 = performance.now();
      await sendPipelined(stack.port, from, 'to@example.net', rawMessage(from, ['to@example.net'], `paced-${i}`));
      spans.push([t0, performance.now()]);
    }
    stop = true;
    await scraper;
    for (const [t0, t1] of spans) (scrapes.some(([s0, s1]) => t0 < s1 && t1 > s0) ? during : outside).push(t1 - t0);
    const stats = (xs: number[]) => (xs.length ? { n: xs.length, p50: round(percentile(xs, 50), 1), p99: round(percentile(xs, 99), 1), max: round(Math.max(...xs), 1) } : { n: 0 });
    return scrapeEveryMs === null ? stats(outside) : { duringScrapes: stats(during), outside: stats(outside) };
  };
  // Twice each, alternating, so that neither gets the warm-up alone.
  const quietTransactions = [await transactions(null)];
  const pacedScrapes = [await transactions(500)];
  quietTransactions.push(await transactions(null));
  pacedScrapes.push(await transactions(500));
  // A fresh pass each time: what a request that shares none costs.
  if (process.env.PROFILE === 'metrics') await topFunctions(() => app.metrics.exposition(), 20);
  else if (process.env.PROFILE) await topFunctions(() => JSON.stringify(statusSnapshot({ ...deps, health: Object.assign(Object.create(app.health), { pass: () => app.health.pass(0) }) })));
  const out = {
    accounts: N,
    active: ACTIVE,
    statusJsonCpuMs: median(status),
    statusJsonAloneCpuMs: median(statusAlone),
    readyzCpuMs: median(readyz),
    healthPassCpuMs: median(passes),
    metricsOneGo: oneGo,
    metricsExposition: sliced,
    transactionsQuiet: quietTransactions,
    transactionsScrapedEvery500ms: pacedScrapes,
    loadavg: loadavg().map((x) => round(x, 2)),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await stack.stop();
  await provider.stop();
}
