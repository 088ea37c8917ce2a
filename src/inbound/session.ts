// One inbound SMTP session: dispatch of the client's commands over one socket, in order (see
// server.ts for why this is the relay's own code and not smtp-server). Its parts have files of
// their own: reading lines with bounds (line-reader.ts), the AUTH exchange (sasl.ts), the
// message body (data-phase.ts), STARTTLS (tls-upgrade.ts), the transaction's record
// (transaction-log.ts), deadlines and error counts (session-guard.ts).
//
// Reading: every complete command in the input is handled before the session waits for more;
// commands are handled strictly in order, one at a time (a handler that waits on the provider
// holds the ones behind it: phase `busy`), and their replies are queued and written in one write
// when the input is drained or the session must wait (Postfix smtpd's way). A MAIL looks ahead at
// the RCPTs and DATA the client pipelined behind it, so that they go upstream with it in one
// write (Relay.begin's `group`); their replies are then the provider's, in order.
//
// Writing: reply() is the one place a reply is queued. Every refusal is a RelayError whose reply
// comes from the registry (errors/registry.ts) and goes through fail(), which records it once
// (Refusals) and counts the client's own errors.
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { isLoopbackHost } from '../config/networks.js';
import type { Config } from '../config/schema.js';
import type { Metrics } from '../obs/metrics.js';
import type { Refusals, RefusalStage } from '../obs/refusals.js';
import { recipientOf, type LimitedTransaction } from '../relay/limited-transaction.js';
import { accountOf, isRefusal, reasonOf, refusal, RelayError, toReply, UpstreamReplyError } from '../errors/registry.js';
import type { Capabilities } from '../relay/relay.js';
import type { Group } from '../relay/transaction.js';
import type { Account } from '../routing/account.js';
import type { Router, SessionIdentity } from '../routing/router.js';
import type { MailParams } from '../smtp/envelope.js';
import { parsePath } from '../smtp/path.js';
import { reply, wireReply, type Reply } from '../smtp/reply.js';
import type { AuthGuard } from './auth-guard.js';
import { DataPhase, type DataPhaseHost } from './data-phase.js';
import { HIGH_WATER, LineReader } from './line-reader.js';
import { AUTH_OK, BYE, ehloReply, FLUSHED, greeting, hello, HELP, OK, SENDER_OK, START_INPUT, TLS_READY } from './replies.js';
import { MAX_DOMAIN } from '../smtp/limits.js';
import { MECHANISMS, startSasl, type Step, type Verdict } from './sasl.js';
import { SessionGuard, type Expiry } from './session-guard.js';
import { upgradeToTls } from './tls-upgrade.js';
import { recordTransaction, type TransactionLog } from './transaction-log.js';

/** The transaction a session drives (LimitedTransaction; a scripted one in tests). */
export type SessionTransaction = Pick<LimitedTransaction, 'account' | 'envelope' | 'recipients' | 'bytes' | 'mailReply' | 'rcpt' | 'data' | 'abort'>;

/** What a session needs of the relay stage (Relay; a scripted stand-in in test/inbound/). */
export interface SessionRelay {
  begin(identity: SessionIdentity, mailFrom: string, params: MailParams, group?: Group): Promise<SessionTransaction>;
  capabilities(account: Account | null): Capabilities;
  readonly router: Pick<Router, 'account' | 'authenticate'>;
  readonly sent: { record(account: string): void };
}

