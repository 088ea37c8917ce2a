// The per-account pool of authenticated upstream connections: the one place a connection is
// pooled. Connections are opened up to the account's max_connections, handed out one
// transaction at a time, reused until messages_per_connection, an idle timeout or the end of the
// token they authenticated with, and replaced when the provider drops them. When all are busy,
// callers wait in FIFO order for a bounded time, then get 451 4.4.5.
//
// max_connections holds for the whole fleet (issue 22): before a connection is opened the pool
// takes a slot of the mailbox in the store (src/store/store.ts ConnectionSlots: Redis for a
// fleet, this process's memory for the embedded store), renews it while the connection lives and
// gives it back when the connection closes. No slot free: the caller waits in the same FIFO
// queue, the pool asks again with a growing interval (100 ms to 1 s) and tells the other
// instances it waits; they close an idle connection of the mailbox, and for a couple of seconds
// close instead of keeping idle the ones their transactions finish with.
//
// The connection factory is injected (as undici's Pool does) so tests can hand in their own.
// It need not open a socket: the HTTP API upstreams pool request permits
// (src/upstream/api/permits.ts), so their concurrency is counted, queued and leased for the
// fleet by this same code.
import type { Logger } from 'pino';
import { RelayError } from '../errors/registry.js';
import { INSTANCE_ID } from '../store/instance.js';
import { LocalConnectionSlots } from '../store/local-slots.js';
import type { ConnectionSlots } from '../store/store.js';

/** How long a slot is held without renewal: the longest an instance that died keeps its slots. */
export const SLOT_TTL_MS = 20_000;
/** A pool asked for a slot closes, rather than keeps idle, the connections it finishes with for this long. */
const WANTED_MS = 2_000;
const SLOT_RETRY_MIN_MS = 100;
const SLOT_RETRY_MAX_MS = 1_000;
let holders = 0;

/** Every slot of the mailbox is held (by this or other instances): wait, or skip a warm-up. */
class NoSlot extends Error {}

/** What the pool needs of a connection; UpstreamConnection provides it. */
export interface PoolableConnection {
  readonly isUsable: boolean;
  onClose(listener: () => void): void;
  /** Settles within a bounded time (UpstreamConnection: min(command timeout, 2 s)), never hangs a slot. */
  quit(): Promise<void>;
  destroy(): void;
}

/** A connection ready for transactions, with the expiry of the token it authenticated with. */
export interface Opened<C> {
  conn: C;
  tokenExpiresAt: number;
}

export interface Lease<C> {
  readonly conn: C;
  /** Transactions completed on this connection. */
  uses: number;
  readonly openedAt: number;
  readonly tokenExpiresAt: number;
  /** When it was last put back idle. */
  idleSince: number;
  closed: boolean;
  /** The mailbox slot it holds (given back when it closes); null once given back or lost. */
  slot: string | null;
}

export interface PoolOptions {
  maxConnections: number;
  minIdle: number;
  messagesPerConnection: number;
  acquireTimeoutMs: number;
  idleTimeoutMs: number;
  /** A connection is retired this long before its token expires. */
  tokenMarginMs: number;
  /**
   * false: a connection given back with no waiter closes at once instead of idling (a permit
   * costs nothing to reopen, and one kept idle would hold a slot the fleet may want). Default true.
   */
  keepIdle?: boolean;
  /** Where the mailbox's connections are counted; default: this process's memory. */
  slots?: ConnectionSlots;
  slotTtlMs?: number;
}

interface Waiter<C> {
  resolve: (lease: Lease<C>) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  /** Epoch ms after which it gets POOL_BUSY. */
  deadline: number;
  /** Wants a connection no transaction has used (the retry after a connection failure). */
  fresh: boolean;
}

/** Why the last attempt to open a connection failed (the provider's AUTH reply, a refused connect, ...). */
export interface OpenFailure {
  at: number;
  error: unknown;
}

export interface PoolStats {
  idle: number;
  busy: number;
  opening: number;
  waiting: number;
  opened: number;
  /** Connections opened beside the pool (`accounts test`) and counted against max_connections. */
  outside: number;
}

