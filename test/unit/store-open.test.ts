// Which store failures are the operator's config to fix (exit 2, naming store.path) and which are
// not (exit 1): a missing or mismatched SQLite addon must not read as a bad path.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { silentLogger } from '../../src/obs/logger.js';
import { isPathProblem, openStore } from '../../src/store/open.js';
import { rejection } from '../helpers/thrown.js';

describe('openStore failures', () => {
  it('a path under a regular file is a config error at store.path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-open-'));
    try {
      writeFileSync(join(dir, 'file'), 'x');
      const err = await rejection(openStore({ path: join(dir, 'file', 'relay.db') } as never, { XOAUTH2_RELAY_KEY: 'a'.repeat(64) }, silentLogger()), ConfigError);
      expect(err.path).toBe('store.path');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tells path and SQLite refusals from failures of the addon itself', () => {
    expect(isPathProblem(Object.assign(new Error('unable to open database file'), { code: 'SQLITE_CANTOPEN' }))).toBe(true);
    expect(isPathProblem(Object.assign(new Error('permission denied'), { code: 'EACCES' }))).toBe(true);
    expect(isPathProblem(new Error('Could not locate the bindings file. Tried: build/Release/better_sqlite3.node'))).toBe(false);
    expect(isPathProblem(Object.assign(new Error('was compiled against a different Node.js version'), { code: 'ERR_DLOPEN_FAILED' }))).toBe(false);
  });
});
