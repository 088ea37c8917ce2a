// Relay processes (the built CLI, as operators run it) sharing one real redis-server and one
// sandbox provider: they refresh each token once between them, count a daily limit exactly
// across both, and ride out Redis going away and coming back without losing a message. Four of
// them keep every mailbox's max_connections for the fleet while one is killed mid-run, and an
// account added through one is used by another within 2 s.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_LIMITS } from '../../src/config/account-limits.js';
import { SandboxProvider, type SandboxAccount } from '../../src/sandbox/index.js';
import { sandboxRelayConfig, type SandboxRelayAccount } from '../../src/sandbox/relay-config.js';
import { buildDist, freePort, startServe, writeYaml, type ServeProcess } from '../helpers/cli.js';
import { drive, Ledger, resendPending, type LedgerEntry } from '../helpers/ledger.js';
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

/** The instance id a relay logged when it reached Redis: the prefix of the connection slots it holds. */
const instanceOf = (p: ServeProcess) => /"event":"store_connected"[^\n]*"instance":"([0-9a-f]+)"/.exec(p.output())?.[1] ?? null;

describe('a fleet of four relays: max_connections holds for the fleet', () => {
  // Microsoft's published cap is 3 connections per mailbox, Google's default here 5 (docs/configuration.md).
  const CAP = { microsoft: 3, google: 5 } as const;
  const SLOT_TTL_MS = 4_500;

  it('2,000 messages over 4 x 4 MTA connections, one relay kill -9ed mid-run: never more than the cap per mailbox, its slots reused within the TTL, every accepted message delivered once', async () => {
    const kinds = Array.from({ length: 20 }, (_, i) => (i % 2 ? 'google' : 'microsoft') as 'google' | 'microsoft');
    const mailboxes = kinds.map((kind, i) => account(`fleet${i}@${kind === 'google' ? 'gmail' : 'outlook'}.test`, kind, {}, { max_connections: CAP[kind] }));
    // One mailbox only the doomed relay sends through before it dies, so it holds all three slots.
    const hot = account('hot@outlook.test', 'microsoft', {}, { max_connections: CAP.microsoft });
    const all = [...mailboxes, hot];
    const relays = await fleet('caps', all, 4, { upstream: { acquire_timeout_ms: 15_000, slot_ttl_ms: SLOT_TTL_MS } });
    const doomed = relays[0]!;
    const survivors = relays.slice(1);
    const redisClient = new Redis(redis.url);
    try {
      const id = instanceOf(doomed);
      expect(id).toMatch(/^[0-9a-f]{12}$/);
      // Slots still in force (scored by expiry on Redis's clock; lapsed members linger until the next script touches the key).
      const holders = async (email: string) => {
        const [s, us] = await redisClient.time();
        return redisClient.zrangebyscore(`caps:conn-slots:{${email}}`, `(${Number(s) * 1000 + Math.floor(Number(us) / 1000)}`, '+inf');
      };

      // Three transactions left open on the doomed relay (MAIL and RCPT answered, no DATA) hold
      // the hot mailbox's three upstream connections, and so its three slots, when it dies.
      const hotLedger = new Ledger('fleet-hot', 20, [hot.account.email], 300);
      const open: RawSmtp[] = [];
      for (let i = 0; i < 3; i++) {
        const { client } = await RawSmtp.connect(doomed.port);
        open.push(client);
        await client.cmd('EHLO mta.test');
        expect((await client.cmd(`MAIL FROM:<${hot.account.email}>`)).code).toBe(250);
        expect((await client.cmd('RCPT TO:<held@example.net>')).code).toBe(250);
      }
      const hotHeld = await holders(hot.account.email);
      expect(hotHeld).toHaveLength(3);
      for (const h of hotHeld) expect(h.startsWith(`${id}:`)).toBe(true);

      const ledger = new Ledger('fleet-caps', 2_000, mailboxes.map((m) => m.account.email), 300);
      const accepted = () => ledger.entries.filter((e) => e.attempts.some((o) => o.code === 250)).length;
      let killedAt = 0;
      let hotAfterKill: Promise<void> = Promise.resolve();
      const onOutcome = () => {
        if (killedAt || accepted() < ledger.entries.length / 3) return;
        killedAt = Date.now();
        doomed.child.kill('SIGKILL');
        // The hot mailbox through a survivor: it must wait for the dead relay's slots to lapse.
        hotAfterKill = drive(survivors[0]!.port, hotLedger.entries, { connections: 3, timeLimitMs: 25_000, replyTimeoutMs: 30_000 });
      };
      const share = (k: number) => ledger.entries.filter((_, i) => i % relays.length === k);
      await Promise.all(relays.map((r, k) => drive(r.port, share(k), { connections: 4, timeLimitMs: 45_000, onOutcome })));
      await hotAfterKill;
      for (const c of open) c.close();
      expect(killedAt).toBeGreaterThan(0);
      await doomed.exited;

      // The dead relay's slots lapsed by themselves, no sooner than its last renewal allowed and
      // within the TTL: the first hot message through a survivor was accepted in that window.
      const firstHot = Math.min(...hotLedger.entries.flatMap((e) => e.attempts.filter((o) => o.code === 250).map((o) => o.at)));
      const waited = firstHot - killedAt;
      console.log(`[fleet] hot mailbox: first message through a survivor ${waited} ms after the kill (slot TTL ${SLOT_TTL_MS} ms)`);
      expect(waited).toBeGreaterThanOrEqual((SLOT_TTL_MS * 2) / 3 - 300);
      expect(waited).toBeLessThanOrEqual(SLOT_TTL_MS + 2_500);
      // Once the TTL has passed since the kill, no mailbox has a slot of the dead relay left.
      await sleep(Math.max(0, killedAt + SLOT_TTL_MS + 200 - Date.now()));
      for (const email of all.map((a) => a.account.email)) {
        for (const h of await holders(email)) expect(h.startsWith(`${id}:`), `${email} still holds a slot of the dead relay`).toBe(false);
      }

      // What the MTA would still hold goes again, to the survivors.
      await resendPending(survivors[1]!.port, ledger, { connections: 6, timeLimitMs: 30_000 });
      await resendPending(survivors[2]!.port, hotLedger, { connections: 3, timeLimitMs: 20_000 });
      const c = ledger.report('fleet-caps', sandbox.messages);
      hotLedger.report('fleet-hot', sandbox.messages);
      expect(c.refused).toBe(0);
      expect(c.duplicated).toBe(0);
      expect(ledger.problems(sandbox.messages)).toEqual([]);
      expect(hotLedger.problems(sandbox.messages)).toEqual([]);
      expect(ledger.refusals()).toEqual([]);

      // The provider's view, at every login and close: never more than the cap, and the cap was reached.
      const seen = sandbox.smtp.connectionConcurrency();
      const peaks = Object.fromEntries(all.map((a) => [a.account.email, seen.get(a.account.email)?.peak ?? 0]));
      console.log(`[fleet] peak authenticated connections per mailbox: ${JSON.stringify(peaks)}`);
      for (const a of all) {
        const cap = CAP[a.account.kind];
        expect({ email: a.account.email, peak: peaks[a.account.email]! <= cap }).toEqual({ email: a.account.email, peak: true });
        expect(peaks[a.account.email]).toBeGreaterThan(0);
      }
      expect(peaks[hot.account.email]).toBe(3);
    } finally {
      redisClient.disconnect();
      await Promise.all(relays.map(stop));
    }
  }, 150_000);
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