export class AccountPool<C extends PoolableConnection> {
  private readonly idle: Lease<C>[] = [];
  // The pool's Sets are made at their first entry: most of thousands of accounts never open a
  // connection, and four empty Sets are ≈ 600 bytes each pool (3 MB of heap at 5,000 accounts).
  private busy: Set<Lease<C>> | null = null;
  private readonly waiters: Waiter<C>[] = [];
  private opening = 0;
  /** Connections being opened: close() waits for them, so none finishes (and logs in) after it. */
  private openings: Set<Promise<unknown>> | null = null;
  private outside = 0;
  private openedTotal = 0;
  private openFailures = 0;
  private lastOpenFailure: OpenFailure | null = null;
  private replenishTimer: NodeJS.Timeout | null = null;
  private closing = false;
  /** What acquire() and waiters get once closing: the relay stopping, or the account leaving it. */
  private closedError: RelayError | null = null;
  private readonly slots: ConnectionSlots;
  private readonly slotTtlMs: number;
  /** Slots taken for connections still opening (renewed like the others). */
  private openingSlots: Set<string> | null = null;
  /** Slots held beside the pool (`accounts test`). */
  private borrowedSlots: Set<string> | null = null;
  /** Set while waiters wait for a slot: the next attempt's timer. */
  private slotTimer: NodeJS.Timeout | null = null;
  private slotRetryMs = SLOT_RETRY_MIN_MS;
  private renewTimer: NodeJS.Timeout | null = null;
  /** Until then another instance waits for a slot of this mailbox. */
  private wantedUntil = 0;

  constructor(
    readonly name: string,
    private readonly open: () => Promise<Opened<C>>,
    private opts: PoolOptions,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.slots = opts.slots ?? new LocalConnectionSlots(now);
    this.slotTtlMs = opts.slotTtlMs ?? SLOT_TTL_MS;
  }

  get stats(): PoolStats {
    return { idle: this.idle.length, busy: this.busy?.size ?? 0, opening: this.opening, waiting: this.waiters.length, opened: this.openedTotal, outside: this.outside };
  }

  /**
   * The last failed open, until an open succeeds: what the provider said at the last AUTH is part
   * of the account's health (src/admin/health.ts), not only whether a token could be fetched.
   */
  get openFailure(): OpenFailure | null {
    return this.lastOpenFailure;
  }

  /** Whether the pool reopens by itself after a failure (it keeps min_idle ready), or only when a message needs it. */
  get retriesAlone(): boolean {
    return this.opts.minIdle > 0;
  }

  private get total(): number {
    return this.idle.length + (this.busy?.size ?? 0) + this.opening + this.outside;
  }

  /**
   * Room for one connection opened beside the pool (`accounts test`), so the account never has
   * more than max_connections at the provider: an idle connection is closed first if the pool is
   * full. While every connection is busy or opening it waits, up to acquire_timeout_ms (polling:
   * a rare operator action does not deserve a place in the transactions' queue); null then.
   * The returned function gives the room back.
   */
  async borrowSlot(): Promise<(() => void) | null> {
    const deadline = this.now() + this.opts.acquireTimeoutMs;
    let slot: string | null = null;
    for (;;) {
      if (this.closing) return null;
      if (this.total < this.opts.maxConnections) {
        this.outside++;
        break;
      }
      const spare = this.idle.shift();
      if (spare) {
        this.outside++;
        slot = this.detachSlot(spare);
        await this.quit(spare);
        break;
      }
      if (this.now() >= deadline) return null;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // The fleet's count too: another instance may hold every slot of the mailbox.
    slot ??= await this.takeSlotBy(deadline).catch(() => null);
    if (!slot) {
      this.outside--;
      this.dispatch();
      return null;
    }
    (this.borrowedSlots ??= new Set()).add(slot);
    this.keepRenewing();
    let returned = false;
    return () => {
      if (returned) return;
      returned = true;
      this.outside--;
      this.borrowedSlots?.delete(slot);
      this.giveSlot(slot);
      this.dispatch();
      this.scheduleReplenish(0);
    };
  }

  /**
   * A connection for one transaction. An idle one if there is one (most recently used first: it
   * is the warmest and lets the others time out), a new one while under max_connections, else
   * a place in the FIFO queue. `fresh` skips idle connections: the retry after a connection
   * failure must not land on another stale socket.
   */
  async acquire(fresh = false): Promise<Lease<C>> {
    if (this.closing) throw this.closedError!;
    if (!fresh) {
      const lease = this.ready();
      if (lease) return lease;
    }
    const deadline = this.now() + this.opts.acquireTimeoutMs;
    if (this.total < this.opts.maxConnections && !this.slotTimer) {
      try {
        return await this.openLease();
      } catch (e) {
        if (!(e instanceof NoSlot)) throw e;
      }
    } else if (fresh && this.total >= this.opts.maxConnections) {
      // At capacity: a fresh socket only if an idle one can make room for it (on its slot).
      const spare = this.idle.shift();
      if (spare) {
        const slot = this.detachSlot(spare);
        this.discard(spare);
        return this.openLease(slot);
      }
    }
    return new Promise<Lease<C>>((resolve, reject) => {
      const waiter = { resolve, reject, fresh, deadline } as Waiter<C>;
      this.arm(waiter);
      this.waiters.push(waiter);
      // Not at this pool's own max: what is missing is a slot of the fleet's.
      if (this.total < this.opts.maxConnections) this.waitForSlot();
    });
  }

  /** The waiter's POOL_BUSY at its deadline. */
  private arm(waiter: Waiter<C>): void {
    waiter.timer = setTimeout(() => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
      waiter.reject(this.busyError());
    }, Math.max(0, waiter.deadline - this.now()));
  }

