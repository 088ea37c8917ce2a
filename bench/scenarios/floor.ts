// The platform's floor (lib/byte-pipe.ts): the same closed-loop load through the relay, through
// a bare byte pipe to a pre-authenticated upstream and through the minimal faithful relay
// (lib/minimal-relay.ts), in alternating order round after round, each process's CPU read from
// /proc over the measured window. The relay's CPU per message divided by the pipe's says how
// much of the relay's cost is its own work; the minimal relay's, how much of that any relay
// that parses and answers like this one must pay.
import type { BenchContext } from '../lib/context.js';
import { BytePipeProcess } from '../lib/byte-pipe.js';
import { prepareMessage, type Target } from '../lib/load-client.js';
import { openConnections, runLoad, type LoadResult } from '../lib/load.js';
import type { RelayProcess } from '../lib/relay-process.js';
import { median, round } from '../lib/stats.js';

export interface FloorRow {
  connections: number;
  size: number;
  pipePerSecond: number;
  relayPerSecond: number;
  pipeCpuUsPerMessage: number;
  relayCpuUsPerMessage: number;
  minimalPerSecond: number;
  minimalCpuUsPerMessage: number;
  /** relayCpuUsPerMessage / pipeCpuUsPerMessage. */
  multiple: number;
  /** minimalCpuUsPerMessage / pipeCpuUsPerMessage. */
  minimalMultiple: number;
  rounds: number;
}

export const FLOOR_CONNECTIONS = [10, 50];
const SIZE = 2 * 1024;

export async function floorScenario(ctx: BenchContext, relay: RelayProcess, from: string): Promise<FloorRow[]> {
  const token = await ctx.sandbox.call('issueAccessToken', { email: from });
  const up = { ...ctx.smtp, ca: ctx.ca.toString(), user: from, token };
  const pipe = await BytePipeProcess.start(ctx.root, up);
  const minimal = await BytePipeProcess.start(ctx.root, up, 'minimal');
  const sides = {
    pipe: { target: { host: '127.0.0.1', port: pipe.port } as Target, cpu: () => pipe.cpuSeconds() },
    minimal: { target: { host: '127.0.0.1', port: minimal.port } as Target, cpu: () => minimal.cpuSeconds() },
    relay: { target: ctx.relayTarget(relay), cpu: () => relay.cpuSeconds() },
  };
  const message = prepareMessage(from, 'rcpt@example.net', SIZE, 'floor');
  const rows: FloorRow[] = [];
  try {
    for (const connections of FLOOR_CONNECTIONS) {
      ctx.progress(`floor: ${connections} connections, 2 KB, relay vs byte pipe vs minimal relay`);
      const conns = {
        pipe: await openConnections(sides.pipe.target, connections),
        minimal: await openConnections(sides.minimal.target, connections),
        relay: await openConnections(sides.relay.target, connections),
      };
      const runs = { pipe: [] as LoadResult[], minimal: [] as LoadResult[], relay: [] as LoadResult[] };
      try {
        for (let r = 0; r < ctx.scale.rounds; r++) {
          for (const side of r % 2 === 0 ? (['pipe', 'minimal', 'relay'] as const) : (['relay', 'minimal', 'pipe'] as const)) {
            runs[side].push(
              await runLoad(
                { target: sides[side].target, connections, message, warmupMs: ctx.scale.warmupMs, measureMs: ctx.scale.measureMs, sample: sides[side].cpu },
                conns[side],
              ),
            );
          }
        }
      } finally {
        for (const c of [...conns.pipe, ...conns.minimal, ...conns.relay]) c.close();
      }
      const us = (xs: LoadResult[]) => (xs.reduce((s, x) => s + x.sampled, 0) / xs.reduce((n, x) => n + x.messages, 0)) * 1e6;
      rows.push({
        connections,
        size: SIZE,
        pipePerSecond: round(median(runs.pipe.map((x) => x.perSecond)), 0),
        relayPerSecond: round(median(runs.relay.map((x) => x.perSecond)), 0),
        pipeCpuUsPerMessage: round(us(runs.pipe), 0),
        relayCpuUsPerMessage: round(us(runs.relay), 0),
        minimalPerSecond: round(median(runs.minimal.map((x) => x.perSecond)), 0),
        minimalCpuUsPerMessage: round(us(runs.minimal), 0),
        multiple: round(us(runs.relay) / us(runs.pipe), 2),
        minimalMultiple: round(us(runs.minimal) / us(runs.pipe), 2),
        rounds: ctx.scale.rounds,
      });
    }
  } finally {
    await pipe.stop();
    await minimal.stop();
  }
  return rows;
}
