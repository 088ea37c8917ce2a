// `npx tsx bench/attack-cost.ts`: the relay's CPU per megabyte a stranger sends it as junk
// (docs/benchmarks.md, "What an attacking megabyte costs"). Strangers on 127.0.0.x (none trusted)
// connect, say EHLO, send a wrong password (its 535 held back by the failure delay) and stream
// junk until the relay ends the session, then reconnect, for a few seconds per shape: no line end
// at all, or 16 KB lines. The relay is the real CLI in a child process; its CPU seconds come from
// /proc, the megabytes are what the strangers' sockets handed to the kernel.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SandboxProvider } from '../src/sandbox/index.js';
import { sandboxRelayConfig } from '../src/sandbox/relay-config.js';
import { RelayProcess } from './lib/relay-process.js';

const ROUND_MS = Number(process.env.ATTACK_MS ?? 5_000);
const STRANGERS = 4;
let next = 1;
const root = fileURLToPath(new URL('..', import.meta.url));

/** One session: returns the bytes the kernel took before the relay ended it. */
function session(port: number, from: string, junk: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, localAddress: from });
    let phase = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      resolve(Math.max(0, s.bytesWritten - s.writableLength));
      s.destroy();
    };
    const pour = () => {
      while (!done && s.write(junk));
    };
    s.on('data', (d) => {
      const t = d.toString('latin1');
      if (phase === 0 && t.startsWith('220')) {
        phase = 1;
        s.write('EHLO stranger.test\r\n');
      } else if (phase === 1 && /^250 /m.test(t)) {
        phase = 2;
        s.write(`AUTH PLAIN ${Buffer.from('\0nobody@gmail.test\0wrong').toString('base64')}\r\n`);
        pour();
      }
    });
    s.on('drain', pour);
    s.on('end', finish);
    s.on('close', finish);
    s.on('error', finish);
  });
}

async function round(relay: RelayProcess, junk: Buffer): Promise<{ mb: number; cpuMs: number; sessions: number }> {
  const cpu0 = relay.cpuSeconds();
  const end = Date.now() + ROUND_MS;
  let bytes = 0;
  let sessions = 0;
  await Promise.all(
    Array.from({ length: STRANGERS }, async () => {
      while (Date.now() < end) {
        // A fresh address each time, so the failure delay stays the first one's.
        const n = next++;
        bytes += await session(relay.smtpPort, `127.1.${n >> 8}.${n & 255}`, junk);
        sessions++;
      }
    }),
  );
  return { mb: bytes / 2 ** 20, cpuMs: (relay.cpuSeconds() - cpu0) * 1000, sessions };
}

const sandbox = await SandboxProvider.start();
const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-attack-'));
const account = sandbox.addAccount({ email: 'attacked@gmail.test', kind: 'google' });
const config = sandboxRelayConfig(sandbox, [{ account }], {
  inbound: { trusted_networks: ['127.0.0.2/32'], auth_failure_delay_ms: 200, auth_failures_before_lockout: 1_000_000 },
});
const relay = await RelayProcess.start({ config, dir, root, entry: 'source', logLevel: 'warn' });
try {
  console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${STRANGERS} strangers, ${ROUND_MS} ms per shape`);
  console.log('| shape | MB taken | sessions | relay CPU ms | relay CPU ms per MB |');
  console.log('|---|---|---|---|---|');
  const shapes: Array<[string, Buffer]> = [
    ['no line end', Buffer.alloc(64 * 1024, 0x41)],
    ['16 KB lines', Buffer.from(`${'X'.repeat(16 * 1024 - 2)}\r\n`.repeat(4))],
  ];
  for (const [name, junk] of shapes) {
    const r = await round(relay, junk);
    console.log(`| ${name} | ${r.mb.toFixed(1)} | ${r.sessions} | ${r.cpuMs.toFixed(0)} | ${(r.cpuMs / r.mb).toFixed(2)} |`);
  }
} finally {
  await relay.stop();
  await sandbox.stop();
  rmSync(dir, { recursive: true, force: true });
}
