// The relay under test, as an operator runs it: the real CLI (`serve --config relay.yaml`) in a
// child process of its own, so its CPU seconds and memory are the kernel's figures for that
// process alone. "Ready" is the moment its /readyz answers 200: listener up and every account
// holding a token (src/admin/http.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { cpuSeconds, memory, resetPeak, type MemorySample } from './proc.js';
import { sleep } from './load.js';

/**
 * How to run the CLI: a compiled main.js (realistic numbers: dist/ after `npm run build`, or
 * another build's, to compare two versions), or 'source' (src/ through tsx, for the test suite).
 */
export type RelayEntry = { main: string } | 'source';

export interface RelayProcessOptions {
  /** A relay.yaml document (sandboxRelayConfig); listen, http, store and log are set here. */
  config: Record<string, unknown>;
  /** Holds relay.yaml, the store and the relay's log. */
  dir: string;
  root: string;
  entry: RelayEntry;
  /** Default 'info', the level an operator runs at. */
  logLevel?: string;
  /** Write a V8 CPU profile into this directory when the relay exits. */
  cpuProfDir?: string;
  readyTimeoutMs?: number;
  /** XOAUTH2_RELAY_KEY (64 hex digits); default a new one. A restart on the same store needs the same. */
  key?: string;
}

export class RelayProcess {
  /** Wall ms from spawn to /readyz 200 (polled every 5 ms). */
  startupMs = 0;
  /** Date.now() when /readyz first answered 200. */
  readyAt = 0;

  private constructor(
    private readonly child: ChildProcess,
    readonly smtpPort: number,
    readonly httpPort: number,
    readonly logFile: string,
  ) {}

  static async start(opts: RelayProcessOptions): Promise<RelayProcess> {
    const [smtpPort, httpPort] = await Promise.all([freePort(), freePort()]);
    const file = join(opts.dir, 'relay.yaml');
    writeFileSync(
      file,
      stringify({
        ...opts.config,
        listen: { host: '127.0.0.1', port: smtpPort },
        http: { host: '127.0.0.1', port: httpPort },
        store: { path: join(opts.dir, 'relay.db') },
        log: { level: opts.logLevel ?? 'info' },
      }),
    );
    const cli = opts.entry === 'source' ? ['--import', 'tsx', 'src/cli/main.ts'] : [opts.entry.main];
    const prof = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
    // For `perf record` of the relay: BENCH_NODE_FLAGS=--perf-basic-prof names its JIT frames.
    const flags = process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
    const logFile = join(opts.dir, 'relay.log');
    const out = openSync(logFile, 'a');
    // The relay's own log level rules (LOG_LEVEL would override it); no inherited node flags.
    const { LOG_LEVEL: _l, NODE_OPTIONS: _n, ...env } = process.env;
    const spawnedAt = performance.now();
    const child = spawn(process.execPath, [...flags, ...prof, ...cli, 'serve', '--config', file], {
      cwd: opts.root,
      env: { ...env, XOAUTH2_RELAY_KEY: opts.key ?? randomBytes(32).toString('hex') },
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    const relay = new RelayProcess(child, smtpPort, httpPort, logFile);
    try {
      await relay.waitReady(opts.readyTimeoutMs ?? 30_000);
    } catch (e) {
      await relay.stop();
      throw e;
    }
    relay.startupMs = performance.now() - spawnedAt;
    relay.readyAt = Date.now();
    return relay;
  }

  get pid(): number {
    return this.child.pid!;
  }

  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  memory(): MemorySample {
    return memory(this.pid);
  }

  resetPeak(): boolean {
    return resetPeak(this.pid);
  }

  /** The relay's log lines with this `event`, parsed. */
  logEvents(event: string): Array<Record<string, unknown>> {
    return readFileSync(this.logFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes(`"event":"${event}"`))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** SIGTERM (a graceful stop, which also writes the CPU profile), SIGKILL after 15 s. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (this.child.exitCode !== null) {
        throw new Error(`relay exited with ${this.child.exitCode} before it was ready: ${readFileSync(this.logFile, 'utf8').slice(-2000)}`);
      }
      if ((await statusOf(this.httpPort, '/readyz')) === 200) return;
      await sleep(5);
    }
    throw new Error(`relay not ready within ${timeoutMs} ms`);
  }
}

/** HTTP status of GET path on 127.0.0.1:port; 0 when nothing answers. */
function statusOf(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
  });
}

/** A port free right now on 127.0.0.1 (the relay binds it a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      server.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
