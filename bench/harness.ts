// The benchmark run: every scenario, in an order that keeps each relay process to one job, and
// the results as one JSON-able object. `bench/run.ts` is the command line around it; the test
// suite runs it in its quick mode.
import { readdirSync } from 'node:fs';
import { cpus, loadavg, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { BenchContext, FULL, QUICK, type Scale } from './lib/context.js';
import { summariseProfile, type HotFunction } from './lib/profile-summary.js';
import type { RelayEntry } from './lib/relay-process.js';
import { round } from './lib/stats.js';
import { apiUpstreamScenario, type ApiUpstreamRow } from './scenarios/api-upstreams.js';
import { memoryScenario, type MemoryResult } from './scenarios/memory.js';
import { startupScenario, type StartupResult } from './scenarios/startup.js';
import {
  generatorCheck,
  latencyAndThroughput,
  loggingCost,
  type GeneratorCheck,
  type LatencyResult,
  type ThroughputRow,
} from './scenarios/throughput.js';
import { floorScenario, type FloorRow } from './scenarios/floor.js';
import { roundTripScenario, type RoundTripResult } from './scenarios/round-trip.js';
import { scaleScenario, type ScaleResult } from './scenarios/scale.js';
import { fleetScenario, type FleetResult } from './scenarios/fleet.js';
import { tokenScenario, type TokenResult } from './scenarios/tokens.js';

export interface BenchOptions {
  quick: boolean;
  root: string;
  entry: RelayEntry;
  /** Write a CPU profile of the main relay here and summarise it. */
  profileDir?: string | null;
  progress?: (line: string) => void;
}

export interface Target {
  goal: string;
  limit: string;
  measured: string;
  met: boolean;
}

export interface BenchResult {
  mode: 'full' | 'quick';
  startedAt: string;
  seconds: number;
  machine: { nproc: number; cpu: string; node: string; loadAverageBefore: number[]; loadAverageAfter: number[] };
  scale: Scale;
  generator: GeneratorCheck[];
  latency: LatencyResult;
  throughput: ThroughputRow[];
  logging: Awaited<ReturnType<typeof loggingCost>>;
  memory: MemoryResult;
  tokens: TokenResult;
  upstreams: ApiUpstreamRow[];
  startup: StartupResult;
  floor: FloorRow[];
  roundTrip: RoundTripResult;
  /** Table 9, 5,000 accounts (issue 22); null in the quick mode, which the test suite runs. */
  manyAccounts: ScaleResult | null;
  /** Table 10, 6 relays on one Redis (issue 22); null in the quick mode. */
  fleet: FleetResult | null;
  targets: Target[];
  profile: HotFunction[] | null;
}

/** Upstream connections the main relay may hold: the largest inbound concurrency, so the pool never queues. */
const RELAY_MAX_CONNECTIONS = 64;

export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const scale = opts.quick ? QUICK : FULL;
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const loadAverageBefore = loadavg().map((x) => round(x, 2));
  const progress = opts.progress ?? (() => undefined);
  const ctx = await BenchContext.open({ scale, root: opts.root, entry: opts.entry, profileDir: opts.profileDir ?? null, progress });
  try {
    const [from] = await ctx.accounts('bench', 1);
    const [memFrom] = await ctx.accounts('memory', 1);
    const extra = { max_connections: RELAY_MAX_CONNECTIONS };
    const relay = await ctx.startRelay({ emails: [from!], extra, profile: true });
    const quiet = await ctx.startRelay({ emails: [from!], extra, logLevel: 'warn' });
    progress('warming the relays up (steady state before any measurement)');
    await ctx.warm(ctx.relayTarget(relay), from!);
    await ctx.warm(ctx.relayTarget(quiet), from!);
    const sides = { relay, direct: await ctx.directTarget(from!), relayTarget: ctx.relayTarget(relay), from: from! };

    const generator = await generatorCheck(ctx, from!);
    const { latency, throughput } = await latencyAndThroughput(ctx, sides);
    const logging = await loggingCost(ctx, from!, { info: relay, warn: quiet });
    const tokens = await tokenScenario(ctx, sides);
    const floor = await floorScenario(ctx, relay, from!);
    await ctx.stopRelay(quiet);
    await ctx.stopRelay(relay); // writes the profile
    const profile = opts.profileDir ? latestProfile(opts.profileDir, opts.root) : null;

    const memory = await memoryScenario(ctx, memFrom!);
    const startup = await startupScenario(ctx);
    const roundTrip = await roundTripScenario(ctx, from!);
    const upstreams = await apiUpstreamScenario(ctx);
    const manyAccounts = opts.quick ? null : await scaleScenario(ctx);
    const fleet = opts.quick ? null : await fleetScenario(progress);

    const result: Omit<BenchResult, 'targets'> = {
      mode: opts.quick ? 'quick' : 'full',
      startedAt,
      seconds: round((performance.now() - started) / 1000, 1),
      machine: {
        nproc: availableParallelism(),
        cpu: cpus()[0]?.model ?? 'unknown',
        node: process.version,
        loadAverageBefore,
        loadAverageAfter: loadavg().map((x) => round(x, 2)),
      },
      scale,
      generator,
      latency,
      throughput,
      logging,
      memory,
      tokens,
      upstreams,
      startup,
      floor,
      roundTrip,
      manyAccounts,
      fleet,
      profile,
    };
    return { ...result, targets: targets(result) };
  } finally {
    await ctx.close();
  }
}

