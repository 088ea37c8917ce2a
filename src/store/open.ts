import type { Config } from '../config/schema.js';
import { ConfigError } from '../config/errors.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

/** The store the config names. */
export function openStore(cfg: Config['store'], env: NodeJS.ProcessEnv): Store {
  if ('path' in cfg) return SqliteStore.open(cfg.path, env);
  throw new ConfigError('the Redis store is not available in this version; use store: { path: ... }', 'store.url');
}
