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
import { RelayError, toReply } from '../relay/errors.js';
import type { Relay } from '../relay/relay.js';
import type { RelayTransaction } from '../relay/transaction.js';
import { textCarriesEnhancedCode, type Reply } from '../upstream/reply.js';

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
 *  - _resetSession(): RSET, EHLO/HELO and the end of a transaction reset the envelope; an upstream
 *    transaction still open then must be aborted (RSET upstream) so its connection is released.
 * Both are public methods of SMTPConnection in smtp-server 3.21's typings.
 */
class InboundSmtpServer extends SMTPServer {
  onReset: (session: SMTPServerSession) => void = () => undefined;

  override connect(socket: Socket, socketOptions?: ConstructorParameters<typeof SMTPConnection>[2]): void {
    const connection = new SMTPConnection(this, socket, socketOptions);
    const send = connection.send.bind(connection);
    connection.send = (code, data, context) => {
      if (typeof data === 'string' && textCarriesEnhancedCode(data)) {
        const lines = data.split('\n');
        return send(code, lines.length > 1 ? lines : data, false);
      }
      return send(code, data, context);
    };
    const reset = connection._resetSession.bind(connection);
    connection._resetSession = () => {
      if (connection.session) this.onReset(connection.session);
      reset();
    };
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data) => this._onClientConnect(data));
    connection.init();
  }
}

export interface InboundDeps {
  relay: Relay;
  logger: Logger;
  metrics?: Metrics;
}

const isLoopback = (ip: string) => ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.');

export class InboundServer {
  readonly server: InboundSmtpServer;
  private readonly sessions = new WeakMap<SMTPServerSession, SessionState>();
  /** Transactions in flight, so a graceful stop can wait for them. */
  private readonly active = new Set<Promise<unknown>>();
  private readonly maxBytes: number;

  constructor(
    private readonly config: Config,
    private readonly deps: InboundDeps,
  ) {
    const inbound = config.inbound;
    this.maxBytes = inbound.max_message_bytes;
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
      onMailFrom: (address, session, cb) => this.track(this.onMailFrom(address, session), cb),
      onRcptTo: (address, session, cb) => this.track(this.onRcptTo(address, session), cb),
      onData: (stream, session, cb) => this.onData(stream, session, cb),
      onClose: (session) => this.endSession(session),
    });
    this.server.onReset = (session) => this.endSession(session);
    this.server.on('error', (err) => this.deps.logger.warn({ event: 'inbound_error', error: err.message }, 'inbound connection error'));
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.server.off('error', reject);
        const addr = this.server.server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });
  }

  /**
   * Stops accepting, lets transactions in flight finish (bounded), then closes the sessions
   * (smtp-server answers them 421).
   */
  async close(timeoutMs: number): Promise<void> {
    this.server.server.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.active]), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
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

  private track<T>(work: Promise<T>, cb: (err?: Error | null) => void): void {
    this.active.add(work);
    work.then(
      () => cb(),
      (e: unknown) => cb(this.failure(e)),
    ).finally(() => this.active.delete(work));
  }

  private failure(e: unknown): SmtpError {
    if (!(e instanceof RelayError) && !(e as { reply?: unknown }).reply) {
      this.deps.logger.error({ event: 'internal_error', error: (e as Error).message, stack: (e as Error).stack }, 'unexpected error on a message path');
    }
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
    const account = relay.router.authenticate(auth.username ?? '', auth.password ?? '');
    if (!account) {
      this.deps.logger.warn({ event: 'auth_failed', remote: session.remoteAddress, user: auth.username }, 'inbound AUTH failed');
      return cb(this.failure(new RelayError('AUTH_FAILED')));
    }
    cb(null, { user: account.email });
  }

  private async onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const state = this.state(session);
    await this.abort(state);
    const email = typeof session.user === 'string' ? session.user : null;
    const account = email ? this.deps.relay.router.account(email) : null;
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
      return tx.data(stream, this.maxBytes);
    })();
    this.active.add(work);
    work
      .then(
        (reply) => {
          this.logTransaction(session, tx, reply.code, started);
          cb(null, successText(reply));
        },
        (e: unknown) => {
          const err = this.failure(e);
          this.logTransaction(session, tx, err.responseCode, started, (e as Error).message);
          cb(err);
        },
      )
      .finally(() => this.active.delete(work));
  }

  private logTransaction(session: SMTPServerSession, tx: RelayTransaction | null, code: number, started: number, error?: string): void {
    const { metrics } = this.deps;
    if (metrics && tx) {
      const account = tx.account.email;
      metrics.messages.inc({ account, outcome: Metrics.outcome(code) });
      metrics.relayLatency.observe({ account }, (performance.now() - started) / 1000);
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
