// The parent's handle on the sandbox child (sandbox-child.ts): a typed request/response over
// the IPC channel, and the child's pid for reading its CPU time.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface SandboxMethods {
  start(p: { size: number }): Promise<{ host: string; port: number; caFile: string }>;
  addAccounts(p: { emails: string[]; kind: 'google' | 'microsoft'; clientId?: string }): Promise<void>;
  /** relay.yaml for these accounts (each may send as itself), from sandboxRelayConfig. */
  relayConfig(p: { emails: string[]; extra: Record<string, unknown>; overrides: Record<string, unknown>; smtpPort?: number }): Promise<Record<string, unknown>>;
  /** A latency proxy (latency-proxy.ts) in front of the submission server; its port. */
  startLatencyProxy(p: { rttMs: number }): Promise<{ port: number }>;
  issueAccessToken(p: { email: string }): Promise<string>;
  tokenRequests(p: Record<string, never>): Promise<number>;
  setTokenLatency(p: { ms: number }): Promise<void>;
  /** Token requests a second per OAuth client before 429 + Retry-After; null: no limit. */
  setTokenRateLimit(p: { perSecond: number | null }): Promise<void>;
  /** Since start: messages accepted, connections opened. */
  counters(p: Record<string, never>): Promise<{ accepted: number; connectionsOpened: number }>;
  /** Forgets accepted messages now (counters are kept). */
  trim(p: Record<string, never>): Promise<void>;
  /** When the connection that carried the latest accepted message was opened (epoch ms). */
  lastAccepted(p: Record<string, never>): Promise<{ connectionOpenedAt: number | null }>;
  startSink(p: Record<string, never>): Promise<{ port: number }>;
  stop(p: Record<string, never>): Promise<void>;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class SandboxProcess {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (msg: { id?: number; result?: unknown; error?: string }) => {
      const p = msg.id === undefined ? undefined : this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id!);
      if (msg.error !== undefined) p.reject(new Error(`sandbox: ${msg.error}`));
      else p.resolve(msg.result);
    });
    child.on('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`sandbox process exited (${code})`));
      this.pending.clear();
    });
  }

  /** Forks the child (TypeScript through tsx's loader) and waits until it listens for calls. */
  static async start(cwd: string): Promise<SandboxProcess> {
    const child = fork(fileURLToPath(new URL('./sandbox-child.ts', import.meta.url)), {
      cwd,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`sandbox process exited (${code}) before it was ready`)));
    });
    return new SandboxProcess(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<M extends keyof SandboxMethods>(method: M, params: Parameters<SandboxMethods[M]>[0]): ReturnType<SandboxMethods[M]> {
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, method, params });
    }) as ReturnType<SandboxMethods[M]>;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    await this.call('stop', {}).catch(() => undefined);
    this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
