// One inbound Session driven in-process over a real loopback socket, with a scripted stand-in
// for the relay stage (SessionRelay): no sandbox, no RelayApp, no pool. What the session asked of
// the relay is kept in `calls` in order, so a test can check both wire sides: what the client
// heard, and what went "upstream" (mox drives its server over net.Pipe() the same way).
import { createServer, type Server } from 'node:net';
import { AuthGuard } from '../../src/inbound/auth-guard.js';
import { Session, type SessionContext, type SessionRelay, type SessionTransaction } from '../../src/inbound/session.js';
import { TransactionLog } from '../../src/inbound/transaction-log.js';
import { configSchema } from '../../src/config/schema.js';
import { silentLogger } from '../../src/obs/logger.js';
import type { RefusalInput, Refusals } from '../../src/obs/refusals.js';
import { UpstreamReplyError } from '../../src/errors/registry.js';
import type { RecipientReply } from '../../src/relay/limited-transaction.js';
import type { Group } from '../../src/relay/transaction.js';
import type { Account } from '../../src/routing/account.js';
import type { MessageBody } from '../../src/smtp/body.js';
import { reply, type Reply } from '../../src/smtp/reply.js';
import { RawSmtp } from './smtp-client.js';

type Inbound = SessionContext['config'];

/** How the stand-in answers; anything left out is accepted with the provider's usual words. */
export interface Script {
  /** MAIL's reply (400 and above: refused, as UpstreamReplyError). */
  mail?: Reply;
  /** How long the transaction takes to open (a slow pool or provider). */
  mailDelayMs?: number;
  /** RCPT replies by address. */
  rcpt?: Record<string, Reply>;
  /** How long the provider takes to answer DATA (before the body is opened and the client hears 354). */
  dataDelayMs?: number;
  /** DATA refused instead of 354: the body is never opened. */
  dataRefused?: Reply;
  /** The reply to the end of the message. */
  final?: Reply;
  /** A slow consumer: its sink asks the session to wait each time this many bytes came since the last drain() (ScriptedRelay.drain). */
  sinkWindow?: number;
  /** Accounts by address with their password (AUTH). */
  accounts?: Record<string, string>;
}

export interface Delivered {
  from: string;
  to: string[];
  body: string;
}

const account = (email: string) => ({ email }) as Account;

/** The relay stage as a script: records every call, delivers into `messages`. */
export class ScriptedRelay implements SessionRelay {
  readonly calls: string[] = [];
  readonly messages: Delivered[] = [];
  /** Errors the message body threw into the transaction (a body abandoned). */
  readonly bodyErrors: Error[] = [];
  readonly sent = { record: (email: string) => void this.calls.push(`sent ${email}`) };
  /** Body bytes the consumer's sink has taken (all messages). */
  bodyBytes = 0;
  /** The sink returned false and drain() was not called yet. */
  waiting = false;
  private window = 0;
  private opened: MessageBody | null = null;
  readonly router: SessionRelay['router'];

  constructor(readonly script: Script = {}) {
    const accounts = script.accounts ?? {};
    this.router = {
      account: (email) => (email in accounts ? account(email) : null),
      authenticate: (user, password) => (accounts[user] !== undefined && accounts[user] === password ? account(user) : null),
    };
  }

  /** The slow consumer caught up (see Script.sinkWindow): the session may read again. */
  drain(): void {
    this.window = 0;
    this.waiting = false;
    this.opened?.drained();
  }

  /** Opens the body (the client hears 354) and takes it to its end, as a consumer's sink. */
  take(body: MessageBody): Promise<string> {
    this.opened = body;
    const limit = this.script.sinkWindow ?? Infinity;
    const chunks: Buffer[] = [];
    return new Promise<string>((resolve, reject) => {
      body.open({
        write: (c) => {
          chunks.push(Buffer.from(c));
          this.bodyBytes += c.length;
          this.window += c.length;
          if (this.window < limit) return true;
          this.waiting = true;
          return false;
        },
        end: () => resolve(Buffer.concat(chunks).toString('utf8')),
        fail: reject,
      });
    });
  }

  capabilities() {
    return { size: null, smtputf8: true, eightBitMime: true };
  }

