// Runs the real command line (from source, through tsx, or as built into dist/) as a child process.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';

export const ROOT = join(import.meta.dirname, '..', '..');
// tsx by absolute URL: `--import tsx` would be resolved from the child's cwd, which tests vary.
const TSX = pathToFileURL(createRequire(join(ROOT, 'package.json')).resolve('tsx')).href;
const CLI = ['--import', TSX, join(ROOT, 'src', 'cli', 'main.ts')];
/** The CLI as `npm ci` builds it and an operator runs it (buildDist() first). */
const DIST_CLI = [join(ROOT, 'dist', 'cli', 'main.js')];

/**
 * `npm run build` when dist/ is older than the sources, for tests that run the built CLI. The
 * suite's global setup (test/global-setup.ts) builds once before any worker starts: tsc rewrites
 * dist/ in place, and a build racing a relay another test file is starting from dist/ would hand
 * it half-written modules.
 */
export function buildDist(): void {
  if (builtAt() >= newestSource()) return;
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'pipe', timeout: 120_000 });
}

function builtAt(): number {
  try {
    return statSync(join(ROOT, 'dist', 'cli', 'main.js')).mtimeMs;
  } catch {
    return 0;
  }
}

function newestSource(dir = join(ROOT, 'src')): number {
  let newest = Math.max(statSync(join(ROOT, 'tsconfig.json')).mtimeMs, statSync(join(ROOT, 'package.json')).mtimeMs);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * runCli without blocking this process: for commands that talk to servers the test itself runs
 * (a sandbox provider), which a synchronous spawn would leave unable to answer.
 */
export async function runCliAsync(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  const p = spawnCli(args, opts);
  // 'close' comes after the last output; 'exit' may come before it.
  const closed = new Promise((resolve) => p.child.once('close', resolve));
  const timer = setTimeout(() => p.child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const status = await p.exited;
  await closed;
  clearTimeout(timer);
  return { status, stdout: p.stdout(), stderr: p.stderr() };
}

/** A port free on 127.0.0.1 now, for a config that must name its HTTP port (the CLI finds the relay by it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function writeYaml(dir: string, doc: unknown, name = 'relay.yaml'): string {
  const file = join(dir, name);
  writeFileSync(file, stringify(doc));
  return file;
}

export interface ServeProcess {
  child: ChildProcess;
  /** The inbound SMTP port the relay logged. */
  port: number;
  output: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** Starts `serve` (from source, or from dist/ with `dist: true`) and waits for its "listening" log line. */
export async function startServe(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; dist?: boolean } = {},
): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...(opts.dist ? DIST_CLI : CLI), 'serve', ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay not listening in time:\n${out}`)), opts.timeoutMs ?? 60_000);
    const check = () => {
      // The JSON line, or the readable one (LOG_FORMAT=pretty, src/obs/pretty.ts).
      const m = /"event":"listening"[^\n]*"port":(\d+)|\blistening: [^\n]* port=(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolve(Number(m[1] ?? m[2]));
      }
    };
    child.stdout!.on('data', check);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited with ${code} before listening:\n${out}`));
    });
  });
  return { child, port, output: () => out, exited };
}

export interface CliProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** The first match of `re` in what the command printed (stderr, then stdout); rejects if it exits or `ms` passes first. */
  waitFor(re: RegExp, ms?: number): Promise<RegExpExecArray>;
}

/** Runs a command of the CLI from source without waiting for it, for commands a test talks to. */
export function spawnCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): CliProcess {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitFor = (re: RegExp, ms = 20_000) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const find = () => re.exec(err) ?? re.exec(out);
      const timer = setInterval(() => {
        const m = find();
        if (m) done(() => resolve(m));
      }, 20);
      const deadline = setTimeout(() => done(() => reject(new Error(`${re} not printed within ${ms} ms:\n${err}${out}`))), ms);
      void exited.then((code) => {
        const m = find();
        done(() => (m ? resolve(m) : reject(new Error(`exited with ${code} before printing ${re}:\n${err}${out}`))));
      });
      const done = (settle: () => void) => {
        clearInterval(timer);
        clearTimeout(deadline);
        settle();
      };
    });
  return { child, stdout: () => out, stderr: () => err, exited, waitFor };
}
