import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { RedisStore } from './redis-store.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

/** The store the config names: the embedded SQLite file, or Redis shared by several instances. */
export async function openStore(cfg: Config['store'], env: NodeJS.ProcessEnv, logger: Logger): Promise<Store> {
  if ('path' in cfg) return SqliteStore.open(cfg.path, env);
  return RedisStore.open({ url: cfg.url, keyPrefix: cfg.key_prefix }, env, logger);
}
