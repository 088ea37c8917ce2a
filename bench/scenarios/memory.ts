// Scenario 3: the relay's resident memory idle, with many idle inbound sessions, and its peak
// while one large message streams through. Each figure comes from a fresh relay process, read
// from /proc; the peak is VmHWM after resetting it just before the message, so it is the
// message's own peak and not start-up's.
import type { BenchContext } from '../lib/context.js';
import { prepareMessage } from '../lib/load-client.js';
import { openConnections, sleep } from '../lib/load.js';
import { round } from '../lib/stats.js';

const MB = 1024 * 1024;
/** Lets the relay's event loop and GC settle before a reading. */
const SETTLE_MS = 500;

/** RSS once two readings SETTLE_MS apart differ by less than 1 MB (at most ten tries). */
async function settledRss(relay: { memory(): { rss: number } }): Promise<number> {
  let last = relay.memory().rss;
  for (let i = 0; i < 10; i++) {
    await sleep(SETTLE_MS);
    const now = relay.memory().rss;
    if (Math.abs(now - last) < MB) return now;
    last = now;
  }
  return last;
}

export interface MemoryResult {
  idleRssMb: number;
  sessions: number;
  sessionsRssMb: number;
  sessionsAddedMb: number;
  /** One row per message size. */
  bigMessages: Array<{ sizeMb: number; rssBeforeMb: number; peakMb: number; addedMb: number; seconds: number }>;
  /** false where the kernel refused to reset the peak (then peaks include start-up). */
  peakReset: boolean;
}

export async function memoryScenario(ctx: BenchContext, from: string): Promise<MemoryResult> {
  const toMb = (b: number) => round(b / MB, 1);
  const small = prepareMessage(from, 'rcpt@example.net', 2 * 1024, 'memory');

  ctx.progress(`memory: idle, then ${ctx.scale.idleSessions} idle inbound sessions`);
  const relay = await ctx.startRelay({ emails: [from] });
  let idle: number;
  let withSessions: number;
  try {
    // A couple of messages first: the idle figure is a relay that has relayed, not a cold one.
    const [warm] = await openConnections(ctx.relayTarget(relay), 1);
    await warm!.send(small);
    await warm!.send(small);
    warm!.close();
    idle = await settledRss(relay);
    // Each session has had its greeting and EHLO: the state a real idle MTA connection holds.
    const sessions = await openConnections(ctx.relayTarget(relay), ctx.scale.idleSessions);
    withSessions = await settledRss(relay);
    for (const s of sessions) s.close();
  } finally {
    await ctx.stopRelay(relay);
  }

  const bigMessages: MemoryResult['bigMessages'] = [];
  let peakReset = true;
  for (const size of ctx.scale.bigMessages) {
    ctx.progress(`memory: peak while relaying one ${size / MB} MB message`);
    const r = await ctx.startRelay({ emails: [from] });
    try {
      const [conn] = await openConnections(ctx.relayTarget(r), 1);
      await conn!.send(small);
      // Just after start-up V8 frees tens of MB of compiler memory: a "before" read while that
      // is still held would make the message look cheaper than it is.
      const before = await settledRss(r);
      peakReset &&= r.resetPeak();
      const big = prepareMessage(from, 'rcpt@example.net', size, 'big');
      const ms = await conn!.send(big);
      const peak = r.memory().peak;
      conn!.close();
      bigMessages.push({ sizeMb: round(size / MB, 0), rssBeforeMb: toMb(before), peakMb: toMb(peak), addedMb: toMb(peak - before), seconds: round(ms / 1000, 2) });
    } finally {
      await ctx.stopRelay(r);
    }
  }

  return {
    idleRssMb: toMb(idle),
    sessions: ctx.scale.idleSessions,
    sessionsRssMb: toMb(withSessions),
    sessionsAddedMb: toMb(withSessions - idle),
    bigMessages,
    peakReset,
  };
}
