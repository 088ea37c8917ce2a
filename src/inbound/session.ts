// One inbound SMTP session: a small state machine over the socket's bytes (see server.ts for
// why this is the relay's own code and not smtp-server).
//
// Reading: every complete command in the input buffer is handled before the session waits for
// more; commands are handled strictly in order, one at a time (a handler that waits on the
// provider holds the ones behind it), and their replies are queued and written in one write
// when the input is drained or the session must wait (Postfix smtpd's way). A MAIL looks ahead
// at the RCPTs and DATA the client pipelined behind it, so that they go upstream with it in one
// write (Relay.begin's `group`); their replies are then the provider's, in order.
//
// Writing: reply() is the one place a reply is queued. Every reply of 400 or above goes
// through fail(), which records it once (Refusals) and counts the client's own errors.
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { isLoopbackHost } from '../config/networks.js';
import type { Config } from '../config/schema.js';
import type { Metrics } from '../obs/metrics.js';
import type { Refusals, RefusalStage } from '../obs/refusals.js';
import type { LimitedTransaction } from '../relay/limited-transaction.js';
import { accountOf, isRefusal, reasonOf, RelayError, toReply, UpstreamReplyError } from '../errors/registry.js';
import type { Relay } from '../relay/relay.js';
import type { Group } from '../relay/transaction.js';
import type { Account } from '../routing/account.js';
import { formatReply, reply, wireReply, type Reply } from '../smtp/reply.js';
import type { AuthGuard } from './auth-guard.js';
import { BodyStream } from './body-stream.js';
import { parsePath } from '../smtp/path.js';
import { DataDecoder } from '../smtp/data-decoder.js';
import { bodyRead } from './reclaim.js';
import { SessionGuard, type Expiry } from './session-guard.js';
import type { TransactionLog } from './transaction-log.js';

/** What every session of one server shares. */
export interface SessionContext {
  config: Config['inbound'];
  hostname: string;
  relay: Relay;
  logger: Logger;
  /** The `transaction` line (see transaction-log.ts); whether it is written follows `logger`'s level. */
  transactionLog: TransactionLog;
  metrics?: Metrics | undefined;
  refusals?: Refusals | undefined;
  authGuard: AuthGuard;
  tls: SecureContext | null;
  /** A stranger (untrusted) authenticated: its slot moves to the reserved share. */
  onAuthenticated(session: Session): void;
  onClose(session: Session): void;
  readonly draining: boolean;
}

