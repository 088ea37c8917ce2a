import { describe, it, expect, afterEach } from 'vitest';
import { AccountPool, type Lease, type PoolableConnection, type PoolOptions } from '../../src/upstream/pool.js';
import { RelayError } from '../../src/errors/registry.js';
import { reply, enhancedCode, type Reply } from '../../src/smtp/reply.js';
import { silentLogger } from '../../src/obs/logger.js';
import { rejection } from '../helpers/thrown.js';
import { LocalConnectionSlots } from '../../src/store/local-slots.js';
import type { ConnectionSlots } from '../../src/store/store.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Lets queued microtasks and zero-delay timers run. */
const settle = () => sleep(0);

class FakeConn implements PoolableConnection {
  isUsable = true;
  quits = 0;
  destroyed = false;
  private listeners: (() => void)[] = [];
  constructor(
    readonly id: number,
    private readonly onGone: () => void,
  ) {}
  onClose(listener: () => void): void {
    this.listeners.push(listener);
  }
  async rset(): Promise<Reply> {
    return reply(250, '2.0.0 OK');
  }
  async quit(): Promise<void> {
    this.quits++;
    this.gone();
  }
  destroy(): void {
    this.destroyed = true;
    this.gone();
  }
  /** The provider dropped the connection. */
  drop(): void {
    this.gone();
  }
  get closed(): boolean {
    return !this.isUsable;
  }
  private gone(): void {
    if (!this.isUsable) return;
    this.isUsable = false;
    this.onGone();
    for (const l of this.listeners) l();
  }
}

interface Harness {
  pool: AccountPool<FakeConn>;
  conns: FakeConn[];
  /** Connections opened or being opened and not yet closed. */
  live: () => number;
  maxLive: () => number;
  clock: { now: number };
}

const DEFAULTS: PoolOptions = {
  maxConnections: 3,
  minIdle: 0,
  messagesPerConnection: 100,
  acquireTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  tokenMarginMs: 5 * 60_000,
};

const pools: AccountPool<FakeConn>[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
});

function harness(opts: Partial<PoolOptions> = {}, { openDelayMs = 0, tokenLifeMs = 60 * 60_000 } = {}): Harness {
  const clock = { now: 1_000_000 };
  const conns: FakeConn[] = [];
  let live = 0;
  let maxLive = 0;
  const open = async () => {
    live++;
    maxLive = Math.max(maxLive, live);
    const conn = new FakeConn(conns.length + 1, () => live--);
    conns.push(conn);
    if (openDelayMs) await sleep(openDelayMs);
    else await Promise.resolve();
    return { conn, tokenExpiresAt: clock.now + tokenLifeMs };
  };
  const pool = new AccountPool<FakeConn>('test@gmail.com', open, { ...DEFAULTS, ...opts }, silentLogger(), () => clock.now);
  pools.push(pool);
  return { pool, conns, live: () => live, maxLive: () => maxLive, clock };
}


/** One transaction: the caller counts the use, then gives the connection back. */
function finish(pool: AccountPool<FakeConn>, lease: Lease<FakeConn>, reusable = true): void {
  lease.uses++;
  pool.release(lease, reusable);
}