/** What every session of one server shares. */
export interface SessionContext {
  config: Config['inbound'];
  hostname: string;
  relay: SessionRelay;
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

/**
 * Where the session is, one state at a time (Haraka's states; upstream/connection.ts's Phase).
 * Whether the client has shut its sending side is the input's (`input.ended`), not a phase: it
 * can happen in any of them.
 */
type Phase =
  /** Before the greeting: a client that talks now talks too soon. */
  | 'connected'
  /** Reading and handling commands. */
  | 'ready'
  /** A command is being handled (the provider, the AUTH failure delay, the TLS handshake, DATA before its 354 and after the final dot): the ones behind it wait. */
  | 'busy'
  /** After 354: the client's bytes are the message. */
  | 'message'
  /** The last reply is written and the socket is ending. */
  | 'closing'
  /** The socket is gone. */
  | 'closed';

const NONE: string[] = [];
const HTTP_VERBS = new Set(['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'CONNECT', 'PATCH']);
/** The settlement of a MAIL that was answered 451 while it waited (Session.mailLate); never sent. */
const LATE: Reply = reply(451, 'late');
const stageOf: Record<string, RefusalStage> = { AUTH: 'auth', MAIL: 'mail', RCPT: 'rcpt', DATA: 'data' };

type Handler = (this: Session, arg: string) => Verdict;

export class Session {
  readonly id = randomBytes(6).toString('base64url');
  readonly remote: string;
  readonly trusted: boolean;
  account: Account | null = null;
  private socket: Socket;
  private phase: Phase = 'connected';
  /** What the client sent that is not handled yet (bounded: see line-reader.ts). */
  private readonly input = new LineReader();
  /** The socket is paused: the input is full, or the message's consumer is behind. */
  private paused = false;
  /** Bytes received after the session began closing. */
  private dropped = 0;
  private out: string[] = [];
  private readonly guard: SessionGuard;
  private helo: string | null = null;
  private secure = false;
  /** The next line is a step of an AUTH exchange, not a command. */
  private continuation: Step | null = null;
  // The transaction.
  private tx: SessionTransaction | null = null;
  private mailFrom: string | null = null;
  /** RCPTs tried in this transaction (max_recipients); the accepted ones are its envelope's. */
  private rcpts = 0;
  /** The RCPT arguments MAIL's look-ahead parsed, with their addresses: each RCPT takes its own instead of parsing again. */
  private aheadArgs: string[] = NONE;
  private aheadRcpts: string[] = NONE;
  private aheadNext = 0;
  /** From DATA to the message's final reply. */
  private data: DataPhase | null = null;
  /** The MAIL being opened upstream (see mailLate). */
  private opening: { late: boolean } | null = null;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onEnd = (): void => this.ended();
  private readonly onClose = (): void => this.gone();
  private readonly dataHost: DataPhaseHost = { ready: () => this.bodyReady(), caughtUp: () => this.flow() };
  private readonly expect = (next: Step): void => {
    this.continuation = next;
  };
  private readonly check = (user: string, password: string): Verdict => this.checkPassword(user, password);

  constructor(
    socket: Socket,
    private readonly ctx: SessionContext,
    /** The client's address (the PROXY protocol's when a balancer sent one, server.ts); `secure`: implicit TLS. */
    peer: { remote: string; trusted: boolean; secure: boolean },
  ) {
    const { trusted } = peer;
    this.socket = socket;
    this.remote = peer.remote;
    this.trusted = trusted;
    this.secure = peer.secure;
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
      if (this.phase !== 'connected') return;
      if (this.input.size > 0) return void this.close(this.fail('session', new RelayError('EARLY_TALKER')));
      this.greet();
      this.pump();
    }, delay).unref();
  }

  /** Between transactions and idle: a graceful stop may close it now. */
  get idle(): boolean {
    return (this.phase === 'ready' || this.phase === 'connected') && this.tx === null && this.data === null;
  }

  /** Graceful stop: 421 now if idle; else after the transaction's final reply (see dataOver). */
  drain(): void {
    if (this.idle) this.close(this.fail('session', new RelayError('SHUTTING_DOWN')));
  }

  /** The end of the grace period: 421 whatever the session is doing. */
  kill(): void {
    if (this.phase === 'closed') return;
    this.abandonBody(new RelayError('SHUTTING_DOWN', 'relay stopped during the message'));
    if (!this.over) this.close(this.fail('session', new RelayError('SHUTTING_DOWN')));
    this.socket.destroy();
  }

  private get over(): boolean {
    return this.phase === 'closing' || this.phase === 'closed';
  }

  // ------------------------------------------------------------------ input

  private attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    socket.on('error', () => undefined); // 'close' follows
  }

  private greet(): void {
    this.phase = 'ready';
    this.reply(greeting(this.ctx.hostname));
    this.flush();
  }

  private receive(chunk: Buffer): void {
    if (this.over) {
      // Read only to see the client's FIN; one that keeps sending after our last reply is not listening.
      this.dropped += chunk.length;
      if (this.dropped > HIGH_WATER) this.socket.destroy();
      return;
    }
    if (this.phase === 'message' && this.input.size === 0) {
      // The message's bytes go straight to the decoder.
      if (this.feedBody(chunk)) this.pump();
      else this.flow();
      return;
    }
    this.input.push(chunk);
    // Checked at every chunk, whatever is pending: a line that can never be a command ends the
    // session now. Not between DATA and its 354, where a hasty client's message may already arrive.
    if (this.input.overlong && this.data === null) {
      this.close(this.fail('session', new RelayError('LINE_TOO_LONG')));
      return;
    }
    if (this.phase === 'connected') this.flow();
    else this.pump();
  }

