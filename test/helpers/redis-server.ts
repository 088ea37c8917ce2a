// A real redis-server for the tests of the shared store: started on a free 127.0.0.1 port in a
// temporary directory, with no persistence, and stopped (or stopped and started again on the
// same port, as an outage) by the test. scripts/test-deps.sh installs the binary.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from './wait.js';

const BINARY = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';

export class RedisServer {
  private child: ChildProcess | null = null;
  private output = '';

  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(): Promise<RedisServer> {
    if (!existsSync(BINARY)) {
      throw new Error(`${BINARY} not found: these tests need a real Redis. Install it with scripts/test-deps.sh (apt-get install redis-server), or set REDIS_SERVER.`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'relay-redis-'));
    // A random high port, another one if it is taken (redis-server then exits at once).
    for (let attempt = 1; ; attempt++) {
      const server = new RedisServer(20_000 + Math.floor(Math.random() * 40_000), dir);
      try {
        await server.resume();
        return server;
      } catch (e) {
        if (attempt >= 5) throw e;
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts (again) on the same port: an outage ends. */
  async resume(): Promise<void> {
    if (await pong(this.port)) throw new Error(`port ${this.port} already has a Redis`);
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir];
    const child = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (b: Buffer) => (this.output = (this.output + b.toString()).slice(-4000)));
    child.stderr!.on('data', (b: Buffer) => (this.output = (this.output + b.toString()).slice(-4000)));
    const deadline = Date.now() + 10_000;
    while (!(await pong(this.port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not start on port ${this.port}: ${this.output}`);
      }
      await sleep(20);
    }
  }

  /** Stops it (an outage begins); SIGKILL if it has not exited within 5 s. */
  async pause(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  async stop(): Promise<void> {
    await this.pause();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Whether a Redis answers PING on 127.0.0.1:port. */
function pong(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (b) => done(b.toString().startsWith('+PONG')));
  });
}
