// The platform's floor (lib/byte-pipe.ts): the same closed-loop load straight to the provider,
// through a bare byte pipe to a pre-authenticated upstream, through the minimal faithful relay
// (lib/minimal-relay.ts), through that minimal relay retiring its upstream connection every 100
// messages (as the relay does with messages_per_connection: 100, the contract's figure; the
// relay's own default is 0), and through the relay, in alternating order round after round,
// each process's CPU read from /proc over the measured window. The relay's CPU per message
// divided by the pipe's says how much of the relay's cost is its own work; the minimal relays',
// how much of that any relay that parses and answers like this one must pay, without and with
// connection retirement; the pipe's rate against the direct one, the most any relay's
// throughput can be on this machine.
import type { BenchContext } from '../lib/context.js';
import { BytePipeProcess, type PipeKind } from '../lib/byte-pipe.js';
import { prepareMessage, type LoadConnection, type Target } from '../lib/load-client.js';
import { openConnections, runLoad, type LoadResult } from '../lib/load.js';
import type { RelayProcess } from '../lib/relay-process.js';
import { median, round } from '../lib/stats.js';

/** What one side (direct, pipe, minimal relay, retiring minimal relay, relay) measured. */
export interface FloorSide {
  perSecond: number;
  /** perSecond / direct's (medians over rounds). */
  vsDirect: number;
  /** The process in the path's CPU per message; null for direct (nothing in the path). */
  cpuUsPerMessage: number | null;
  /** cpuUsPerMessage / the pipe's. */
  multiple: number | null;
  /** Upstream connections the provider saw opened per 100 messages (the retiring sides' rate). */
  opensPer100: number;
}

export type FloorSideName = 'direct' | 'pipe' | 'minimal' | 'retiring' | 'relay';

export interface FloorRow {
  connections: number;
  size: number;
  sides: Record<FloorSideName, FloorSide>;
  rounds: number;
}

export const FLOOR_CONNECTIONS = [10, 50];
const SIZE = 2 * 1024;
export const FLOOR_SIDES: readonly FloorSideName[] = ['direct', 'pipe', 'minimal', 'retiring', 'relay'];
const PIPES: Record<Exclude<FloorSideName, 'direct' | 'relay'>, PipeKind> = { pipe: 'pipe', minimal: 'minimal', retiring: 'minimal-retiring' };

export async function floorScenario(ctx: BenchContext, relay: RelayProcess, from: string): Promise<FloorRow[]> {
  const token = await ctx.sandbox.call('issueAccessToken', { email: from });
  const up = { ...ctx.smtp, ca: ctx.ca.toString(), user: from, token };
  const pipes: BytePipeProcess[] = [];
  const sides = {} as Record<FloorSideName, { target: Target; cpu: (() => number) | null }>;
  const message = prepareMessage(from, 'rcpt@example.net', SIZE, 'floor');
  const rows: FloorRow[] = [];
  try {
    for (const [name, kind] of Object.entries(PIPES) as Array<[FloorSideName, PipeKind]>) {
      const p = await BytePipeProcess.start(ctx.root, up, kind);
      pipes.push(p);
      sides[name] = { target: { host: '127.0.0.1', port: p.port }, cpu: () => p.cpuSeconds() };
    }
    sides.relay = { target: ctx.relayTarget(relay), cpu: () => relay.cpuSeconds() };
    sides.direct = { target: await ctx.directTarget(from), cpu: null };
    for (const connections of FLOOR_CONNECTIONS) {
      ctx.progress(`floor: ${connections} connections, 2 KB, relay vs byte pipe vs minimal relays`);
      const conns = {} as Record<FloorSideName, LoadConnection[]>;
      const runs = {} as Record<FloorSideName, LoadResult[]>;
      /** Connections the provider saw opened, and messages it accepted, during each side's runs (warm-up included). */
      const opened = {} as Record<FloorSideName, number>;
      const accepted = {} as Record<FloorSideName, number>;
      for (const name of FLOOR_SIDES) {
        conns[name] = await openConnections(sides[name].target, connections);
        runs[name] = [];
        opened[name] = 0;
        accepted[name] = 0;
      }
      try {
        for (let r = 0; r < ctx.scale.rounds; r++) {
          for (const name of r % 2 === 0 ? FLOOR_SIDES : [...FLOOR_SIDES].reverse()) {
            const { target, cpu } = sides[name];
            const before = await ctx.sandbox.call('counters', {});
            runs[name].push(await runLoad({ target, connections, message, warmupMs: ctx.scale.warmupMs, measureMs: ctx.scale.measureMs, ...(cpu ? { sample: cpu } : {}) }, conns[name]));
            const after = await ctx.sandbox.call('counters', {});
            opened[name] += after.connectionsOpened - before.connectionsOpened;
            accepted[name] += after.accepted - before.accepted;
          }
        }
      } finally {
        for (const name of FLOOR_SIDES) for (const c of conns[name]) c.close();
      }
      const us = (xs: LoadResult[]) => (xs.reduce((s, x) => s + x.sampled, 0) / xs.reduce((n, x) => n + x.messages, 0)) * 1e6;
      const floor = us(runs.pipe);
      const rate = (name: FloorSideName) => median(runs[name].map((x) => x.perSecond));
      const measured = Object.fromEntries(
        FLOOR_SIDES.map((name) => [
          name,
          {
            perSecond: round(rate(name), 0),
            vsDirect: round(rate(name) / rate('direct'), 2),
            cpuUsPerMessage: sides[name].cpu ? round(us(runs[name]), 0) : null,
            multiple: sides[name].cpu ? round(us(runs[name]) / floor, 2) : null,
            opensPer100: round((opened[name] * 100) / Math.max(1, accepted[name]), 2),
          },
        ]),
      ) as Record<FloorSideName, FloorSide>;
      rows.push({ connections, size: SIZE, sides: measured, rounds: ctx.scale.rounds });
    }
  } finally {
    for (const p of pipes) await p.stop();
  }
  return rows;
}