/** The issue's goals, each next to what this run measured. Reported, never asserted. */
function targets(r: Omit<BenchResult, 'targets'>): Target[] {
  const row = (connections: number, size: number) => r.throughput.find((t) => t.connections === connections && t.size === size);
  const big = r.memory.bigMessages.find((b) => b.sizeMb === 30) ?? r.memory.bigMessages.at(-1);
  const out: Target[] = [
    // Issue 9, item 8.
    { goal: 'added latency p50, 1 connection, 2 KB', limit: '≤ 0.1 ms', measured: `${r.latency.addedP50Ms} ms`, met: r.latency.addedP50Ms <= 0.1 },
    { goal: 'added latency p99, 1 connection, 2 KB', limit: '≤ 1 ms', measured: `${r.latency.addedP99Ms} ms`, met: r.latency.addedP99Ms <= 1 },
  ];
  for (const connections of [10, 50]) {
    const t = row(connections, 2 * 1024);
    if (!t) continue;
    // What the bare byte pipe reached in table 6's rounds: no relay does better on this machine.
    const pipe = r.floor.find((f) => f.connections === connections)?.sides.pipe;
    const floor = (text: string) => (pipe ? ` (byte pipe: ${text})` : '');
    out.push(
      { goal: `throughput at ${connections} connections, 2 KB, relay / direct`, limit: '≥ 0.9', measured: `${t.ratio}${floor(`${pipe?.vsDirect}`)}`, met: t.ratio >= 0.9 },
      { goal: `relay CPU per 2 KB message (${connections} connections)`, limit: '≤ 60 µs', measured: `${t.relayCpuUsPerMessage} µs${floor(`${pipe?.cpuUsPerMessage} µs`)}`, met: t.relayCpuUsPerMessage <= 60 },
    );
  }
  for (const f of r.floor) {
    const multiple = f.sides.relay.multiple ?? Infinity;
    out.push({
      goal: `relay CPU per message as a multiple of the byte pipe's (${f.connections} connections)`,
      limit: '≤ 1.25x',
      measured: `${multiple}x (minimal relay retiring every 100 msgs: ${f.sides.retiring.multiple}x)`,
      met: multiple <= 1.25,
    });
  }
  out.push({
    goal: `pipelining client, provider ${r.roundTrip.rttMs} ms away, ${r.roundTrip.connections} connections: relay / direct msg/s`,
    limit: '≥ 0.9',
    measured: `${r.roundTrip.pipeliningRatio}`,
    met: r.roundTrip.pipeliningRatio >= 0.9,
  });
  out.push({
    goal: `${r.memory.sessions} idle inbound sessions add`,
    limit: '≤ 60 MB (for 1,000)',
    measured: `${r.memory.sessionsAddedMb} MB`,
    met: r.memory.sessionsAddedMb <= (60 * r.memory.sessions) / 1000,
  });
  if (big) {
    out.push({ goal: `a ${big.sizeMb} MB message adds to the peak RSS`, limit: '≤ 16 MB', measured: `${big.addedMb} MB`, met: big.addedMb <= 16 });
  }
  out.push({
    goal: `start-up, ${r.startup.accounts} accounts, token endpoint ${r.startup.tokenLatencyMs} ms`,
    limit: '≤ 1.5 s',
    measured: `${round(r.startup.readyMs / 1000, 2)} s`,
    met: r.startup.readyMs <= 1500,
  });
  out.push({
    goal: `token requests during ${r.tokens.messages} messages`,
    limit: '0',
    measured: `${r.tokens.tokenRequests}`,
    met: r.tokens.tokenRequests === 0,
  });
  return out;
}

function latestProfile(dir: string, root: string): HotFunction[] | null {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  const last = files.at(-1);
  return last ? summariseProfile(join(dir, last), root, 20) : null;
}