/** Longest command line (without CRLF). Long enough for many ESMTP parameters; beyond it the session ends. */
const MAX_LINE = 16 * 1024;
const LF = 0x0a;
const HTTP_VERBS = new Set(['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'CONNECT', 'PATCH']);
const OK = reply(250, '2.0.0 OK');
/** The settlement of a MAIL that was answered 451 while it waited (Session.mailLate). */
const LATE: Reply = reply(451, 'late');
const stageOf: Record<string, RefusalStage> = { AUTH: 'auth', MAIL: 'mail', RCPT: 'rcpt', DATA: 'data' };

type Handler = (this: Session, arg: string) => Reply | Promise<Reply> | null;
/** A line that is not a command: the next step of an AUTH exchange. */
type Continuation = (line: string) => Reply | Promise<Reply> | null;

export class Session {
  readonly id = randomBytes(6).toString('base64url');
  readonly remote: string;
  readonly trusted: boolean;
  account: Account | null = null;
  private socket: Socket;
  private input: Buffer | null = null;
  private out: string[] = [];
  private readonly guard: SessionGuard;
  /** A handler is working: the commands behind it wait (their replies must follow its reply). */
  private busy = false;
  private closing = false;
  private closed = false;
  /** The client shut its sending side: answer what it sent, then close. */
  private readEnded = false;
  private greeted = false;
  private helo: string | null = null;
  private secure = false;
  private continuation: Continuation | null = null;
  // The transaction.
  private tx: LimitedTransaction | null = null;
  private mailFrom: string | null = null;
  /** RCPTs tried in this transaction (max_recipients); the accepted ones are its envelope's. */
  private rcpts = 0;
  private decoder: DataDecoder | null = null;
  private body: BodyStream | null = null;
  private bodyDone: (() => void) | null = null;
  /** The MAIL being opened upstream (see mailLate). */
  private opening: { late: boolean } | null = null;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onEnd = (): void => this.ended();
  private readonly onClose = (): void => this.gone();

  constructor(
    socket: Socket,
    private readonly ctx: SessionContext,
    trusted: boolean,
  ) {
    this.socket = socket;
    this.remote = socket.remoteAddress ?? '';
    this.trusted = trusted;
    const c = ctx.config;
    this.guard = new SessionGuard(
      { maxErrors: c.max_errors_per_session, idleTimeoutMs: c.idle_timeout_ms, dataTimeoutMs: c.data_timeout_ms, mailReplyTimeoutMs: c.mail_reply_timeout_ms },
      trusted ? null : c.auth_deadline_ms,
      (what) => this.expire(what),
    );
    socket.setNoDelay(true);
    this.attach(socket);
  }

  /** Greets now, or after inbound.greeting_delay_ms (a client that talks first is refused). */
  start(): void {
    const delay = this.ctx.config.greeting_delay_ms;
    if (delay <= 0) return this.greet();
    setTimeout(() => {
      if (this.closed || this.closing) return;
      if (this.input) return this.close(this.fail('session', new RelayError('EARLY_TALKER')));
      this.greet();
      this.pump();
    }, delay).unref();
  }

  /** Between transactions and idle: a graceful stop may close it now. */
  get idle(): boolean {
    return !this.busy && this.tx === null && this.body === null;
  }

  /** Graceful stop: 421 now if idle; else after the transaction's final reply (see finishData). */
  drain(): void {
    if (this.idle && !this.closing) this.close(this.fail('session', new RelayError('SHUTTING_DOWN')));
  }

  /** The end of the grace period: 421 whatever the session is doing. */
  kill(): void {
    if (this.closed) return;
    this.abandonBody(new RelayError('SHUTTING_DOWN', 'relay stopped during the message'));
    if (!this.closing) this.close(this.fail('session', new RelayError('SHUTTING_DOWN')));
    this.socket.destroy();
  }

  // ------------------------------------------------------------------ input

  private attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', () => undefined); // 'close' follows
  }

  private greet(): void {
    this.greeted = true;
    this.reply(reply(220, `${this.ctx.hostname} ESMTP xoauth2-relay`));
    this.flush();
  }

  private receive(chunk: Buffer): void {
    if (this.closing) return;
    this.input = this.input ? Buffer.concat([this.input, chunk]) : chunk;
    if (this.greeted) this.pump();
  }

  /** Handles what can be handled now, then writes the queued replies once. */
  private pump(): void {
    while (!this.closing) {
      if (this.decoder) {
        if (!this.input || !this.feedBody()) break;
        continue;
      }
      if (this.busy) break;
      const line = this.takeLine();
      if (line === null) break;
      this.dispatch(line);
    }
    if (this.busy && !this.decoder) {
      if (this.opening) this.guard.opening();
      else this.guard.ours();
      return; // the replies so far wait for the handler's: the client waits for all of them
    }
    this.flush();
    if (this.readEnded && !this.busy && !this.decoder && !this.closing) this.close(null);
  }

  /** The next command line, without its line end; null when none is complete. */
  private takeLine(): string | null {
    const buf = this.input;
    if (!buf) return null;
    const lf = buf.indexOf(LF);
    if (lf === -1) {
      if (buf.length > MAX_LINE) this.close(this.fail('session', new RelayError('LINE_TOO_LONG')));
      return null;
    }
    if (lf > MAX_LINE + 1) {
      this.close(this.fail('session', new RelayError('LINE_TOO_LONG')));
      return null;
    }
    const end = lf > 0 && buf[lf - 1] === 0x0d ? lf - 1 : lf;
    // UTF-8, so that an address written in it (SMTPUTF8) goes upstream as the same bytes.
    const line = buf.toString('utf8', 0, end);
    this.input = lf + 1 < buf.length ? buf.subarray(lf + 1) : null;
    return line;
  }

  /** The complete lines after the one just taken, without consuming them (MAIL's look-ahead). */
  private *peekLines(): Generator<string> {
    const buf = this.input;
    if (!buf) return;
    let from = 0;
    for (;;) {
      const lf = buf.indexOf(LF, from);
      if (lf === -1 || lf - from > MAX_LINE) return;
      const end = lf > from && buf[lf - 1] === 0x0d ? lf - 1 : lf;
      yield buf.toString('utf8', from, end);
      from = lf + 1;
    }
  }

  private ended(): void {
    this.readEnded = true;
    if (this.decoder) {
      // Half a message, and no more can come: nothing of it may be delivered.
      this.abandonBody(new RelayError('CLIENT_GONE', 'client ended its side of the connection mid-message'));
      return;
    }
    if (!this.busy && !this.closing) this.pump();
  }

  private gone(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    this.guard.stop();
    this.abandonBody(new RelayError('CLIENT_GONE', 'client connection lost mid-message'));
    this.abortTx();
    this.ctx.onClose(this);
  }

  // ------------------------------------------------------------------ output

  /** Queues a reply: the one place replies are made into lines. */
  private reply(r: Reply): void {
    this.out.push(wireReply(r));
  }

  private flush(): void {
    if (this.out.length === 0 || this.closed) return;
    const text = this.out.length === 1 ? this.out[0]! : this.out.join('');
    this.out = [];
    this.socket.write(text);
    if (!this.closing) this.guard.waitFor(this.decoder ? 'message' : 'command');
  }

  /**
   * The reply for anything thrown, recorded once when it is 400 or above. A 5xx the relay
   * decided counts against the session's errors; past the limit the session ends with 421.
   */
  private fail(stage: RefusalStage, err: unknown, account?: string): Reply {
    if (!isRefusal(err)) {
      this.ctx.logger.error({ event: 'internal_error', error: (err as Error).message, stack: (err as Error).stack }, 'unexpected error on a message path');
    }
    const r = toReply(err);
    this.ctx.refusals?.record({
      stage,
      reply: r,
      reason: reasonOf(err),
      account: account ?? accountOf(err) ?? this.tx?.account.email ?? this.account?.email,
      session: this.id,
      remote: this.remote,
      mailFrom: this.mailFrom ?? undefined,
      detail: err instanceof Error ? err.message : undefined,
    });
    if (r.code >= 500 && !(err instanceof UpstreamReplyError) && this.guard.error()) {
      this.reply(r);
      return this.close(this.fail('session', new RelayError('TOO_MANY_ERRORS')));
    }
    return r;
  }

  /** Queues `last` (if any), writes everything and closes the connection once written. */
  private close(last: Reply | null): Reply {
    if (this.closing) return last ?? OK;
    if (last) this.reply(last);
    const out = this.out.join('');
    this.out = [];
    this.closing = true;
    this.guard.stop();
    this.input = null;
    if (!this.closed) {
      const socket = this.socket;
      socket.end(out);
      // A client that never closes its side does not keep the connection.
      setTimeout(() => socket.destroy(), 5_000).unref();
    }
    this.abortTx();
    return last ?? OK;
  }

  private expire(what: Expiry): void {
    if (this.closing) return;
    if (what === 'mail') return this.mailLate();
    if (what === 'message') this.abandonBody(new RelayError('CLIENT_TIMEOUT', 'client too slow sending the message'));
    this.close(this.fail(what === 'message' ? 'data' : 'session', new RelayError(what === 'auth' ? 'AUTH_DEADLINE' : 'CLIENT_TIMEOUT')));
  }

  // ------------------------------------------------------------------ dispatch

  private dispatch(line: string): void {
    if (this.continuation) {
      const next = this.continuation;
      this.continuation = null;
      return this.settle('AUTH', () => next(line));
    }
    const sp = line.indexOf(' ');
    const verb = (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp === -1 ? '' : line.slice(sp + 1);
    if (/[\0\r]/.test(line)) {
      return this.settle(verb, () => { throw new RelayError('SYNTAX', 'NUL or CR in a command', { reply: reply(501, '5.5.2 Syntax error: NUL or CR in command') }); });
    }
    if (HTTP_VERBS.has(verb) && / HTTP\/\d/.test(line)) {
      // A web page made to talk to the SMTP port (cross-protocol attack): closed at once.
      this.close(this.fail('session', new RelayError('SYNTAX', 'HTTP request on the SMTP port', { reply: reply(421, '4.5.0 HTTP requests are not served here, closing connection') })));
      return;
    }
    const handler = HANDLERS[verb];
    this.settle(verb, handler ? () => handler.call(this, arg) : () => { throw new RelayError('SYNTAX', `unknown command ${verb.slice(0, 20)}`); });
  }

  /** Runs a handler and queues its reply (or its failure's), in order. */
  private settle(verb: string, run: () => Reply | Promise<Reply> | null): void {
    const stage = stageOf[verb] ?? 'session';
    let result: Reply | Promise<Reply> | null;
    try {
      result = run();
    } catch (e) {
      result = this.fail(stage, e);
    }
    if (result === null) return; // the handler wrote its own (STARTTLS, QUIT) or the session is closing
    if (!(result instanceof Promise)) {
      this.reply(result);
      return;
    }
    this.busy = true;
    // One reaction for both outcomes (not .catch().then()): a promise less per command.
    result.then(
      (r) => this.settled(r),
      (e: unknown) => this.settled(this.fail(stage, e)),
    );
  }

  private settled(r: Reply | null): void {
    if (r === LATE) return; // answered already (mailLate)
    this.busy = false;
    if (this.closing) return;
    if (r) this.reply(r);
    this.pump();
  }

  // ------------------------------------------------------------------ handlers

  private ehlo(arg: string, extended: boolean): Reply {
    const name = arg.trim();
    if (!name || /\s/.test(name)) throw new RelayError('SYNTAX', 'EHLO without a name', { reply: reply(501, '5.5.4 Syntax: EHLO hostname') });
    // The name is echoed in the reply: past a domain's 255 octets (RFC 5321 §4.5.3.1.2) it is
    // not a name, and echoing kilobytes would make our reply line longer than clients accept.
    if (name.length > 255) throw new RelayError('SYNTAX', 'EHLO name too long', { reply: reply(501, '5.5.4 Syntax: EHLO hostname (at most 255 characters)') });
    this.resetTx();
    this.helo = name;
    if (!extended) return reply(250, `${this.ctx.hostname} Hello ${name}`);
    const caps = this.ctx.relay.capabilities(this.account);
    const c = this.ctx.config;
    const size = caps.size === null ? c.max_message_bytes : Math.min(caps.size, c.max_message_bytes);
    const lines = [`${this.ctx.hostname} Hello ${name}`, 'PIPELINING'];
    if (caps.eightBitMime) lines.push('8BITMIME');
    if (caps.smtputf8) lines.push('SMTPUTF8');
    lines.push(`SIZE ${size}`, 'ENHANCEDSTATUSCODES');
    if (this.ctx.tls && !this.secure) lines.push('STARTTLS');
    lines.push('AUTH PLAIN LOGIN');
    return { code: 250, lines };
  }

  private mail(arg: string): Reply | Promise<Reply> {
    if (!this.helo) throw sequence('5.5.1 Say EHLO first');
    if (this.tx || this.mailFrom !== null) throw sequence('5.5.1 Nested MAIL command');
    const maxBytes = this.ctx.config.max_message_bytes;
    const { address, params } = parsePath(arg, 'FROM', maxBytes);
    const { relay } = this.ctx;
    const account = this.account ? relay.router.account(this.account.email) : null;
    // Looked up at each MAIL, so a session follows changes to its account made while it is open.
    if (this.account && !account) throw new RelayError('ACCOUNT_REMOVED', `${this.account.email} was removed while the session was open`);
    this.rcpts = 0;
    const group = this.lookAhead();
    const opening = { late: false };
    this.opening = opening;
    // Set while MAIL is open, so that the RCPTs behind it wait for it; reset if it is refused.
    this.mailFrom = address;
    return relay.begin({ account, remoteAddress: this.remote }, address, params, group).then(
      (tx) => {
        if (opening.late || this.closing) {
          tx.abort().catch(() => undefined);
          if (opening.late) return LATE;
          throw new RelayError('CLIENT_GONE', 'session ended while MAIL was being opened');
        }
        this.opening = null;
        this.tx = tx;
        return tx.mailReply ?? reply(250, '2.1.0 Sender OK');
      },
      (e: unknown) => {
        if (opening.late) return LATE;
        this.opening = null;
        this.mailFrom = null;
        throw e;
      },
    );
  }

  /**
   * The MAIL's reply is due (inbound.mail_reply_timeout_ms) and the upstream transaction is not
   * open yet: 451 now; if it opens later it is abandoned (its settlement is LATE, ignored).
   */
  private mailLate(): void {
    const opening = this.opening;
    if (!opening) return;
    opening.late = true;
    this.opening = null;
    this.mailFrom = null;
    this.settled(this.fail('mail', new RelayError('POOL_BUSY', `no upstream transaction within ${this.ctx.config.mail_reply_timeout_ms} ms`)));
  }

  /**
   * The RCPTs (and DATA) already in the input behind this MAIL, as far as each would be accepted
   * by the relay itself: they go upstream with MAIL. Nothing is consumed: each is still handled
   * by its own handler, which takes its reply from the pipelined one.
   */
  private lookAhead(): Group | undefined {
    const rcpts: string[] = [];
    let data = false;
    const max = this.ctx.config.max_recipients;
    for (const line of this.peekLines()) {
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'DATA' && line.length === 4) {
        data = rcpts.length > 0;
        break;
      }
      if (verb !== 'RCPT' || line[4] !== ' ' || rcpts.length >= max || /[\0\r]/.test(line)) break;
      try {
        rcpts.push(parsePath(line.slice(5), 'TO', 0).address);
      } catch {
        break;
      }
    }
    return rcpts.length ? { rcpts, data } : undefined;
  }

  private rcpt(arg: string): Reply | Promise<Reply> {
    if (this.mailFrom === null) throw sequence('5.5.1 Need MAIL before RCPT');
    const { address } = parsePath(arg, 'TO', 0);
    const tx = this.tx;
    if (!tx) throw sequence('5.5.1 Need MAIL before RCPT (the MAIL was refused)');
    if (this.rcpts >= this.ctx.config.max_recipients) throw new RelayError('TOO_MANY_RECIPIENTS');
    this.rcpts++;
    return tx.rcpt(address); // accepted: in tx.envelope.rcptTo
  }

  private data(arg: string): Reply | Promise<Reply> | null {
    if (arg) throw new RelayError('SYNTAX', 'DATA with an argument', { reply: reply(501, '5.5.4 Syntax: DATA') });
    if (this.mailFrom === null) throw sequence('5.5.1 Need MAIL and RCPT before DATA');
    const tx = this.tx;
    if (!tx || tx.envelope.rcptTo.length === 0) {
      this.resetTx();
      throw new RelayError('BAD_SEQUENCE', 'DATA without an accepted recipient', { reply: reply(554, '5.5.1 No valid recipients') });
    }
    this.tx = null;
    const started = performance.now();
    const decoder = new DataDecoder();
    let done!: () => void;
    const received = new Promise<void>((resolve) => (done = resolve));
    const body = new BodyStream(
      () => {
        // The backend is ready for the body: now the client hears 354 and sends it.
        this.reply(reply(354, 'Start mail input; end with <CRLF>.<CRLF>'));
        this.decoder = decoder;
        this.bodyDone = done;
        this.flush();
        this.guard.waitFor('message');
        if (this.input) queueMicrotask(() => this.pump());
      },
      () => this.socket.resume(),
    );
    this.body = body;
    const maxBytes = this.ctx.config.max_message_bytes;
    return tx
      .data(body, maxBytes)
      .then(
        async (r) => {
          if (body.started) await received;
          this.guard.delivered();
          this.logTransaction(tx, decoder, started, r.code, r);
          return r;
        },
        async (e: unknown) => {
          if (body.started) await received;
          const err = body.started && this.closed ? new RelayError('CLIENT_GONE', (e as Error).message, { cause: e }) : e;
          // A session already closing (timeout, client gone) gave its one reply: the log line says the rest.
          const r = this.closing ? toReply(err) : this.fail('data', err, tx.account.email);
          this.logTransaction(tx, decoder, started, r.code, err instanceof UpstreamReplyError ? err.reply : undefined, (e as Error).message);
          return r;
        },
      )
      .then((r) => {
        this.body = null;
        this.resetTx();
        if (this.ctx.draining) {
          this.reply(r);
          this.close(this.fail('session', new RelayError('SHUTTING_DOWN')));
          return OK;
        }
        return r;
      });
  }

  /** Feeds the buffered input to the message; false when it must wait (backpressure or more bytes). */
  private feedBody(): boolean {
    const decoder = this.decoder!;
    const chunk = this.input!;
    this.input = null;
    bodyRead(chunk.length);
    const { body, done, rest } = decoder.push(chunk);
    let more = true;
    for (const piece of body) more = this.body!.push(piece) && more;
    if (!done) {
      if (!more) this.socket.pause();
      return false;
    }
    this.input = rest;
    this.decoder = null;
    this.body!.end();
    this.guard.ours();
    this.bodyDone?.();
    this.bodyDone = null;
    return true;
  }

  /** The message will never be complete: the transaction is abandoned without the final dot. */
  private abandonBody(err: RelayError): void {
    if (!this.body) return;
    this.body.fail(err);
    this.decoder = null;
    this.bodyDone?.();
    this.bodyDone = null;
  }

  private logTransaction(tx: LimitedTransaction, decoder: DataDecoder, started: number, code: number, upstream?: Reply, error?: string): void {
    const { metrics, relay } = this.ctx;
    const account = tx.account.email;
    const ms = performance.now() - started;
    if (code < 300) relay.sent.record(account);
    metrics?.countMessage(account, code);
    metrics?.relayLatency.observe({ account }, ms / 1000);
    this.ctx.transactionLog.write({
      event: 'transaction',
      session: this.id,
      account,
      mail_from: tx.envelope.mailFrom,
      rcpt_count: tx.envelope.rcptTo.length,
      // What the client sent, whether or not it went upstream (a dropped message has a size too).
      size: Math.max(decoder.bytes, tx.bytes),
      reply: code,
      upstream: upstream ? formatReply(upstream) : undefined,
      ms: Math.round(ms * 100) / 100,
      error: error || undefined,
    });
  }

  private rset(): Reply {
    this.resetTx();
    return reply(250, '2.0.0 Flushed');
  }

  private quit(): null {
    this.close(reply(221, '2.0.0 Bye'));
    return null;
  }

  private startTls(): Reply | null {
    const tls = this.ctx.tls;
    if (!tls) throw new RelayError('SYNTAX', 'STARTTLS without inbound.tls', { reply: reply(502, '5.5.1 STARTTLS not available') });
    if (this.secure) throw sequence('5.5.1 Already in TLS');
    if (this.account) throw sequence('5.5.1 STARTTLS after AUTH');
    if (this.tx || this.mailFrom !== null) throw sequence('5.5.1 STARTTLS inside a transaction');
    this.reply(reply(220, '2.0.0 Ready to start TLS'));
    this.flush();
    // Anything pipelined behind STARTTLS arrived in clear: it is discarded, never run inside
    // the TLS session (CVE-2011-0411 and kin).
    this.input = null;
    this.busy = true;
    const raw = this.socket;
    raw.off('data', this.onData);
    raw.off('end', this.onEnd);
    raw.off('close', this.onClose);
    const secure = new TLSSocket(raw, { isServer: true, secureContext: tls });
    this.socket = secure;
    this.attach(secure);
    secure.once('secure', () => {
      this.secure = true;
      this.helo = null;
      this.account = null;
      this.busy = false;
      this.guard.waitFor('command');
      this.pump();
    });
    return null;
  }

  private auth(arg: string): Reply | Promise<Reply> | null {
    if (!this.helo) throw sequence('5.5.1 Say EHLO first');
    if (this.account) throw sequence('5.5.1 Already authenticated');
    if (this.mailFrom !== null) throw sequence('5.5.1 AUTH inside a transaction');
    const [mech = '', initial] = arg.split(' ');
    const m = mech.toUpperCase();
    if (m !== 'PLAIN' && m !== 'LOGIN') throw new RelayError('SYNTAX', `AUTH ${m.slice(0, 20)}`, { reply: reply(504, '5.5.4 Unrecognized authentication type') });
    if (!this.secure && !isLoopbackHost(this.remote) && !this.trusted) throw new RelayError('AUTH_NEEDS_TLS');
    if (m === 'PLAIN') {
      if (initial !== undefined) return this.plain(initial);
      this.continuation = (line) => this.plain(line);
      return reply(334, '');
    }
    const password = (user: string): Reply => {
      this.continuation = (line) => this.check(user, decode(line));
      return reply(334, 'UGFzc3dvcmQ6');
    };
    if (initial !== undefined) return password(decode(initial));
    this.continuation = (line) => password(decode(line));
    return reply(334, 'VXNlcm5hbWU6');
  }

  private plain(response: string): Reply | Promise<Reply> | null {
    const parts = decode(response).split('\0');
    if (parts.length !== 3) throw new RelayError('SYNTAX', 'AUTH PLAIN response malformed', { reply: reply(501, '5.5.2 Malformed AUTH PLAIN response') });
    return this.check(parts[1]!, parts[2]!);
  }

  private check(user: string, password: string): Reply | Promise<Reply> | null {
    const { relay, authGuard, logger } = this.ctx;
    // Locked out: the password is not even looked at, so guessing during the lockout learns nothing.
    if (authGuard.lockedOut(this.remote)) {
      this.close(this.fail('auth', new RelayError('AUTH_LOCKED_OUT')));
      return null;
    }
    const account = relay.router.authenticate(user, password);
    if (account) {
      this.account = account;
      this.guard.authenticated();
      this.ctx.onAuthenticated(this);
      return reply(235, '2.7.0 Authentication successful');
    }
    const { delayMs, lockedOut } = authGuard.failure(this.remote);
    // The user is logged only when it names an account: an MTA with the fields swapped would
    // otherwise log its password.
    const named = relay.router.account(user.trim().toLowerCase()) ? user : `sha256:${createHash('sha256').update(user).digest('hex').slice(0, 8)}`;
    logger.warn({ event: 'auth_failed', remote: this.remote, user: named, locked_out: lockedOut }, 'inbound AUTH failed');
    const refuse = () => {
      throw new RelayError('AUTH_FAILED');
    };
    if (delayMs <= 0) return refuse();
    return new Promise<void>((resolve) => setTimeout(resolve, delayMs).unref()).then(refuse);
  }

  // ------------------------------------------------------------------ transaction state

  /** RSET, EHLO, the end of a transaction: the envelope is forgotten, an open upstream transaction aborted. */
  private resetTx(): void {
    this.abortTx();
    this.mailFrom = null;
    this.rcpts = 0;
  }

  private abortTx(): void {
    const tx = this.tx;
    this.tx = null;
    tx?.abort().catch(() => undefined);
  }
}

const sequence = (text: string) => new RelayError('BAD_SEQUENCE', text, { reply: reply(503, text) });

function decode(b64: string): string {
  const t = b64.trim();
  if (t === '*') throw new RelayError('SYNTAX', 'AUTH cancelled', { reply: reply(501, '5.0.0 Authentication cancelled') });
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t)) throw new RelayError('SYNTAX', 'AUTH response not base64', { reply: reply(501, '5.5.2 Cannot decode response') });
  return Buffer.from(t, 'base64').toString('utf8');
}

