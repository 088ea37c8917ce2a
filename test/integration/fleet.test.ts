// Relay processes (the built CLI, as operators run it) sharing one real redis-server and one
// sandbox provider: they refresh each token once between them, count a daily limit exactly
// across both, and ride out Redis going away and coming back without losing a message. Four of
// them keep every mailbox's max_connections for the fleet while one is killed mid-run, two keep
// the Graph and Gmail API mailboxes' caps for the fleet, and an account added through one is used
// by another within 2 s.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_LIMITS } from '../../src/config/account-limits.js';
import { SandboxProvider, type SandboxAccount } from '../../src/sandbox/index.js';
import { sandboxRelayConfig, type SandboxRelayAccount } from '../../src/sandbox/relay-config.js';
import { buildDist, freePort, startServe, writeYaml, type ServeProcess } from '../helpers/cli.js';
import { drive, Ledger, resendPending, type LedgerEntry } from '../helpers/ledger.js';
import { fleetRun } from '../helpers/fleet-caps.js';
import { RedisServer } from '../helpers/redis-server.js';
import { SentinelGroup } from '../helpers/redis-sentinel.js';
import { KEY_ENV } from '../helpers/stack.js';
import { RawSmtp, sendOnce } from '../helpers/smtp-client.js';
import { rawMessage } from '../helpers/stack.js';
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

/** Relays on one Redis (`prefix` keeps each test's keys apart), started at the same moment. */
async function fleet(name: string, accounts: SandboxRelayAccount[]): Promise<[ServeProcess, ServeProcess]>;
async function fleet(name: string, accounts: SandboxRelayAccount[], size: number, extra?: Record<string, unknown>): Promise<ServeProcess[]>;
async function fleet(name: string, accounts: SandboxRelayAccount[], size = 2, extra: Record<string, unknown> = {}): Promise<ServeProcess[]> {
  const doc = sandboxRelayConfig(sandbox, accounts, {
    store: { url: redis.url, key_prefix: `${name}:` },
    http: { enabled: false },
    // A guarded relay answers at once; the whole test is bounded well below these.
    upstream: { acquire_timeout_ms: 10_000 },
    ...extra,
  });
  const file = writeYaml(dir, doc, `${name}.yaml`);
  const all = await Promise.all(Array.from({ length: size }, () => startServe(['--config', file], { dist: true, env: KEY_ENV, cwd: dir })));
  for (const p of all) running.add(p);
  return all;
}

