// What every scenario shares: the sandbox child, the scale of the run, and a way to start a relay
// child against the sandbox with a given config. Everything started here is stopped by close().
import { readFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareMessage, type Target } from './load-client.js';
import { openConnections, runLoad } from './load.js';
import { RelayProcess, type RelayEntry } from './relay-process.js';
import { SandboxProcess } from './sandbox-process.js';

/** How much of everything a run does; `quick` is for the test suite and a smoke check. */
export interface Scale {
  latencyMessages: number;
  rounds: number;
  warmupMs: number;
  measureMs: number;
  connections: number[];
  sizes: number[];
  idleSessions: number;
  bigMessages: number[];
  tokenMessages: number;
  startupAccounts: number;
  startupRuns: number;
  microIterations: number;
  /** Messages a relay relays before it is measured (BenchContext.warm). */
  warmMessages: number;
}

export const FULL: Scale = {
  latencyMessages: 2_000,
  rounds: 3,
  warmupMs: 500,
  measureMs: 2_000,
  connections: [1, 10, 50],
  sizes: [2 * 1024, 100 * 1024],
  idleSessions: 1_000,
  // 60 MB as well: the peak must level off, not grow with the size.
  bigMessages: [10 * 1024 * 1024, 30 * 1024 * 1024, 60 * 1024 * 1024],
  tokenMessages: 10_000,
  startupAccounts: 50,
  startupRuns: 3,
  microIterations: 1_000_000,
  warmMessages: 6_000,
};

export const QUICK: Scale = {
  latencyMessages: 100,
  rounds: 1,
  warmupMs: 100,
  // Long enough that a 100 KB message at 50 connections completes inside a window even when the
  // test suite loads both cores (at 250 ms a round could end with none done).
  measureMs: 600,
  connections: [1, 10, 50],
  sizes: [2 * 1024, 100 * 1024],
  idleSessions: 100,
  bigMessages: [2 * 1024 * 1024, 6 * 1024 * 1024],
  tokenMessages: 300,
  startupAccounts: 10,
  startupRuns: 1,
  microIterations: 20_000,
  warmMessages: 300,
};

export const MB = 1024 * 1024;

/**
 * Sending limits on, as operators run the relay: the sandbox is no real provider, so the relay
 * would count nothing by default (src/config/load.ts). These are Google's published counters
 * (src/limits/limits.ts) with limits no run reaches, so every message is counted and none refused.
 */
export const BENCH_LIMITS = { messages_per_day: 1_000_000_000, recipients_per_day: 1_000_000_000, recipients_per_message: 100 };

/** Above the largest message any scenario sends, on both sides (inbound and sandbox SIZE). */
export const MAX_MESSAGE_BYTES = 64 * MB;

export interface RelaySpec {
  emails: string[];
  /** Keys for every account (max_connections, ...). */
  extra?: Record<string, unknown>;
  /** Top-level relay.yaml keys. */
  overrides?: Record<string, unknown>;
  logLevel?: string;
  profile?: boolean;
  /** Reach the provider through this port of 127.0.0.1 instead (a latency proxy). */
  smtpPort?: number;
  /** Another build of the CLI than the run's (to compare two versions side by side). */
  entry?: RelayEntry;
}

export class BenchContext {
  private readonly relays = new Set<RelayProcess>();
  private relaySeq = 0;

  private constructor(
    readonly scale: Scale,
    readonly root: string,
    readonly entry: RelayEntry,
    readonly sandbox: SandboxProcess,
    readonly smtp: { host: string; port: number },
    readonly ca: Buffer,
    readonly tmp: string,
    readonly profileDir: string | null,
    readonly progress: (line: string) => void,
  ) {}

  static async open(opts: { scale: Scale; root: string; entry: RelayEntry; profileDir: string | null; progress: (line: string) => void }): Promise<BenchContext> {
    const sandbox = await SandboxProcess.start(opts.root);
    try {
      const info = await sandbox.call('start', { size: MAX_MESSAGE_BYTES });
      const tmp = mkdtempSync(join(tmpdir(), 'xoauth2-relay-bench-'));
      return new BenchContext(opts.scale, opts.root, opts.entry, sandbox, info, readFileSync(info.caFile), tmp, opts.profileDir, opts.progress);
    } catch (e) {
      await sandbox.stop();
      throw e;
    }
  }

  /** Registers sandbox accounts (google: no refresh-token rotation between runs). */
  async accounts(prefix: string, n: number): Promise<string[]> {
    const emails = Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(2, '0')}@bench.example`);
    await this.sandbox.call('addAccounts', { emails, kind: 'google' });
    return emails;
  }

  /** Starts a relay child in a fresh directory (fresh store: no token from an earlier run). */
  async startRelay(spec: RelaySpec): Promise<RelayProcess> {
    const dir = join(this.tmp, `relay-${++this.relaySeq}`);
    mkdirSync(dir);
    const config = await this.sandbox.call('relayConfig', {
      emails: spec.emails,
      extra: { limits: BENCH_LIMITS, ...spec.extra },
      overrides: {
        inbound: { max_message_bytes: MAX_MESSAGE_BYTES, max_connections: 2_000 },
        ...spec.overrides,
      },
      ...(spec.smtpPort !== undefined ? { smtpPort: spec.smtpPort } : {}),
    });
    const relay = await RelayProcess.start({
      config,
      dir,
      root: this.root,
      entry: spec.entry ?? this.entry,
      ...(spec.logLevel ? { logLevel: spec.logLevel } : {}),
      ...(spec.profile && this.profileDir ? { cpuProfDir: this.profileDir } : {}),
    });
    this.relays.add(relay);
    return relay;
  }

  async stopRelay(relay: RelayProcess): Promise<void> {
    this.relays.delete(relay);
    await relay.stop();
  }

  relayTarget(relay: RelayProcess): Target {
    return { host: '127.0.0.1', port: relay.smtpPort };
  }

  /**
   * Brings a relay to its steady state before it is measured: `scale.warmMessages` 2 KB messages
   * on 10 connections. A freshly started relay runs its code unoptimised while V8 compiles it
   * in the background (traced with --trace-opt: ≈ 140 TurboFan compilations over its first
   * 6,000 messages, ≈ 10 % of its CPU meanwhile); a relay in service has long done that. The
   * pipe and the minimal relay have far less code to warm.
   */
  async warm(target: Target, from: string): Promise<void> {
    const message = prepareMessage(from, 'warm@example.net', 2 * 1024, 'warm');
    const conns = await openConnections(target, 10);
    try {
      await runLoad({ target, connections: 10, message, warmupMs: 0, messages: this.scale.warmMessages }, conns);
    } finally {
      for (const c of conns) c.close();
    }
  }

  /** The baseline: straight to the sandbox, STARTTLS + XOAUTH2 with a token it issued. */
  async directTarget(email: string): Promise<Target> {
    const token = await this.sandbox.call('issueAccessToken', { email });
    return { host: this.smtp.host, port: this.smtp.port, xoauth2: { user: email, token, ca: this.ca } };
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.relays].map((r) => r.stop()));
    this.relays.clear();
    await this.sandbox.stop();
    rmSync(this.tmp, { recursive: true, force: true });
  }
}
