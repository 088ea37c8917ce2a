// The buffers a streaming body arrives in are freed every RECLAIM_BYTES of body read (issue 9,
// item 8), by V8's own minor GC, without leaving a global `gc` behind for other code.
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { bodyRead, RECLAIM_BYTES, reclaims } from '../../src/inbound/reclaim.js';
import { until } from '../helpers/wait.js';

const READ = 64 * 1024;

/** Buffers of the size a socket read arrives in, dropped at once: garbage only a GC frees. */
function garbage(bytes: number): void {
  for (let n = 0; n < bytes; n += READ) Buffer.allocUnsafeSlow(READ);
}

describe('reclaim', () => {
  it('runs one minor GC per RECLAIM_BYTES of body read, which frees the dead read buffers', async () => {
    garbage(2 * RECLAIM_BYTES);
    const dead = process.memoryUsage().arrayBuffers;
    expect(dead).toBeGreaterThanOrEqual(2 * RECLAIM_BYTES);
    const before = reclaims;
    for (let n = READ; n < RECLAIM_BYTES; n += READ) bodyRead(READ);
    expect(reclaims).toBe(before);
    bodyRead(READ);
    expect(reclaims).toBe(before + 1);
    // V8 sweeps the buffers of the objects the GC found dead on a background thread.
    await until(() => process.memoryUsage().arrayBuffers < dead - RECLAIM_BYTES, 5_000, 'dead buffers freed');
  });

  it('does nothing while less than RECLAIM_BYTES of buffers exist at all', async () => {
    await until(() => process.memoryUsage().arrayBuffers < RECLAIM_BYTES / 2, 5_000, 'buffers below RECLAIM_BYTES');
    const before = reclaims;
    for (let n = 0; n < 2 * RECLAIM_BYTES; n += READ) bodyRead(READ);
    expect(reclaims).toBe(before);
  });

  it('leaves no global gc, in this context or in a new one', () => {
    expect(reclaims).toBeGreaterThan(0);
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe('undefined');
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});
