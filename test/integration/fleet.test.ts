// Two relay processes (the built CLI, as operators run it) sharing one real redis-server and one
// sandbox provider: they refresh each token once between them, count a daily limit exactly
// across both, and ride out Redis going away and coming back without losing a message.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_LIMITS } from '../../src/config/account-limits.js';
import { SandboxProvider, type SandboxAccount } from '../../src/sandbox/index.js';
import { sandboxRelayConfig, type SandboxRelayAccount } from '../../src/sandbox/relay-config.js';
import { buildDist, startServe, writeYaml, type ServeProcess } from '../helpers/cli.js';
import { drive, Ledger, resendPending, type LedgerEntry } from '../helpers/ledger.js';
import { RedisServer } from '../helpers/redis-server.js';
import { KEY_ENV } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

let redis: RedisServer;
let sandbox: SandboxProvider;
let dir: string;
const running = new Set<ServeProcess>();

beforeAll(async () => {
  buildDist();
  redis = await RedisServer.start();
  sandbox = await SandboxProvider.start();
  dir = mkdtempSync(join(tmpdir(), 'relay-fleet-'));
}, 150_000);

afterAll(async () => {
  await Promise.all([...running].map(stop));
  await sandbox?.stop();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function stop(p: ServeProcess): Promise<void> {
  running.delete(p);
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  await p.exited;
  clearTimeout(timer);
}

/** Two relays on one Redis (`prefix` keeps each test's keys apart), started at the same moment. */
async function fleet(name: string, accounts: SandboxRelayAccount[]): Promise<[ServeProcess, ServeProcess]> {
  const doc = sandboxRelayConfig(sandbox, accounts, {
    store: { url: redis.url, key_prefix: `${name}:` },
    http: { enabled: false },
    // A guarded relay answers at once; the whole test is bounded well below these.
    upstream: { acquire_timeout_ms: 10_000 },
  });
  const file = writeYaml(dir, doc, `${name}.yaml`);
  const both = await Promise.all([0, 1].map(() => startServe(['--config', file], { dist: true, env: KEY_ENV, cwd: dir })));
  for (const p of both) running.add(p);
  return both as [ServeProcess, ServeProcess];
}

const account = (email: string, kind: 'google' | 'microsoft', limits: Record<string, number | null> = {}): SandboxRelayAccount => {
  const a: SandboxAccount = sandbox.addAccount({ email, kind });
  return { account: a, senders: [email], extra: { limits: { ...NO_LIMITS, ...limits } } };
};

/** Half the messages through each relay, at once. */
async function split(relays: [ServeProcess, ServeProcess], entries: readonly LedgerEntry[], connections = 6): Promise<void> {
  const opts = { connections, timeLimitMs: 40_000 };
  await Promise.all([
    drive(relays[0].port, entries.filter((_, i) => i % 2 === 0), opts),
    drive(relays[1].port, entries.filter((_, i) => i % 2 === 1), opts),
  ]);
}

const firstCodes = (ledger: Ledger) => ledger.entries.map((e) => e.attempts[0]?.code ?? null);

describe('a fleet of two relays on one Redis', () => {
  it('1,000 messages split between them: the token endpoint sees exactly one refresh per account', async () => {
    const accounts = [account('g1@gmail.test', 'google'), account('g2@gmail.test', 'google'), account('m1@outlook.test', 'microsoft'), account('m2@outlook.test', 'microsoft')];
    const relays = await fleet('tokens', accounts);
    const emails = accounts.map((a) => a.account.email);
    const ledger = new Ledger('fleet-tokens', 1_000, emails, 300);
    await split(relays, ledger.entries);
    const c = ledger.report('fleet-tokens', sandbox.messages);
    expect(c.accepted).toBe(1_000);
    expect(ledger.problems(sandbox.messages)).toEqual([]);
    for (const email of emails) expect({ email, refreshes: sandbox.tokens.requests(email) }).toEqual({ email, refreshes: 1 });
    // Each relay logged whether it refreshed or took the other's token: together, once per account.
    const logs = relays.map((r) => r.output());
    for (const email of emails) {
      const refreshed = logs.filter((l) => new RegExp(`"event":"token_refresh"[^\\n]*"account":"${email}"[^\\n]*"ok":true`).test(l)).length;
      expect(refreshed).toBe(1);
    }
    await Promise.all(relays.map(stop));
  });

  it('a daily limit of 300 shared by both: exactly 300 of 1,000 accepted, the rest 451 4.7.1', async () => {
    const relays = await fleet('limit', [account('daily@gmail.test', 'google', { messages_per_day: 300 })]);
    const ledger = new Ledger('fleet-limit', 1_000, ['daily@gmail.test'], 300);
    await split(relays, ledger.entries, 8);
    const codes = firstCodes(ledger);
    expect(codes.filter((c) => c === 250)).toHaveLength(300);
    expect(codes.filter((c) => c === 451)).toHaveLength(700);
    const deferred = ledger.entries.filter((e) => e.attempts[0]?.code === 451);
    for (const e of deferred) expect(e.attempts[0]!.text).toMatch(/^4\.7\.1 Sending limit reached \(messages_per_day 300\), try again in \d+ s$/);
    expect(sandbox.messages.filter((m) => m.authUser === 'daily@gmail.test')).toHaveLength(300);
    await Promise.all(relays.map(stop));
  });

  it('Redis stopped mid-run: 4xx while it is away, nothing lost or doubled, service resumes when it returns', async () => {
    const relays = await fleet('outage', [account('outage@gmail.test', 'google', { messages_per_day: 100_000 })]);
    const ledger = new Ledger('fleet-outage', 400, ['outage@gmail.test'], 300);
    const accepted = () => ledger.entries.filter((e) => e.attempts.some((o) => o.code === 250)).length;
    const load = split(relays, ledger.entries, 4);
    const outage = (async () => {
      await until(() => accepted() >= 100, 20_000, '100 messages accepted');
      await redis.pause();
      await sleep(1_500);
      await redis.resume();
    })();
    await Promise.all([load, outage]);
    const c = ledger.report('fleet-outage', sandbox.messages);
    expect(c.refused).toBe(0);
    expect(c.lost).toBe(0);
    expect(c.deferred).toBeGreaterThan(0);
    for (const e of ledger.entries) {
      const first = e.attempts[0]!;
      if (first.code !== 250) expect(`${first.code} ${first.text}`).toMatch(/^451 4\.3\.0 /);
    }
    // Both relays are still up and said why; resent like an MTA's deferred queue, everything arrives once.
    for (const r of relays) {
      expect(r.child.exitCode).toBeNull();
      expect(r.output()).toContain('"event":"store_unreachable"');
    }
    const reconnects = (r: ServeProcess) => r.output().split('"event":"store_connected"').length - 1;
    await until(() => relays.every((r) => reconnects(r) >= 2), 10_000, 'both relays reconnected to Redis');
    await resendPending(relays[1].port, ledger, { connections: 4, timeLimitMs: 20_000 });
    expect(ledger.problems(sandbox.messages)).toEqual([]);
    expect(sandbox.messages.filter((m) => m.authUser === 'outage@gmail.test')).toHaveLength(400);
    await Promise.all(relays.map(stop));
  });
});