  /** Reads the socket only while there is room for what it brings (a paused socket leaves the rest in the client's TCP window). */
  private flow(): void {
    const stop = !this.over && (this.input.full || (this.data?.behind ?? false));
    if (stop === this.paused) return;
    this.paused = stop;
    if (stop) this.socket.pause();
    else this.socket.resume();
  }

  /** Handles what can be handled now, then writes the queued replies once. */
  private pump(): void {
    for (;;) {
      if (this.phase === 'message') {
        const bytes = this.input.takeAll();
        if (bytes && this.feedBody(bytes)) continue;
        // All the client sent is read, its side is shut, and the message is not complete.
        if (this.input.ended) this.abandonBody(clientEnded());
        break;
      }
      if (this.phase !== 'ready') break;
      const line = this.input.take();
      if (line === null) break;
      if (line === false) {
        this.close(this.fail('session', new RelayError('LINE_TOO_LONG')));
        break;
      }
      this.dispatch(line);
    }
    this.flow();
    if (this.phase === 'busy') {
      if (this.opening) this.guard.opening();
      else this.guard.ours();
      return; // the replies so far wait for the handler's: the client waits for all of them
    }
    this.flush();
    if (this.input.ended && this.phase === 'ready') this.close(null);
  }

  private ended(): void {
    this.input.ended = true;
    if (this.data?.owed) {
      // The client owes a message (before or after its 354) and can no longer send it: the
      // transaction is abandoned now, not at data_timeout_ms, with its upstream connection.
      // Unless the bytes it sent before the 354 are there to read (a hasty client): those are
      // read first, and the message judged by them (see pump).
      if (this.phase === 'message' || this.input.size === 0) this.abandonBody(clientEnded());
      return;
    }
    if (this.phase === 'ready') this.pump();
    else if (this.phase === 'connected' && this.input.size === 0) this.close(null);
  }

  private gone(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
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
    if (this.out.length === 0 || this.phase === 'closed') return;
    const text = this.out.length === 1 ? this.out[0]! : this.out.join('');
    this.out = [];
    this.socket.write(text);
    if (this.phase !== 'closing') this.guard.waitFor(this.phase === 'message' ? 'message' : 'command');
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
      rcpt: recipientOf(err),
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
    if (this.over) return last ?? OK;
    if (last) this.reply(last);
    const out = this.out.join('');
    this.out = [];
    this.phase = 'closing';
    this.guard.stop();
    this.input.clear();
    this.flow(); // a closing session reads (and drops) what still comes, to see the client's FIN
    const socket = this.socket;
    socket.end(out);
    // A client that never closes its side does not keep the connection.
    setTimeout(() => socket.destroy(), 5_000).unref();
    this.abortTx();
    return last ?? OK;
  }

