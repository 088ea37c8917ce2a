// The inbound SMTP server the MTA talks to (nodemailer's smtp-server: it owns the protocol —
// parsing, PIPELINING, STARTTLS, SIZE, AUTH PLAIN/LOGIN, CRLF.CRLF-only end of DATA). The hooks
// here only validate and call the relay; the reply for anything thrown is decided by toReply().
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerAuthenticationResponse,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { Config } from '../config/schema.js';
import { Metrics } from '../obs/metrics.js';
import type { Refusals } from '../obs/refusals.js';
import { defaultReply, RelayError, toReply, UpstreamReplyError } from '../relay/errors.js';
import type { Relay } from '../relay/relay.js';
import type { LimitedTransaction as RelayTransaction } from '../relay/limited-transaction.js';
import { formatReply, textCarriesEnhancedCode, type Reply } from '../upstream/reply.js';
import { AuthGuard } from './auth-guard.js';
import { SessionGuard, type SessionLimits } from './session-guard.js';

interface SessionState {
  tx: RelayTransaction | null;
  /** Set while a transaction is being opened, so a reset can wait for it and abort it. */
  opening: Promise<unknown> | null;
}

type SmtpError = Error & { responseCode: number };

/**
 * An Error smtp-server turns into exactly this reply. A multi-line reply travels as lines joined
 * with \n, which our send() hook splits back (smtp-server would otherwise flatten them).
 */
function smtpError(r: Reply): SmtpError {
  return Object.assign(new Error(r.lines.join('\n')), { responseCode: r.code });
}

/** Text for a 250 reply passed as smtp-server's success message (single line there). */
const successText = (r: Reply) => r.lines.join(' ');

/**
 * smtp-server with two hooks into each connection:
 *  - send(): smtp-server prepends its own enhanced status code to every reply once
 *    ENHANCEDSTATUSCODES is on; a provider's reply already carries one ("550 5.1.1 ..."), so a
 *    text that starts with one is sent as it is, and a multi-line text as a multi-line reply.
 *    Every reply also goes through the connection's SessionGuard (error count, deadlines).
 *  - _resetSession(): RSET, EHLO/HELO and the end of a transaction reset the envelope; an upstream
 *    transaction still open then must be aborted (RSET upstream) so its connection is released.
 * Both are public methods of SMTPConnection in smtp-server 3.21's typings.
 */
class InboundSmtpServer extends SMTPServer {
  onReset: (session: SMTPServerSession) => void = () => undefined;
  /** Sessions whose next reply is a provider's, passed through: a 5xx there is not the client's error. */
  readonly providerReplies = new WeakSet<SMTPServerSession>();
  private readonly guards = new WeakMap<SMTPConnection, SessionGuard>();
  private sweeper: NodeJS.Timeout | null = null;
  private draining = false;

  constructor(
    options: ConstructorParameters<typeof SMTPServer>[0],
    private readonly limits: SessionLimits,
    private readonly greetingDelayMs: number,
  ) {
    super(options);
  }

