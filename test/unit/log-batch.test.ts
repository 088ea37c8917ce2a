// The relay's log batching (src/obs/log-batch.ts): lines reach the writer in order, a batch at a
// time, and nothing waiting is lost on flush, on the timer or when the process exits.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LogBatch } from '../../src/obs/log-batch.js';

/** Stands in for sonic-boom: records what it is handed. */
function recorder() {
  const writes: string[] = [];
  let flushes = 0;
  const out = {
    write: (s: string) => void writes.push(s),
    flush: (cb?: () => void) => (flushes++, cb?.()),
    flushSync: () => undefined,
    end: () => undefined,
  };
  return { out, writes, flushes: () => flushes };
}

const batches: LogBatch[] = [];
afterEach(() => {
  for (const b of batches.splice(0)) b.end();
  vi.useRealTimers();
});

describe('LogBatch', () => {
  it('hands lines over in order, one write per batch', () => {
    const r = recorder();
    const batch = new LogBatch(r.out as never, 30, 60_000);
    batches.push(batch);
    batch.write('line 1 xxxxxxxx\n');
    expect(r.writes).toEqual([]); // below the batch size: waiting
    batch.write('line 2 xxxxxxxx\n'); // 32 characters: a batch
    batch.write('line 3\n');
    expect(r.writes).toEqual(['line 1 xxxxxxxx\nline 2 xxxxxxxx\n']);
    batch.flush();
    expect(r.writes).toEqual(['line 1 xxxxxxxx\nline 2 xxxxxxxx\n', 'line 3\n']);
    expect(r.flushes()).toBe(1);
  });

  it('writes what waits once the flush interval has passed', () => {
    vi.useFakeTimers();
    const r = recorder();
    const batch = new LogBatch(r.out as never, 4096, 1000);
    batches.push(batch);
    batch.write('alone\n');
    vi.advanceTimersByTime(999);
    expect(r.writes).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(r.writes).toEqual(['alone\n']);
  });

  it('loses nothing when the process exits right after logging', () => {
    const logger = fileURLToPath(new URL('../../src/obs/logger.ts', import.meta.url));
    const script = `
      const { createLogger } = await import(${JSON.stringify(logger)});
      const log = createLogger('info');
      for (let i = 0; i < 5; i++) log.info({ event: 'n', i }, 'line');
      process.exit(0);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, LOG_FORMAT: 'json' }, timeout: 30_000 });
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { i: number });
    expect(lines.map((l) => l.i)).toEqual([0, 1, 2, 3, 4]);
  });
});
