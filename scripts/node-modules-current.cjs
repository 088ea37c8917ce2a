// Exit 0 when node_modules holds what package-lock.json asks for, the way npm itself knows it:
// npm writes node_modules/.package-lock.json (the "hidden lockfile") after every install, with
// the packages it put there. Same packages, same versions and integrity, and the hidden file not
// older than the node_modules folder itself: nothing for `npm ci` to do. Anything else (no
// node_modules, a changed lock, a package missing or of another version): exit 1. Packages
// beyond the lock (another branch's dependency) are left: `npm ci` would only remove them.
const { readFileSync, statSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const read = (p) => JSON.parse(readFileSync(join(root, p), 'utf8'));
const same = (a, b) => a.version === b.version && (a.integrity ?? null) === (b.integrity ?? null) && (a.resolved ?? null) === (b.resolved ?? null);

try {
  const wanted = read('package-lock.json').packages ?? {};
  const installed = read('node_modules/.package-lock.json').packages ?? {};
  const hidden = statSync(join(root, 'node_modules', '.package-lock.json')).mtimeMs;
  // npm leaves dev-only and optional packages it skipped for this platform out of the hidden file.
  const needed = Object.entries(wanted).filter(([path, p]) => path !== '' && !(p.optional && !installed[path]));
  const stale = needed.filter(([path, p]) => !installed[path] || !same(p, installed[path]));
  // A package folder changed after npm's last write means someone installed or removed by hand.
  const touched = statSync(join(root, 'node_modules')).mtimeMs > hidden + 1000;
  process.exit(stale.length || touched ? 1 : 0);
} catch {
  process.exit(1);
}