describe('AccountPool', () => {
  it('reuses one connection for sequential acquires', async () => {
    const h = harness();
    for (let i = 0; i < 5; i++) {
      const lease = await h.pool.acquire();
      expect(lease.conn.id).toBe(1);
      finish(h.pool, lease);
    }
    expect(h.conns).toHaveLength(1);
    expect(h.pool.stats).toMatchObject({ idle: 1, busy: 0, opened: 1 });
  });

  it('a connection given back in an unknown state is cut, not asked to QUIT, and its slot is free at once', async () => {
    // The 60 s fuzz run: connections whose QUIT never settled kept their slots, and every
    // message waited for a connection until the slots' TTL.
    const h = harness({ maxConnections: 1 });
    const first = await h.pool.acquire();
    first.conn.quit = () => new Promise<void>(() => undefined); // a QUIT that never settles
    finish(h.pool, first, false);
    const second = await Promise.race([h.pool.acquire(), sleep(1_000).then(() => null)]);
    expect(second?.conn.id).toBe(2);
    expect(first.conn.quits).toBe(0);
    expect(first.conn.destroyed).toBe(true);
  });

  it('ready() hands out an idle connection at once, else null (none idle, or closing: acquire() says why)', async () => {
    const h = harness();
    expect(h.pool.ready()).toBeNull();
    finish(h.pool, await h.pool.acquire());
    const lease = h.pool.ready();
    expect(lease?.conn.id).toBe(1);
    expect(h.pool.stats).toMatchObject({ idle: 0, busy: 1 });
    expect(h.pool.ready()).toBeNull();
    finish(h.pool, lease!);
    void h.pool.close();
    expect(h.pool.ready()).toBeNull();
    expect((await rejection(h.pool.acquire())).code).toBe('SHUTTING_DOWN');
  });

  it('keeps at most maxConnections open under 20 concurrent acquires, and serves them all', async () => {
    const h = harness({ maxConnections: 3 }, { openDelayMs: 5 });
    let busyNow = 0;
    let maxBusy = 0;
    const served = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const lease = await h.pool.acquire();
        busyNow++;
        maxBusy = Math.max(maxBusy, busyNow);
        await sleep(2);
        busyNow--;
        finish(h.pool, lease);
        return i;
      }),
    );
    expect(served).toHaveLength(20);
    expect(h.maxLive()).toBeLessThanOrEqual(3);
    expect(maxBusy).toBeLessThanOrEqual(3);
    expect(h.conns.length).toBeLessThanOrEqual(3);
    expect(h.pool.stats.idle + h.pool.stats.busy).toBeLessThanOrEqual(3);
  });

  it('with maxConnections 1, a second concurrent acquire waits for the first connection instead of opening another', async () => {
    const h = harness({ maxConnections: 1 }, { openDelayMs: 5 });
    const a = h.pool.acquire();
    const b = h.pool.acquire();
    b.catch(() => undefined); // if an assertion below fails, close() rejects b: not an unhandled rejection
    const first = await a;
    await settle();
    expect(h.maxLive()).toBe(1);
    expect(h.pool.stats.waiting).toBe(1);
    finish(h.pool, first);
    const second = await b;
    expect(second.conn).toBe(first.conn);
    expect(h.conns).toHaveLength(1);
  });

  it('hands a released connection to waiters in FIFO order', async () => {
    const h = harness({ maxConnections: 1 });
    const lease = await h.pool.acquire();
    await settle();
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) =>
      h.pool.acquire().then((l) => {
        order.push(n);
        return l;
      }),
    );
    await settle();
    expect(h.pool.stats.waiting).toBe(3);
    finish(h.pool, lease);
    const l1 = await waiters[0]!;
    finish(h.pool, l1);
    const l2 = await waiters[1]!;
    finish(h.pool, l2);
    const l3 = await waiters[2]!;
    finish(h.pool, l3);
    expect(order).toEqual([1, 2, 3]);
    expect(new Set([l1.conn, l2.conn, l3.conn]).size).toBe(1);
  });

  it('a waiter that gets no connection within acquireTimeoutMs fails with POOL_BUSY 451 4.4.5', async () => {
    const h = harness({ maxConnections: 1, acquireTimeoutMs: 30 });
    const lease = await h.pool.acquire();
    const started = Date.now();
    const err = await rejection(h.pool.acquire());
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(err.code).toBe('POOL_BUSY');
    expect(err.reply.code).toBe(451);
    expect(enhancedCode(err.reply)).toBe('4.4.5');
    expect(h.pool.stats.waiting).toBe(0);
    // the connection released afterwards goes idle, not to the timed-out waiter
    finish(h.pool, lease);
    expect(h.pool.stats).toMatchObject({ idle: 1, busy: 0 });
  });

  it('retires a connection after messagesPerConnection uses and opens a new one next', async () => {
    const h = harness({ messagesPerConnection: 2 });
    const a = await h.pool.acquire();
    finish(h.pool, a);
    const b = await h.pool.acquire();
    expect(b.conn).toBe(a.conn);
    finish(h.pool, b); // second use: retired on release
    expect(a.conn.closed).toBe(true);
    const c = await h.pool.acquire();
    expect(c.conn).not.toBe(a.conn);
    expect(c.uses).toBe(0);
    expect(h.conns).toHaveLength(2);
  });

  it('release(lease, false) discards the connection and a waiter gets a newly opened one', async () => {
    const h = harness({ maxConnections: 1 });
    const lease = await h.pool.acquire();
    await settle();
    const waiter = h.pool.acquire();
    await settle();
    h.pool.release(lease, false);
    expect(lease.conn.closed).toBe(true);
    const next = await waiter;
    expect(next.conn).not.toBe(lease.conn);
    expect(next.conn.isUsable).toBe(true);
    expect(h.conns).toHaveLength(2);
  });

  it('release of a lease not handed out (or released twice) is ignored', async () => {
    const h = harness();
    const lease = await h.pool.acquire();
    finish(h.pool, lease);
    h.pool.release(lease, true);
    expect(h.pool.stats).toMatchObject({ idle: 1, busy: 0 });
  });

  it('does not hand out again a connection the provider closed while it was idle', async () => {
    const h = harness();
    const lease = await h.pool.acquire();
    finish(h.pool, lease);
    lease.conn.drop();
    expect(h.pool.stats.idle).toBe(0);
    const next = await h.pool.acquire();
    expect(next.conn).not.toBe(lease.conn);
    expect(h.conns).toHaveLength(2);
  });

  it('a connection closed while busy is discarded on release', async () => {
    const h = harness();
    const lease = await h.pool.acquire();
    lease.conn.drop();
    finish(h.pool, lease);
    expect(h.pool.stats.idle).toBe(0);
    expect((await h.pool.acquire()).conn).not.toBe(lease.conn);
  });

  it('does not reuse a connection whose token expires within tokenMarginMs', async () => {
    const h = harness({ tokenMarginMs: 5 * 60_000 }, { tokenLifeMs: 60 * 60_000 });
    const lease = await h.pool.acquire();
    finish(h.pool, lease);
    h.clock.now += 54 * 60_000; // 6 min of token left: still fine
    const again = await h.pool.acquire();
    expect(again.conn).toBe(lease.conn);
    finish(h.pool, again);
    h.clock.now += 2 * 60_000; // 4 min left: inside the margin
    const fresh = await h.pool.acquire();
    expect(fresh.conn).not.toBe(lease.conn);
    expect(lease.conn.closed).toBe(true);
  });

  it('with a short-lived token the margin shrinks to a quarter of its life, so the connection is still used', async () => {
    const h = harness({ tokenMarginMs: 60_000 }, { tokenLifeMs: 120_000 });
    const lease = await h.pool.acquire();
    finish(h.pool, lease);
    h.clock.now += 80_000; // 40 s left: beyond a quarter of 120 s
    const again = await h.pool.acquire();
    expect(again.conn).toBe(lease.conn);
    finish(h.pool, again);
    h.clock.now += 15_000; // 25 s left: retired
    expect((await h.pool.acquire()).conn).not.toBe(lease.conn);
  });

  it('a connection whose token enters the margin while busy is retired on release', async () => {
    const h = harness({ tokenMarginMs: 5 * 60_000 }, { tokenLifeMs: 60 * 60_000 });
    const lease = await h.pool.acquire();
    h.clock.now += 56 * 60_000;
    finish(h.pool, lease);
    expect(lease.conn.closed).toBe(true);
    expect(h.pool.stats.idle).toBe(0);
  });

  it('warm() opens minIdle ready connections, which the next acquires use', async () => {
    const h = harness({ minIdle: 2, maxConnections: 5 });
    await h.pool.warm();
    expect(h.conns).toHaveLength(2);
    expect(h.pool.stats).toMatchObject({ idle: 2, busy: 0, opening: 0 });
    const a = await h.pool.acquire();
    const b = await h.pool.acquire();
    expect(h.conns).toHaveLength(2);
    expect(new Set([a.conn, b.conn]).size).toBe(2);
    // warming again with min_idle already busy-but-open is capped by max_connections, never beyond
    finish(h.pool, a);
    finish(h.pool, b);
    await h.pool.warm();
    expect(h.conns).toHaveLength(2);
  });

  it('sweep() closes idle connections beyond minIdle once idle longer than idleTimeoutMs', async () => {
    const h = harness({ minIdle: 1, maxConnections: 5, idleTimeoutMs: 1_000 });
    const leases = await Promise.all([h.pool.acquire(), h.pool.acquire(), h.pool.acquire()]);
    for (const l of leases) finish(h.pool, l);
    expect(h.pool.stats.idle).toBe(3);

    h.clock.now += 500;
    h.pool.sweep();
    expect(h.pool.stats.idle).toBe(3);

    h.clock.now += 501;
    h.pool.sweep();
    await settle();
    expect(h.pool.stats.idle).toBe(1);
    expect(h.conns.filter((c) => c.closed)).toHaveLength(2);
    expect(h.conns).toHaveLength(3); // min_idle was still met: nothing reopened
  });

  it('sweep() keeps the recently used connection and closes the one idle too long', async () => {
    const h = harness({ minIdle: 1, maxConnections: 5, idleTimeoutMs: 1_000 });
    const [a, b] = await Promise.all([h.pool.acquire(), h.pool.acquire()]);
    finish(h.pool, a!);
    h.clock.now += 900;
    finish(h.pool, b!);
    h.clock.now += 200;
    h.pool.sweep();
    expect(a!.conn.closed).toBe(true);
    expect(b!.conn.closed).toBe(false);
  });

  it('acquire(true) skips idle connections and opens a fresh one', async () => {
    const h = harness({ maxConnections: 3 });
    const first = await h.pool.acquire();
    finish(h.pool, first);
    const fresh = await h.pool.acquire(true);
    expect(fresh.conn).not.toBe(first.conn);
    expect(h.pool.stats).toMatchObject({ idle: 1, busy: 1 });
  });

  it('acquire(true) at capacity closes an idle connection to make room', async () => {
    const h = harness({ maxConnections: 1 });
    const first = await h.pool.acquire();
    finish(h.pool, first);
    const fresh = await h.pool.acquire(true);
    expect(fresh.conn).not.toBe(first.conn);
    expect(first.conn.closed).toBe(true);
    expect(h.maxLive()).toBeLessThanOrEqual(1);
  });

  it('acquire(true) at capacity with none idle waits for a new connection, not a used one released meanwhile', async () => {
    const h = harness({ maxConnections: 1 });
    const used = await h.pool.acquire();
    const waiting = h.pool.acquire(true);
    finish(h.pool, used); // a completed transaction: reusable, but not fresh
    const fresh = await waiting;
    expect(fresh.conn).not.toBe(used.conn);
    expect(used.conn.closed).toBe(true);
    expect(h.maxLive()).toBeLessThanOrEqual(1);
  });

  it('close() rejects waiters with SHUTTING_DOWN, closes idle connections and refuses new acquires', async () => {
    const h = harness({ maxConnections: 2 });
    const [busy, idle] = await Promise.all([h.pool.acquire(), h.pool.acquire()]);
    finish(h.pool, idle!);
    const other = await h.pool.acquire(); // takes the idle one
    finish(h.pool, other);
    const held = await h.pool.acquire();
    await settle();
    const waiter = h.pool.acquire();
    await settle();
    expect(h.pool.stats.waiting).toBe(1);

    await h.pool.close();
    const err = await rejection(waiter);
    expect(err.code).toBe('SHUTTING_DOWN');
    expect(err.reply.code).toBe(421);
    expect((await rejection(h.pool.acquire())).code).toBe('SHUTTING_DOWN');

    // busy connections are closed as their transactions end
    expect(busy!.conn.closed).toBe(false);
    finish(h.pool, busy!);
    finish(h.pool, held);
    expect(busy!.conn.closed).toBe(true);
    expect(held.conn.closed).toBe(true);
    expect(h.live()).toBe(0);
  });

  it('close() waits for connections still being opened and closes them: none is left open, logged in, after it', async () => {
    const h = harness({ minIdle: 2 }, { openDelayMs: 50 });
    const warming = h.pool.warm();
    await settle();
    expect(h.pool.stats.opening).toBe(2);
    let closed = false;
    const closing = h.pool.close().then(() => (closed = true));
    await sleep(10);
    expect(closed).toBe(false); // the two opens are still in flight
    await closing;
    await warming;
    expect(h.conns).toHaveLength(2);
    expect(h.conns.every((c) => c.closed)).toBe(true);
    expect(h.live()).toBe(0);
    expect(h.pool.stats).toMatchObject({ idle: 0, busy: 0, opening: 0 });
  });

  it('close(reason): an account leaving the relay fails its waiters with a 4xx that keeps the session', async () => {
    const h = harness({ maxConnections: 1 });
    const held = await h.pool.acquire();
    const waiter = h.pool.acquire();
    await settle();
    await h.pool.close(new RelayError('ACCOUNT_REMOVED'));
    const err = await rejection(waiter);
    expect(err.code).toBe('ACCOUNT_REMOVED');
    expect(`${err.reply.code} ${enhancedCode(err.reply)}`).toBe('451 4.7.0');
    expect((await rejection(h.pool.acquire(true))).code).toBe('ACCOUNT_REMOVED');
    // The transaction in flight finishes on its connection, which then goes.
    expect(held.conn.closed).toBe(false);
    finish(h.pool, held);
    expect(held.conn.closed).toBe(true);
  });

  it('min_idle is topped up after a connection is retired', async () => {
    const h = harness({ minIdle: 1, messagesPerConnection: 1 });
    await h.pool.warm();
    const lease = await h.pool.acquire();
    finish(h.pool, lease); // retired: uses reached messagesPerConnection
    await sleep(5);
    expect(h.pool.stats.idle).toBe(1);
    expect(h.conns).toHaveLength(2);
  });
});

