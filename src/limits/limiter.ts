// Which account of a sender's pool sends a message, and what it is charged against its limits.
//
// Counting (docs/limits.md): a message is reserved at MAIL, with its first recipient, before
// anything goes upstream; each further recipient is reserved at its RCPT. A reservation becomes
// a count when the provider accepted the message, or may have (the connection died after the
// final dot: the provider may have it, so it is counted); it is given back when the message
// certainly did not go (RSET, a session that ends, a refusal, a DATA that never completed).
// Reserving first is what makes "a daily limit of 300" mean exactly 300 across a fleet.
import type { Logger } from 'pino';
import { accountLimitError, RelayError, UpstreamReplyError } from '../errors/registry.js';
import type { Account } from '../routing/account.js';
import type { Charge, Charged, ReserveResult, Store } from '../store/store.js';
import type { TokenHealth } from '../tokens/token-cache.js';
import { formatReply } from '../smtp/reply.js';
import { chargePlan, type ChargePlan } from './limits.js';
import type { AccountPauses } from './pauses.js';
import { quotaSignal } from './quota-replies.js';

export interface LimiterDeps {
  store: Store;
  pauses: AccountPauses;
  health: (email: string) => TokenHealth | null;
  logger: Logger;
  now?: () => number;
}

interface Refusal {
  until: number;
  why: string;
}

export interface Picked {
  account: Account;
  reservation: Reservation;
}

type Reserved = { ok: true; charged: readonly Charged[] } | { ok: false; refusal: Refusal };

/** An account without counters: its reservations hold nothing (shared, never written to). */
const NOTHING_CHARGED: Reserved = Object.freeze({ ok: true, charged: Object.freeze([]) as readonly Charged[] });

export class Limiter {
  private readonly plans = new Map<string, ChargePlan>();
  /** Fraction of its tightest limit each account had left at its last reservation. */
  private readonly headroom = new Map<string, number>();
  /** Accounts known to be at a limit, until the window frees: no store round trip for them. */
  private readonly full = new Map<string, Refusal>();
  readonly now: () => number;

