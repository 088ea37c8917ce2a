// The API upstreams' concurrency (issue 22): a mailbox's max_connections counted in the same
// connection slots as its SMTP connections, so two instances sharing a store never have more of
// its messages at the API than the cap, a waiting one gets a slot when the other's message is
// done, and the slots of an instance that died lapse at their TTL.
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/obs/logger.js';
import { LocalConnectionSlots } from '../../src/store/local-slots.js';
import type { ConnectionSlots } from '../../src/store/store.js';
import { ApiPermits } from '../../src/upstream/api/permits.js';
import { toReply } from '../../src/errors/registry.js';
import { enhancedCode } from '../../src/smtp/reply.js';
import { rejection } from '../helpers/thrown.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const EMAIL = 'box@outlook.test';

/** Permits of one mailbox on `n` "instances" sharing one slot count (as Redis is shared), and the count in use. */
function fleet(n: number, cap: number, { acquireTimeoutMs = 3_000, slotTtlMs = 20_000 } = {}) {
  const slots = new LocalConnectionSlots();
  let inUse = 0;
  let peak = 0;
  const instances = Array.from({ length: n }, () => new ApiPermits(EMAIL, { maxConnections: cap, acquireTimeoutMs, slots, slotTtlMs }, silentLogger()));
  /** One message at the API through instance `i` for `ms`. */
  const send = async (i: number, ms: number, order?: number[], tag?: number) => {
    const release = await instances[i]!.acquire();
    order?.push(tag!);
    peak = Math.max(peak, ++inUse);
    await sleep(ms);
    inUse--;
    release();
  };
  return { slots, instances, send, peak: () => peak };
}

const held: Array<() => void> = [];
afterEach(() => {
  for (const give of held.splice(0)) give();
});

describe('ApiPermits: max_connections of an API account for the fleet', () => {
  it('three instances, 30 messages of one mailbox capped at 3: never more than 3 at the API at once, all sent', async () => {
    const f = fleet(3, 3, { acquireTimeoutMs: 10_000 });
    await Promise.all(Array.from({ length: 30 }, (_, k) => f.send(k % 3, 20)));
    expect(f.peak()).toBe(3);
  });

  it('an instance waiting for a slot gets one when another instance\'s message is done, within the retry interval', async () => {
    const { instances } = fleet(2, 2);
    const [a, b] = instances as [ApiPermits, ApiPermits];
    const first = await a.acquire();
    held.push(await a.acquire());
    let gotAt = 0;
    const waiting = b.acquire().then((give) => ((gotAt = Date.now()), give));
    await sleep(300);
    expect(gotAt).toBe(0);
    const releasedAt = Date.now();
    first();
    held.push(await waiting);
    // The pool asks again 100, 200, 400, 800 ms after it started to wait (SLOT_RETRY_*).
    expect(gotAt - releasedAt).toBeLessThan(1_000);
  });

  it('waiters of one instance are served in FIFO order', async () => {
    const { instances } = fleet(1, 1);
    const a = instances[0]!;
    const order: number[] = [];
    const first = await a.acquire();
    const waiters = [1, 2, 3].map(async (tag) => {
      const give = await a.acquire();
      order.push(tag);
      await sleep(5);
      give();
    });
    await sleep(20);
    first();
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3]);
  });

  it('no slot within acquire_timeout_ms: POOL_BUSY, answered 451 4.4.5, and the other instance keeps its slots', async () => {
    const { instances } = fleet(2, 2, { acquireTimeoutMs: 400 });
    const [a, b] = instances as [ApiPermits, ApiPermits];
    held.push(await a.acquire(), await a.acquire());
    const started = Date.now();
    const busy = await rejection(b.acquire());
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(busy.code).toBe('POOL_BUSY');
    expect(toReply(busy).code).toBe(451);
    expect(enhancedCode(toReply(busy))).toBe('4.4.5');
  });

  it('slots held longer than their TTL are renewed; those of an instance that died lapse at the TTL and go to the others', async () => {
    const TTL = 600;
    const { slots, instances } = fleet(1, 2, { slotTtlMs: TTL, acquireTimeoutMs: 5_000 });
    const a = instances[0]!;
    // A live holder past two TTLs: renewed, so the dead one's lapse does not hand its slot out twice.
    held.push(await a.acquire());
    // A dead instance's slot: taken once, never renewed.
    expect(await slots.take(EMAIL, 'dead:1', 2, TTL)).toBe(true);
    const started = Date.now();
    held.push(await a.acquire());
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(TTL - 50);
    expect(waited).toBeLessThan(TTL + 1_200);
    await sleep(2 * TTL);
    // Both slots are still this instance's: a third holder finds none.
    expect(await slots.take(EMAIL, 'other:1', 2, TTL)).toBe(false);
  });

  it('the store cannot answer: messages still go, under this instance\'s own cap', async () => {
    const failing: ConnectionSlots = {
      take: () => Promise.reject(new Error('store unreachable')),
      renew: () => Promise.reject(new Error('store unreachable')),
      give: () => Promise.reject(new Error('store unreachable')),
      want: () => undefined,
      onWanted: () => undefined,
    };
    const permits = new ApiPermits(EMAIL, { maxConnections: 2, acquireTimeoutMs: 300, slots: failing, slotTtlMs: 20_000 }, silentLogger());
    held.push(await permits.acquire(), await permits.acquire());
    expect((await rejection(permits.acquire())).code).toBe('POOL_BUSY');
  });
});
