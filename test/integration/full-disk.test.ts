// A full disk under the store (issue 10 item 2), on a real filesystem: a 3 MB tmpfs this test
// mounts (as root, as CI runs; anywhere else it fails loudly rather than skip), filled with dd.
// The relay must not crash (the quota flush timer, token saves), must keep a rotated refresh
// token it could not save in memory and use it for the next refresh, must say so (/readyz, the
// account), and must save it by itself once the disk has room: after a restart the provider
// still takes the refresh token the relay loads.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { captureLog } from '../helpers/log-capture.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

const EMAIL = 'rotating@contoso.test';

function fill(dir: string): void {
  // dd stops at ENOSPC and exits 1: that is the point.
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(dir, 'fill')}`, 'bs=16k'], { stdio: 'pipe' });
  } catch {
    // the disk is full
  }
}

async function send(stack: Stack, tag: string): Promise<number> {
  const { client } = await RawSmtp.connect(stack.port);
  await client.cmd('EHLO mta.test');
  const raw = rawMessage(EMAIL, ['x@example.net'], tag);
  const reply = await client.send(EMAIL, ['x@example.net'], raw);
  client.close();
  if (reply.code === 250) expect(stack.sandbox.messages.filter((m) => m.sha256 === sha256(raw))).toHaveLength(1);
  return reply.code;
}

async function readyz(stack: Stack): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${stack.app.adminPort}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('a full disk under the store', () => {
  let dir: string;
  let sandbox: SandboxProvider;
  let stack: Stack;
  const log = captureLog('info');
  const start = (provider: SandboxProvider) =>
    startStack({
      accounts: [{ email: EMAIL, kind: 'microsoft', senders: [EMAIL] }],
      dir,
      provider,
      logger: log.logger,
      // Saves of a refused token are retried from 200 ms on, so the test sees the recovery soon.
      overrides: { http: { host: '127.0.0.1', port: 0 }, tokens: { retry_min_ms: 200, retry_max_ms: 2_000 } },
    });

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('full-disk.test.ts mounts a tmpfs and must run as root (CI does): not skipped, failed');
    dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-full-disk-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dir]);
    sandbox = await SandboxProvider.start();
    stack = await start(sandbox);
  });
  afterAll(async () => {
    await stack?.stop();
    await sandbox?.stop();
    if (dir) {
      execFileSync('umount', [dir]);
      rmdirSync(dir);
    }
  });

  it('costs no crash and no refresh token; recovers with no one’s help', async () => {
    const tokens = stack.app.relay.tokens;
    expect(await send(stack, 'before')).toBe(250);
    fill(dir);

    // Messages still flow, and the quota flush timer (every second) meets the full disk.
    expect(await send(stack, 'full-1')).toBe(250);
    await sleep(1_500);

    // A refresh rotates the refresh token; the store cannot take it.
    const rotatedBefore = sandbox.state.credentials(EMAIL).refreshToken;
    await tokens.refreshNow(EMAIL);
    const rotated = sandbox.state.credentials(EMAIL).refreshToken;
    expect(rotated).not.toBe(rotatedBefore);
    expect(tokens.statusOf(EMAIL)?.storeError).toMatch(/full/i);
    const account = stack.app.accounts.get(EMAIL);
    expect(account.store_error).toMatch(/full/i);
    const ready = await readyz(stack);
    expect(ready.status).toBe(503);
    expect((ready.body.reasons as string[]).join(' ')).toMatch(/^store: writes fail|\bstore: writes fail/);
    expect(log.events(50)).toEqual(expect.arrayContaining(['store_error', 'store_failing']));
    const metrics = async () => (await fetch(`http://127.0.0.1:${stack.app.adminPort}/metrics`)).text();
    expect(await metrics()).toMatch(/^xoauth2_relay_store_failing 1$/m);

    // The next refresh uses the rotated token kept in memory (the provider takes only that one).
    await tokens.refreshNow(EMAIL);
    expect(tokens.statusOf(EMAIL)?.health).toBe('healthy');
    expect(await send(stack, 'full-2')).toBe(250);
    // Still no crash after several flushes on the full disk.
    await sleep(2_500);
    expect(await send(stack, 'full-3')).toBe(250);

    // Room again: the token is saved by the retry, and the relay says the store works.
    rmSync(join(dir, 'fill'));
    await until(() => tokens.statusOf(EMAIL)?.storeError === null, 15_000, 'the token saved');
    for (let i = 0; (await readyz(stack)).status !== 200; i++) {
      if (i > 50) throw new Error('/readyz did not come back to 200');
      await sleep(200);
    }
    expect(log.events()).toEqual(expect.arrayContaining(['token_saved', 'store_recovered']));
    expect(await metrics()).toMatch(/^xoauth2_relay_store_failing 0$/m);

    // A restart loads the latest refresh token: the provider takes it (no invalid_grant, no new consent).
    const latest = sandbox.state.credentials(EMAIL).refreshToken;
    await stack.stopRelay();
    stack = await start(sandbox);
    await stack.app.relay.tokens.refreshNow(EMAIL);
    expect(stack.app.relay.tokens.statusOf(EMAIL)?.health).toBe('healthy');
    expect(sandbox.state.credentials(EMAIL).refreshToken).not.toBe(latest);
    expect(await send(stack, 'after-restart')).toBe(250);
  }, 90_000);
});