const account = (email: string, kind: 'google' | 'microsoft', limits: Record<string, number | null> = {}, extra: Record<string, unknown> = {}): SandboxRelayAccount => {
  const a: SandboxAccount = sandbox.addAccount({ email, kind });
  return { account: a, senders: [email], extra: { limits: { ...NO_LIMITS, ...limits }, ...extra } };
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

describe('a fleet of four relays: max_connections holds for the fleet', () => {
  const SLOT_TTL_MS = 4_500;

  it('2,000 messages over 4 x 4 MTA connections, one relay kill -9ed mid-run: never more than the cap per mailbox, its slots reused within the TTL, every accepted message delivered once', async () => {
    // The run is shared with the bench's big version (bench/scenarios/fleet.ts).
    const relays: ServeProcess[] = [];
    const r = await fleetRun({
      sandbox,
      redisUrl: redis.url,
      dir,
      name: 'caps',
      relays: 4,
      mailboxes: 20,
      messages: 2_000,
      connectionsPerRelay: 4,
      slotTtlMs: SLOT_TTL_MS,
      acquireTimeoutMs: 15_000,
      timeLimitMs: 45_000,
      started: (p) => {
        running.add(p);
        relays.push(p);
      },
    }).finally(() => Promise.all(relays.map(stop)));
    expect(r.doomedInstance).toMatch(/^[0-9a-f]{12}$/);
    // The doomed relay held the hot mailbox's three slots.
    expect(r.hotHoldersBeforeKill).toHaveLength(3);
    for (const h of r.hotHoldersBeforeKill) expect(h.startsWith(`${r.doomedInstance}:`)).toBe(true);

    // The dead relay's slots lapsed by themselves, no sooner than its last renewal allowed and
    // within the TTL: the first hot message through a survivor was accepted in that window.
    console.log(`[fleet] hot mailbox: first message through a survivor ${r.slotsReusedMs} ms after the kill (slot TTL ${SLOT_TTL_MS} ms)`);
    expect(r.slotsReusedMs).toBeGreaterThanOrEqual((SLOT_TTL_MS * 2) / 3 - 300);
    expect(r.slotsReusedMs).toBeLessThanOrEqual(SLOT_TTL_MS + 2_500);
    expect(r.deadSlotsAfterTtl).toEqual([]);

    expect(r.firstAttempts.refused).toBe(0);
    expect(r.firstAttempts.duplicated).toBe(0);
    expect(r.problems).toEqual([]);
    expect(r.refusals).toEqual([]);
    // Twice only where the kill cut the MTA's session after its final dot (RFC 1047).
    expect(r.delivered.never).toBe(0);
    expect(r.delivered.twice).toBe(r.delivered.afterSilence);
    expect(r.delivered.once + r.delivered.twice).toBe(r.messages);

    // The provider's view, at every login and close: never more than the cap, and the cap was reached.
    console.log(`[fleet] peak authenticated connections per mailbox: ${JSON.stringify(Object.fromEntries(r.peaks.map((p) => [p.email, p.peak])))}`);
    for (const p of r.peaks) {
      expect({ email: p.email, peak: p.peak <= p.cap }).toEqual({ email: p.email, peak: true });
      expect(p.peak).toBeGreaterThan(0);
    }
    expect(r.peaks.find((p) => p.email === 'caps-hot@outlook.test')?.peak).toBe(3);
  }, 150_000);
});

describe('a fleet of two relays: the API upstreams\' max_connections holds for the fleet', () => {
  it('Graph and Gmail API mailboxes sent to through both at once: never more requests in flight per mailbox than its cap, every message delivered once', async () => {
    // Answers held back 25 ms, so a mailbox's requests overlap: with a cap per instance each
    // mailbox would see up to twice its cap (two relays).
    sandbox.graph.latencyMs = 25;
    sandbox.gmail.latencyMs = 25;
    const CAP = { graph: 3, gmail_api: 5 } as const;
    const api = (email: string, upstream: keyof typeof CAP) =>
      account(email, upstream === 'graph' ? 'microsoft' : 'google', {}, { upstream, max_connections: CAP[upstream] });
    const boxes = [api('api1@outlook.test', 'graph'), api('api2@outlook.test', 'graph'), api('api3@gmail.test', 'gmail_api'), api('api4@gmail.test', 'gmail_api')];
    const emails = boxes.map((b) => b.account.email);
    const relays = await fleet('api-caps', boxes, 2, { upstream: { acquire_timeout_ms: 15_000 } });
    try {
      const ledger = new Ledger('fleet-api', 480, emails, 300);
      // Every mailbox through both relays (messages go to the relays in runs of four, one per
      // mailbox), 12 MTA connections each: each mailbox has more messages waiting than its cap on each.
      const opts = { connections: 12, timeLimitMs: 40_000 };
      await Promise.all(relays.map((r, k) => drive(r.port, ledger.entries.filter((_, i) => Math.floor(i / emails.length) % 2 === k), opts)));
      await resendPending(relays[0]!.port, ledger, { connections: 6, timeLimitMs: 30_000 });
      const delivered = [...sandbox.graph.messages, ...sandbox.gmail.messages];
      const c = ledger.report('fleet-api', delivered);
      expect(c.refused).toBe(0);
      expect(ledger.problems(delivered)).toEqual([]);
      for (const r of relays) expect(r.output()).not.toContain('"event":"slot_lost"');
      const seen = new Map([...sandbox.graph.requestConcurrency(), ...sandbox.gmail.requestConcurrency()]);
      const peaks = Object.fromEntries(emails.map((e) => [e, seen.get(e)?.peak ?? 0]));
      console.log(`[fleet] peak API requests in flight per mailbox: ${JSON.stringify(peaks)}`);
      for (const b of boxes) {
        const cap = CAP[b.extra!.upstream as keyof typeof CAP];
        expect({ email: b.account.email, peak: peaks[b.account.email]! <= cap }).toEqual({ email: b.account.email, peak: true });
        expect(peaks[b.account.email]).toBeGreaterThan(1);
      }
      // The load was enough to reach the cap: Graph's three requests a message keep it there.
      expect(peaks['api1@outlook.test']).toBe(CAP.graph);
    } finally {
      sandbox.graph.latencyMs = 0;
      sandbox.gmail.latencyMs = 0;
      await Promise.all(relays.map(stop));
    }
  }, 120_000);
});

describe('live account changes across the fleet', () => {
  it('an account added through instance A is used by instance B within 2 s, and removed likewise; no reload, no session dropped', async () => {
    const base = account('base@gmail.test', 'google');
    const doc = sandboxRelayConfig(sandbox, [base], { store: { url: redis.url, key_prefix: 'live:' }, upstream: { acquire_timeout_ms: 10_000 } });
    const TOKEN = 'fleet-live-test-bearer-token';
    const adminPort = await freePort();
    const https = [{ host: '127.0.0.1', port: adminPort, bearer_token: TOKEN }, { enabled: false }];
    const files = https.map((http, i) => writeYaml(dir, { ...doc, http }, `live-${i}.yaml`));
    const [a, b] = await Promise.all(files.map((f) => startServe(['--config', f], { dist: true, env: KEY_ENV, cwd: dir })));
    running.add(a!);
    running.add(b!);
    try {
      // A session on B that stays open through the change: it must not be dropped.
      const { client: held } = await RawSmtp.connect(b!.port);
      expect((await held.cmd('EHLO mta.test')).code).toBe(250);

      const added = sandbox.addAccount({ email: 'added@outlook.test', kind: 'microsoft' });
      const res = await fetch(`http://127.0.0.1:${adminPort}/api/accounts?verify=false`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify({ email: added.email, provider: 'microsoft', client_id: added.clientId, client_secret: added.clientSecret, refresh_token: added.refreshToken, senders: [added.email] }),
      });
      expect(res.status, await res.clone().text()).toBe(201);
      const savedAt = Date.now();
      let reply = '';
      while (Date.now() - savedAt < 2_000) {
        reply = await sendOnce(b!.port, added.email, ['r@example.net'], rawMessage(added.email, ['r@example.net'], `live-${Date.now()}`));
        if (reply.startsWith('250')) break;
        await sleep(100);
      }
      console.log(`[fleet] added on A, accepted through B ${Date.now() - savedAt} ms after the save`);
      expect(reply, b!.output().split('\n').filter((l) => l.includes(added.email)).join('\n')).toMatch(/^250 /);
      expect(sandbox.messages.filter((m) => m.authUser === added.email)).toHaveLength(1);
      // The session held open on B lived through the change and still sends.
      expect((await held.cmd('MAIL FROM:<base@gmail.test>')).code).toBe(250);
      await held.cmd('RSET');
      held.close();
      // Removed through A: B stops sending for it within 2 s as well.
      const del = await fetch(`http://127.0.0.1:${adminPort}/api/accounts/${added.email}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
      expect(del.status).toBeLessThan(300);
      const removedAt = Date.now();
      let after = '';
      while (Date.now() - removedAt < 2_000) {
        after = await sendOnce(b!.port, added.email, ['r@example.net'], rawMessage(added.email, ['r@example.net'], `live-gone-${Date.now()}`));
        if (!after.startsWith('250')) break;
        await sleep(100);
      }
      expect(after).toMatch(/^550 5\.7\.1 /);
      // B learnt it without a reload (its log is written in batches: wait for the line).
      await until(() => b!.output().includes('"event":"accounts_followed"'), 5_000, 'B logged accounts_followed');
      expect(b!.output()).not.toContain('"event":"reloaded"');
    } finally {
      await Promise.all([a!, b!].map(stop));
    }
  }, 90_000);
});

describe('a fleet on a Redis Sentinel group', () => {
  it('the primary killed mid-run: only 4xx while the sentinels fail over, then sending resumes; every accepted message once; one token refresh per account', async () => {
    const group = await SentinelGroup.start();
    const doc = (accounts: SandboxRelayAccount[]) =>
      sandboxRelayConfig(sandbox, accounts, { store: { url: group.url, key_prefix: 'sentinel:' }, http: { enabled: false }, upstream: { acquire_timeout_ms: 10_000 } });
    const accounts = [
      account('s1@gmail.test', 'google', { messages_per_day: 100_000 }),
      account('s2@gmail.test', 'google', { messages_per_day: 100_000 }),
      account('s3@outlook.test', 'microsoft', { messages_per_day: 100_000 }, { max_connections: 3 }),
      account('s4@outlook.test', 'microsoft', { messages_per_day: 100_000 }, { max_connections: 3 }),
    ];
    const emails = accounts.map((a) => a.account.email);
    const file = writeYaml(dir, doc(accounts), 'sentinel.yaml');
    const relays = (await Promise.all([0, 1].map(() => startServe(['--config', file], { dist: true, env: KEY_ENV, cwd: dir })))) as [ServeProcess, ServeProcess];
    for (const r of relays) running.add(r);
    try {
      const before = await group.currentPrimaryPort();
      expect(before).toBe(group.primary.port);
      const ledger = new Ledger('fleet-sentinel', 1_200, emails, 300);
      const accepted = () => ledger.entries.filter((e) => e.attempts.some((o) => o.code === 250)).length;
      let killedAt = 0;
      // Paced like a steady stream (40 messages, a pause, ...) so the run spans the failover. Once
      // the primary is dead every message is deferred at once, so the pause grows then: the
      // messages left (about 900) span some 12 s, well past the 2.5-5 s a failover and the
      // relays' reconnection take here (at 150 ms they were gone in under 4 s, once before the
      // relays had reconnected).
      const load = (async () => {
        for (let i = 0; i < ledger.entries.length; i += 40) {
          await split(relays, ledger.entries.slice(i, i + 40), 4);
          await sleep(killedAt ? 500 : 150);
        }
      })();
      await until(() => accepted() >= 300, 30_000, '300 messages accepted');
      killedAt = Date.now();
      group.killPrimary();
      await load;
      expect(killedAt).toBeGreaterThan(0);
      // The sentinels promoted the replica.
      let after: number | null = null;
      const deadline = Date.now() + 20_000;
      while ((after = await group.currentPrimaryPort()) !== group.replica.port && Date.now() < deadline) await sleep(200);
      expect(after).toBe(group.replica.port);

      const c = ledger.report('fleet-sentinel', sandbox.messages);
      // Only 4xx while it failed over: no 5xx, no session cut without a reply.
      expect(c.refused).toBe(0);
      expect(c.noReply + c.unknown).toBe(0);
      expect(c.deferred).toBeGreaterThan(0);
      for (const e of ledger.entries) {
        const first = e.attempts[0]!;
        if (first.code !== 250) expect(`${first.code} ${first.text}`).toMatch(/^4\d\d /);
      }
      // Then sending resumed on the new primary: messages accepted after the first deferral.
      const lastDeferred = Math.max(...ledger.entries.flatMap((e) => e.attempts.filter((o) => o.code !== 250).map((o) => o.at)));
      const resumed = ledger.entries.filter((e) => e.attempts.some((o) => o.code === 250 && o.at > lastDeferred)).length;
      console.log(`[fleet] sentinel failover: ${c.deferred} deferred, last deferral ${lastDeferred - killedAt} ms after the kill, ${resumed} accepted after it in the run`);
      expect(resumed).toBeGreaterThan(0);
      await resendPending(relays[1].port, ledger, { connections: 4, timeLimitMs: 30_000 });
      expect(ledger.problems(sandbox.messages)).toEqual([]);
      expect(c.duplicated).toBe(0);
      for (const email of emails) expect({ email, refreshes: sandbox.tokens.requests(email) }).toEqual({ email, refreshes: 1 });
    } finally {
      await Promise.all(relays.map(stop));
      await group.stop();
    }
  }, 150_000);
});
