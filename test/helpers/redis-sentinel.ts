// A Redis Sentinel group for the failover tests: a primary, a replica and three sentinels on
// 127.0.0.1, each in its own process (Debian's redis-sentinel; scripts/test-deps.sh installs it),
// with failure detection shortened to a second so a failover completes within a few seconds.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { sleep } from './wait.js';

const SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';
const SENTINEL = process.env.REDIS_SENTINEL ?? '/usr/bin/redis-sentinel';
export const MASTER_NAME = 'relaymaster';

interface Proc {
  port: number;
  child: ChildProcess;
  output: string;
}

export class SentinelGroup {
  private constructor(
    private readonly dir: string,
    readonly primary: Proc,
    readonly replica: Proc,
    readonly sentinels: Proc[],
  ) {}

  static async start(): Promise<SentinelGroup> {
    for (const bin of [SERVER, SENTINEL]) {
      if (!existsSync(bin)) throw new Error(`${bin} not found: the Sentinel test needs redis-server and redis-sentinel (scripts/test-deps.sh installs them)`);
    }
    // Five fixed ports from one random base: below Linux's ephemeral range (32768-60999), where
    // other tests' outgoing connections take ports, and tried again on another base when one of
    // them is taken all the same (the process then exits at once with "Address already in use").
    for (let attempt = 1; ; attempt++) {
      const base = 20_000 + Math.floor(Math.random() * 12_000);
      const started: Proc[] = [];
      try {
        return await SentinelGroup.startOn(base, started);
      } catch (e) {
        await Promise.all(started.map((p) => halt(p.child)));
        if (attempt >= 5 || !/Address already in use/.test((e as Error).message)) throw e;
      }
    }
  }

  private static async startOn(base: number, started: Proc[]): Promise<SentinelGroup> {
    const dir = mkdtempSync(join(tmpdir(), 'relay-sentinel-'));
    const data = (name: string) => ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `${name}.rdb`];
    const primary = await run(SERVER, ['--port', String(base), ...data('primary')], base, started);
    const replica = await run(SERVER, ['--port', String(base + 1), ...data('replica'), '--replicaof', '127.0.0.1', String(base)], base + 1, started);
    const sentinels: Proc[] = [];
    for (let i = 0; i < 3; i++) {
      const port = base + 10 + i;
      const conf = join(dir, `sentinel-${i}.conf`);
      // Sentinel rewrites its file as it learns the group: one writable file each.
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${base} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
          `sentinel failover-timeout ${MASTER_NAME} 10000`,
          `sentinel parallel-syncs ${MASTER_NAME} 1`,
          '',
        ].join('\n'),
      );
      sentinels.push(await run(SENTINEL, [conf], port, started));
    }
    const group = new SentinelGroup(dir, primary, replica, sentinels);
    await group.settled();
    return group;
  }

  /** redis+sentinel:// URL of the group, as store.url takes it. */
  get url(): string {
    return `redis+sentinel://${this.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${MASTER_NAME}`;
  }

  /** Waits until the replica is in sync and every sentinel knows the replica and the other two. */
  private async settled(): Promise<void> {
    const deadline = Date.now() + 30_000;
    const clients = this.sentinels.map((s) => new Redis({ port: s.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 }));
    const primary = new Redis({ port: this.primary.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      for (;;) {
        const info = await primary.info('replication');
        const quorum = await Promise.all(clients.map((c) => c.call('SENTINEL', 'CKQUORUM', MASTER_NAME).catch((e: Error) => e.message)));
        const replicas = await Promise.all(clients.map((c) => c.call('SENTINEL', 'REPLICAS', MASTER_NAME) as Promise<unknown[]>));
        if (/connected_slaves:1/.test(info) && /state=online/.test(info) && quorum.every((q) => String(q).startsWith('OK 3')) && replicas.every((r) => r.length === 1)) return;
        if (Date.now() > deadline) throw new Error(`sentinel group not settled within 30 s: ${quorum.join('; ')}\n${info}`);
        await sleep(200);
      }
    } finally {
      for (const c of [...clients, primary]) c.disconnect();
    }
  }

  /** The primary dies (SIGKILL): the sentinels promote the replica. */
  killPrimary(): void {
    this.primary.child.kill('SIGKILL');
  }

  /**
   * A sentinel hangs (SIGSTOP): its port still accepts connections (the kernel completes the
   * handshake) but nothing is answered, as a sentinel on a frozen host or VM does. cont() resumes it.
   */
  hangSentinel(i: number): { cont: () => void } {
    const child = this.sentinels[i]!.child;
    child.kill('SIGSTOP');
    return { cont: () => void child.kill('SIGCONT') };
  }

  /** The port of the primary the sentinels name now (asking sentinel `i`). */
  async currentPrimaryPort(i = 0): Promise<number | null> {
    const c = new Redis({ port: this.sentinels[i]!.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      const addr = (await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string] | null;
      return addr ? Number(addr[1]) : null;
    } finally {
      c.disconnect();
    }
  }

  async stop(): Promise<void> {
    const all = [this.primary, this.replica, ...this.sentinels].map((p) => p.child);
    await Promise.all(
      all.map(halt),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function halt(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

/** Starts one process and records it in `started` (so a failed group start can stop what it began). */
async function run(bin: string, args: string[], port: number, started: Proc[]): Promise<Proc> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: Proc = { port, child, output: '' };
  started.push(proc);
  const keep = (b: Buffer) => (proc.output = (proc.output + b.toString()).slice(-4000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => undefined);
  const deadline = Date.now() + 10_000;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${bin} exited on port ${port}: ${proc.output}`);
      try {
        if (c.status !== 'ready') await c.connect();
        if ((await c.ping()) === 'PONG') return proc;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${bin} did not answer on port ${port}: ${proc.output}`);
      }
      await sleep(50);
    }
  } finally {
    c.disconnect();
  }
}
