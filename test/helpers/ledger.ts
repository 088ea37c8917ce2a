// A bounded load through the relay, and the ledger that checks what the fault tests promise:
// every message the client got 250 for arrived upstream exactly once with identical bytes; every
// message that got a 4xx (or no reply before its final dot) arrives exactly once when resent;
// nothing got a 5xx. Each message is a unique set of bytes, so its SHA-256 identifies it upstream.
//
// The one duplicate SMTP cannot rule out (RFC 1047): the final dot was sent and its reply never
// came, so the sender cannot know the message was delivered and sends it again. The ledger
// counts those apart (`duplicatedAfterSilence`) instead of forgiving them inside `duplicated`.
//
// Every message also carries the lines dot-stuffing exists for, written the way that breaks a
// careless engine: each body is dot-stuffed by the client and written in several socket writes
// split right before, inside and after the dot that starts a line, so every fault test also
// proves the body crosses both of the relay's engines intact.
import type { AcceptedMessage } from '../../src/sandbox/index.js';
import type { Reply } from '../../src/smtp/reply.js';
import { RawSmtp } from './smtp-client.js';
import { rawMessage, sha256 } from './stack.js';

export type Stage = 'connect' | 'mail' | 'rcpt' | 'data' | 'final';

/** What one attempt to send a message ended with. `final` is the reply to (or silence after) the final dot. */
export type Outcome = { stage: Stage; at: number } & ({ code: number; text: string } | { code: null; text: 'no reply' });

export interface LedgerEntry {
  from: string;
  to: string;
  /** The message as the MTA holds it (what the provider must receive), ending with CRLF. */
  raw: string;
  sha: string;
  /** The dot-stuffed body and its terminator, as the separate socket writes that carry it. */
  wire: string[];
  attempts: Outcome[];
}

export interface LedgerCounts {
  sent: number;
  /** Got 250 to the final dot. */
  accepted: number;
  /** Got a 4xx at some step. */
  deferred: number;
  /** Got a 5xx at some step. */
  refused: number;
  /** The connection went away before the final dot was answered (or could not be opened). */
  noReply: number;
  /** Silence after the final dot: the one case where SMTP itself cannot tell delivered from lost (RFC 1047). */
  unknown: number;
  /** Acknowledged with 250 and not upstream. */
  lost: number;
  /** Upstream more than once, though no attempt met silence after its final dot: always the relay's fault. */
  duplicated: number;
  /**
   * Upstream more than once after some attempt met silence after its final dot (see
   * `silenceAfterFinalDot`): the sender could not know it was delivered and sent it again.
   */
  duplicatedAfterSilence: number;
}

export interface DriveOptions {
  connections: number;
  /** The load stops taking new messages after this long. */
  timeLimitMs: number;
  /** How long to wait for any one reply before the connection is given up. */
  replyTimeoutMs?: number;
  /** Called after every attempt (a test may stop the relay at some point of the load). */
  onOutcome?: (entry: LedgerEntry, outcome: Outcome) => void;
  /** The load stops taking new messages once this returns true (a load that lasts as long as something else does). */
  stop?: () => boolean;
}

const isAccepted = (o: Outcome | undefined) => o?.stage === 'final' && o.code !== null && o.code >= 200 && o.code < 300;

/**
 * The final dot was sent and no reply to it came, at either hop: the client heard nothing, or
 * the relay heard nothing from the provider and said so with a 4xx carrying 4.4.2 (RFC 3463
 * X.4.2, bad connection: "Provider timed out", "Provider closed the connection"). Either way
 * the provider may have kept the message: a resend can make a duplicate nobody could prevent.
 */
export const silenceAfterFinalDot = (o: Outcome) =>
  o.stage === 'final' && (o.code === null || (o.code >= 400 && o.code < 500 && o.text.startsWith('4.4.2 ')));

/**
 * Lines that only survive if both hops handle transparency (RFC 5321 §4.5.2): a lone "." (which
 * ends DATA if the relay forgets to stuff it), lines starting with ".." (which lose a dot if
 * it stuffs nothing or unstuffs twice), and a dot followed by text.
 */
const DOT_LINES = ['.', '..', '...', '..two dots, then text', '.one dot, then text'];

/**
 * The message as the client writes it: dot-stuffed, then the terminator, cut into pieces at the
 * dots that start a line, in turn right before the dot, after the first dot, and between the
 * CR and LF ahead of it (the line start itself is only known with the next chunk). The last
 * cut is right before the terminator, after a body whose last line is a lone dot.
 */