  private expire(what: Expiry): void {
    if (this.over) return;
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
      return this.settle(verb, () => {
        throw refusal('SYNTAX_ARGUMENTS', '5.5.2 Syntax error: NUL or CR in command', 'NUL or CR in a command');
      });
    }
    if (HTTP_VERBS.has(verb) && / HTTP\/\d/.test(line)) {
      this.close(this.fail('session', new RelayError('HTTP_REQUEST', 'HTTP request on the SMTP port')));
      return;
    }
    const handler = HANDLERS[verb];
    this.settle(verb, handler ? () => handler.call(this, arg) : () => { throw new RelayError('SYNTAX', `unknown command ${verb.slice(0, 20)}`); });
  }

  /** Runs a handler and queues its reply (or its failure's), in order. */
  private settle(verb: string, run: () => Verdict): void {
    const stage = stageOf[verb] ?? 'session';
    let result: Verdict;
    try {
      result = run();
    } catch (e) {
      result = this.fail(stage, e);
    }
    if (result === null) return; // the handler answers by itself (STARTTLS, QUIT, DATA) or the session is closing
    if (!(result instanceof Promise)) {
      this.reply(result);
      return;
    }
    if (this.phase === 'ready') this.phase = 'busy';
    // One reaction for both outcomes (not .catch().then()): a promise less per command.
    result.then(
      (r) => this.settled(r),
      (e: unknown) => this.settled(this.fail(stage, e)),
    );
  }

  private settled(r: Reply | null): void {
    if (r === LATE || this.over) return; // LATE: answered already (mailLate)
    this.phase = 'ready';
    if (r) this.reply(r);
    this.pump();
  }

  // ------------------------------------------------------------------ handlers

  private ehlo(arg: string, extended: boolean): Reply {
    const name = arg.trim();
    if (!name || /\s/.test(name)) throw refusal('SYNTAX_ARGUMENTS', '5.5.4 Syntax: EHLO hostname', 'EHLO without a name');
    // The name is echoed in the reply: past a domain's 255 octets (RFC 5321 §4.5.3.1.2) it is
    // not a name, and echoing kilobytes would make our reply line longer than clients accept.
    if (name.length > MAX_DOMAIN) throw refusal('SYNTAX_ARGUMENTS', '5.5.4 Syntax: EHLO hostname (at most 255 characters)', 'EHLO name too long');
    this.resetTx();
    this.helo = name;
    if (!extended) return ehloReply([hello(this.ctx.hostname, name)]);
    const caps = this.ctx.relay.capabilities(this.account);
    const c = this.ctx.config;
    const size = caps.size === null ? c.max_message_bytes : Math.min(caps.size, c.max_message_bytes);
    const lines = [hello(this.ctx.hostname, name), 'PIPELINING'];
    if (caps.eightBitMime) lines.push('8BITMIME');
    if (caps.smtputf8) lines.push('SMTPUTF8');
    lines.push(`SIZE ${size}`, 'ENHANCEDSTATUSCODES');
    if (this.ctx.tls && !this.secure) lines.push('STARTTLS');
    lines.push(`AUTH ${[...MECHANISMS].join(' ')}`);
    return ehloReply(lines);
  }

  private mail(arg: string): Verdict {
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
        if (opening.late || this.over) {
          tx.abort().catch(() => undefined);
          if (opening.late) return LATE;
          throw new RelayError('CLIENT_GONE', 'session ended while MAIL was being opened');
        }
        this.opening = null;
        this.tx = tx;
        return tx.mailReply ?? SENDER_OK;
      },
      (e: unknown) => {
        if (opening.late) return LATE;
        this.opening = null;
        // Recorded before the sender is forgotten, so that the `refused` line names it.
        const r = this.fail('mail', e);
        this.mailFrom = null;
        return r;
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
    const args: string[] = [];
    let data = false;
    const max = this.ctx.config.max_recipients;
    for (const line of this.input.peek()) {
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'DATA' && line.length === 4) {
        data = rcpts.length > 0;
        break;
      }
      if (verb !== 'RCPT' || line[4] !== ' ' || rcpts.length >= max || /[\0\r]/.test(line)) break;
      const arg = line.slice(5);
      try {
        rcpts.push(parsePath(arg, 'TO', 0).address);
      } catch {
        break;
      }
      args.push(arg);
    }
    if (rcpts.length === 0) return undefined;
    this.aheadArgs = args;
    this.aheadRcpts = rcpts;
    this.aheadNext = 0;
    return { rcpts, data };
  }

  private rcpt(arg: string): Verdict {
    if (this.mailFrom === null) throw sequence('5.5.1 Need MAIL before RCPT');
    const address = this.peeked(arg) ?? parsePath(arg, 'TO', 0).address;
    const tx = this.tx;
    if (!tx) throw sequence('5.5.1 Need MAIL before RCPT (the MAIL was refused)');
    if (this.rcpts >= this.ctx.config.max_recipients) throw new RelayError('TOO_MANY_RECIPIENTS');
    this.rcpts++;
    return tx.rcpt(address); // accepted: in tx.envelope.rcptTo
  }

  /**
   * The address MAIL's look-ahead parsed for this RCPT argument, when it is the next one (a path
   * is parsed once per command; the parse depends on the argument alone).
   */
  private peeked(arg: string): string | undefined {
    const i = this.aheadNext;
    if (this.aheadArgs[i] !== arg) return undefined;
    this.aheadNext = i + 1;
    return this.aheadRcpts[i];
  }

  private dataCommand(arg: string): Verdict {
    if (arg) throw refusal('SYNTAX_ARGUMENTS', '5.5.4 Syntax: DATA', 'DATA with an argument');
    if (this.mailFrom === null) throw sequence('5.5.1 Need MAIL and RCPT before DATA');
    const tx = this.tx;
    if (!tx || tx.envelope.rcptTo.length === 0) {
      this.resetTx();
      throw new RelayError('NO_VALID_RECIPIENTS', 'DATA without an accepted recipient');
    }
    this.tx = null;
    const data = new DataPhase(this.dataHost);
    this.data = data;
    // A pipelined DATA behind which the client shut its side with nothing more sent (its FIN came while MAIL was upstream).
    if (this.input.ended && this.input.size === 0) data.abandon(clientEnded());
    // The final reply is written from here (settled), not through settle()'s reaction to a
    // returned promise: a promise and a microtask less a message.
    // Busy before the transaction sees the body: a consumer may open it (354, phase 'message') at once.
    this.phase = 'busy';
    let answered: Promise<Reply>;
    try {
      answered = tx.data(data.body, this.ctx.config.max_message_bytes);
    } catch (e) {
      this.phase = 'ready'; // a synchronous throw is settle()'s to answer
      throw e;
    }
    answered.then(
      // Without a promise of its own when the client's part is over (the usual case: the
      // provider answers the final dot after the client sent it).
      (r) => (data.clientOver ? this.delivered(tx, data, r) : void data.clientDone()!.then(() => this.delivered(tx, data, r))),
      (e: unknown) => void this.dataFailed(tx, data, e),
    );
    return null;
  }

  /** The provider accepted the message and the client's part is over. */
  private delivered(tx: SessionTransaction, data: DataPhase, r: Reply): void {
    this.dataAnswer(() => {
      this.guard.delivered();
      this.logTransaction(tx, data, r.code, r);
      return this.dataOver(r);
    });
  }

  /** DATA refused (instead of 354), the message refused or lost, or the client's part broken. */
  private async dataFailed(tx: SessionTransaction, data: DataPhase, e: unknown): Promise<void> {
    const wasStarted = data.clientDone();
    await wasStarted;
    this.dataAnswer(() => {
      const err = wasStarted && this.phase === 'closed' ? new RelayError('CLIENT_GONE', (e as Error).message, { cause: e }) : e;
      // A session already closing (timeout, client gone) gave its one reply: the log line says the rest.
      const r = this.over ? toReply(err) : this.fail('data', err, tx.account.email);
      this.logTransaction(tx, data, r.code, err instanceof UpstreamReplyError ? err.reply : undefined, (e as Error).message);
      return this.dataOver(r);
    });
  }

  /** DATA's reply, as settle() would give it: a throw on the way is an internal error's reply. */
  private dataAnswer(answer: () => Reply): void {
    let r: Reply;
    try {
      r = answer();
    } catch (e) {
      r = this.fail('data', e);
    }
    this.settled(r);
  }

  /** The provider asked for the body: the client hears 354 now and sends it. */
  private bodyReady(): void {
    this.reply(START_INPUT);
    this.phase = 'message';
    this.flush();
    if (this.input.size > 0) queueMicrotask(() => this.pump());
  }

  /** Feeds client bytes to the message; false while it goes on (more bytes, or backpressure). */
  private feedBody(chunk: Buffer): boolean {
    const rest = this.data!.push(chunk);
    if (rest === undefined) return false;
    this.input.unshift(rest);
    this.phase = 'busy';
    this.guard.ours();
    return true;
  }

  /** The message will never be complete: the transaction is abandoned without the final dot. */
  private abandonBody(err: RelayError): void {
    if (!this.data) return;
    this.data.abandon(err);
    if (this.phase === 'message') this.phase = 'busy';
  }

  /** The message's final reply is settled: the session is between transactions again. */
  private dataOver(r: Reply): Reply {
    this.data = null;
    this.resetTx();
    if (!this.ctx.draining) return r;
    this.reply(r);
    this.close(this.fail('session', new RelayError('SHUTTING_DOWN')));
    return OK;
  }

  private logTransaction(tx: SessionTransaction, data: DataPhase, code: number, upstream?: Reply, error?: string): void {
    recordTransaction(this.ctx, data.startedAt, {
      session: this.id,
      client: this.remote,
      account: tx.account.email,
      mailFrom: tx.envelope.mailFrom,
      recipients: tx.recipients,
      accepted: tx.envelope.rcptTo.length,
      messageId: data.messageId.take(),
      // What the client sent, whether or not it went upstream (a dropped message has a size too).
      size: Math.max(data.decoder.bytes, tx.bytes),
      reply: code,
      upstream,
      error: error || undefined,
    });
  }

  private rset(): Reply {
    this.resetTx();
    return FLUSHED;
  }

  private quit(): null {
    this.close(BYE);
    return null;
  }

  private startTls(): Verdict {
    const tls = this.ctx.tls;
    if (!tls) throw refusal('NOT_IMPLEMENTED', '5.5.1 STARTTLS not available', 'STARTTLS without inbound.tls');
    if (this.secure) throw sequence('5.5.1 Already in TLS');
    if (this.account) throw sequence('5.5.1 STARTTLS after AUTH');
    if (this.tx || this.mailFrom !== null) throw sequence('5.5.1 STARTTLS inside a transaction');
    this.reply(TLS_READY);
    this.flush();
    this.input.clear(); // pipelined behind STARTTLS, in clear: discarded (tls-upgrade.ts)
    this.phase = 'busy';
    const raw = this.socket;
    raw.off('data', this.onData);
    raw.off('end', this.onEnd);
    raw.off('close', this.onClose);
    this.paused = false;
    this.socket = upgradeToTls(raw, tls, () => {
      this.secure = true;
      this.helo = null;
      this.account = null;
      this.phase = 'ready';
      this.guard.waitFor('command');
      this.pump();
    });
    this.attach(this.socket);
    return null;
  }

  private auth(arg: string): Verdict {
    if (!this.helo) throw sequence('5.5.1 Say EHLO first');
    if (this.account) throw sequence('5.5.1 Already authenticated');
    if (this.mailFrom !== null) throw sequence('5.5.1 AUTH inside a transaction');
    const [mech = '', initial] = arg.split(' ');
    const m = mech.toUpperCase();
    if (!MECHANISMS.has(m)) throw new RelayError('AUTH_MECHANISM', `AUTH ${m.slice(0, 20)}`);
    if (!this.secure && !isLoopbackHost(this.remote) && !this.trusted) throw new RelayError('AUTH_NEEDS_TLS');
    return startSasl(m, initial, this.check, this.expect);
  }

  private checkPassword(user: string, password: string): Verdict {
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
      return AUTH_OK;
    }
    const { delayMs, lockedOut } = authGuard.failure(this.remote);
    // The user is logged only when it names an account: an MTA with the fields swapped would
    // otherwise log its password.
    const named = relay.router.account(user.trim().toLowerCase()) ? user : `sha256:${createHash('sha256').update(user).digest('hex').slice(0, 8)}`;
    logger.warn({ event: 'auth_failed', client: this.remote, user: named, locked_out: lockedOut }, 'inbound AUTH failed');
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
    this.aheadArgs = this.aheadRcpts = NONE;
  }

  private abortTx(): void {
    const tx = this.tx;
    this.tx = null;
    tx?.abort().catch(() => undefined);
  }
}

