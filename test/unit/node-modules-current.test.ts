// scripts/test.sh skips `npm ci` when node_modules is what package-lock.json asks for; the check
// is scripts/node-modules-current.cjs, run here against lockfiles written for each case.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

let dir: string;
const pkg = (version: string) => ({ version, resolved: `https://registry.npmjs.org/a/-/a-${version}.tgz`, integrity: `sha512-${version}` });
const lock = (packages: Record<string, unknown>) => JSON.stringify({ name: 'x', lockfileVersion: 3, packages: { '': { name: 'x' }, ...packages } });
const check = () => spawnSync(process.execPath, [join(dir, 'scripts', 'node-modules-current.cjs')], { encoding: 'utf8' }).status;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-nm-current-'));
  mkdirSync(join(dir, 'scripts'));
  copyFileSync(join(ROOT, 'scripts', 'node-modules-current.cjs'), join(dir, 'scripts', 'node-modules-current.cjs'));
  writeFileSync(join(dir, 'package-lock.json'), lock({ 'node_modules/a': pkg('1.0.0'), 'node_modules/b': pkg('2.0.0') }));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function installed(packages: Record<string, unknown>): void {
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', '.package-lock.json'), lock(packages));
  // npm writes its hidden lockfile last, after the folders.
  const past = new Date(Date.now() - 60_000);
  utimesSync(join(dir, 'node_modules'), past, past);
}

describe('scripts/node-modules-current.cjs', () => {
  it('exit 0 when node_modules holds every locked package at its version (what npm ci just made)', () => {
    installed({ 'node_modules/a': pkg('1.0.0'), 'node_modules/b': pkg('2.0.0') });
    expect(check()).toBe(0);
  });

  it('exit 1 without node_modules, with a package of another version, or with one missing', () => {
    expect(check()).toBe(1);
    installed({ 'node_modules/a': pkg('1.0.0'), 'node_modules/b': pkg('2.0.1') });
    expect(check()).toBe(1);
    installed({ 'node_modules/a': pkg('1.0.0') });
    expect(check()).toBe(1);
  });

  it('exit 1 when node_modules changed after npm last wrote its record (a package removed by hand)', () => {
    installed({ 'node_modules/a': pkg('1.0.0'), 'node_modules/b': pkg('2.0.0') });
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(dir, 'node_modules'), later, later);
    expect(check()).toBe(1);
  });

  it("reads the project's real lockfile: its packages installed as npm records them count as current", () => {
    const real = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
    writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(real));
    // npm's hidden lockfile: the same entries without the root project's.
    const { '': _root, ...installedPackages } = real.packages;
    installed(installedPackages);
    expect(check()).toBe(0);
  });
});
