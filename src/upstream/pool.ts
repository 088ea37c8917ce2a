// The per-account pool of authenticated upstream connections: the one place a connection is
// pooled. Connections are opened up to the account's max_connections, handed out one
// transaction at a time, reused until messages_per_connection, an idle timeout or the end of the
// token they authenticated with, and replaced when the provider drops them. When all are busy,
// callers wait in FIFO order for a bounded time, then get 451 4.4.5.
//
// The connection factory is injected (as undici's Pool does) so tests can hand in their own.
import type { Logger } from 'pino';
import { RelayError } from '../errors/registry.js';
import type { Reply } from '../smtp/reply.js';

/** What the pool needs of a connection; UpstreamConnection provides it. */
export interface PoolableConnection {
  readonly isUsable: boolean;
  onClose(listener: () => void): void;
  rset(): Promise<Reply>;
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
}

export interface PoolOptions {
  maxConnections: number;
  minIdle: number;
  messagesPerConnection: number;
  acquireTimeoutMs: number;
  idleTimeoutMs: number;
  /** A connection is retired this long before its token expires. */
  tokenMarginMs: number;
}

interface Waiter<C> {
  resolve: (lease: Lease<C>) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
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
  private readonly busy = new Set<Lease<C>>();
  private readonly waiters: Waiter<C>[] = [];
  private opening = 0;
  /** Connections being opened: close() waits for them, so none finishes (and logs in) after it. */
  private readonly openings = new Set<Promise<unknown>>();
  private outside = 0;
  private openedTotal = 0;
  private openFailures = 0;
  private lastOpenFailure: OpenFailure | null = null;
  private replenishTimer: NodeJS.Timeout | null = null;
  private closing = false;
  /** What acquire() and waiters get once closing: the relay stopping, or the account leaving it. */
  private closedError: RelayError | null = null;

  constructor(
    readonly name: string,
    private readonly open: () => Promise<Opened<C>>,
    private readonly opts: PoolOptions,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get stats(): PoolStats {
    return { idle: this.idle.length, busy: this.busy.size, opening: this.opening, waiting: this.waiters.length, opened: this.openedTotal, outside: this.outside };
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
    return this.idle.length + this.busy.size + this.opening + this.outside;
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
    for (;;) {
      if (this.closing) return null;
      if (this.total < this.opts.maxConnections) {
        this.outside++;
        break;
      }
      const spare = this.idle.shift();
      if (spare) {
        this.outside++;
        await this.quit(spare);
        break;
      }
      if (this.now() >= deadline) return null;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    let returned = false;
    return () => {
      if (returned) return;
      returned = true;
      this.outside--;
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
    if (this.total < this.opts.maxConnections) return this.openLease();
    if (fresh) {
      // At capacity: a fresh socket only if an idle one can make room for it.
      const spare = this.idle.shift();
      if (spare) {
        this.discard(spare);
        return this.openLease();
      }
    }
    return new Promise<Lease<C>>((resolve, reject) => {
      const waiter: Waiter<C> = {
        resolve,
        reject,
        fresh,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new RelayError('POOL_BUSY', `${this.name}: no connection free within ${this.opts.acquireTimeoutMs} ms`));
        }, this.opts.acquireTimeoutMs),
      };
      this.waiters.push(waiter);
    });
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
    if (!this.busy.delete(lease)) return;
    if (!reusable || this.closing || !this.isFresh(lease)) {
      this.discard(lease);
      this.dispatch();
      this.scheduleReplenish(0);
      return;
    }
    if (this.waiters[0]?.fresh && lease.uses > 0) {
      // A used connection could fail the retry the way the first one failed (Gmail's 421
      // after N messages): it makes room for a new one instead.
      this.discard(lease);
      this.dispatch();
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      this.busy.add(lease);
      waiter.resolve(lease);
      return;
    }
    lease.idleSince = this.now();
    this.idle.push(lease);
  }

