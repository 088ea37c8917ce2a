// The shared store on a Redis Sentinel group (src/store/redis-target.ts), at the level of one
// store: a failover while a sentinel hangs. The fleet test (fleet.test.ts) covers the relays.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/obs/logger.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { SentinelGroup } from '../helpers/redis-sentinel.js';
import { KEY_ENV } from '../helpers/stack.js';
import { sleep } from '../helpers/wait.js';

let group: SentinelGroup;
beforeAll(async () => {
  group = await SentinelGroup.start();
});
afterAll(() => group?.stop());

const failure = (message: string) => ({ by: 'sentinel-test', at: Date.now(), retryAt: Date.now() + 60_000, kind: 'http', message });

/** Whether a write and its read-back work now. */
async function works(store: RedisStore, message: string): Promise<boolean> {
  try {
    await store.saveRefreshFailure('s@x.test', failure(message));
    return (await store.loadRefreshFailure('s@x.test'))?.message === message;
  } catch {
    return false;
  }
}

describe('a store on a Sentinel group', () => {
  // The first sentinel the store asks is frozen when the primary dies. ioredis used to wait on it
  // for ever (no timeout on sentinel commands), and, its failover detector hearing the other
  // sentinels' +switch-master meanwhile, to end the connection for good.
  it('follows a failover while the sentinel it asks first hangs', async () => {
    const store = await RedisStore.open({ url: group.url, keyPrefix: 'sentinel-store:' }, KEY_ENV, silentLogger());
    const hung = { cont: () => undefined };
    try {
      expect(await works(store, 'before')).toBe(true);
      Object.assign(hung, group.hangSentinel(0));
      group.killPrimary();
      // The two live sentinels are a majority: they promote the replica.
      const deadline = Date.now() + 20_000;
      while ((await group.currentPrimaryPort(1)) !== group.replica.port && Date.now() < deadline) await sleep(200);
      expect(await group.currentPrimaryPort(1)).toBe(group.replica.port);
      const promotedAt = Date.now();
      while (!(await works(store, 'after')) && Date.now() - promotedAt < 15_000) await sleep(250);
      expect(await works(store, 'after')).toBe(true);
      console.log(`[sentinel-store] writes work again ${Date.now() - promotedAt} ms after the promotion`);
    } finally {
      hung.cont();
      await store.close();
    }
  }, 60_000);
});