const HANDLERS: Record<string, Handler> = {
  EHLO(arg) { return this['ehlo'](arg, true); },
  HELO(arg) { return this['ehlo'](arg, false); },
  MAIL(arg) { return this['mail'](arg); },
  RCPT(arg) { return this['rcpt'](arg); },
  DATA(arg) { return this['data'](arg); },
  RSET() { return this['rset'](); },
  NOOP() { return OK; },
  HELP() { return reply(214, '2.0.0 See RFC 5321'); },
  QUIT() { return this['quit'](); },
  STARTTLS() { return this['startTls'](); },
  AUTH(arg) { return this['auth'](arg); },
  VRFY() { throw new RelayError('SYNTAX', 'VRFY', { reply: reply(502, '5.5.1 VRFY not supported') }); },
  // Would let a proxy claim another client address (Postfix's XCLIENT/XFORWARD): nobody may.
  XCLIENT() { throw new RelayError('SYNTAX', 'XCLIENT', { reply: reply(550, '5.7.0 XCLIENT not allowed') }); },
  XFORWARD() { throw new RelayError('SYNTAX', 'XFORWARD', { reply: reply(550, '5.7.0 XFORWARD not allowed') }); },
  EXPN() { throw new RelayError('SYNTAX', 'EXPN', { reply: reply(502, '5.5.1 EXPN not supported') }); },
};
