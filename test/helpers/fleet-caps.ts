// The fleet run of issue 22, shared by test/integration/fleet.test.ts (small) and
// bench/scenarios/fleet.ts (the size): relay processes (the built CLI) on one real Redis
// and one sandbox provider, mailboxes with caps of 3 (Microsoft) and 5 (Google), messages driven
// through every relay over several MTA connections each, and one relay kill -9'd a third of the
// way. One more Microsoft mailbox ("hot") has its three connections held by the doomed relay
// (three transactions left open on it) when it dies: a survivor can send to it only once the
// dead relay's slots lapsed, which times their reuse. What the MTA would still hold is resent to
// the survivors, then the ledger says what arrived how often. Returns figures; callers judge.
import { Redis } from 'ioredis';
import { NO_LIMITS } from '../../src/config/account-limits.js';
import type { SandboxProvider } from '../../src/sandbox/index.js';
import { sandboxRelayConfig, type SandboxRelayAccount } from '../../src/sandbox/relay-config.js';
import { startServe, writeYaml, type ServeProcess } from './cli.js';
import { drive, Ledger, resendPending, type LedgerCounts } from './ledger.js';
import { RawSmtp } from './smtp-client.js';
import { KEY_ENV } from './stack.js';
import { sleep } from './wait.js';

/** Microsoft's published cap (3 concurrent connections per mailbox) and Google's default here (docs/configuration.md). */
export const FLEET_CAP = { microsoft: 3, google: 5 } as const;

export interface FleetRunOptions {
  sandbox: SandboxProvider;
  redisUrl: string;
  /** Where the relays' config files go (and their working directory). */
  dir: string;
  /** Keeps this run's Redis keys and files apart from others'. */
  name: string;
  relays: number;
  /** Mailboxes besides the hot one, alternately Microsoft and Google. */
  mailboxes: number;
  messages: number;
  connectionsPerRelay: number;
  slotTtlMs: number;
  acquireTimeoutMs: number;
  /** The load stops taking new messages after this long. */
  timeLimitMs: number;
  /** Each relay as soon as it runs: the caller stops them (the run stops none but the one it kills). */
  started?: (relay: ServeProcess) => void;
  progress?: (line: string) => void;
}

export interface MailboxPeak {
  email: string;
  cap: number;
  /** The most authenticated connections the sandbox saw open at once for it. */
  peak: number;
}

export interface FleetRunResult {
  relays: number;
  mailboxes: number;
  messages: number;
  connectionsPerRelay: number;
  slotTtlMs: number;
  /** The doomed relay's instance id (the prefix of its slots in Redis). */
  doomedInstance: string | null;
  /** Holders of the hot mailbox's slots just before the kill. */
  hotHoldersBeforeKill: string[];
  /** First attempts of the main load. */
  firstAttempts: LedgerCounts;
  /**
   * Of the main load and the hot mailbox's, after the resends: arrived once, more than once,
   * never; `afterSilence`: of the `twice`, those the MTA resent after silence at the final dot
   * (the kill cut it there: RFC 1047's duplicate, which no relay can prevent).
   */
  delivered: { once: number; twice: number; never: number; afterSilence: number };
  /** What breaks exactly-once (Ledger.problems), both ledgers. */
  problems: string[];
  /** Every 5xx any attempt got. */
  refusals: string[];
  peaks: MailboxPeak[];
  /** The mailbox whose peak came closest to (or went furthest over) its cap. */
  worst: MailboxPeak;
  /** Kill to the first hot message accepted through a survivor: the dead relay's slots reused. */
  slotsReusedMs: number | null;
  /** Mailboxes still holding a slot of the dead relay once the TTL has passed since the kill. */
  deadSlotsAfterTtl: string[];
  /** Whether a relay logged that a slot it held lapsed and went to another (a renewal that came too late). */
  slotLost: boolean;
  /** Start of the main load to its end (resends excluded), and accepted messages a second over it. */
  loadMs: number;
  perSecond: number;
  /** Relays started to everything resent and counted. */
  wallMs: number;
}

/** The instance id a relay logged when it reached Redis: the prefix of the connection slots it holds. */
export const instanceOf = (p: ServeProcess) => /"event":"store_connected"[^\n]*"instance":"([0-9a-f]+)"/.exec(p.output())?.[1] ?? null;

