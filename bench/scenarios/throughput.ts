// Scenarios 1 and 2 (and the generator check): the same closed-loop load sent straight to the
// sandbox (the baseline) and through the relay, in alternating order round after round, so drift
// on the shared machine hits both sides alike. Reported: medians over rounds, and the median of
// the per-round ratios.
import type { BenchContext } from '../lib/context.js';
import { prepareMessage, type LoadConnection, type Target } from '../lib/load-client.js';
import { openConnections, runLoad, type LoadResult } from '../lib/load.js';
import type { RelayProcess } from '../lib/relay-process.js';
import { median, percentile, round } from '../lib/stats.js';

const RECIPIENT = 'rcpt@example.net';

export interface LatencyResult {
  messages: number;
  directP50Ms: number;
  directP99Ms: number;
  relayP50Ms: number;
  relayP99Ms: number;
  addedP50Ms: number;
  addedP99Ms: number;
}

export interface ThroughputRow {
  connections: number;
  size: number;
  directPerSecond: number;
  relayPerSecond: number;
  /** Median over rounds of relay/direct measured back to back. */
  ratio: number;
  /** The relay process's CPU seconds per 1,000 relayed messages (/proc). */
  relayCpuPer1000: number;
  /** The same per message, µs. */
  relayCpuUsPerMessage: number;
  /** Largest share of one core the generator used in any run of this row. */
  generatorShareMax: number;
  rounds: number;
}

export interface GeneratorCheck {
  connections: number;
  size: number;
  sinkPerSecond: number;
  sinkGeneratorShare: number;
}

/** Both sides of a comparison: the baseline target and the relay's. */
export interface Sides {
  relay: RelayProcess;
  direct: Target;
  relayTarget: Target;
  from: string;
}

/** Connections opened once per side and reused by every row (connect time never counts). */
class ConnectionSets {
  private readonly sets = new Map<Target, LoadConnection[]>();

  async get(target: Target, n: number): Promise<LoadConnection[]> {
    let conns = this.sets.get(target) ?? [];
    if (conns.length < n) {
      conns = conns.concat(await openConnections(target, n - conns.length));
      this.sets.set(target, conns);
    }
    return conns.slice(0, n);
  }

  close(): void {
    for (const conns of this.sets.values()) for (const c of conns) c.close();
    this.sets.clear();
  }
}

export async function latencyAndThroughput(
  ctx: BenchContext,
  sides: Sides,
): Promise<{ latency: LatencyResult; throughput: ThroughputRow[] }> {
  const { scale } = ctx;
  const sets = new ConnectionSets();
  try {
    ctx.progress('latency: 1 connection, 2 KB');
    const small = prepareMessage(sides.from, RECIPIENT, 2 * 1024, 'latency');
    const samples = { direct: [] as number[], relay: [] as number[] };
    for (let round = 0; round < scale.rounds; round++) {
      for (const side of order(round)) {
        const target = side === 'direct' ? sides.direct : sides.relayTarget;
        const r = await runLoad(
          { target, connections: 1, message: small, warmupMs: scale.warmupMs, messages: Math.ceil(scale.latencyMessages / scale.rounds), latencies: true },
          await sets.get(target, 1),
        );
        samples[side].push(...r.latenciesMs);
      }
    }
    const p = (side: 'direct' | 'relay', q: number) => percentile(samples[side], q);
    const latency: LatencyResult = {
      messages: samples.relay.length,
      directP50Ms: round(p('direct', 50)),
      directP99Ms: round(p('direct', 99)),
      relayP50Ms: round(p('relay', 50)),
      relayP99Ms: round(p('relay', 99)),
      addedP50Ms: round(p('relay', 50) - p('direct', 50)),
      addedP99Ms: round(p('relay', 99) - p('direct', 99)),
    };

    const throughput: ThroughputRow[] = [];
    for (const size of scale.sizes) {
      const message = prepareMessage(sides.from, RECIPIENT, size, 'throughput');
      for (const connections of scale.connections) {
        ctx.progress(`throughput: ${connections} connection(s), ${size / 1024} KB`);
        const runs = { direct: [] as LoadResult[], relay: [] as LoadResult[] };
        for (let r = 0; r < scale.rounds; r++) {
          for (const side of order(r)) {
            const target = side === 'direct' ? sides.direct : sides.relayTarget;
            runs[side].push(
              await runLoad(
                {
                  target,
                  connections,
                  message,
                  warmupMs: scale.warmupMs,
                  measureMs: scale.measureMs,
                  sample: side === 'relay' ? () => sides.relay.cpuSeconds() : undefined,
                },
                await sets.get(target, connections),
              ),
            );
          }
        }
        const relayMessages = runs.relay.reduce((n, x) => n + x.messages, 0);
        const relayCpu = runs.relay.reduce((s, x) => s + x.sampled, 0);
        throughput.push({
          connections,
          size,
          directPerSecond: round(median(runs.direct.map((x) => x.perSecond)), 0),
          relayPerSecond: round(median(runs.relay.map((x) => x.perSecond)), 0),
          ratio: round(median(runs.relay.map((x, i) => x.perSecond / runs.direct[i]!.perSecond)), 2),
          relayCpuPer1000: round((relayCpu / relayMessages) * 1000, 3),
          relayCpuUsPerMessage: round((relayCpu / relayMessages) * 1e6, 0),
          generatorShareMax: round(Math.max(...[...runs.direct, ...runs.relay].map((x) => x.generatorShare)), 2),
          rounds: scale.rounds,
        });
      }
    }
    return { latency, throughput };
  } finally {
    sets.close();
  }
}

