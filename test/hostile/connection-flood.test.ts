// 2,000 concurrent connections against max_connections 1,000: the first 1,000 are served, the
// excess gets 421 at once, the relay goes on answering (SMTP and its admin port) with bounded
// memory, serves new clients as soon as sessions leave, and gives the memory back afterwards.
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, stillDelivers, type Stack } from '../helpers/stack.js';
import { openFilesLimit, settledHeapMb } from '../helpers/memory.js';
import { until } from '../helpers/wait.js';

const SENDER = 'flood@gmail.test';
// Each held connection costs two descriptors here (client and server side, one process). Where
// the limit does not allow the real numbers, the same proportion is tested smaller.
const FULL = (openFilesLimit() ?? 0) >= 6_000;
const MAX = FULL ? 1_000 : 100;
const CLIENTS = 2 * MAX;
const BATCH = 200;

/** Opens a connection and resolves with it and the first reply line's code (220 or 421), or null if refused. */
function knock(port: number): Promise<{ socket: Socket; code: number | null }> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let buffered = '';
    const done = (code: number | null) => {
      socket.removeAllListeners('data');
      resolve({ socket, code });
    };
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1');
      if (buffered.includes('\r\n')) done(Number(buffered.slice(0, 3)));
    });
    socket.on('error', () => done(null));
    socket.on('close', () => done(null));
  });
}

describe(`connection flood: ${CLIENTS} clients against max_connections ${MAX}`, () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: SENDER, kind: 'google', senders: [SENDER] }],
      overrides: { inbound: { max_connections: MAX, idle_timeout_ms: 120_000 } },
    });
  });
  afterAll(() => stack.stop());

  it('the excess gets 421, the relay keeps serving with bounded memory and gives it back', async () => {
    console.log(`[flood] ${CLIENTS} clients against max_connections ${MAX}${FULL ? '' : ' (scaled down: open files limit too low)'}`);
    const baseline = await settledHeapMb();
    const sockets: Socket[] = [];
    const codes = new Map<number | null, number>();
    try {
      for (let i = 0; i < CLIENTS; i += BATCH) {
        const batch = await Promise.all(Array.from({ length: Math.min(BATCH, CLIENTS - i) }, () => knock(stack.port)));
        for (const { socket, code } of batch) {
          codes.set(code, (codes.get(code) ?? 0) + 1);
          sockets.push(socket);
        }
      }
      const held = await settledHeapMb();
      console.log(`[flood] replies ${JSON.stringify(Object.fromEntries(codes))}; heap ${baseline.toFixed(1)} MB → ${held.toFixed(1)} MB with ${MAX} sessions held`);
      expect(codes.get(220)).toBe(MAX);
      expect(codes.get(421)).toBe(CLIENTS - MAX);
      expect(stack.app.inbound.sessionCount).toBe(MAX);
      // Bounded: well under 100 KB per held session.
      expect(held - baseline).toBeLessThan((MAX * 100) / 1024);

      // Still answering: a new client is told to come back (not left hanging), the admin port answers.
      expect((await knock(stack.port)).code).toBe(421);
      const health = await fetch(`http://127.0.0.1:${stack.app.adminPort}/healthz`);
      expect(health.status).toBe(200);

      // Room again as soon as sessions leave: a real message goes through.
      for (const s of sockets.splice(0, MAX / 2)) s.destroy();
      await until(() => stack.app.inbound.sessionCount <= MAX / 2, 15_000, 'sessions gone');
      expect(await stillDelivers(stack, SENDER, 'after-flood')).toBe(true);
    } finally {
      for (const s of sockets) s.destroy();
    }
    await until(() => stack.app.inbound.sessionCount === 0, 10_000, 'all sessions gone');
    const after = await settledHeapMb();
    console.log(`[flood] heap after: ${after.toFixed(1)} MB`);
    expect(after - baseline).toBeLessThan(20);
  });
});