  /** Opens connections until min_idle are ready; start-up awaits it so the first message pays no handshake. */
  async warm(): Promise<void> {
    const missing = this.opts.minIdle - this.idle.length - this.opening;
    if (missing <= 0 || this.closing) return;
    const results = await Promise.allSettled(
      Array.from({ length: Math.min(missing, this.opts.maxConnections - this.total) }, () => this.openIdle()),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
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
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(this.closedError);
    }
    await Promise.allSettled([...this.idle.splice(0).map((l) => this.quit(l)), ...this.openings]);
  }

  private takeIdle(): Lease<C> | null {
    let lease: Lease<C> | undefined;
    while ((lease = this.idle.pop())) {
      if (this.isFresh(lease)) {
        this.busy.add(lease);
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
      lease.uses < this.opts.messagesPerConnection &&
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

  private async openLease(): Promise<Lease<C>> {
    const lease = await this.openTracked();
    if (this.closing) {
      this.discard(lease);
      throw this.closedError!;
    }
    this.busy.add(lease);
    return lease;
  }

  private async openIdle(): Promise<void> {
    const lease = await this.openTracked();
    // Through release() so a waiter that queued meanwhile gets it first.
    this.busy.add(lease);
    this.release(lease, true);
  }

  private async openTracked(): Promise<Lease<C>> {
    this.opening++;
    let opened: Opened<C>;
    const attempt = this.open();
    this.openings.add(attempt);
    try {
      opened = await attempt;
    } catch (e) {
      this.openings.delete(attempt);
      this.opening--;
      this.openFailures++;
      this.lastOpenFailure = { at: this.now(), error: e };
      // A failed open frees a slot a waiter may use.
      queueMicrotask(() => this.dispatch());
      throw e;
    }
    // The caller adds the lease to busy/idle synchronously, so the count never dips in between.
    this.openings.delete(attempt);
    this.opening--;
    this.openedTotal++;
    this.openFailures = 0;
    this.lastOpenFailure = null;
    const { conn, tokenExpiresAt } = opened;
    const lease: Lease<C> = { conn, uses: 0, openedAt: this.now(), tokenExpiresAt, idleSince: this.now(), closed: false };
    conn.onClose(() => this.onConnectionClosed(lease));
    return lease;
  }

  /** The provider dropped a connection (idle timeout, 421): forget it and top min_idle up again. */
  private onConnectionClosed(lease: Lease<C>): void {
    if (lease.closed) return;
    lease.closed = true;
    const i = this.idle.indexOf(lease);
    if (i >= 0) {
      this.idle.splice(i, 1);
      this.scheduleReplenish(this.openFailures ? this.backoffMs() : 0);
    }
  }

  /** Waiters get a new connection when a slot is free. */
  private dispatch(): void {
    while (this.waiters.length && this.total < this.opts.maxConnections && !this.closing) {
      const waiter = this.waiters.shift()!;
      clearTimeout(waiter.timer);
      this.openLease().then(waiter.resolve, waiter.reject);
    }
  }

  private scheduleReplenish(delayMs: number): void {
    if (this.closing || this.replenishTimer || this.idle.length + this.opening >= this.opts.minIdle) return;
    this.replenishTimer = setTimeout(() => {
      this.replenishTimer = null;
      this.warm().catch(() => undefined);
    }, delayMs);
    this.replenishTimer.unref();
  }

  private backoffMs(): number {
    return Math.min(60_000, 500 * 2 ** Math.min(this.openFailures, 7));
  }

  private discard(lease: Lease<C>): void {
    lease.closed = true;
    this.quit(lease).catch(() => undefined);
  }

  private async quit(lease: Lease<C>): Promise<void> {
    lease.closed = true;
    if (lease.conn.isUsable) {
      await lease.conn.quit().catch(() => lease.conn.destroy());
    } else {
      lease.conn.destroy();
    }
    this.logger.debug({ event: 'upstream_close', pool: this.name, uses: lease.uses }, 'upstream connection closed');
  }
}