  override connect(socket: Socket, socketOptions?: ConstructorParameters<typeof SMTPConnection>[2]): void {
    const connection = new SMTPConnection(this, socket, socketOptions);
    const guard = new SessionGuard(this.limits, Date.now());
    this.guards.set(connection, guard);
    const send = connection.send.bind(connection);
    connection.send = (code, data, context) => {
      if (typeof data === 'string' && textCarriesEnhancedCode(data)) {
        const lines = data.split('\n');
        send(code, lines.length > 1 ? lines : data, false);
      } else send(code, data, context);
      const fromProvider = this.providerReplies.delete(connection.session);
      if (guard.replied(Date.now(), code >= 500 && !fromProvider, code === 250 && context === 'DATA_OK')) {
        this.end(connection, 'TOO_MANY_ERRORS');
      } else if (this.draining) setImmediate(() => this.leaveIfIdle(connection));
    };
    const reset = connection._resetSession.bind(connection);
    connection._resetSession = () => {
      if (connection.session) this.onReset(connection.session);
      reset();
    };
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data) => this._onClientConnect(data));
    this.greet(connection);
  }

  /**
   * What smtp-server's init() does, but with our greeting delay: init() holds every greeting
   * 100 ms to catch clients that talk first (a spam-bot tell on a public port 25). The relay's
   * clients are trusted networks and authenticated MTAs, and an application that connects per
   * message would pay those 100 ms on every message; inbound.greeting_delay_ms (default 0)
   * brings the check back where it is wanted.
   */
  private greet(connection: SMTPConnection): void {
    connection._setListeners(() => {
      if (this.options.maxClients && this.connections.size > this.options.maxClients) {
        return connection.send(421, `${connection.name} Too many connected clients, try again in a moment`, false);
      }
      if (this.greetingDelayMs <= 0) return connection.connectionReady();
      setTimeout(() => connection.connectionReady(), this.greetingDelayMs).unref();
    });
  }

  /** Starts checking the clients' deadlines, often enough to be late by at most a quarter of the shorter one. */
  watch(): void {
    const every = Math.min(1_000, Math.max(50, Math.min(this.limits.idleTimeoutMs, this.limits.dataTimeoutMs) / 4));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  /**
   * Graceful stop: a session between transactions is closed now (421), one inside a transaction
   * as soon as the transaction has its final reply. Nothing new starts.
   */
  drain(): void {
    this.draining = true;
    for (const c of this.connections) this.leaveIfIdle(c);
  }

  override close(callback?: () => void): void {
    if (this.sweeper) clearInterval(this.sweeper);
    super.close(callback);
  }

  private sweep(): void {
    const now = Date.now();
    for (const c of this.connections) {
      const overdue = this.guards.get(c)?.overdue(c, now);
      if (!overdue) continue;
      const message = c._dataStream;
      this.end(c, 'CLIENT_TIMEOUT');
      // The message will never be complete: ending its stream in error abandons the upstream
      // transaction without the final dot, so nothing partial is delivered.
      if (overdue === 'message' && message) message.destroy(message.listenerCount('error') ? new Error('client too slow sending the message') : undefined);
    }
  }

  private leaveIfIdle(c: SMTPConnection): void {
    if (!c._closing && !c._closed && !SessionGuard.busy(c)) this.end(c, 'SHUTTING_DOWN');
  }

  /** A 421 (which makes smtp-server close the session) with the reply errors.ts gives the code. */
  private end(c: SMTPConnection, code: 'TOO_MANY_ERRORS' | 'CLIENT_TIMEOUT' | 'SHUTTING_DOWN'): void {
    const r = defaultReply(code);
    c.send(r.code, r.lines.join('\n'));
  }
}

export interface InboundDeps {
  relay: Relay;
  logger: Logger;
  metrics?: Metrics;
  /** Where every reply of 400 or above is recorded (log line, metric, recent list). */
  refusals?: Refusals;
}

const isLoopback = (ip: string) => ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.');

export class InboundServer {
  readonly server: InboundSmtpServer;
  private readonly sessions = new WeakMap<SMTPServerSession, SessionState>();
  /** Transactions in flight, so a graceful stop can wait for them. */
  private readonly active = new Set<Promise<unknown>>();
  private readonly maxBytes: number;
  private readonly authGuard: AuthGuard;