export function wirePieces(raw: string): string[] {
  const stuffed = raw.replace(/\r\n\./g, '\r\n..') + '.\r\n';
  const cuts: number[] = [];
  let turn = 0;
  for (let at = stuffed.indexOf('\r\n.'); at >= 0; at = stuffed.indexOf('\r\n.', at + 1)) {
    const dot = at + 2;
    cuts.push(dot === stuffed.length - 3 ? dot : [dot, dot + 1, at + 1][turn++ % 3]!);
  }
  const pieces: string[] = [];
  let from = 0;
  for (const cut of cuts) {
    pieces.push(stuffed.slice(from, cut));
    from = cut;
  }
  pieces.push(stuffed.slice(from));
  return pieces;
}

export class Ledger {
  readonly entries: LedgerEntry[];

  /**
   * `senders` are used in turn, one recipient per message. `bodyBytes` pads each message with
   * 76-character lines; the body starts and ends with a lone dot, every one of DOT_LINES follows
   * one of the first filler lines, and one follows every third line after those.
   */
  constructor(tag: string, count: number, senders: readonly string[], bodyBytes = 600) {
    const filler = Array.from({ length: Math.ceil(bodyBytes / 78) }, (_, i) => `${tag} line ${i} `.padEnd(75, 'x'));
    const dotLine = (i: number) => (i < DOT_LINES.length || i % 3 === 2 ? [DOT_LINES[i % DOT_LINES.length]!] : []);
    const body = ['.', ...filler.flatMap((l, i) => [l, ...dotLine(i)]), '.'];
    this.entries = Array.from({ length: count }, (_, i) => {
      const from = senders[i % senders.length]!;
      const to = `rcpt${i}@example.net`;
      const raw = rawMessage(from, [to], `${tag}-${i}`, body);
      return { from, to, raw, sha: sha256(raw), wire: wirePieces(raw), attempts: [] };
    });
  }

  /** Messages whose last attempt did not end in 250: what an MTA would still hold and retry. */
  pending(): LedgerEntry[] {
    return this.entries.filter((e) => !isAccepted(e.attempts.at(-1)));
  }

  /** Counts over the first attempt of each message, and lost/duplicated over everything upstream. */
  counts(upstream: readonly AcceptedMessage[]): LedgerCounts {
    const arrivals = arrivalsOf(upstream);
    const c: LedgerCounts = { sent: 0, accepted: 0, deferred: 0, refused: 0, noReply: 0, unknown: 0, lost: 0, duplicated: 0, duplicatedAfterSilence: 0 };
    for (const e of this.entries) {
      const first = e.attempts[0];
      if (!first) continue;
      c.sent++;
      if (first.code === null) {
        if (first.stage === 'final') c.unknown++;
        else c.noReply++;
      } else if (first.code >= 500) c.refused++;
      else if (first.code >= 400) c.deferred++;
      else if (isAccepted(first)) c.accepted++;
      const n = arrivals.get(e.sha) ?? 0;
      if (n === 0 && e.attempts.some(isAccepted)) c.lost++;
      if (n > 1 && e.attempts.some(silenceAfterFinalDot)) c.duplicatedAfterSilence++;
      else if (n > 1) c.duplicated++;
    }
    return c;
  }

  /**
   * What breaks "exactly once" after the resends: a message never accepted, or accepted and not
   * upstream exactly once. A duplicate of a message that once met silence after its final dot is
   * not a problem here but is counted in `duplicatedAfterSilence`, which each test asserts.
   */
  problems(upstream: readonly AcceptedMessage[]): string[] {
    const arrivals = arrivalsOf(upstream);
    const out: string[] = [];
    this.entries.forEach((e, i) => {
      const n = arrivals.get(e.sha) ?? 0;
      const last = e.attempts.at(-1);
      if (!isAccepted(last)) out.push(`#${i} never accepted (last: ${last ? `${last.stage} ${last.code} ${last.text}` : 'not sent'})`);
      else if (n === 0) out.push(`#${i} accepted but not upstream`);
      else if (n > 1 && !e.attempts.some(silenceAfterFinalDot)) out.push(`#${i} upstream ${n} times`);
    });
    return out;
  }

  /** How many of the messages arrived upstream once, more than once (`twice`) and never. */
  deliveries(upstream: readonly AcceptedMessage[]): { once: number; twice: number; never: number } {
    const arrivals = arrivalsOf(upstream);
    const d = { once: 0, twice: 0, never: 0 };
    for (const e of this.entries) {
      const n = arrivals.get(e.sha) ?? 0;
      if (n === 0) d.never++;
      else if (n === 1) d.once++;
      else d.twice++;
    }
    return d;
  }

  /** Every 5xx any attempt got, as "stage code text", for a failure message. */
  refusals(): string[] {
    return this.entries.flatMap((e) => e.attempts.filter((o) => o.code !== null && o.code >= 500).map((o) => `${o.stage} ${o.code} ${o.text}`));
  }