const sequence = (text: string) => refusal('BAD_SEQUENCE', text);
const clientEnded = () => new RelayError('CLIENT_GONE', 'client ended its side of the connection before the end of the message');

const HANDLERS: Record<string, Handler> = {
  EHLO(arg) { return this['ehlo'](arg, true); },
  HELO(arg) { return this['ehlo'](arg, false); },
  MAIL(arg) { return this['mail'](arg); },
  RCPT(arg) { return this['rcpt'](arg); },
  DATA(arg) { return this['dataCommand'](arg); },
  RSET() { return this['rset'](); },
  NOOP() { return OK; },
  HELP() { return HELP; },
  QUIT() { return this['quit'](); },
  STARTTLS() { return this['startTls'](); },
  AUTH(arg) { return this['auth'](arg); },
  VRFY() { throw refusal('NOT_IMPLEMENTED', '5.5.1 VRFY not supported', 'VRFY'); },
  EXPN() { throw refusal('NOT_IMPLEMENTED', '5.5.1 EXPN not supported', 'EXPN'); },
  // Would let a proxy claim another client address (Postfix's XCLIENT/XFORWARD): nobody may.
  XCLIENT() { throw refusal('IMPERSONATION', '5.7.0 XCLIENT not allowed', 'XCLIENT'); },
  XFORWARD() { throw refusal('IMPERSONATION', '5.7.0 XFORWARD not allowed', 'XFORWARD'); },
};
