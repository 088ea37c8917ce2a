// What a relay with thousands of idle accounts costs in memory comes mostly from start-up, not
// from the accounts (docs/benchmarks.md, table 9): these tests hold the cuts in place, on the
// built CLI (dist/), as an operator runs it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { buildDist, ROOT, startServe, writeYaml } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'relay-startup-memory-'));
beforeAll(() => buildDist(), 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A relay.yaml of `n` accounts (half Google, half Microsoft), as an operator with many mailboxes writes it. */
function manyAccounts(n: number): string {
  const accounts = Array.from({ length: n }, (_, i) => ({
    email: `sender${i}@example.com`,
    provider: i % 2 ? 'microsoft' : 'google',
    client_id: `app-${i % 2}`,
    client_secret: 'app-secret',
    refresh_token: `rt-${i}-${'x'.repeat(40)}`,
    senders: [`sender${i}@example.com`, `*@team${i}.example.com`],
    limits: { messages_per_day: 2000, recipients_per_day: 10000 },
  }));
  const file = join(dir, `relay-${n}.yaml`);
  writeFileSync(file, stringify({ listen: { host: '127.0.0.1', port: 0 }, accounts }));
  return file;
}

/** Runs `script` (an ES module body) in a fresh node process from the repository root; its JSON output. */
function nodeJson<T>(script: string, args: string[], flags: string[] = []): T {
  const out = execFileSync(process.execPath, [...flags, '--input-type=module', '-e', script, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out) as T;
}

describe('relay.yaml is loaded off the relay thread', () => {
  it('gives the same Config as loadConfig, and the parser peak stays out of the relay heap', () => {
    const file = manyAccounts(3_000);
    const r = nodeJson<{ same: boolean; accounts: number; offMb: number; inMb: number }>(
      `
      import { isDeepStrictEqual } from 'node:util';
      const { loadConfigOffThread } = await import('./dist/config/load-off-thread.js');
      const { loadConfig } = await import('./dist/config/load.js');
      const file = process.argv[1];
      const heap = () => process.memoryUsage().heapTotal / 1048576;
      const h0 = heap();
      const off = await loadConfigOffThread(file);
      const h1 = heap();
      const inThread = loadConfig(file);
      const h2 = heap();
      console.log(JSON.stringify({ same: isDeepStrictEqual(off, inThread), accounts: off.accounts.length, offMb: h1 - h0, inMb: h2 - h1 }));
      `,
      [file],
    );
    expect(r.accounts).toBe(3_000);
    expect(r.same).toBe(true);
    // Off the thread the heap grows by the result (≈ 2 MB); the same load on it, by ≈ 70 MB.
    expect(r.offMb).toBeLessThan(10);
    expect(r.inMb).toBeGreaterThan(30);
  }, 60_000);

  it('rejects with the same ConfigError, line numbers included', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'listen:\n  port: 2525\naccounts:\n  - email: a@example.com\n    provider: google\n    client_id: x\n    refresh_token: y\n    max_connections: many\n    senders: [ *@example.com ]\n');
    const r = nodeJson<{ off: { name: string; message: string; problems: unknown }; inThread: { name: string; message: string; problems: unknown } }>(
      `
      const { loadConfigOffThread } = await import('./dist/config/load-off-thread.js');
      const { loadConfig } = await import('./dist/config/load.js');
      const { ConfigError } = await import('./dist/config/errors.js');
      const file = process.argv[1];
      const shape = (e) => ({ name: e instanceof ConfigError ? 'ConfigError' : e.constructor.name, message: e.message, problems: e.problems });
      let off, inThread;
      await loadConfigOffThread(file).catch((e) => (off = shape(e)));
      try { loadConfig(file); } catch (e) { inThread = shape(e); }
      console.log(JSON.stringify({ off, inThread }));
      `,
      [file],
    );
    expect(r.off.name).toBe('ConfigError');
    expect(r.off.message).toMatch(/line \d+/);
    expect(r.off).toEqual(r.inThread);
  }, 60_000);
});

