// Where the shared store is: one Redis (`redis://`, `rediss://`) or a Sentinel group
// (`redis+sentinel://[:password@]host:port,host:port/master-name`, `rediss+sentinel://` for TLS
// to the Redis servers), turned into ioredis options. Parsed by hand: WHATWG URL does not take a
// comma-separated host list.
import type { RedisOptions } from 'ioredis';

export interface RedisTarget {
  /** ioredis options that say where to connect (the caller adds timeouts and the key prefix). */
  options: RedisOptions;
  /** For log lines: host:port or the sentinel group's name, never a password. */
  endpoint: string;
  /** The plain URL for a single Redis; null for a Sentinel group. */
  url: string | null;
}

const SENTINEL_URL = /^(rediss?)\+sentinel:\/\/(?:([^@/]*)@)?([^/]+)\/([^/?#]+)\/?$/;

/** `host:port` of each sentinel (port 26379 when left out). */
export function parseSentinels(list: string): Array<{ host: string; port: number }> {
  return list.split(',').map((entry) => {
    const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(entry.trim());
    if (!m) throw new Error(`not a host:port: ${entry}`);
    return { host: m[1]!, port: Number(m[2] ?? 26379) };
  });
}

export function redisTarget(url: string): RedisTarget {
  const m = SENTINEL_URL.exec(url);
  if (!m) {
    let endpoint = 'redis';
    try {
      const u = new URL(url);
      endpoint = `${u.hostname}:${u.port || '6379'}`;
    } catch {
      // the schema has checked the scheme; an odd URL is ioredis's to refuse
    }
    return { options: {}, endpoint, url };
  }
  const [, scheme, auth, hosts, name] = m;
  const options: RedisOptions = { sentinels: parseSentinels(hosts!), name: decodeURIComponent(name!) };
  if (auth) {
    const [user, password] = auth.includes(':') ? auth.split(':', 2) : ['', auth];
    if (user) options.username = decodeURIComponent(user);
    if (password) options.password = decodeURIComponent(password!);
  }
  if (scheme === 'rediss') options.tls = {};
  return { options, endpoint: `sentinel ${options.name}`, url: null };
}
