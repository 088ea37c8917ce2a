// Scenario 5: start-up with many accounts while every token request takes 300 ms (about what
// Google's and Microsoft's endpoints take from a datacentre), and the first message after ready.
// Ready = /readyz answers 200 (listener up, every account holding a token). Each run starts from
// an empty store, so every token really is fetched.
import type { BenchContext } from '../lib/context.js';
import { prepareMessage } from '../lib/load-client.js';
import { openConnections } from '../lib/load.js';
import { median, percentile, round } from '../lib/stats.js';

export const TOKEN_LATENCY_MS = 300;
const STEADY_MESSAGES = 200;

export interface StartupResult {
  accounts: number;
  tokenLatencyMs: number;
  runs: number;
  /** Spawn to /readyz 200, ms: median and every run. */
  readyMs: number;
  readyRunsMs: number[];
  /** The relay's own figure for tokens + ready connections (its relay_ready log line), median. */
  relayStartMs: number;
  /** Token requests during one start-up (one per account expected). */
  tokenRequests: number;
  firstMessageMs: number;
  steadyP50Ms: number;
  /** Token requests while the first message was relayed: 0 when start-up did its job. */
  firstMessageTokenRequests: number;
  /** Whether the first message went upstream on a connection opened before ready (no handshake on its path). */
  firstMessageOnWarmConnection: boolean;
}

export async function startupScenario(ctx: BenchContext): Promise<StartupResult> {
  const n = ctx.scale.startupAccounts;
  const emails = await ctx.accounts('start', n);
  const message = prepareMessage(emails[0]!, 'rcpt@example.net', 2 * 1024, 'first');
  const ready: number[] = [];
  const relayStart: number[] = [];
  const tokenRequests: number[] = [];
  let first = { ms: 0, tokens: 0, warm: false, steadyP50: 0 };
  await ctx.sandbox.call('setTokenLatency', { ms: TOKEN_LATENCY_MS });
  try {
    for (let run = 0; run < ctx.scale.startupRuns; run++) {
      ctx.progress(`start-up: ${n} accounts, token endpoint ${TOKEN_LATENCY_MS} ms, run ${run + 1}/${ctx.scale.startupRuns}`);
      const before = await ctx.sandbox.call('tokenRequests', {});
      const relay = await ctx.startRelay({ emails });
      try {
        ready.push(relay.startupMs);
        tokenRequests.push((await ctx.sandbox.call('tokenRequests', {})) - before);
        if (run > 0) continue;
        // Connect first (outside the timing: the greeting alone waits 100 ms), then one message.
        const [conn] = await openConnections(ctx.relayTarget(relay), 1);
        await ctx.sandbox.call('trim', {});
        const tokens0 = await ctx.sandbox.call('tokenRequests', {});
        const firstMs = await conn!.send(message);
        const tokens1 = await ctx.sandbox.call('tokenRequests', {});
        const { connectionOpenedAt } = await ctx.sandbox.call('lastAccepted', {});
        const steady: number[] = [];
        for (let i = 0; i < STEADY_MESSAGES; i++) steady.push(await conn!.send(message));
        conn!.close();
        first = {
          ms: firstMs,
          tokens: tokens1 - tokens0,
          warm: connectionOpenedAt !== null && connectionOpenedAt <= relay.readyAt,
          steadyP50: percentile(steady, 50),
        };
      } finally {
        await ctx.stopRelay(relay);
      }
      // Read once the relay has exited: its log is written in batches, flushed at exit.
      const ms = relay.logEvents('relay_ready')[0]?.ms;
      if (typeof ms === 'number') relayStart.push(ms);
    }
  } finally {
    await ctx.sandbox.call('setTokenLatency', { ms: 0 });
  }
  return {
    accounts: n,
    tokenLatencyMs: TOKEN_LATENCY_MS,
    runs: ready.length,
    readyMs: round(median(ready), 0),
    readyRunsMs: ready.map((x) => round(x, 0)),
    relayStartMs: round(median(relayStart), 0),
    tokenRequests: median(tokenRequests),
    firstMessageMs: round(first.ms),
    steadyP50Ms: round(first.steadyP50),
    firstMessageTokenRequests: first.tokens,
    firstMessageOnWarmConnection: first.warm,
  };
}