describe('AccountPool: max_connections shared by several instances (connection slots)', () => {
  /**
   * Two pools of one mailbox, as on two instances: one slot count between them, and a pool that
   * waits reaches the other (as the Redis store's channel does).
   */
  function pair(cap: number, acquireTimeoutMs = DEFAULTS.acquireTimeoutMs) {
    let live = 0;
    let maxLive = 0;
    let opened = 0;
    const pools2: AccountPool<FakeConn>[] = [];
    const counted = new LocalConnectionSlots();
    const make = (): AccountPool<FakeConn> => {
      const slots: ConnectionSlots = {
        take: (email, holder, c, ttl) => counted.take(email, holder, c, ttl),
        renew: (email, holders, c, ttl) => counted.renew(email, holders, c, ttl),
        give: (email, holder) => counted.give(email, holder),
        want: () => {
          for (const p of pools2) if (p !== pool) p.wanted();
        },
        onWanted: () => undefined,
      };
      const open = async () => {
        live++;
        maxLive = Math.max(maxLive, live);
        await Promise.resolve();
        return { conn: new FakeConn(++opened, () => live--), tokenExpiresAt: Date.now() + 3_600_000 };
      };
      const pool: AccountPool<FakeConn> = new AccountPool<FakeConn>('m@outlook.test', open, { ...DEFAULTS, maxConnections: cap, acquireTimeoutMs, slots }, silentLogger());
      pools2.push(pool);
      pools.push(pool);
      return pool;
    };
    return { a: make(), b: make(), live: () => live, maxLive: () => maxLive };
  }

  it('a pool waits while the other holds every slot; the other gives an idle one back when asked; the cap holds throughout', async () => {
    const { a, b, maxLive, live } = pair(2);
    const [x, y] = [await a.acquire(), await a.acquire()];
    finish(a, x);
    finish(a, y);
    expect(a.stats).toMatchObject({ idle: 2 });
    const started = Date.now();
    const lease = await b.acquire();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(a.stats.idle).toBe(1);
    expect(live()).toBe(2);
    // While b waits, a connection a finishes with goes back instead of idling there.
    const z = a.ready()!;
    const second = b.acquire();
    finish(a, z);
    finish(b, await second);
    finish(b, lease);
    expect(a.stats).toMatchObject({ idle: 0, busy: 0 });
    expect(maxLive()).toBe(2);
  });

  it('no slot free within acquire_timeout_ms: POOL_BUSY, never a connection over the cap', async () => {
    const { a, b, maxLive } = pair(1, 300);
    const held = await a.acquire();
    const busy = await rejection(b.acquire());
    expect(busy.code).toBe('POOL_BUSY');
    finish(a, held);
    expect(maxLive()).toBe(1);
  });
});
