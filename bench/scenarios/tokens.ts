// Scenario 4: what a token costs on the message path. The lookup itself, timed in-process on the
// relay's own TokenCache filled from the sandbox token endpoint through the real grant; and, on a
// running relay, how many token requests 10,000 messages cause (by the endpoint's own count).
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { buildConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/obs/logger.js';
import { accountsFromConfig } from '../../src/routing/account.js';
import { openStore } from '../../src/store/open.js';
import { TokenCache } from '../../src/tokens/token-cache.js';
import type { BenchContext } from '../lib/context.js';
import { prepareMessage } from '../lib/load-client.js';
import { runLoad } from '../lib/load.js';
import type { Sides } from './throughput.js';
import { round } from '../lib/stats.js';

export interface TokenResult {
  currentNs: number;
  getNs: number;
  messages: number;
  tokenRequests: number;
}

export async function tokenScenario(ctx: BenchContext, sides: Sides): Promise<TokenResult> {
  ctx.progress('tokens: lookup cost in-process');
  const { currentNs, getNs } = await lookupCost(ctx, sides.from);

  ctx.progress(`tokens: token requests during ${ctx.scale.tokenMessages} messages`);
  const before = await ctx.sandbox.call('tokenRequests', {});
  const run = await runLoad({
    target: sides.relayTarget,
    connections: 10,
    message: prepareMessage(sides.from, 'rcpt@example.net', 2 * 1024, 'tokens'),
    warmupMs: 0,
    messages: ctx.scale.tokenMessages,
  });
  const after = await ctx.sandbox.call('tokenRequests', {});
  return { currentNs, getNs, messages: run.messages, tokenRequests: after - before };
}

async function lookupCost(ctx: BenchContext, email: string): Promise<{ currentNs: number; getNs: number }> {
  const dir = join(ctx.tmp, 'token-micro');
  mkdirSync(dir);
  const doc = await ctx.sandbox.call('relayConfig', { emails: [email], extra: {}, overrides: { store: { path: join(dir, 'relay.db') } } });
  const config = buildConfig(doc, null, { env: {} });
  const [account] = accountsFromConfig(config);
  const logger = silentLogger();
  const store = await openStore(config.store, { XOAUTH2_RELAY_KEY: randomBytes(32).toString('hex') }, logger);
  const t = config.tokens;
  const cache = new TokenCache(
    { refreshBeforeExpiryMs: t.refresh_before_expiry_ms, requestTimeoutMs: t.request_timeout_ms, retryMinMs: t.retry_min_ms, retryMaxMs: t.retry_max_ms },
    { store, logger },
  );
  try {
    await cache.start([account!], { waitMs: t.startup_wait_ms, concurrency: 1 });
    if (!cache.current(account!.email)) throw new Error('token micro-benchmark: no token after start-up');
    const n = ctx.scale.microIterations;
    // Warm both paths up first so the JIT has compiled them.
    let sink = 0;
    for (let i = 0; i < 10_000; i++) sink += cache.current(account!.email)!.expiresAt & 1;
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) sink += cache.current(account!.email)!.expiresAt & 1;
    const currentNs = Number(process.hrtime.bigint() - t0) / n;
    const m = Math.max(1, Math.floor(n / 10));
    for (let i = 0; i < 1_000; i++) sink += (await cache.get(account!)).expiresAt & 1;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < m; i++) sink += (await cache.get(account!)).expiresAt & 1;
    const getNs = Number(process.hrtime.bigint() - t0) / m;
    if (sink < 0) throw new Error('unreachable'); // keeps the loops from being optimised away
    return { currentNs: round(currentNs, 0), getNs: round(getNs, 0) };
  } finally {
    cache.stop();
    await store.close();
  }
}
