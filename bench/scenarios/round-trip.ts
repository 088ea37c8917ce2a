// A provider a round trip away (lib/latency-proxy.ts in front of the sandbox, RTT_MS per round
// trip) and CONNECTIONS connections, as a mailbox on Exchange gets: how many messages per
// second a client moves, and how many round trips each message costs, sending direct and through
// the relay, for a client that pipelines MAIL/RCPT/DATA and one that does not. A relay that
// forwards a pipelined group in one write costs the pipelining client nothing here; one that
// answers command by command costs it the round trips the client saved.
import type { BenchContext } from '../lib/context.js';
import type { Target } from '../lib/load-client.js';
import { prepareMessage } from '../lib/load-client.js';
import { openConnections, runLoad, type LoadResult } from '../lib/load.js';
import { median, round } from '../lib/stats.js';

export const RTT_MS = 20;
export const CONNECTIONS = 3;

export interface RoundTripRow {
  client: 'pipelining' | 'not pipelining';
  path: 'direct' | 'relay';
  perSecond: number;
  /** Wall time per message on one connection, in round trips. */
  roundTripsPerMessage: number;
  messages: number;
}

export interface RoundTripResult {
  rttMs: number;
  connections: number;
  rows: RoundTripRow[];
  /** Pipelining client: relay msg/s over direct msg/s. */
  pipeliningRatio: number;
}

export async function roundTripScenario(ctx: BenchContext, from: string): Promise<RoundTripResult> {
  const { port } = await ctx.sandbox.call('startLatencyProxy', { rttMs: RTT_MS });
  const relay = await ctx.startRelay({ emails: [from], extra: { max_connections: CONNECTIONS }, smtpPort: port });
  const token = await ctx.sandbox.call('issueAccessToken', { email: from });
  const targets: Record<'direct' | 'relay', Target> = {
    direct: { host: ctx.smtp.host, port, xoauth2: { user: from, token, ca: ctx.ca } },
    relay: ctx.relayTarget(relay),
  };
  const message = prepareMessage(from, 'rcpt@example.net', 2 * 1024, 'round-trip');
  const conns = { direct: await openConnections(targets.direct, CONNECTIONS), relay: await openConnections(targets.relay, CONNECTIONS) };
  const rows: RoundTripRow[] = [];
  try {
    for (const pipelining of [true, false]) {
      const client = pipelining ? 'pipelining' : 'not pipelining';
      ctx.progress(`round trip ${RTT_MS} ms: ${client} client, ${CONNECTIONS} connections, direct and relay`);
      const runs = { direct: [] as LoadResult[], relay: [] as LoadResult[] };
      for (let r = 0; r < ctx.scale.rounds; r++) {
        for (const path of r % 2 === 0 ? (['direct', 'relay'] as const) : (['relay', 'direct'] as const)) {
          // Warm-up of at least a few messages per connection: the relay opens its upstream
          // connections (each a connect, TLS and AUTH across the proxy) on demand.
          const warmupMs = Math.max(ctx.scale.warmupMs, 10 * RTT_MS * 5);
          runs[path].push(await runLoad({ target: targets[path], connections: CONNECTIONS, message, warmupMs, measureMs: ctx.scale.measureMs, pipelining }, conns[path]));
        }
      }
      for (const path of ['direct', 'relay'] as const) {
        const messages = runs[path].reduce((n, x) => n + x.messages, 0);
        const seconds = runs[path].reduce((s, x) => s + x.seconds, 0);
        rows.push({
          client,
          path,
          perSecond: round(median(runs[path].map((x) => x.perSecond)), 0),
          roundTripsPerMessage: round((CONNECTIONS * seconds * 1000) / messages / RTT_MS, 2),
          messages,
        });
      }
    }
  } finally {
    for (const c of [...conns.direct, ...conns.relay]) c.close();
    await ctx.stopRelay(relay);
  }
  const rate = (path: 'direct' | 'relay') => rows.find((x) => x.client === 'pipelining' && x.path === path)!.perSecond;
  return { rttMs: RTT_MS, connections: CONNECTIONS, rows, pipeliningRatio: round(rate('relay') / rate('direct'), 2) };
}
