// The platform's floor: the least a relay on Node could cost per message. Per client connection
// it opens one upstream connection to the provider, does STARTTLS and AUTH XOAUTH2 itself, greets
// the client and answers its EHLO, and from then on only copies bytes both ways (no parsing, no
// reply of its own). A relay cannot do less and still authenticate for its clients, so the
// relay's CPU per message as a multiple of this pipe's is how far it is from the floor.
//
// It runs in a child process (byte-pipe-child.ts) so the kernel's CPU figures for it are its
// own, as they are for the relay.
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { ReplyReader } from '../../src/smtp/reply-reader.js';
import { formatReply, type Reply } from '../../src/smtp/reply.js';
import { xoauth2String } from '../../src/upstream/xoauth2.js';
import { MinimalRelaySession } from './minimal-relay.js';
import { cpuSeconds } from './proc.js';

export interface PipeUpstream {
  host: string;
  port: number;
  /** PEM of the CA that signed the provider's certificate. */
  ca: string;
  user: string;
  token: string;
}

/**
 * 'pipe': bytes copied both ways; 'minimal': the minimal faithful relay of minimal-relay.ts;
 * 'minimal-retiring': the same, retiring its upstream connection every 100 messages (the
 * contract's default messages_per_connection).
 */
export type PipeKind = 'pipe' | 'minimal' | 'minimal-retiring';

const GREETING = '220 pipe.bench ESMTP\r\n';
const EHLO_REPLY = '250-pipe.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n';

/** One TLS context per CA, as the relay keeps (a context per connection would charge each open for it). */
const contexts = new Map<string, tls.SecureContext>();
const contextFor = (ca: string): tls.SecureContext => {
  let context = contexts.get(ca);
  if (!context) contexts.set(ca, (context = tls.createSecureContext({ ca })));
  return context;
};

/** Upstream session to the point where the client's commands can go straight through. */
export async function authenticatedUpstream(up: PipeUpstream): Promise<tls.TLSSocket> {
  const raw = net.connect({ host: up.host, port: up.port, noDelay: true });
  let socket: net.Socket = raw;
  const replies: Reply[] = [];
  let wake: (() => void) | null = null;
  let reader = new ReplyReader((r) => {
    replies.push(r);
    wake?.();
  });
  const onData = (chunk: Buffer) => reader.push(chunk);
  raw.on('data', onData);
  const next = async (code: number): Promise<void> => {
    while (replies.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    const r = replies.shift()!;
    if (r.code !== code) throw new Error(`byte pipe: expected ${code} from the provider, got ${formatReply(r)}`);
  };
  const failed = new Promise<never>((_, reject) => raw.once('error', reject));
  const setup = async (): Promise<tls.TLSSocket> => {
    await next(220);
    socket.write('EHLO pipe.bench\r\n');
    await next(250);
    socket.write('STARTTLS\r\n');
    await next(220);
    raw.off('data', onData);
    reader = new ReplyReader((r) => {
      replies.push(r);
      wake?.();
    });
    const secure = tls.connect({ socket: raw, secureContext: contextFor(up.ca), ...(net.isIP(up.host) ? {} : { servername: up.host }) });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    socket = secure;
    secure.on('data', (chunk: Buffer) => reader.push(chunk));
    secure.write('EHLO pipe.bench\r\n');
    await next(250);
    secure.write(`AUTH XOAUTH2 ${xoauth2String(up.user, up.token)}\r\n`);
    await next(235);
    secure.removeAllListeners('data');
    return secure;
  };
  return Promise.race([setup(), failed]);
}

/** One client: upstream first, then the greeting, the client's EHLO answered here, then bytes. */
async function serve(client: net.Socket, up: PipeUpstream, kind: PipeKind): Promise<void> {
  client.setNoDelay(true);
  client.on('error', () => client.destroy());
  let upstream: tls.TLSSocket;
  try {
    upstream = await authenticatedUpstream(up);
  } catch {
    client.destroy();
    return;
  }
  if (kind !== 'pipe') {
    new MinimalRelaySession(client, upstream, kind === 'minimal-retiring' ? () => authenticatedUpstream(up) : null);
    client.write(GREETING);
    return;
  }
  upstream.on('error', () => client.destroy());
  upstream.on('close', () => client.destroy());
  client.on('close', () => upstream.destroy());
  let pending: Buffer = Buffer.alloc(0);
  const firstLine = (chunk: Buffer): void => {
    pending = Buffer.concat([pending, chunk]);
    const lf = pending.indexOf(0x0a);
    if (lf === -1) return;
    client.off('data', firstLine);
    client.write(EHLO_REPLY);
    const rest = pending.subarray(lf + 1);
    if (rest.length) upstream.write(rest);
    client.pipe(upstream);
    upstream.pipe(client);
  };
  client.on('data', firstLine);
  client.write(GREETING);
}

/** Listens on 127.0.0.1 (ephemeral port). */
export async function startBytePipe(up: PipeUpstream, kind: PipeKind = 'pipe'): Promise<net.Server> {
  const server = net.createServer((client) => void serve(client, up, kind));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** The parent's handle on the pipe's child process. */
export class BytePipeProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(cwd: string, up: PipeUpstream, kind: PipeKind = 'pipe'): Promise<BytePipeProcess> {
    const child = fork(fileURLToPath(new URL('./byte-pipe-child.ts', import.meta.url)), {
      cwd,
      execArgv: ['--import', 'tsx', ...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? [])],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: { port: number }) => resolve(m.port));
      child.once('exit', (code) => reject(new Error(`byte pipe exited (${code}) before it listened`)));
      child.send({ up, kind });
    });
    return new BytePipeProcess(child, port);
  }

  cpuSeconds(): number {
    return cpuSeconds(this.child.pid!);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