  report(name: string, upstream: readonly AcceptedMessage[]): LedgerCounts {
    const c = this.counts(upstream);
    console.log(
      `[ledger] ${name}: sent=${c.sent} 250=${c.accepted} 4xx=${c.deferred} 5xx=${c.refused} no-reply=${c.noReply} unknown=${c.unknown} lost=${c.lost} duplicated=${c.duplicated} duplicated_after_silence=${c.duplicatedAfterSilence}`,
    );
    return c;
  }
}

/** Arrivals upstream by the message's SHA-256. */
function arrivalsOf(upstream: readonly AcceptedMessage[]): Map<string, number> {
  const arrivals = new Map<string, number>();
  for (const m of upstream) arrivals.set(m.sha256, (arrivals.get(m.sha256) ?? 0) + 1);
  return arrivals;
}

/**
 * Sends `entries` over `connections` parallel sessions (EHLO once per connection, then one
 * transaction per message), recording each attempt's outcome. A connection that was closed or
 * answered 421 is replaced. Bounded by the number of entries and by `timeLimitMs`.
 */
export async function drive(port: number, entries: readonly LedgerEntry[], opts: DriveOptions): Promise<void> {
  const stopAt = Date.now() + opts.timeLimitMs;
  const replyTimeoutMs = opts.replyTimeoutMs ?? 15_000;
  let next = 0;
  const worker = async () => {
    let client: RawSmtp | null = null;
    try {
      while (next < entries.length && Date.now() < stopAt && !opts.stop?.()) {
        const entry = entries[next++]!;
        if (!client || client.closed) {
          client?.close();
          client = await open(port);
        }
        const outcome = client ? await attempt(client, entry, replyTimeoutMs) : { stage: 'connect' as const, at: Date.now(), code: null, text: 'no reply' as const };
        entry.attempts.push(outcome);
        opts.onOutcome?.(entry, outcome);
        if (client && (outcome.code === null || outcome.code === 421)) {
          client.close();
          client = null;
        }
      }
      if (client && !client.closed) await client.cmd('QUIT').catch(() => undefined);
    } finally {
      client?.close();
    }
  };
  await Promise.all(Array.from({ length: opts.connections }, worker));
}

/**
 * Resends what is still pending, as an MTA retries its deferred queue, until everything got
 * 250 or `rounds` retries were made.
 */
export async function resendPending(port: number, ledger: Ledger, opts: DriveOptions & { rounds?: number }): Promise<void> {
  for (let round = 0; round < (opts.rounds ?? 3); round++) {
    const pending = ledger.pending();
    if (!pending.length) return;
    await drive(port, pending, opts);
  }
}

async function open(port: number): Promise<RawSmtp | null> {
  try {
    const { client, greeting } = await RawSmtp.connect(port);
    if (greeting.code !== 220) {
      client.close();
      return null;
    }
    // Each piece of a message in its own segment, so the cuts reach the relay as cuts.
    client.socket.setNoDelay(true);
    const ehlo = await client.cmd('EHLO load.test');
    if (ehlo.code === 250) return client;
    client.close();
  } catch {
    // refused or closed at once: the relay is not there
  }
  return null;
}

async function attempt(client: RawSmtp, entry: LedgerEntry, replyTimeoutMs: number): Promise<Outcome> {
  let stage: Stage = 'mail';
  const done = (r: Reply): Outcome => ({ stage, at: Date.now(), code: r.code, text: r.lines.join(' | ') });
  const ask = (line: string) => client.cmd(line, replyTimeoutMs);
  try {
    const mail = await ask(`MAIL FROM:<${entry.from}>`);
    if (mail.code !== 250) return done(mail);
    stage = 'rcpt';
    const rcpt = await ask(`RCPT TO:<${entry.to}>`);
    if (rcpt.code !== 250) return await reset(client, done(rcpt), replyTimeoutMs);
    stage = 'data';
    const data = await ask('DATA');
    if (data.code !== 354) return await reset(client, done(data), replyTimeoutMs);
    stage = 'final';
    for (const [i, piece] of entry.wire.entries()) {
      // A turn of the event loop between pieces: an in-process relay reads each one on its own.
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      client.write(piece);
    }
    return done(await client.read(replyTimeoutMs));
  } catch {
    return { stage, at: Date.now(), code: null, text: 'no reply' };
  }
}

/** After a refused step the transaction is still open: RSET so the next message starts clean. */
async function reset(client: RawSmtp, outcome: Outcome, replyTimeoutMs: number): Promise<Outcome> {
  if (outcome.code !== 421) await client.cmd('RSET', replyTimeoutMs).catch(() => client.close());
  return outcome;
}