  constructor(private readonly deps: LimiterDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * Picks the account that sends and reserves the message against its limits. Candidates that
   * are paused, known full or (in a pool) waiting for new consent are skipped; the others are
   * tried healthiest token first, then most headroom, then config order. Throws 451 4.7.1 with
   * the earliest retry time when none is left, STORE_UNAVAILABLE when limits cannot be counted.
   */
  async pick(candidates: readonly Account[]): Promise<Picked> {
    return this.choose(candidates);
  }

  /**
   * pick(), answered synchronously (or thrown) when the store counts in this process or the
   * account has no limits: the message path then spends no promise on limits.
   */
  choose(candidates: readonly Account[]): Picked | Promise<Picked> {
    const now = this.now();
    const refusals: Array<Refusal & { account: string }> = [];
    let usable: readonly Account[];
    if (candidates.length === 1) {
      // A lone account is tried whatever its token's health (its token error is the answer).
      usable = this.refused(candidates[0]!, now, refusals) ? [] : candidates;
    } else {
      const ok = candidates.filter((a) => !this.refused(a, now, refusals) && this.deps.health(a.email) !== 'needs_consent');
      const rank = (a: Account) => (this.deps.health(a.email) === 'healthy' ? 0 : 1);
      usable = ok.sort((a, b) => rank(a) - rank(b) || (this.headroom.get(b.email) ?? 1) - (this.headroom.get(a.email) ?? 1));
    }
    return this.tryFrom(usable, 0, refusals, candidates, now);
  }

  /** Paused or known full: noted in `refusals`, no store round trip. */
  private refused(account: Account, now: number, refusals: Array<Refusal & { account: string }>): boolean {
    const paused = this.deps.pauses.get(account.email);
    if (paused) {
      refusals.push({ account: account.email, until: paused.until, why: `paused: ${paused.reason}` });
      return true;
    }
    const full = this.full.get(account.email);
    if (full && full.until > now) {
      refusals.push({ account: account.email, ...full });
      return true;
    }
    return false;
  }

  /** Reserves on usable[i], then the next ones while they are refused; throws when none is left. */
  private tryFrom(usable: readonly Account[], i: number, refusals: Array<Refusal & { account: string }>, candidates: readonly Account[], now: number): Picked | Promise<Picked> {
    for (; i < usable.length; i++) {
      const account = usable[i]!;
      const plan = this.plan(account);
      const result = this.reserve(account, plan.message);
      if (result instanceof Promise) {
        const next = i + 1;
        return result.then((r) => {
          if (r.ok) return { account, reservation: new Reservation(this, account, plan, r.charged) };
          refusals.push({ account: account.email, ...r.refusal });
          return this.tryFrom(usable, next, refusals, candidates, now);
        });
      }
      if (result.ok) return { account, reservation: new Reservation(this, account, plan, result.charged) };
      refusals.push({ account: account.email, ...result.refusal });
    }
    if (!refusals.length) throw new RelayError('TOKEN_UNAVAILABLE', `every account of the pool needs new consent: ${candidates.map((a) => a.email).join(', ')}`);
    const first = refusals.reduce((a, b) => (b.until < a.until ? b : a));
    const why = candidates.length > 1 ? 'No account for this sender is under its sending limits' : `Sending limit reached (${first.why})`;
    throw accountLimitError(why, first.until - now, refusals.map((r) => `${r.account}: ${r.why}`).join('; '));
  }

  /**
   * What a provider refusal means for the account: a quota reply pauses it and becomes 451
   * 4.7.1 (the message is not at fault); anything else is returned as it was.
   */
  providerRefusal(account: Account, err: unknown): unknown {
    if (!(err instanceof UpstreamReplyError)) return err;
    const signal = quotaSignal(err.reply);
    if (!signal) return err;
    const said = formatReply(err.reply);
    this.deps.pauses.pause(account.email, signal.pauseMs, `${signal.kind} quota: ${said}`);
    return accountLimitError(`Account over its ${signal.kind} quota at the provider`, signal.pauseMs, `${account.email}: ${said}`);
  }

  /**
   * The account changed or left the relay: its plan (its limits may be new) and what is known
   * about its headroom go. Counts and pauses stay in the store: they are the mailbox's.
   */
  forget(email: string): void {
    this.plans.delete(email);
    this.headroom.delete(email);
    this.full.delete(email);
  }

  /** The limit the account was last refused at, while its window has not freed (for its health). */
  atLimit(email: string): { until: number; why: string } | null {
    const full = this.full.get(email);
    return full && full.until > this.now() ? full : null;
  }

  plan(account: Account): ChargePlan {
    let plan = this.plans.get(account.email);
    if (!plan) this.plans.set(account.email, (plan = chargePlan(account.limits)));
    return plan;
  }

  /** Synchronous when there is nothing to count or the store counts in this process (see choose()). */
  reserve(account: Account, charges: readonly Charge[]): Reserved | Promise<Reserved> {
    if (!charges.length) return NOTHING_CHARGED;
    const local = this.deps.store.localCounting;
    if (local) return this.reserved(account, charges, local.reserve(account.email, charges));
    return this.deps.store.reserve(account.email, charges).then((r) => this.reserved(account, charges, r));
  }

  private reserved(account: Account, charges: readonly Charge[], r: ReserveResult): Reserved {
    if (!r.ok) {
      const refusal = { until: this.now() + r.retryInMs, why: `${r.counter} ${r.limit}` };
      this.full.set(account.email, refusal);
      this.headroom.set(account.email, 0);
      return { ok: false, refusal };
    }
    let least = Infinity;
    for (const c of charges) least = Math.min(least, (r.left[c.counter.name] ?? 0) / c.counter.limit);
    this.headroom.set(account.email, least);
    return { ok: true, charged: r.charged };
  }

  release(account: Account, charged: readonly Charged[]): void {
    if (!charged.length) return;
    this.full.delete(account.email);
    const local = this.deps.store.localCounting;
    if (local) {
      try {
        local.release(account.email, charged);
        return;
      } catch (e) {
        return this.releaseFailed(account, e as Error);
      }
    }
    this.deps.store.release(account.email, charged).catch((e: Error) => this.releaseFailed(account, e));
  }

  private releaseFailed(account: Account, e: Error): void {
    // Counted as sent: stricter than needed, never over the provider's limit.
    this.deps.logger.warn({ event: 'quota_release_failed', account: account.email, error: e.message }, 'could not give back an unused reservation');
  }
}

/** One transaction's hold on its account's limits. */
export class Reservation {
  /** Recipient slots held; slot 0 came with the message's own charge. */
  private readonly slots: (readonly Charged[])[];
  private used = 0;
  private settled = false;

  constructor(
    private readonly limiter: Limiter,
    readonly account: Account,
    private readonly plan: ChargePlan,
    private readonly messageCharge: readonly Charged[],
  ) {
    const recipient = plan.recipient;
    this.slots = [messageCharge.length ? messageCharge.filter((c) => recipient.some((r) => r.counter.name === c.counter)) : messageCharge];
  }

  /**
   * Before an RCPT goes upstream: the per-message cap, then one more recipient if none is held.
   * Synchronous (returns undefined, or throws) unless a store round trip is needed.
   */
  addRecipient(): void | Promise<void> {
    const cap = this.account.limits.recipients_per_message;
    if (cap !== null && this.used >= cap) throw new RelayError('TOO_MANY_RECIPIENTS', `${this.account.email}: recipients_per_message ${cap}`);
    if (this.used < this.slots.length) {
      this.used++;
      return;
    }
    const r = this.limiter.reserve(this.account, this.plan.recipient);
    if (r instanceof Promise) return r.then((held) => this.hold(held));
    this.hold(r);
  }

  private hold(r: Reserved): void {
    if (!r.ok) throw accountLimitError(`Sending limit reached (${r.refusal.why})`, r.refusal.until - this.limiter.now(), `${this.account.email}: ${r.refusal.why}`);
    this.slots.push(r.charged);
    this.used++;
  }

  /** The provider refused the recipient: its slot is free for the next RCPT. */
  recipientRefused(): void {
    this.used--;
  }

  /** The message went, or may have: keep what it used, give back recipient slots it did not. */
  sent(): void {
    const keep = Math.max(this.used, 1);
    if (this.settle() && this.slots.length > keep) this.limiter.release(this.account, this.slots.slice(keep).flat());
  }

  /** The message certainly did not go: give everything back. */
  unsent(): void {
    if (this.settle()) this.limiter.release(this.account, this.slots.length > 1 ? [...this.messageCharge, ...this.slots.slice(1).flat()] : this.messageCharge);
  }

  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    return true;
  }
}
