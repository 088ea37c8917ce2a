// What a reload can change while the relay runs, and what needs a restart. Live: the accounts
// (and the providers they use), inbound.trusted_networks (part of the router) and log.level.
// Everything else is read once at start-up — sockets, the store, the pools' and token cache's
// timings — so a change to it is reported (by key) and left for the next start.
import type { Config } from './schema.js';

const WHOLE = ['listen', 'listeners', 'store', 'http', 'shutdown_timeout_ms', 'warm', 'metrics'] as const;
const BY_KEY = ['inbound', 'upstream', 'tokens', 'log'] as const;
const LIVE = new Set(['inbound.trusted_networks', 'log.level']);

/** JSON with object keys sorted, so equal settings compare equal whatever order they were written in. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b))) : x,
  );
}

/** Keys whose new value differs from the running one and takes effect only after a restart. */
export function restartNeeded(running: Config, next: Config): string[] {
  const out: string[] = WHOLE.filter((k) => canonical(running[k]) !== canonical(next[k]));
  for (const section of BY_KEY) {
    const a = running[section] as Record<string, unknown>;
    const b = next[section] as Record<string, unknown>;
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const path = `${section}.${key}`;
      if (!LIVE.has(path) && canonical(a[key]) !== canonical(b[key])) out.push(path);
    }
  }
  return out;
}
