// The benchmark result as the markdown tables docs/benchmarks.md publishes.
import type { BenchResult } from './harness.js';
import { FLOOR_SIDES, type FloorRow, type FloorSideName } from './scenarios/floor.js';
import { scaleTable } from './scenarios/scale.js';

const table = (head: string[], rows: Array<Array<string | number>>): string =>
  [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

const kb = (bytes: number) => `${Math.round(bytes / 1024)} KB`;
/** Table 6's sides, as named in it. */
const FLOOR_LABELS: Record<FloorSideName, string> = {
  direct: 'direct (no process in the path)',
  pipe: 'byte pipe (the floor)',
  minimal: 'minimal relay',
  retiring: 'minimal relay, retiring every 100 msgs',
  relay: 'relay',
};

export function markdown(r: BenchResult): string {
  const m = r.machine;
  const parts = [
    `Mode: ${r.mode}, ${r.seconds} s, ${r.startedAt}. Machine: ${m.nproc} × ${m.cpu}, Node ${m.node}, ` +
      `load average ${m.loadAverageBefore.join(' / ')} before, ${m.loadAverageAfter.join(' / ')} after.`,
    '### Against the targets',
    table(
      ['goal', 'target', 'measured', 'met'],
      r.targets.map((t) => [t.goal, t.limit, t.measured, t.met ? 'yes' : '**no**']),
    ),
    '### 1. Latency per message, 1 connection, 2 KB (connect time excluded)',
    table(
      ['', 'p50 ms', 'p99 ms'],
      [
        ['direct (baseline)', r.latency.directP50Ms, r.latency.directP99Ms],
        ['through the relay', r.latency.relayP50Ms, r.latency.relayP99Ms],
        ['added by the relay', r.latency.addedP50Ms, r.latency.addedP99Ms],
      ],
    ) + `\n\n${r.latency.messages} messages per side.`,
    '### 2. Throughput (closed loop, persistent connections; medians over rounds)',
    table(
      ['connections', 'message', 'direct msg/s', 'relay msg/s', 'relay / direct', 'relay CPU s per 1,000 msgs', 'relay CPU µs/msg', 'generator CPU (max, of one core)'],
      r.throughput.map((t) => [
        t.connections,
        kb(t.size),
        t.directPerSecond,
        t.relayPerSecond,
        t.ratio,
        t.relayCpuPer1000,
        t.relayCpuUsPerMessage,
        `${Math.round(t.generatorShareMax * 100)} %`,
      ]),
    ) + `\n\n${r.scale.rounds} round(s) of ${r.scale.measureMs} ms per side after ${r.scale.warmupMs} ms warm-up, the relay warmed up first with ${r.scale.warmMessages} messages; relay at log level info (its default).`,
    '### Logging cost (one JSON line per transaction at info)',
    table(
      ['log level', 'relay msg/s', 'relay CPU µs/msg'],
      [
        ['info (default)', r.logging.infoPerSecond, r.logging.infoCpuUsPerMessage],
        ['warn', r.logging.warnPerSecond, r.logging.warnCpuUsPerMessage],
      ],
    ) + `\n\n${r.logging.connections} connections, ${kb(r.logging.size)} messages.`,
    '### 3. Memory (relay RSS from /proc)',
    table(
      ['state', 'RSS MB', 'added MB'],
      [
        ['idle (after two messages)', r.memory.idleRssMb, ''],
        [`${r.memory.sessions} idle inbound sessions (after EHLO)`, r.memory.sessionsRssMb, r.memory.sessionsAddedMb],
        ...r.memory.bigMessages.map((b) => [`peak while relaying one ${b.sizeMb} MB message (${b.seconds} s)`, b.peakMb, b.addedMb]),
      ],
    ) + (r.memory.peakReset ? '' : '\n\nThe kernel refused to reset VmHWM: peaks include start-up.'),
    '### 4. Tokens',
    table(
      ['TokenCache.current()', 'await TokenCache.get()', 'messages relayed', 'token requests meanwhile'],
      [[`${r.tokens.currentNs} ns`, `${r.tokens.getNs} ns`, r.tokens.messages, r.tokens.tokenRequests]],
    ),
    `### 5. Start-up: ${r.startup.accounts} accounts, token endpoint answering in ${r.startup.tokenLatencyMs} ms`,
    table(
      ['spawn → /readyz 200 (median)', 'runs', "relay's own start (tokens + warm connections)", 'token requests', 'first message', 'steady p50', 'first message: token requests / warm connection'],
      [
        [
          `${r.startup.readyMs} ms`,
          r.startup.readyRunsMs.map((x) => `${x}`).join(', '),
          `${r.startup.relayStartMs} ms`,
          r.startup.tokenRequests,
          `${r.startup.firstMessageMs} ms`,
          `${r.startup.steadyP50Ms} ms`,
          `${r.startup.firstMessageTokenRequests} / ${r.startup.firstMessageOnWarmConnection ? 'yes' : 'no'}`,
        ],
      ],
    ),
    '### 6. The floor: a bare byte pipe to a pre-authenticated upstream, and minimal faithful relays',
    floorTable(r.floor, r.scale.rounds, r.scale.measureMs),
    `### 7. A provider ${r.roundTrip.rttMs} ms away, ${r.roundTrip.connections} connections, 2 KB`,
    table(
      ['client', 'path', 'msg/s', 'round trips per message'],
      r.roundTrip.rows.map((x) => [x.client, x.path, x.perSecond, x.roundTripsPerMessage]),
    ) + `\n\nPipelining client through the relay / direct: ${r.roundTrip.pipeliningRatio}. Round trips per message: wall time per message on one connection over the round trip.`,
    '### 8. SMTP, Microsoft Graph and Gmail API upstreams (one account each, 2 KB, sandbox fakes on 127.0.0.1)',
    table(
      ['upstream', 'p50 ms (1 connection)', 'p99 ms', 'connections', 'msg/s', 'relay CPU µs/msg'],
      r.upstreams.map((u) => [u.upstream, u.p50Ms, u.p99Ms, u.connections, u.perSecond, u.relayCpuUsPerMessage]),
    ),
    ...(r.manyAccounts ? [scaleTable(r.manyAccounts)] : []),
    '### The generator is not the bottleneck',
    table(
      ['connections', 'message', 'generator → sink msg/s', 'generator CPU (of one core)'],
      r.generator.map((g) => [g.connections, kb(g.size), g.sinkPerSecond, `${Math.round(g.sinkGeneratorShare * 100)} %`]),
    ),
  ];
  if (r.profile) {
    parts.push(
      '### Where the relay spent its CPU (self time, top functions)',
      table(
        ['share', 'function', 'where'],
        r.profile.map((f) => [`${(f.share * 100).toFixed(1)} %`, f.name, f.where]),
      ),
    );
  }
  return parts.join('\n\n') + '\n';
}

/** Table 6 (also printed alone by bench/floor.ts). */
export function floorTable(floor: FloorRow[], rounds: number, measureMs: number): string {
  return (
    table(
      ['connections', 'message', 'path', 'msg/s', 'vs direct', 'CPU µs/msg', 'CPU × pipe', 'connections opened per 100 msgs'],
      floor.flatMap((f) =>
        FLOOR_SIDES.map((name) => {
          const x = f.sides[name];
          return [f.connections, kb(f.size), FLOOR_LABELS[name], x.perSecond, x.vsDirect, x.cpuUsPerMessage ?? '', x.multiple === null ? '' : `${x.multiple}x`, x.opensPer100];
        }),
      ),
    ) +
      `\n\n${rounds} round(s) of ${measureMs} ms per path, alternating; the relay is the one of table 2 (log level info, limits counted). ` +
      'CPU is the process in the path (pipe, minimal relay or relay); connections opened are counted by the provider over each path\'s runs. ' +
      'The minimal relay (bench/lib/minimal-relay.ts) parses, pipelines and passes replies like the relay, with no routing, limits, timeouts, pool or metrics; ' +
      'the retiring one also opens a new upstream connection (connect, STARTTLS, AUTH) every 100 messages, as the relay does with messages_per_connection: 100 ' +
      '(the contract\'s figure; the relay\'s default is 0, no retirement: docs/configuration.md).'
  );
}