  constructor(
    config: Config,
    private readonly deps: InboundDeps,
  ) {
    const inbound = config.inbound;
    this.maxBytes = inbound.max_message_bytes;
    this.authGuard = new AuthGuard({
      failuresBeforeLockout: inbound.auth_failures_before_lockout,
      lockoutMs: inbound.auth_lockout_ms,
      failureDelayMs: inbound.auth_failure_delay_ms,
    });
    const tls = inbound.tls ? { key: readFileSync(inbound.tls.key_file), cert: readFileSync(inbound.tls.cert_file) } : null;
    this.server = new InboundSmtpServer({
      name: inbound.hostname ?? hostname(),
      banner: 'xoauth2-relay ESMTP',
      secure: false,
      ...(tls ?? {}),
      hideSTARTTLS: !tls,
      // Advertised, with our own codes and the provider's passed through (see send() above).
      hideENHANCEDSTATUSCODES: false,
      // Neither can be honoured end to end: providers do not offer DSN to submission clients.
      hideDSN: true,
      hideREQUIRETLS: true,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true,
      // Decided per client in onAuth: cleartext AUTH only from trusted networks or loopback.
      allowInsecureAuth: true,
      size: inbound.max_message_bytes,
      maxClients: inbound.max_connections,
      maxRecipients: inbound.max_recipients,
      socketTimeout: inbound.idle_timeout_ms,
      disableReverseLookup: true,
      logger: false,
      onAuth: (auth, session, cb) => this.onAuth(auth, session, cb),
      onMailFrom: (address, session, cb) => this.track(session, this.onMailFrom(address, session), cb),
      onRcptTo: (address, session, cb) => this.track(session, this.onRcptTo(address, session), cb),
      onData: (stream, session, cb) => this.onData(stream, session, cb),
      onClose: (session) => this.endSession(session),
    }, { maxErrors: inbound.max_errors_per_session, idleTimeoutMs: inbound.idle_timeout_ms, dataTimeoutMs: inbound.data_timeout_ms }, inbound.greeting_delay_ms);
    this.server.onReset = (session) => this.endSession(session);
    this.server.on('error', (err) => this.deps.logger.warn({ event: 'inbound_error', error: err.message }, 'inbound connection error'));
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.server.off('error', reject);
        const addr = this.server.server.address();
        this.server.watch();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });
  }

  /**
   * Stops accepting (new connections are refused), closes sessions between transactions with
   * 421 and lets each transaction in flight reach its real final reply before its session is
   * closed; after `timeoutMs` whatever is left gets 421 (smtp-server's close).
   */
  async close(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.server.server.close();
    this.server.drain();
    while ((this.server.connections.size > 0 || this.active.size > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.server.options.closeTimeout = 1;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  get sessionCount(): number {
    return this.server.connections.size;
  }

  private state(session: SMTPServerSession): SessionState {
    let s = this.sessions.get(session);
    if (!s) this.sessions.set(session, (s = { tx: null, opening: null }));
    return s;
  }

  private track<T>(session: SMTPServerSession, work: Promise<T>, cb: (err?: Error | null) => void): void {
    this.active.add(work);
    work.then(
      () => cb(),
      (e: unknown) => cb(this.failure(e, session)),
    ).finally(() => this.active.delete(work));
  }

  /** The reply for anything thrown; `session` is told when it is the provider's reply passed through. */
  private failure(e: unknown, session?: SMTPServerSession): SmtpError {
    if (!(e instanceof RelayError) && !(e as { reply?: unknown }).reply) {
      this.deps.logger.error({ event: 'internal_error', error: (e as Error).message, stack: (e as Error).stack }, 'unexpected error on a message path');
    }
    if (session && e instanceof UpstreamReplyError) this.server.providerReplies.add(session);
    return smtpError(toReply(e));
  }

  private onAuth(
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
  ): void {
    const { relay } = this.deps;
    if (!session.secure && !isLoopback(session.remoteAddress) && !relay.router.isTrusted(session.remoteAddress)) {
      return cb(this.failure(new RelayError('AUTH_NEEDS_TLS')));
    }
    // Locked out: the password is not even looked at, so guessing during the lockout learns nothing.
    if (this.authGuard.lockedOut(session.remoteAddress)) return cb(this.failure(new RelayError('AUTH_LOCKED_OUT')));
    const account = relay.router.authenticate(auth.username ?? '', auth.password ?? '');
    if (!account) {
      const { delayMs, lockedOut } = this.authGuard.failure(session.remoteAddress);
      this.deps.logger.warn({ event: 'auth_failed', remote: session.remoteAddress, user: auth.username, locked_out: lockedOut }, 'inbound AUTH failed');
      const refuse = () => cb(this.failure(new RelayError('AUTH_FAILED')));
      if (delayMs > 0) setTimeout(refuse, delayMs).unref();
      else refuse();
      return;
    }
    cb(null, { user: account.email });
  }

  private async onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const state = this.state(session);
    await this.abort(state);
    const email = typeof session.user === 'string' ? session.user : null;
    // Looked up at each MAIL, so a session follows changes to its account made while it is open.
    const account = email ? this.deps.relay.router.account(email) : null;
    if (email && !account) throw new RelayError('ACCOUNT_REMOVED', `${email} was removed while the session was open`);
    const opening = this.deps.relay.begin({ account, remoteAddress: session.remoteAddress }, address.address, address.args || {});
    state.opening = opening;
    try {
      state.tx = await opening;
    } finally {
      state.opening = null;
    }
  }

  private async onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const tx = this.state(session).tx;
    if (!tx) throw new RelayError('UPSTREAM_CLOSED', 'RCPT without an upstream transaction');
    await tx.rcpt(address.address);
  }

  private onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): void {
    const state = this.state(session);
    const tx = state.tx;
    state.tx = null;
    const started = performance.now();
    const work = (async () => {
      if (!tx) {
        for await (const _ of stream); // nothing to relay to; read the message so the session stays in step
        throw new RelayError('UPSTREAM_CLOSED', 'DATA without an upstream transaction');
      }
      return tx.data(stream, this.maxBytes).catch((e: unknown) => {
        // The client left (or was cut off) mid-message: its doing, not an internal error.
        throw stream.destroyed && !stream.readableEnded ? new RelayError('CLIENT_GONE', (e as Error).message, { cause: e }) : e;
      });
    })();
    this.active.add(work);
    work
      .then(
        (reply) => {
          this.logTransaction(session, tx, started, { code: reply.code, upstream: reply });
          cb(null, successText(reply));
        },
        (e: unknown) => {
          const err = this.failure(e, session);
          const upstream = e instanceof UpstreamReplyError ? e.reply : undefined;
          this.logTransaction(session, tx, started, { code: err.responseCode, upstream, error: (e as Error).message });
          cb(err);
        },
      )
      .finally(() => this.active.delete(work));
  }

  /** `code`: what the MTA got; `upstream`: the provider's own reply, when there is one. */
  private logTransaction(
    session: SMTPServerSession,
    tx: RelayTransaction | null,
    started: number,
    { code, upstream, error }: { code: number; upstream?: Reply | undefined; error?: string },
  ): void {
    const { metrics, relay } = this.deps;
    if (tx) {
      const account = tx.account.email;
      if (code < 300) relay.sent.record(account);
      metrics?.messages.inc({ account, outcome: Metrics.outcome(code) });
      metrics?.relayLatency.observe({ account }, (performance.now() - started) / 1000);
    }
    const log = this.deps.logger;
    if (!log.isLevelEnabled('info')) return;
    log.info(
      {
        event: 'transaction',
        session: session.id,
        account: tx?.account.email,
        mail_from: tx?.envelope.mailFrom,
        rcpt_count: tx?.envelope.rcptTo.length ?? 0,
        size: tx?.bytes ?? 0,
        reply: code,
        ...(upstream ? { upstream: formatReply(upstream) } : {}),
        ms: Math.round((performance.now() - started) * 100) / 100,
        ...(error ? { error } : {}),
      },
      'transaction',
    );
  }

  /** The envelope was reset or the session ended: an upstream transaction still open is aborted. */
  private endSession(session: SMTPServerSession): void {
    const state = this.sessions.get(session);
    if (state && (state.tx || state.opening)) this.abort(state).catch(() => undefined);
  }

  private async abort(state: SessionState): Promise<void> {
    if (state.opening) await state.opening.catch(() => undefined);
    const tx = state.tx;
    state.tx = null;
    if (tx) await tx.abort();
  }
}
