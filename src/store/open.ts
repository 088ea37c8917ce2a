import type { Logger } from 'pino';
import { ConfigError } from '../config/errors.js';
import type { Config } from '../config/schema.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

const PATH_ERRORS = new Set(['ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'ELOOP', 'ENAMETOOLONG']);

/** A filesystem or SQLite refusal of the path itself (SqliteError codes start with SQLITE_). */
export function isPathProblem(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_') || PATH_ERRORS.has(code));
}

/**
 * The store the config names: the embedded SQLite file, or Redis shared by several instances.
 * `lock`: the relay runs on it (one process per SQLite file; see SqliteStore.open).
 */
export async function openStore(cfg: Config['store'], env: NodeJS.ProcessEnv, logger: Logger, opts: { lock?: boolean } = {}): Promise<Store> {
  if ('path' in cfg) {
    try {
      return SqliteStore.open(cfg.path, env, opts);
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      // A path the relay cannot create, write or read as SQLite is the operator's to fix: exit 2,
      // naming the key. Anything else (the SQLite addon missing or built for another Node) is not
      // the config's: exit 1, so a supervisor's restart policy and the operator see it as such.
      if (!isPathProblem(e)) throw e;
      throw new ConfigError(`cannot open ${cfg.path}: ${(e as Error).message}`, 'store.path');
    }
  }
  // Loaded only when configured: ioredis costs ~0.1 s of start-up that a SQLite relay never needs.
  const { RedisStore } = await import('./redis-store.js');
  return RedisStore.open({ url: cfg.url, keyPrefix: cfg.key_prefix }, env, logger);
}