  private busyError(): RelayError {
    return new RelayError('POOL_BUSY', `${this.name}: no connection free within ${this.opts.acquireTimeoutMs} ms`);
  }

  /**
   * Another instance waits for a slot of this mailbox: one idle connection is closed now, and
   * for a moment the ones transactions finish with are closed rather than kept idle (waiters
   * here still come first: the slot is given back, not taken from this instance's own queue).
   */
  wanted(): void {
    if (this.closing) return;
    this.wantedUntil = this.now() + WANTED_MS;
    const spare = this.idle.shift();
    if (spare) this.discard(spare);
  }

  /**
   * acquire() without waiting: an idle connection now, or null (none idle, or the pool is
   * closing: acquire() then says why). The message path's common case costs no promise.
   */
  ready(): Lease<C> | null {
    if (this.closing) return null;
    const lease = this.takeIdle();
    // Kept ready means ready before it is needed: the spare is replaced now, in the
    // background, not when the sweeper next runs. Otherwise a connection retired after
    // messages_per_connection leaves the next message waiting for a handshake.
    if (lease) this.scheduleReplenish(0);
    return lease;
  }

  /**
   * Gives a connection back after a transaction. `reusable` is false when its state is unknown
   * (an error mid-transaction); the caller has already sent RSET after a failed transaction.
   */
  release(lease: Lease<C>, reusable: boolean): void {
    if (!this.busy?.delete(lease)) return;
    if (!reusable || this.closing || !this.isFresh(lease)) {
      this.discard(lease, reusable);
      this.dispatch();
      this.scheduleReplenish(0);
      return;
    }
    if (this.waiters[0]?.fresh && lease.uses > 0) {
      // A used connection could fail the retry the way the first one failed (Gmail's 421
      // after N messages): it makes room for a new one instead, on its slot.
      const slot = this.detachSlot(lease);
      this.discard(lease);
      this.dispatch(slot);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      (this.busy ??= new Set()).add(lease);
      waiter.resolve(lease);
      return;
    }
    if (this.opts.keepIdle === false || this.now() < this.wantedUntil) {
      // Another instance waits for this mailbox (or nothing is kept idle): the slot goes back.
      this.discard(lease);
      return;
    }
    lease.idleSince = this.now();
    this.idle.push(lease);
  }

  /**
   * The relay's warmth hook (src/relay/warmth.ts): a cold account keeps no connection ready (its
   * idle ones close at idle_timeout_ms), one that turns warm gets its min_idle back at once.
   */
  setMinIdle(n: number): void {
    if (n === this.opts.minIdle) return;
    this.opts = { ...this.opts, minIdle: n };
    this.scheduleReplenish(0);
  }