/** The generator alone against a sink that costs nothing: the most it can drive. */
export async function generatorCheck(ctx: BenchContext, from: string): Promise<GeneratorCheck[]> {
  const { port } = await ctx.sandbox.call('startSink', {});
  const target: Target = { host: '127.0.0.1', port };
  const out: GeneratorCheck[] = [];
  const size = 2 * 1024;
  const message = prepareMessage(from, RECIPIENT, size, 'sink');
  for (const connections of [10, 50]) {
    ctx.progress(`generator check: ${connections} connections to a sink`);
    const r = await runLoad({ target, connections, message, warmupMs: ctx.scale.warmupMs, measureMs: ctx.scale.measureMs });
    out.push({ connections, size, sinkPerSecond: round(r.perSecond, 0), sinkGeneratorShare: round(r.generatorShare, 2) });
  }
  return out;
}

/** Relay CPU per message at the default log level (info: one JSON line per transaction) and at warn. */
export async function loggingCost(
  ctx: BenchContext,
  from: string,
  relays: { info: RelayProcess; warn: RelayProcess },
): Promise<{ connections: number; size: number; infoCpuUsPerMessage: number; warnCpuUsPerMessage: number; infoPerSecond: number; warnPerSecond: number }> {
  const connections = 10;
  const size = 2 * 1024;
  ctx.progress(`logging cost: ${connections} connections, 2 KB, log level info vs warn`);
  const message = prepareMessage(from, RECIPIENT, size, 'logging');
  const sets = new ConnectionSets();
  const runs = { info: [] as LoadResult[], warn: [] as LoadResult[] };
  try {
    for (let r = 0; r < ctx.scale.rounds; r++) {
      for (const level of r % 2 === 0 ? (['info', 'warn'] as const) : (['warn', 'info'] as const)) {
        const relay = relays[level];
        const target = ctx.relayTarget(relay);
        runs[level].push(
          await runLoad(
            { target, connections, message, warmupMs: ctx.scale.warmupMs, measureMs: ctx.scale.measureMs, sample: () => relay.cpuSeconds() },
            await sets.get(target, connections),
          ),
        );
      }
    }
  } finally {
    sets.close();
  }
  const us = (xs: LoadResult[]) => round((xs.reduce((s, x) => s + x.sampled, 0) / xs.reduce((n, x) => n + x.messages, 0)) * 1e6, 0);
  return {
    connections,
    size,
    infoCpuUsPerMessage: us(runs.info),
    warnCpuUsPerMessage: us(runs.warn),
    infoPerSecond: round(median(runs.info.map((x) => x.perSecond)), 0),
    warnPerSecond: round(median(runs.warn.map((x) => x.perSecond)), 0),
  };
}

/** Alternate which side goes first, so a trend over the run does not favour one of them. */
const order = (round: number): Array<'direct' | 'relay'> => (round % 2 === 0 ? ['direct', 'relay'] : ['relay', 'direct']);
