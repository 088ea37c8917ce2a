// The HTTP API upstreams next to SMTP: the same 2 KB load through a relay whose one account sends
// by SMTP, by Microsoft Graph (draft, recipients, send: three requests) and by the Gmail API (one
// request), against the sandbox's fakes on 127.0.0.1. Reported per upstream: latency at 1
// connection and, at 10 connections, throughput and the relay's CPU per message.
import type { BenchContext } from '../lib/context.js';
import { prepareMessage } from '../lib/load-client.js';
import { runLoad } from '../lib/load.js';
import { median, percentile, round } from '../lib/stats.js';

export type UpstreamKind = 'smtp' | 'graph' | 'gmail_api';

export interface ApiUpstreamRow {
  upstream: UpstreamKind;
  p50Ms: number;
  p99Ms: number;
  connections: number;
  perSecond: number;
  relayCpuUsPerMessage: number;
}

const LOAD_CONNECTIONS = 10;
const SIZE = 2 * 1024;
const KINDS: Array<{ upstream: UpstreamKind; kind: 'google' | 'microsoft' }> = [
  { upstream: 'smtp', kind: 'google' },
  { upstream: 'graph', kind: 'microsoft' },
  { upstream: 'gmail_api', kind: 'google' },
];

export async function apiUpstreamScenario(ctx: BenchContext): Promise<ApiUpstreamRow[]> {
  const rows: ApiUpstreamRow[] = [];
  for (const { upstream, kind } of KINDS) {
    ctx.progress(`upstreams: ${upstream}`);
    const email = `up-${upstream.replace('_', '-')}@bench.example`;
    await ctx.sandbox.call('addAccounts', { emails: [email], kind });
    const relay = await ctx.startRelay({ emails: [email], extra: { upstream, max_connections: LOAD_CONNECTIONS, min_idle: LOAD_CONNECTIONS }, logLevel: 'warn' });
    try {
      const target = ctx.relayTarget(relay);
      const message = prepareMessage(email, 'rcpt@example.net', SIZE, `up-${upstream}`);
      const one = await runLoad({ target, connections: 1, message, warmupMs: ctx.scale.warmupMs, messages: Math.max(50, Math.round(ctx.scale.latencyMessages / 4)), latencies: true });
      const runs = [];
      for (let i = 0; i < ctx.scale.rounds; i++) {
        runs.push(await runLoad({ target, connections: LOAD_CONNECTIONS, message, warmupMs: ctx.scale.warmupMs, measureMs: ctx.scale.measureMs, sample: () => relay.cpuSeconds() }));
      }
      const messages = runs.reduce((s, r) => s + r.messages, 0);
      const cpu = runs.reduce((s, r) => s + r.sampled, 0);
      rows.push({
        upstream,
        p50Ms: round(percentile(one.latenciesMs, 50), 3),
        p99Ms: round(percentile(one.latenciesMs, 99), 3),
        connections: LOAD_CONNECTIONS,
        perSecond: round(median(runs.map((r) => r.perSecond)), 0),
        relayCpuUsPerMessage: messages ? round((cpu / messages) * 1e6, 0) : 0,
      });
    } finally {
      await ctx.stopRelay(relay);
    }
  }
  return rows;
}