  /** Opens connections until min_idle are ready; start-up awaits it so the first message pays no handshake. */
  async warm(): Promise<void> {
    const missing = this.opts.minIdle - this.idle.length - this.opening;
    if (missing <= 0 || this.closing) return;
    const results = await Promise.allSettled(
      Array.from({ length: Math.min(missing, this.opts.maxConnections - this.total) }, () => this.openIdle()),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof NoSlot));
    if (!failed && results.some((r) => r.status === 'rejected')) {
      // The fleet holds every slot: ready connections are a convenience, not worth a fight.
      this.scheduleReplenish(this.slotTtlMs / 4);
    } else if (failed) {
      this.logger.warn({ event: 'upstream_warm_failed', pool: this.name, error: (failed.reason as Error).message }, 'could not open a ready connection');
      this.scheduleReplenish(this.backoffMs());
    }
  }

  /**
   * Periodic upkeep (the relay calls it every second): idle connections past the idle timeout
   * beyond min_idle are closed, those whose token is about to expire are retired, and min_idle
   * is topped up.
   */
  sweep(): void {
    const now = this.now();
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const lease = this.idle[i]!;
      const stale = !this.isFresh(lease);
      const idleTooLong = now - lease.idleSince > this.opts.idleTimeoutMs && this.idle.length > this.opts.minIdle;
      if (stale || idleTooLong) {
        this.idle.splice(i, 1);
        this.discard(lease);
      }
    }
    if (!this.replenishTimer) this.scheduleReplenish(0);
  }

  /**
   * Closes idle connections now, busy ones as their transactions end (on their leases, so a
   * transaction in flight finishes); waiters and later acquires fail with `reason`.
   */
  async close(reason: RelayError = new RelayError('SHUTTING_DOWN')): Promise<void> {
    this.closing = true;
    this.closedError ??= reason;
    if (this.replenishTimer) clearTimeout(this.replenishTimer);
    if (this.slotTimer) clearTimeout(this.slotTimer);
    this.slotTimer = null;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(this.closedError);
    }
    await Promise.allSettled([...this.idle.splice(0).map((l) => this.quit(l)), ...(this.openings ?? [])]);
  }

  private takeIdle(): Lease<C> | null {
    let lease: Lease<C> | undefined;
    while ((lease = this.idle.pop())) {
      if (this.isFresh(lease)) {
        (this.busy ??= new Set()).add(lease);
        return lease;
      }
      this.discard(lease);
    }
    return null;
  }

  private isFresh(lease: Lease<C>): boolean {
    return (
      !lease.closed &&
      lease.conn.isUsable &&
      (this.opts.messagesPerConnection === 0 || lease.uses < this.opts.messagesPerConnection) &&
      this.now() < lease.tokenExpiresAt - this.retireMargin(lease)
    );
  }

  /**
   * How long before its token's expiry a connection is retired: tokenMarginMs, but at most a
   * quarter of the life the token had when the connection opened, so short-lived tokens (a
   * provider issuing 2-minute tokens) still give connections most of their life, not none.
   */
  private retireMargin(lease: Lease<C>): number {
    return Math.min(this.opts.tokenMarginMs, (lease.tokenExpiresAt - lease.openedAt) / 4);
  }

  private async openLease(slot: string | null = null): Promise<Lease<C>> {
    const lease = await this.openTracked(slot);
    if (this.closing) {
      this.discard(lease);
      throw this.closedError!;
    }
    (this.busy ??= new Set()).add(lease);
    return lease;
  }

  private async openIdle(): Promise<void> {
    const lease = await this.openTracked();
    // Through release() so a waiter that queued meanwhile gets it first.
    (this.busy ??= new Set()).add(lease);
    this.release(lease, true);
  }

  /** `held`: a slot handed over by a connection just closed; else one is taken (NoSlot when none is free). */
  private async openTracked(held: string | null = null): Promise<Lease<C>> {
    this.opening++;
    let slot: string;
    try {
      slot = held ?? (await this.takeSlot());
    } catch (e) {
      this.opening--;
      queueMicrotask(() => this.dispatch());
      throw e;
    }
    if (this.closing) {
      this.opening--;
      this.giveSlot(slot);
      throw this.closedError!;
    }
    (this.openingSlots ??= new Set()).add(slot);
    let opened: Opened<C>;
    const attempt = this.open();
    (this.openings ??= new Set()).add(attempt);
    try {
      opened = await attempt;
    } catch (e) {
      this.openings?.delete(attempt);
      this.openingSlots?.delete(slot);
      this.giveSlot(slot);
      this.opening--;
      this.openFailures++;
      this.lastOpenFailure = { at: this.now(), error: e };
      // A failed open frees a slot a waiter may use.
      queueMicrotask(() => this.dispatch());
      throw e;
    }
    // The caller adds the lease to busy/idle synchronously, so the count never dips in between.
    this.openings?.delete(attempt);
    this.openingSlots?.delete(slot);
    this.opening--;
    this.openedTotal++;
    this.openFailures = 0;
    this.lastOpenFailure = null;
    const { conn, tokenExpiresAt } = opened;
    const lease: Lease<C> = { conn, uses: 0, openedAt: this.now(), tokenExpiresAt, idleSince: this.now(), closed: false, slot };
    conn.onClose(() => this.onConnectionClosed(lease));
    return lease;
  }

  /** The provider dropped a connection (idle timeout, 421): forget it and top min_idle up again. */
  private onConnectionClosed(lease: Lease<C>): void {
    if (lease.closed) return;
    lease.closed = true;
    this.giveSlot(this.detachSlot(lease));
    const i = this.idle.indexOf(lease);
    if (i >= 0) {
      this.idle.splice(i, 1);
      this.scheduleReplenish(this.openFailures ? this.backoffMs() : 0);
    }
  }

  /**
   * Waiters get a new connection when there is room; `slot`, one handed over by a connection
   * just closed, goes to the first (or back to the store).
   */
  private dispatch(slot: string | null = null): void {
    while (this.waiters.length && this.total < this.opts.maxConnections && !this.closing && (slot || !this.slotTimer)) {
      const waiter = this.waiters.shift()!;
      clearTimeout(waiter.timer);
      this.openLease(slot).then(
        (lease) => {
          this.slotRetryMs = SLOT_RETRY_MIN_MS;
          waiter.resolve(lease);
        },
        (e: unknown) => {
          if (!(e instanceof NoSlot)) return waiter.reject(e as Error);
          if (this.now() >= waiter.deadline) return waiter.reject(this.busyError());
          this.arm(waiter);
          this.waiters.unshift(waiter);
          this.waitForSlot();
        },
      );
      slot = null;
    }
    if (slot) this.giveSlot(slot);
  }

  /** Asks for a slot again after a growing pause, and tells the other instances this one waits. */
  private waitForSlot(): void {
    if (this.slotTimer || this.closing || !this.waiters.length) return;
    this.slots.want(this.name);
    const delay = this.slotRetryMs;
    this.slotRetryMs = Math.min(SLOT_RETRY_MAX_MS, delay * 2);
    this.slotTimer = setTimeout(() => {
      this.slotTimer = null;
      this.dispatch();
    }, delay);
  }

  private async takeSlot(): Promise<string> {
    const holder = `${INSTANCE_ID}:${++holders}`;
    let taken: boolean;
    try {
      taken = await this.slots.take(this.name, holder, this.opts.maxConnections, this.slotTtlMs);
    } catch (e) {
      // The store cannot answer (Redis failing over, unreachable): this pool's own
      // max_connections still holds, and the renewal registers the slot once the store answers
      // (or closes the connection if the fleet's slots were all taken meanwhile). Mail flows; a
      // provider that counts connections answers an excess with a 4xx the MTA retries.
      this.logger.debug({ event: 'slot_unchecked', pool: this.name, error: (e as Error).message }, 'connection slot not counted: store unavailable');
      taken = true;
    }
    if (!taken) throw new NoSlot();
    this.keepRenewing();
    return holder;
  }

  /** takeSlot() retried until `deadline`; null when none came free. */
  private async takeSlotBy(deadline: number): Promise<string | null> {
    for (let wait = SLOT_RETRY_MIN_MS; ; wait = Math.min(SLOT_RETRY_MAX_MS, wait * 2)) {
      try {
        return await this.takeSlot();
      } catch (e) {
        if (!(e instanceof NoSlot)) throw e;
      }
      if (this.closing || this.now() + wait > deadline) return null;
      this.slots.want(this.name);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** Takes the slot off a lease that is closing, to hand it to the connection that replaces it. */
  private detachSlot(lease: Lease<C>): string | null {
    const slot = lease.slot;
    lease.slot = null;
    return slot;
  }

  private giveSlot(slot: string | null): void {
    if (!slot) return;
    this.slots.give(this.name, slot).catch((e: Error) =>
      // It lapses at its TTL; until then the mailbox has one connection fewer to use.
      this.logger.debug({ event: 'slot_give_failed', pool: this.name, error: e.message }, 'could not give a connection slot back'),
    );
  }

  /** Renews the slots held while there are any, every third of their TTL. */
  private keepRenewing(): void {
    if (this.renewTimer) return;
    this.renewTimer = setInterval(() => this.renewSlots(), this.slotTtlMs / 3);
    this.renewTimer.unref();
  }

  private renewSlots(): void {
    const leases = [...this.idle, ...(this.busy ?? [])];
    const held = [...leases.map((l) => l.slot), ...(this.openingSlots ?? []), ...(this.borrowedSlots ?? [])].filter((s): s is string => s !== null);
    if (!held.length) {
      if (this.renewTimer) clearInterval(this.renewTimer);
      this.renewTimer = null;
      return;
    }
    this.slots.renew(this.name, held, this.opts.maxConnections, this.slotTtlMs).then(
      (lost) => {
        if (!lost.length) return;
        // Lapsed and taken by another instance (this one could not reach the store for a TTL):
        // the connection goes when its transaction ends, so the mailbox is back under its cap.
        const gone = new Set(lost);
        for (const l of leases) if (l.slot && gone.has(l.slot)) l.slot = null;
        for (let i = this.idle.length - 1; i >= 0; i--) if (this.idle[i]!.slot === null) this.discard(this.idle.splice(i, 1)[0]!);
        this.logger.warn({ event: 'slot_lost', pool: this.name, lost: lost.length }, 'connection slots lapsed and were taken by another instance: closing those connections');
      },
      // Store unreachable: keep the connections (the slots are renewed again when it answers,
      // or taken again if they lapsed meanwhile and there is room).
      () => undefined,
    );
  }

  private scheduleReplenish(delayMs: number): void {
    if (this.closing || this.replenishTimer || this.idle.length + this.opening >= this.opts.minIdle) return;
    // Another instance waits for this mailbox: keep nothing ready meanwhile.
    delayMs = Math.max(delayMs, this.wantedUntil - this.now());
    this.replenishTimer = setTimeout(() => {
      this.replenishTimer = null;
      this.warm().catch(() => undefined);
    }, delayMs);
    this.replenishTimer.unref();
  }

  private backoffMs(): number {
    return Math.min(60_000, 500 * 2 ** Math.min(this.openFailures, 7));
  }

  /** `graceful`: the connection is between transactions and may say QUIT; else its state is unknown and it is cut. */
  private discard(lease: Lease<C>, graceful = true): void {
    lease.closed = true;
    this.quit(lease, graceful).catch(() => undefined);
  }

  private async quit(lease: Lease<C>, graceful = true): Promise<void> {
    lease.closed = true;
    // The slot goes back once the provider has seen the connection close, not before: another
    // instance's login must not overlap it (Exchange refuses the mailbox's fourth).
    const slot = this.detachSlot(lease);
    try {
      // A connection whose transaction failed midway may still owe replies (or be inside DATA,
      // where a QUIT would be message text): it is cut, never asked to QUIT. The QUIT bounds
      // itself (PoolableConnection.quit), so the slot comes back in bounded time.
      if (graceful && lease.conn.isUsable) await lease.conn.quit().catch(() => undefined);
    } finally {
      lease.conn.destroy();
      this.giveSlot(slot);
    }
    this.logger.debug({ event: 'upstream_close', pool: this.name, uses: lease.uses }, 'upstream connection closed');
  }
}
