// Scenario 10 (issue 22): the big fleet run. 6 relay processes (the built CLI) on one real
// redis-server and one sandbox provider, 200 mailboxes with caps of 3 (Microsoft) and 5
// (Google), 20,000 messages from 8 MTA connections per relay, one relay kill -9'd a third of the
// way, at the default slot TTL. The run is test/integration/fleet.test.ts's
// (test/helpers/fleet-caps.ts) at the size; the test asserts on the small one, this
// reports. The sandbox and the MTA side run in this process (the ledger needs every message's
// bytes), so on a small machine they share its cores with the relays: msgs/s is the whole
// setup's, not a relay's. Always the built dist/ (BENCH_RELAY_MAIN does not apply).
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SandboxProvider } from '../../src/sandbox/index.js';
import type { ServeProcess } from '../../test/helpers/cli.js';
import { fleetRun, type FleetRunResult } from '../../test/helpers/fleet-caps.js';
import { RedisServer } from '../../test/helpers/redis-server.js';
import { round } from '../lib/stats.js';

export interface FleetResult extends FleetRunResult {
  /** 1-minute load average before the run, the highest seen during it (sampled every 5 s), and after. */
  loadBefore: number;
  loadMax: number;
  loadAfter: number;
}

export const FLEET_SIZE = { relays: 6, mailboxes: 200, messages: 20_000, connectionsPerRelay: 8, slotTtlMs: 20_000, acquireTimeoutMs: 30_000 };

export async function fleetScenario(progress: (line: string) => void, size = FLEET_SIZE): Promise<FleetResult> {
  const loadBefore = round(loadavg()[0]!, 2);
  let loadMax = loadBefore;
  const sampler = setInterval(() => (loadMax = Math.max(loadMax, round(loadavg()[0]!, 2))), 5_000);
  const dir = mkdtempSync(join(tmpdir(), 'relay-bench-fleet-'));
  const relays: ServeProcess[] = [];
  let redis: RedisServer | null = null;
  let sandbox: SandboxProvider | null = null;
  try {
    redis = await RedisServer.start();
    sandbox = await SandboxProvider.start();
    const r = await fleetRun({
      sandbox,
      redisUrl: redis.url,
      dir,
      name: 'bench-fleet',
      ...size,
      timeLimitMs: 10 * 60_000,
      started: (p) => relays.push(p),
      progress,
    });
    return { ...r, loadBefore, loadMax, loadAfter: round(loadavg()[0]!, 2) };
  } finally {
    clearInterval(sampler);
    for (const p of relays) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    await Promise.all(relays.map((p) => p.exited));
    await sandbox?.stop();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function fleetTable(r: FleetResult): string {
  const s = (ms: number | null) => (ms === null ? 'never' : `${round(ms / 1000, 1)} s`);
  const c = r.firstAttempts;
  const row = (what: string, target: string, measured: string, met: boolean | null) => `| ${what} | ${target} | ${measured} | ${met === null ? '-' : met ? 'yes' : '**no**'} |`;
  const over = r.peaks.filter((p) => p.peak > p.cap).length;
  const atCap = r.peaks.filter((p) => p.peak === p.cap).length;
  return [
    `### 10. Fleet: ${r.relays} relays on one Redis, ${r.mailboxes} mailboxes (caps 3 Microsoft, 5 Google), ${r.messages.toLocaleString('en')} messages over ${r.connectionsPerRelay} MTA connections per relay, one relay kill -9'd a third of the way`,
    '| | target | measured | met |',
    '| --- | --- | --- | --- |',
    row(
      'first attempts: accepted / deferred (4xx) / refused (5xx) / no reply (the killed relay\'s sessions)',
      '-',
      `${c.accepted} / ${c.deferred} / ${c.refused} / ${c.noReply + c.unknown}`,
      c.refused === 0 ? null : false,
    ),
    row(
      'after resending what was pending to the survivors: delivered once / twice / never',
      'all once (twice only after silence at the final dot)',
      `${r.delivered.once} / ${r.delivered.twice} (${r.delivered.afterSilence} after silence) / ${r.delivered.never}`,
      r.delivered.never === 0 && r.delivered.twice === r.delivered.afterSilence,
    ),
    row(
      'max concurrent authenticated connections per mailbox (sandbox, at every login and close): worst mailbox',
      '≤ cap',
      `${r.worst.peak} for a cap of ${r.worst.cap} (${r.worst.email}); ${over} mailboxes over their cap, ${atCap} of ${r.mailboxes} at it`,
      over === 0,
    ),
    // The slots lapse within the TTL of the kill; the waiting pool asks again at most every second.
    row(
      'killed relay\'s slots reused by a survivor (kill to first message accepted for the mailbox it held whole)',
      `≤ slot TTL (${s(r.slotTtlMs)}) + 1 s`,
      s(r.slotsReusedMs),
      r.slotsReusedMs !== null && r.slotsReusedMs <= r.slotTtlMs + 1_000,
    ),
    row('slots of the killed relay left once the TTL passed', '0', `${r.deadSlotsAfterTtl.length}`, r.deadSlotsAfterTtl.length === 0),
    row('main load: wall time, accepted msgs/s (whole setup on this machine)', '-', `${s(r.loadMs)}, ${r.perSecond} msg/s`, null),
    row('whole run (start, load, TTL wait, resends)', 'a few minutes', s(r.wallMs), null),
    row('1-minute load average: before, highest during, after', '-', `${r.loadBefore} / ${r.loadMax} / ${r.loadAfter}`, null),
  ].join('\n');
}
