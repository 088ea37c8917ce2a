// `npm run bench`: builds dist/ when src/ is newer, runs every scenario against the sandbox on
// 127.0.0.1, prints the markdown tables and writes bench/results/latest.{json,md}.
//
//   BENCH_QUICK=1           a smoke run in ~20 s (small counts; figures not comparable)
//   BENCH_PROFILE=1         also write a CPU profile of the relay (bench/results/profiles/) and list its hottest functions
//   BENCH_RELAY_MAIN=FILE   measure another build's CLI (e.g. an older checkout's dist/cli/main.js)
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBench } from './harness.js';
import { markdown } from './report.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const results = join(root, 'bench', 'results');

function newest(dir: string): number {
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    t = Math.max(t, entry.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** The relay is measured compiled, as it ships; a stale dist/ would measure old code. */
function ensureBuilt(): void {
  const main = join(root, 'dist', 'cli', 'main.js');
  let built = 0;
  try {
    built = statSync(main).mtimeMs;
  } catch {
    // not built yet
  }
  if (built >= newest(join(root, 'src'))) return;
  process.stderr.write('bench: src/ is newer than dist/, building...\n');
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
}

const quick = process.env.BENCH_QUICK === '1';
const profileDir = process.env.BENCH_PROFILE === '1' ? join(results, 'profiles') : null;
const other = process.env.BENCH_RELAY_MAIN;
if (!other) ensureBuilt();
mkdirSync(results, { recursive: true });
if (profileDir) {
  rmSync(profileDir, { recursive: true, force: true });
  mkdirSync(profileDir, { recursive: true });
}

const result = await runBench({
  quick,
  root,
  entry: { main: other ? resolve(other) : join(root, 'dist', 'cli', 'main.js') },
  profileDir,
  progress: (line) => process.stderr.write(`bench: ${line}\n`),
});
const md = markdown(result);
writeFileSync(join(results, 'latest.json'), JSON.stringify(result, null, 2) + '\n');
writeFileSync(join(results, 'latest.md'), md);
process.stdout.write(md);
process.stderr.write(`bench: wrote ${join('bench', 'results', 'latest.json')} and latest.md\n`);