  async begin(identity: { account: Account | null }, mailFrom: string, _params: unknown, group?: Group): Promise<SessionTransaction> {
    this.calls.push(`begin ${mailFrom}${group ? ` group=${group.rcpts.join(',')}${group.data ? '+DATA' : ''}` : ''}`);
    if (this.script.mailDelayMs) await new Promise((r) => setTimeout(r, this.script.mailDelayMs));
    const m = this.script.mail;
    if (m && m.code >= 400) throw new UpstreamReplyError(m);
    return new ScriptedTransaction(this, identity.account ?? account('routed@example.test'), mailFrom, m ?? reply(250, '2.1.0 OK mail'));
  }
}

class ScriptedTransaction implements SessionTransaction {
  readonly envelope: { mailFrom: string; rcptTo: string[] };
  readonly recipients: RecipientReply[] = [];
  bytes = 0;

  constructor(
    private readonly relay: ScriptedRelay,
    readonly account: Account,
    mailFrom: string,
    readonly mailReply: Reply,
  ) {
    this.envelope = { mailFrom, rcptTo: [] };
  }

  rcpt(to: string): Promise<Reply> {
    this.relay.calls.push(`rcpt ${to}`);
    const r = this.relay.script.rcpt?.[to] ?? reply(250, '2.1.5 OK rcpt');
    this.recipients.push({ to, reply: r });
    if (r.code >= 400) return Promise.reject(new UpstreamReplyError(r));
    this.envelope.rcptTo.push(to);
    return Promise.resolve(r);
  }

  async data(body: MessageBody): Promise<Reply> {
    this.relay.calls.push('data');
    if (this.relay.script.dataDelayMs) await new Promise((r) => setTimeout(r, this.relay.script.dataDelayMs));
    const refused = this.relay.script.dataRefused;
    if (refused) throw new UpstreamReplyError(refused);
    let text: string;
    try {
      text = await this.relay.take(body);
    } catch (e) {
      this.relay.bodyErrors.push(e as Error);
      this.relay.calls.push('body abandoned');
      throw e;
    }
    this.bytes = Buffer.byteLength(text);
    const final = this.relay.script.final ?? reply(250, '2.0.0 OK queued');
    if (final.code >= 400) throw new UpstreamReplyError(final);
    this.relay.messages.push({ from: this.envelope.mailFrom, to: [...this.envelope.rcptTo], body: text });
    return final;
  }

  async abort(): Promise<void> {
    this.relay.calls.push('abort');
  }
}

export interface SessionServer {
  port: number;
  relay: ScriptedRelay;
  refusals: RefusalInput[];
  /** Resolves when the (first) session has closed (ctx.onClose). */
  closed: Promise<void>;
  stop(): Promise<void>;
}

export interface Harness extends SessionServer {
  client: RawSmtp;
  greeting: Reply;
}

export interface HarnessOptions {
  script?: Script;
  /** The client is on trusted_networks (default true). */
  trusted?: boolean;
  /** inbound config keys over the defaults. */
  inbound?: Partial<Inbound>;
}

/** A server on 127.0.0.1 whose Sessions run on this process's event loop. */
export async function sessionServer(opts: HarnessOptions = {}): Promise<SessionServer> {
  const relay = new ScriptedRelay(opts.script);
  const refusals: RefusalInput[] = [];
  const config = { ...configSchema.parse({}).inbound, ...opts.inbound } as Inbound;
  const logger = silentLogger();
  let onClosed!: () => void;
  const closed = new Promise<void>((resolve) => (onClosed = resolve));
  const ctx: SessionContext = {
    config,
    hostname: 'relay.test',
    relay,
    logger,
    transactionLog: new TransactionLog(logger),
    refusals: { record: (r: RefusalInput) => void refusals.push(r) } as unknown as Refusals,
    authGuard: new AuthGuard({ failuresBeforeLockout: config.auth_failures_before_lockout, lockoutMs: config.auth_lockout_ms, failureDelayMs: config.auth_failure_delay_ms }),
    tls: null,
    onAuthenticated: () => undefined,
    onClose: () => onClosed(),
    draining: false,
  };
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', () => undefined);
    new Session(socket, ctx, { remote: socket.remoteAddress ?? '', trusted: opts.trusted ?? true, secure: false }).start();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    relay,
    refusals,
    closed,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** sessionServer and one client connected to it, greeted. */
export async function sessionHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const server = await sessionServer(opts);
  const { client, greeting } = await RawSmtp.connect(server.port);
  return {
    ...server,
    client,
    greeting,
    async stop() {
      client.close();
      await server.stop();
    },
  };
}
