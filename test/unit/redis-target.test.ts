import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { redisTarget } from '../../src/store/redis-target.js';

describe('store.url: one Redis or a Sentinel group', () => {
  it('a redis:// URL is passed to ioredis as it is; the endpoint for logs carries no password', () => {
    const t = redisTarget('redis://:s3cret@redis.internal:6380/2');
    expect(t.url).toBe('redis://:s3cret@redis.internal:6380/2');
    expect(t.endpoint).toBe('redis.internal:6380');
  });

  it('redis+sentinel:// becomes the sentinels, the master name and the Redis password', () => {
    const t = redisTarget('redis+sentinel://:pa%40ss@10.0.0.5:26379,10.0.0.6,[::1]:26380/relay');
    expect(t.url).toBeNull();
    expect(t.options).toEqual({
      sentinels: [
        { host: '10.0.0.5', port: 26379 },
        { host: '10.0.0.6', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'relay',
      password: 'pa@ss',
    });
    expect(t.endpoint).toBe('sentinel relay');
    expect(t.endpoint).not.toContain('pa@ss');
    expect(redisTarget('rediss+sentinel://h:26379/m').options.tls).toEqual({});
  });

  it('the schema takes both forms and refuses a Sentinel URL without a master name', () => {
    const parse = (url: string) => configSchema.safeParse({ store: { url } }).success;
    expect(parse('redis://127.0.0.1:6379')).toBe(true);
    expect(parse('redis+sentinel://h1:26379,h2:26379/mymaster')).toBe(true);
    expect(parse('redis+sentinel://h1:26379,h2:26379')).toBe(false);
    expect(parse('http://h1:6379')).toBe(false);
  });
});