describe('a cold account', () => {
  it('costs the running relay at most 1.4 KB of heap (tokens, limits, pool, routing), nothing opened', () => {
    // The relay's heap after start-up (a GC each side) with n cold accounts, config excluded.
    const heapOf = (n: number) =>
      nodeJson<{ bytes: number }>(
        `
        import { mkdtempSync } from 'node:fs';
        import { join } from 'node:path';
        const { buildConfig } = await import('./dist/config/load.js');
        const { RelayApp } = await import('./dist/app.js');
        const { createLogger } = await import('./dist/obs/logger.js');
        const [n, dir] = [Number(process.argv[1]), process.argv[2]];
        const accounts = Array.from({ length: n }, (_, i) => ({ email: 's' + i + '@example.com', provider: i % 2 ? 'microsoft' : 'google', client_id: 'app', client_secret: 'secret', refresh_token: 'rt-' + i }));
        const doc = { listen: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, store: { path: join(mkdtempSync(join(dir, 'heap-')), 'relay.db') }, warm: { all_up_to: 0 }, accounts };
        const config = buildConfig(doc, null, { env: {}, checkHost: false });
        gc();
        const before = process.memoryUsage().heapUsed;
        const app = await RelayApp.start(config, { logger: createLogger('silent'), env: { XOAUTH2_RELAY_KEY: 'a'.repeat(64) } });
        gc();
        const bytes = process.memoryUsage().heapUsed - before;
        await app.stop();
        console.log(JSON.stringify({ bytes }));
        `,
        [String(n), dir],
        ['--expose-gc'],
      ).bytes;
    // The difference between two counts leaves out what any relay has (modules' state, timers).
    const perAccount = (heapOf(5_000) - heapOf(500)) / 4_500;
    // ≈ 1.0 KB measured; with the pool's four Sets made up front, ≈ 1.7 KB.
    expect(perAccount).toBeLessThan(1_400);
    expect(perAccount).toBeGreaterThan(100);
  }, 90_000);
});

describe('what a relay without API accounts or a shared store does not load', () => {
  it('serve (SQLite store, SMTP accounts) starts without the API, Redis and sandbox libraries', async () => {
    // The relay's own thread's CommonJS modules, written as it exits (a worker has its own list).
    const probe = join(dir, 'loaded-probe.mjs');
    const list = join(dir, 'loaded.json');
    writeFileSync(
      probe,
      `import { createRequire } from 'node:module';
      import { writeFileSync } from 'node:fs';
      import { isMainThread } from 'node:worker_threads';
      const cache = createRequire(import.meta.url).cache;
      if (isMainThread) process.on('exit', () => writeFileSync(${JSON.stringify(list)}, JSON.stringify(Object.keys(cache))));`,
    );
    const config = writeYaml(dir, {
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      store: { path: join(dir, 'relay.db') },
      accounts: [{ email: 'sender@example.com', provider: 'google', client_id: 'app', client_secret: 's', refresh_token: 'rt' }],
      // Cold: no token request to a provider this test does not run.
      warm: { all_up_to: 0 },
    });
    const relay = await startServe(['--config', config], { dist: true, cwd: dir, env: { XOAUTH2_RELAY_KEY: 'a'.repeat(64), NODE_OPTIONS: `--import=${probe}` } });
    relay.child.kill('SIGTERM');
    expect(await relay.exited).toBe(0);
    const packages = new Set((JSON.parse(readFileSync(list, 'utf8')) as string[]).map((f) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f)?.[1]).filter(Boolean));
    // The probe sees what the relay does load.
    expect(packages).toContain('better-sqlite3');
    expect(packages).toContain('pino');
    for (const unused of ['libmime', '@zone-eu/mailsplit', 'iconv-lite', 'nodemailer', 'ioredis', 'undici', 'smtp-server', 'selfsigned']) {
      expect(packages, `${unused} loaded at start-up`).not.toContain(unused);
    }
  }, 90_000);
});
