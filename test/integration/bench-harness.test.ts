// The benchmark harness in its quick mode, end to end: sandbox child, relay children (from
// source, so the code under test is this checkout's), every scenario, the report. Only the
// structure and the facts that do not depend on the machine are asserted, never a timing.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runBench, type BenchResult } from '../../bench/harness.js';
import { markdown } from '../../bench/report.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('bench harness (BENCH_QUICK)', () => {
  it('runs every scenario against relay children and reports them, with no token request on the message path', async () => {
    const r: BenchResult = await runBench({ quick: true, root: ROOT, entry: 'source' });

    expect(r.mode).toBe('quick');
    expect(r.latency.messages).toBeGreaterThanOrEqual(r.scale.latencyMessages);
    for (const v of [r.latency.directP50Ms, r.latency.relayP50Ms, r.latency.relayP99Ms]) expect(v).toBeGreaterThan(0);

    // Every connection count × message size, each side measured and the relay's CPU read from /proc.
    expect(r.throughput.map((t) => `${t.connections}/${t.size}`)).toEqual(
      r.scale.sizes.flatMap((size) => r.scale.connections.map((c) => `${c}/${size}`)),
    );
    for (const t of r.throughput) {
      expect(t.directPerSecond).toBeGreaterThan(0);
      expect(t.relayPerSecond).toBeGreaterThan(0);
      expect(t.relayCpuUsPerMessage).toBeGreaterThan(0);
    }
    expect(r.logging.infoPerSecond).toBeGreaterThan(0);
    expect(r.logging.warnPerSecond).toBeGreaterThan(0);
    expect(r.generator.map((g) => g.sinkPerSecond).every((x) => x > 0)).toBe(true);

    expect(r.memory.idleRssMb).toBeGreaterThan(0);
    expect(r.memory.bigMessages.map((b) => b.sizeMb)).toEqual(r.scale.bigMessages.map((b) => b / 1024 / 1024));
    for (const b of r.memory.bigMessages) expect(b.peakMb).toBeGreaterThanOrEqual(b.rssBeforeMb - 1);

    // Tokens: fetched at start-up only, one per account; none while messages flow.
    expect(r.tokens.messages).toBeGreaterThanOrEqual(r.scale.tokenMessages);
    expect(r.tokens.tokenRequests).toBe(0);
    expect(r.tokens.currentNs).toBeGreaterThan(0);
    expect(r.startup.accounts).toBe(r.scale.startupAccounts);
    expect(r.startup.tokenRequests).toBe(r.scale.startupAccounts);
    expect(r.startup.firstMessageTokenRequests).toBe(0);
    expect(r.startup.firstMessageOnWarmConnection).toBe(true);

    // The floor: direct, the byte pipe, both minimal relays and the relay all moved messages and were measured.
    expect(r.floor.map((f) => f.connections)).toEqual([10, 50]);
    for (const f of r.floor) {
      expect(Object.keys(f.sides).sort()).toEqual(['direct', 'minimal', 'pipe', 'relay', 'retiring']);
      for (const [name, side] of Object.entries(f.sides)) {
        expect(side.perSecond).toBeGreaterThan(0);
        expect(side.vsDirect).toBeGreaterThan(0);
        if (name === 'direct') {
          expect(side.cpuUsPerMessage).toBeNull();
          continue;
        }
        expect(side.cpuUsPerMessage).toBeGreaterThan(0);
        expect(side.multiple).toBeGreaterThan(0);
      }
      expect(f.sides.direct.vsDirect).toBe(1);
      expect(f.sides.pipe.multiple).toBe(1);
      // Direct, pipe and minimal relay hold their connections; they open none while measured.
      expect(f.sides.direct.opensPer100).toBe(0);
      expect(f.sides.pipe.opensPer100).toBe(0);
      expect(f.sides.minimal.opensPer100).toBe(0);
    }
    // A provider a round trip away: every message costs at least the round trip of its final
    // reply, however loaded the machine (how many more a client pays is a timing, not asserted).
    expect(r.roundTrip.rows.map((x) => `${x.client}/${x.path}`)).toEqual(['pipelining/direct', 'pipelining/relay', 'not pipelining/direct', 'not pipelining/relay']);
    for (const x of r.roundTrip.rows) {
      expect(x.messages).toBeGreaterThan(0);
      expect(x.roundTripsPerMessage).toBeGreaterThanOrEqual(1);
    }
    // The API upstreams next to SMTP: every one carried its load.
    expect(r.upstreams.map((u) => u.upstream)).toEqual(['smtp', 'graph', 'gmail_api']);
    for (const u of r.upstreams) expect(u.perSecond > 0 && u.p50Ms > 0 && u.relayCpuUsPerMessage > 0).toBe(true);

    const md = markdown(r);
    for (const heading of ['Against the targets', '1. Latency', '2. Throughput', 'Logging cost', '3. Memory', '4. Tokens', '5. Start-up', '6. The floor', '7. A provider 20 ms away', 'generator is not the bottleneck']) {
      expect(md).toContain(heading);
    }
    expect(r.targets.length).toBeGreaterThanOrEqual(13);
  }, 180_000);
});