export async function fleetRun(o: FleetRunOptions): Promise<FleetRunResult> {
  const began = Date.now();
  const progress = o.progress ?? (() => undefined);
  const account = (email: string, kind: 'google' | 'microsoft'): SandboxRelayAccount => ({
    account: o.sandbox.addAccount({ email, kind }),
    senders: [email],
    extra: { limits: { ...NO_LIMITS }, max_connections: FLEET_CAP[kind] },
  });
  const mailboxes = Array.from({ length: o.mailboxes }, (_, i) => {
    const kind = i % 2 ? 'google' : 'microsoft';
    return account(`${o.name}${i}@${kind === 'google' ? 'gmail' : 'outlook'}.test`, kind);
  });
  const hot = account(`${o.name}-hot@outlook.test`, 'microsoft');
  const all = [...mailboxes, hot];
  const doc = sandboxRelayConfig(o.sandbox, all, {
    store: { url: o.redisUrl, key_prefix: `${o.name}:` },
    http: { enabled: false },
    upstream: { acquire_timeout_ms: o.acquireTimeoutMs, slot_ttl_ms: o.slotTtlMs },
  });
  const file = writeYaml(o.dir, doc, `${o.name}.yaml`);
  progress(`fleet: starting ${o.relays} relays, ${all.length} mailboxes`);
  const relays = await Promise.all(
    Array.from({ length: o.relays }, async () => {
      const p = await startServe(['--config', file], { dist: true, env: KEY_ENV, cwd: o.dir, timeoutMs: 120_000 });
      o.started?.(p);
      return p;
    }),
  );
  const doomed = relays[0]!;
  const survivors = relays.slice(1);
  const redis = new Redis(o.redisUrl);
  const open: RawSmtp[] = [];
  try {
    const id = instanceOf(doomed);
    // Slots still in force (scored by expiry on Redis's clock; lapsed members linger until the next script touches the key).
    const holders = async (email: string) => {
      const [s, us] = await redis.time();
      return redis.zrangebyscore(`${o.name}:conn-slots:{${email}}`, `(${Number(s) * 1000 + Math.floor(Number(us) / 1000)}`, '+inf');
    };

    // Three transactions left open on the doomed relay (MAIL and RCPT answered, no DATA) hold
    // the hot mailbox's three upstream connections, and so its three slots, when it dies.
    for (let i = 0; i < FLEET_CAP.microsoft; i++) {
      const { client } = await RawSmtp.connect(doomed.port);
      open.push(client);
      await client.cmd('EHLO mta.test');
      await client.cmd(`MAIL FROM:<${hot.account.email}>`);
      await client.cmd('RCPT TO:<held@example.net>');
    }
    const hotHoldersBeforeKill = await holders(hot.account.email);

    const ledger = new Ledger(`${o.name}-caps`, o.messages, mailboxes.map((m) => m.account.email), 300);
    const hotLedger = new Ledger(`${o.name}-hot`, 20, [hot.account.email], 300);
    let accepted = 0;
    let killedAt = 0;
    let hotAfterKill: Promise<void> = Promise.resolve();
    const onOutcome = (_: unknown, outcome: { code: number | null; stage: string }) => {
      if (outcome.code === 250 && outcome.stage === 'final') accepted++;
      if (killedAt || accepted < o.messages / 3) return;
      killedAt = Date.now();
      progress(`fleet: kill -9 of one relay after ${accepted} messages`);
      doomed.child.kill('SIGKILL');
      // The hot mailbox through a survivor: it must wait for the dead relay's slots to lapse.
      hotAfterKill = drive(survivors[0]!.port, hotLedger.entries, { connections: 3, timeLimitMs: o.slotTtlMs * 5, replyTimeoutMs: o.slotTtlMs * 6 });
    };
    const share = (k: number) => ledger.entries.filter((_, i) => i % relays.length === k);
    progress(`fleet: ${o.messages} messages over ${o.relays} x ${o.connectionsPerRelay} MTA connections`);
    const loadStart = Date.now();
    await Promise.all(relays.map((r, k) => drive(r.port, share(k), { connections: o.connectionsPerRelay, timeLimitMs: o.timeLimitMs, onOutcome })));
    const loadMs = Date.now() - loadStart;
    await hotAfterKill;
    for (const c of open.splice(0)) c.close();
    await doomed.exited;

    const firstHot = Math.min(...hotLedger.entries.flatMap((e) => e.attempts.filter((a) => a.code === 250).map((a) => a.at)));
    const slotsReusedMs = killedAt && Number.isFinite(firstHot) ? firstHot - killedAt : null;
    // Once the TTL has passed since the kill, no mailbox may hold a slot of the dead relay.
    await sleep(Math.max(0, killedAt + o.slotTtlMs + 200 - Date.now()));
    const deadSlotsAfterTtl: string[] = [];
    for (const a of all) if ((await holders(a.account.email)).some((h) => h.startsWith(`${id}:`))) deadSlotsAfterTtl.push(a.account.email);

    // What the MTA would still hold goes again, to the survivors.
    progress(`fleet: resending ${ledger.pending().length + hotLedger.pending().length} pending messages`);
    await resendPending(survivors[1 % survivors.length]!.port, ledger, { connections: o.connectionsPerRelay * 2, timeLimitMs: o.timeLimitMs });
    await resendPending(survivors[2 % survivors.length]!.port, hotLedger, { connections: 3, timeLimitMs: 20_000 });

    const upstream = o.sandbox.messages;
    const delivered = { once: 0, twice: 0, never: 0, afterSilence: 0 };
    for (const l of [ledger, hotLedger]) {
      const d = l.deliveries(upstream);
      delivered.once += d.once;
      delivered.twice += d.twice;
      delivered.never += d.never;
      delivered.afterSilence += l.counts(upstream).duplicatedAfterSilence;
    }
    const seen = o.sandbox.smtp.connectionConcurrency();
    const peaks = all.map((a) => ({ email: a.account.email, cap: FLEET_CAP[a.account.kind], peak: seen.get(a.account.email)?.peak ?? 0 }));
    const worst = peaks.reduce((w, p) => (p.peak - p.cap > w.peak - w.cap ? p : w));
    return {
      relays: o.relays,
      mailboxes: all.length,
      messages: o.messages + hotLedger.entries.length,
      connectionsPerRelay: o.connectionsPerRelay,
      slotTtlMs: o.slotTtlMs,
      doomedInstance: id,
      hotHoldersBeforeKill,
      firstAttempts: ledger.report(`${o.name}-caps`, upstream),
      delivered,
      problems: [...ledger.problems(upstream), ...hotLedger.problems(upstream)],
      refusals: [...ledger.refusals(), ...hotLedger.refusals()],
      peaks,
      worst,
      slotsReusedMs,
      deadSlotsAfterTtl,
      slotLost: relays.some((r) => r.output().includes('"event":"slot_lost"')),
      loadMs,
      perSecond: Math.round((accepted / loadMs) * 1000),
      wallMs: Date.now() - began,
    };
  } finally {
    for (const c of open) c.close();
    redis.disconnect();
  }
}
