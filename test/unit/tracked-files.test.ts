// Issue 18 item 1: a generated credential (admin.token) was committed by a test that wrote it into
// the working directory. Whatever the relay generates never belongs in the repository.
import { execFileSync } from 'node:child_process';
import { basename } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

/** Names only a relay (or an operator) makes: credentials and the store they protect. */
const GENERATED = (name: string) => name.endsWith('.token') || name === 'relay.key' || /^relay\.db(-wal|-shm)?$/.test(name);

describe('the repository', () => {
  it('tracks no generated credential (*.token, relay.key) and no store', () => {
    const tracked = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
    // A checkout without its files listed would make this pass with nothing checked.
    expect(tracked).toContain('package.json');
    expect(tracked.filter((f) => GENERATED(basename(f)))).toEqual([]);
  });

  it('tracks no private key: the sandbox makes its TLS material at run time (src/sandbox/tls-material.ts)', () => {
    // `git grep -l` exits 1 when nothing matches; the marker is split so this file does not match itself.
    const marker = ['PRIVATE', 'KEY-----'].join(' ');
    let found = '';
    try {
      found = execFileSync('git', ['grep', '-l', '-F', marker], { cwd: ROOT, encoding: 'utf8' });
    } catch (e) {
      if ((e as { status?: number }).status !== 1) throw e;
    }
    expect(found.split('\n').filter(Boolean)).toEqual([]);
  });

  it('ignores them, so a relay or test run in the checkout cannot add one by `git add .`', () => {
    const names = ['admin.token', 'data/admin.token', 'x/other.token', 'relay.key', 'data/relay.db'];
    const ignored = execFileSync('git', ['check-ignore', '--no-index', ...names], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
    expect(ignored.sort()).toEqual([...names].sort());
  });
});
