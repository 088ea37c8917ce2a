// A stranger streaming input while its reply is pending (issue 18 item 2): the AUTH failure delay
// holds its reply back, and it sends 50 MB without a line end, or 50 MB of 16 KB lines. The relay
// (a child process of its own, so its RSS is the kernel's figure for it alone) must read no more
// than a line and a pipelined group of it, end the session, stay within 32 MB of its RSS at
// start, and keep answering a trusted MTA's NOOPs with a p99 under 100 ms; also with ten
// strangers at once. The trusted MTA connects from 127.0.0.2, the only trusted network here,
// so the strangers on 127.0.0.x are strangers.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RelayProcess } from '../../bench/lib/relay-process.js';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { sandboxRelayConfig } from '../../src/sandbox/relay-config.js';
import { ROOT } from '../helpers/cli.js';
import { sleep } from '../helpers/wait.js';

const SENDER = 'flooded@gmail.test';
const ATTACK_BYTES = 50 * 2 ** 20;
/** However the relay behaves, no attack writes for longer than this. */
const ATTACK_BOUND_MS = 25_000;
const FAILURE_DELAY_MS = 2_000;
const RSS_SLACK = 32 * 2 ** 20;

type Shape = 'no line end' | '16 KB lines';

/** A raw client: the text it received, and when the relay closed its side. */
function open(port: number, localAddress: string): Promise<{ socket: Socket; text: () => string; ended: () => boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    let text = '';
    let ended = false;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('end', () => (ended = true));
    socket.on('close', () => (ended = true));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, text: () => text, ended: () => ended }));
    socket.once('error', reject);
  });
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(5);
  return cond();
}

/** EHLO, a wrong password (its 535 is held back by the failure delay), then the flood. Returns how long until the relay ended the session. */
async function attack(port: number, from: string, shape: Shape): Promise<{ endedMs: number; sent: number }> {
  const c = await open(port, from);
  await waitFor(() => c.text().includes('220 '), 10_000);
  c.socket.write('EHLO stranger.test\r\n');
  await waitFor(() => /\r\n250 /.test(c.text()), 10_000);
  c.socket.write(`AUTH PLAIN ${Buffer.from('\0nobody@gmail.test\0wrong').toString('base64')}\r\n`);
  await sleep(50);
  const chunk = shape === 'no line end' ? Buffer.alloc(64 * 1024, 0x41) : Buffer.from(`${'X'.repeat(16 * 1024 - 2)}\r\n`.repeat(4));
  const started = Date.now();
  let sent = 0;
  while (!c.ended() && !c.socket.destroyed && sent < ATTACK_BYTES && Date.now() - started < ATTACK_BOUND_MS) {
    sent += chunk.length;
    await new Promise((r) => setImmediate(r)); // lets this client see the relay's close
    // Waits while the relay is not reading (the kernel's buffers and this socket's are full).
    if (!c.socket.write(chunk)) await waitFor(() => !c.socket.writableNeedDrain || c.ended(), ATTACK_BOUND_MS);
  }
  await waitFor(c.ended, ATTACK_BOUND_MS);
  const endedMs = c.ended() ? Date.now() - started : Infinity;
  c.socket.destroy();
  return { endedMs, sent };
}

/** A trusted MTA's NOOPs, one after the other, until `stop`: each reply's time in ms. */
async function noops(port: number, stop: () => boolean): Promise<number[]> {
  const c = await open(port, '127.0.0.2');
  await waitFor(() => c.text().includes('220 '), 10_000);
  c.socket.write('EHLO mta.test\r\n');
  await waitFor(() => /\r\n250 /.test(c.text()), 10_000);
  const times: number[] = [];
  let seen = (c.text().match(/\r\n/g) ?? []).length;
  while (!stop() && !c.ended()) {
    const t = performance.now();
    c.socket.write('NOOP\r\n');
    const ok = await waitFor(() => (c.text().match(/\r\n/g) ?? []).length > seen, 10_000);
    times.push(ok ? performance.now() - t : Infinity);
    seen++;
    // Often enough that one scheduling hiccup of a loaded machine is not the p99 by itself.
    await sleep(2);
  }
  c.socket.end('QUIT\r\n');
  return times;
}

const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;

describe('a stranger flooding its input while a reply is pending', () => {
  let sandbox: SandboxProvider;
  let relay: RelayProcess;
  let dir: string;

  beforeAll(async () => {
    sandbox = await SandboxProvider.start();
    dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-flood-'));
    const account = sandbox.addAccount({ email: SENDER, kind: 'google' });
    const config = sandboxRelayConfig(sandbox, [{ account, senders: [SENDER] }], {
      inbound: { trusted_networks: ['127.0.0.2/32'], auth_failure_delay_ms: FAILURE_DELAY_MS },
    });
    relay = await RelayProcess.start({ config, dir, root: ROOT, entry: 'source', logLevel: 'warn' });
  }, 60_000);
  afterAll(async () => {
    await relay?.stop();
    await sandbox?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the attackers beside a trusted MTA; returns what each saw and the relay's RSS growth. */
  async function underAttack(attackers: Array<{ from: string; shape: Shape }>) {
    let done = false;
    const mta = noops(relay.smtpPort, () => done);
    await sleep(300); // the MTA's session is open and its NOOPs flowing
    const start = relay.memory().rss;
    let peak = start;
    const sampler = setInterval(() => (peak = Math.max(peak, relay.memory().rss)), 20);
    const results = await Promise.all(attackers.map((a) => attack(relay.smtpPort, a.from, a.shape)));
    await sleep(200);
    clearInterval(sampler);
    done = true;
    const times = await mta;
    return { results, growth: peak - start, times };
  }

  function check({ results, growth, times }: Awaited<ReturnType<typeof underAttack>>): void {
    console.log(`[flood] load ${loadavg()[0]!.toFixed(1)}; RSS +${(growth / 2 ** 20).toFixed(1)} MB; MTA ${times.length} NOOPs, p99 ${p99(times).toFixed(1)} ms; attackers ${results.map((r) => `${(r.sent / 2 ** 20).toFixed(1)} MB in ${r.endedMs} ms`).join(', ')}`);
    // Every session was ended by the relay, before its attacker had sent its 50 MB.
    for (const r of results) {
      expect(r.endedMs).toBeLessThan(ATTACK_BOUND_MS);
      expect(r.sent).toBeLessThan(ATTACK_BYTES);
    }
    expect(growth).toBeLessThan(RSS_SLACK);
    expect(times.length).toBeGreaterThan(10);
    expect(p99(times)).toBeLessThan(100);
  }

  it('one stranger: 50 MB without a line end, then 50 MB in 16 KB lines', async () => {
    check(await underAttack([{ from: '127.0.0.3', shape: 'no line end' }]));
    check(await underAttack([{ from: '127.0.0.4', shape: '16 KB lines' }]));
  }, 120_000);

  it('ten strangers at once, from 127.0.0.10-19, each with both shapes', async () => {
    const attackers = Array.from({ length: 10 }, (_, i) => `127.0.0.${10 + i}`).flatMap((from) => [
      { from, shape: 'no line end' as Shape },
      { from, shape: '16 KB lines' as Shape },
    ]);
    check(await underAttack(attackers));
  }, 120_000);
});
