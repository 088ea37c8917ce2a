// One connection to a provider's submission server (smtp.gmail.com / smtp.office365.com),
// driven command by command so that every upstream reply reaches the MTA as it was given.
//
// Why not nodemailer's SMTPConnection: its send() carries on to DATA when only some
// recipients were accepted (reporting the others in `rejected`), so it cannot hand the MTA
// the upstream reply to each RCPT, and it cannot stop a message half-way without sending the
// terminating dot. The relay needs both: per-RCPT replies (SPEC "Reply fidelity") and a DATA
// phase that can be abandoned without ever completing a truncated message.
//
// Shape: one socket, one ReplyReader, and a FIFO of commands awaiting replies. Replies are
// matched to commands strictly in order, which is what makes PIPELINING (RFC 2920) safe.
// Every wait is bounded; a timeout leaves the session in an unknown state, so it destroys
// the connection and nothing can reuse it.
//
// Secrets: the XOAUTH2 string is written to the socket and dropped. It is never kept on this
// object, in a queued command's label, or in an error (UpstreamAuthError carries the server's
// reply only, scrubbed of the token in case a server echoes it).
import net from 'node:net';
import tls from 'node:tls';
import type { SmtpSecurity } from '../config/schema.js';
import { RelayError, type RelayErrorCode } from '../errors/registry.js';
import { iterableBody, type BodySink, type MessageBody } from '../smtp/body.js';
import { DotStuffer } from '../smtp/dot-stuffer.js';
import {
  C220ServiceReady,
  C235AuthSuccess,
  C250Completed,
  C334ContinueAuth,
  C354StartMailInput,
  C421ServiceUnavailable,
  C501ParamSyntaxError,
  SeProto5Syntax2,
} from '../smtp/codes.js';
import { coded, formatReply, type Reply } from '../smtp/reply.js';
import { ReplyParseError, ReplyReader } from '../smtp/reply-reader.js';
import { xoauth2String } from './xoauth2.js';

export interface UpstreamTimeouts {
  /** TCP connect + TLS handshake(s) + greeting. */
  connectMs: number;
  /** Each command's reply. */
  commandMs: number;
  /** The reply to the end of DATA, and each wait for the socket to drain while sending the body. */
  dataMs: number;
}

export interface UpstreamOpenOptions {
  host: string;
  port: number;
  security: SmtpSecurity;
  /** Extra CA certificate(s) to trust (the sandbox CA); the system roots stay trusted. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** SNI and the name the certificate must carry; defaults to host (unless host is an IP). */
  servername?: string;
  /** Local address to connect from (an account's source_ip). */
  localAddress?: string | null;
  ehloName: string;
  timeouts: UpstreamTimeouts;
}

/**
 * The outcome of data(). Once it opened `body` (after the provider's 354), data() has taken
 * it to its end (unless the body itself failed), so the inbound side can reply at once.
 *  - kind 'reply', stage 'final': the whole message and the terminator were sent; `reply` is
 *    the upstream's reply to the end of DATA, whatever its code.
 *  - kind 'reply', stage 'command': DATA itself was not answered 354 (`reply` is that answer);
 *    the body was never opened. The connection stays usable (unless the reply was 421).
 *  - kind 'reply', stage 'early': the upstream answered (4xx/5xx) while the body was being
 *    sent; the message was not completed and the connection has been destroyed.
 *  - kind 'too-big': the body exceeded maxBytes; the terminator was never sent and the
 *    connection has been destroyed, so the upstream discards the partial message.
 * `bytes` counts the body as received from `body` (before dot-stuffing), including dropped bytes.
 */
export type DataResult =
  | { kind: 'reply'; stage: 'final' | 'command' | 'early'; reply: Reply; bytes: number }
  | { kind: 'too-big'; bytes: number };

export interface DataOptions {
  /** Over this many body bytes the message is abandoned (DataResult 'too-big'). */
  maxBytes?: number;
  /** A DATA already sent with the group (dataCommand()); else data() sends DATA. */
  sent?: SentData;
}

/** Called once when the connection is gone: with the failure, or null when closed locally (quit/destroy). */
export type CloseListener = (reason: RelayError | null) => void;

/** The provider refused AUTH XOAUTH2. Carries its reply; never the token. */
export class UpstreamAuthError extends RelayError {
  /** The final reply (the 535 after Google's 334 challenge, or whatever non-235 came). */
  readonly upstreamReply: Reply;
  /** Google's error challenge, decoded from the 334 (e.g. { status: '400', schemes: 'Bearer', scope }). */
  readonly challenge?: Record<string, unknown>;

  constructor(user: string, upstreamReply: Reply, challenge?: Record<string, unknown>) {
    super('UPSTREAM_AUTH_REJECTED', `provider refused XOAUTH2 for ${user}: ${formatReply(upstreamReply)}`);
    this.name = 'UpstreamAuthError';
    this.upstreamReply = upstreamReply;
    if (challenge !== undefined) this.challenge = challenge;
  }
}

/**
 * A MAIL/RCPT argument that would break the command line (CR, LF or NUL: command injection).
 * Thrown synchronously by mail()/rcpt() before anything is sent; the connection stays usable.
 * Code SYNTAX (the client's argument, not the provider, is at fault) with a permanent 501 reply.
 */
export class UnsafeArgumentError extends RelayError {
  constructor(what: string) {
    super('SYNTAX', `${what} contains CR, LF or NUL`, {
      reply: coded(C501ParamSyntaxError, SeProto5Syntax2, 'Syntax error: control character in address or parameter'),
    });
    this.name = 'UnsafeArgumentError';
  }
}

interface Pending {
  /** The verb, for error messages. Never the command line (AUTH carries the token). */
  label: string;
  /** 0 = no timer (the end-of-DATA entry while the body is still being sent). */
  timeoutMs: number;
  /** RFC 2920: EHLO, DATA, QUIT, NOOP, AUTH... must end a pipelined group; nothing is sent behind them. */
  groupEnd: boolean;
  resolve: (r: Reply) => void;
  reject: (e: RelayError) => void;
}

type Phase = 'opening' | 'ready' | 'closed';

const UNSAFE = /[\r\n\0]/;
const QUIT_TIMEOUT_MS = 2_000;
/** Above this many body bytes waiting in the provider's socket, the producer (the client's socket) is paused until it drained. */
const HIGH_WATER = 256 * 1024;
/** Up to this size the last body chunk is copied to join the terminator in one write. */
const SMALL_WRITE = 16 * 1024;
const noop = (): void => {};

export class UpstreamConnection {
  readonly host: string;
  readonly port: number;
  /** Date.now() when the connection became ready (after EHLO, and STARTTLS if any). */
  openedAt = 0;
  /** Date.now() of the last successful authenticate(), else null. */
  authenticatedAt: number | null = null;
  /** The XOAUTH2 user the connection is authenticated as, else null. */
  authenticatedUser: string | null = null;
  /** MAIL FROM commands sent on this connection (transactions begun, whatever their outcome). */
  transactions = 0;
  /** EHLO keywords (upper case) to their parameters ('' when none). Empty after HELO. */
  extensions: ReadonlyMap<string, string> = new Map();
  /** Whether the session is encrypted (implicit TLS or after STARTTLS). */
  secure = false;

  private socket: net.Socket;
  private readonly raw: net.Socket;
  private readonly timeouts: UpstreamTimeouts;
  private readonly reader: ReplyReader;
  private phase: Phase = 'opening';
  /** Set while a TLS handshake runs: socket failures then mean UPSTREAM_TLS. */
  private handshaking = false;
  private inflight: Pending[] = [];
  private queued: Array<{ p: Pending; line: string }> = [];
  // Stays armed between messages (see armTimer); an ES private field, since an armed Timeout
  // does not serialise and the tests stringify the connection to look for secrets.
  #timer: NodeJS.Timeout | null = null;
  /** Wakes the wait for a TLS handshake when a reply arrives or the connection fails. */
  private interrupt: (() => void) | null = null;
  private closeListeners: CloseListener[] = [];
  private closeReason: RelayError | null = null;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onError = (err: Error): void => this.fail(this.socketError(err));
  private readonly onSocketClose = (): void =>
    this.fail(new RelayError(this.closedCode(), this.handshaking ? 'connection closed during the TLS handshake' : 'connection closed by the provider'));
  private readonly onTimeout = (): void => this.timedOut();

  private constructor(socket: net.Socket, opts: UpstreamOpenOptions) {
    this.socket = socket;
    this.raw = socket;
    this.host = opts.host;
    this.port = opts.port;
    this.timeouts = opts.timeouts;
    this.reader = new ReplyReader((r) => this.onReply(r));
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onSocketClose);
  }

  // ---------------------------------------------------------------- opening

  /**
   * Connects, reads the greeting, says EHLO, and for 'starttls' upgrades (never downgrades:
   * no STARTTLS offered is UPSTREAM_TLS) and says EHLO again. Certificates are always verified.
   * Rejects with RelayError UPSTREAM_CONNECT_FAILED | UPSTREAM_TLS | UPSTREAM_TIMEOUT | UPSTREAM_PROTOCOL.
   */
  static async open(opts: UpstreamOpenOptions): Promise<UpstreamConnection> {
    const deadline = Date.now() + opts.timeouts.connectMs;
    const remaining = (): number => Math.max(1, deadline - Date.now());

    checkArgument(opts.ehloName, 'EHLO name');
    const raw = await connectTcp(opts, remaining());
    const conn = new UpstreamConnection(raw, opts);
    // Expected from the first byte on, so the greeting can never arrive "unsolicited".
    const greetingReply = conn.expect('greeting', remaining());
    greetingReply.catch(noop); // awaited below; may fail first during a TLS handshake
    try {
      if (opts.security === 'tls') await conn.upgrade(opts, remaining());

      const greeting = await greetingReply;
      if (greeting.code !== C220ServiceReady) {
        throw new RelayError('UPSTREAM_CONNECT_FAILED', `greeting was ${formatReply(greeting)}`);
      }
      await conn.hello(opts);

      if (opts.security === 'starttls') {
        // Refusing here is the whole point of 'starttls': a server (or a man in the middle
        // stripping the keyword) that does not offer it must not get our token in clear.
        if (!conn.extensions.has('STARTTLS')) {
          throw new RelayError('UPSTREAM_TLS', `${opts.host}:${opts.port} does not offer STARTTLS`);
        }
        const r = await conn.command('STARTTLS', 'STARTTLS\r\n', opts.timeouts.commandMs, true);
        if (r.code !== C220ServiceReady) throw new RelayError('UPSTREAM_TLS', `STARTTLS refused: ${formatReply(r)}`);
        // STARTTLS response injection (CVE-2011-0411 and kin): bytes that arrived in clear
        // after the 220 would otherwise be read as replies inside the TLS session. A whole
        // injected reply has already closed the connection (unsolicited); a partial one is
        // still buffered.
        if (conn.phase === 'closed' || conn.reader.hasPending) {
          throw new RelayError('UPSTREAM_TLS', 'data received in clear after the STARTTLS reply');
        }
        await conn.upgrade(opts, remaining());
        await conn.hello(opts);
      }
      conn.phase = 'ready';
      conn.openedAt = Date.now();
      return conn;
    } catch (err) {
      conn.closeListeners = [];
      conn.fail(null);
      throw err instanceof RelayError ? err : new RelayError('UPSTREAM_CONNECT_FAILED', errorText(err), { cause: err });
    }
  }

  /** EHLO (HELO only when security is 'none'), and the extensions it advertises. */
  private async hello(opts: UpstreamOpenOptions): Promise<void> {
    const ehlo = await this.command('EHLO', `EHLO ${opts.ehloName}\r\n`, this.timeouts.commandMs, true);
    if (ehlo.code === C250Completed) {
      this.extensions = parseExtensions(ehlo);
      return;
    }
    if (opts.security !== 'none') throw new RelayError('UPSTREAM_PROTOCOL', `EHLO refused: ${formatReply(ehlo)}`);
    const helo = await this.command('HELO', `HELO ${opts.ehloName}\r\n`, this.timeouts.commandMs, true);
    if (helo.code !== C250Completed) throw new RelayError('UPSTREAM_PROTOCOL', `HELO refused: ${formatReply(helo)}`);
    this.extensions = new Map();
  }

  /** Wraps the TCP socket in TLS (implicit TLS or after STARTTLS) and verifies the certificate. */
  private async upgrade(opts: UpstreamOpenOptions, timeoutMs: number): Promise<void> {
    if (this.phase === 'closed') throw this.closedError();
    // From here on the TLS layer reads the raw socket; nothing may read it in clear.
    this.raw.off('data', this.onData);
    this.reader.reset();
    this.handshaking = true;
    const servername = opts.servername ?? (net.isIP(opts.host) ? undefined : opts.host);
    const secure = tls.connect({
      socket: this.raw,
      host: opts.host, // the name the certificate is checked against (with servername)
      ...(servername ? { servername } : {}),
      secureContext: secureContextFor(opts.ca),
      rejectUnauthorized: true,
    });
    this.socket = secure;
    secure.on('error', this.onError);
    secure.on('close', this.onSocketClose);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.fail(new RelayError('UPSTREAM_TIMEOUT', `TLS handshake with ${opts.host}:${opts.port} timed out`));
          done();
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          this.interrupt = null;
          secure.off('secureConnect', done);
          if (this.phase === 'closed') reject(this.closeReason ?? new RelayError('UPSTREAM_TLS', 'TLS handshake failed'));
          else resolve();
        };
        secure.once('secureConnect', done);
        this.interrupt = done;
      });
    } finally {
      this.handshaking = false;
    }
    secure.on('data', this.onData);
    this.secure = true;
  }

  // ---------------------------------------------------------------- public commands

  /**
   * AUTH XOAUTH2 with the initial response. 235 → resolves. Google's 334 error challenge →
   * an empty line, then the final reply (535) → UpstreamAuthError with that reply and the
   * decoded challenge. Any other reply → UpstreamAuthError with it. The connection stays
   * usable after a refusal (a retry with a fresh token may follow).
   */
  async authenticate(user: string, accessToken: string): Promise<void> {
    this.ensureReady();
    const secret = xoauth2String(user, accessToken);
    let r = await this.command('AUTH', `AUTH XOAUTH2 ${secret}\r\n`, this.timeouts.commandMs, true);
    let challenge: Record<string, unknown> | undefined;
    if (r.code === C334ContinueAuth) {
      challenge = decodeChallenge(r.lines[0] ?? '');
      // RFC 4954 §4 / Google's protocol: an empty client response ends the exchange.
      r = await this.command('AUTH', '\r\n', this.timeouts.commandMs, true);
      // Still inside the SASL exchange: any later command would be read as SASL data.
      if (r.code === C334ContinueAuth) this.fail(null);
    }
    if (r.code === C235AuthSuccess) {
      this.authenticatedUser = user;
      this.authenticatedAt = Date.now();
      return;
    }
    throw new UpstreamAuthError(user, scrubReply(r, [accessToken, secret]), challenge);
  }

  /**
   * MAIL FROM:<from>[ params]. Resolves with the reply whatever its code. Throws
   * UnsafeArgumentError synchronously for CR/LF/NUL in `from` or `params`.
   */
  mail(from: string, params?: string): Promise<Reply> {
    checkArgument(from, 'MAIL FROM address');
    if (params) checkArgument(params, 'MAIL FROM parameters');
    this.transactions++;
    return this.command('MAIL', params ? `MAIL FROM:<${from}> ${params}\r\n` : `MAIL FROM:<${from}>\r\n`, this.timeouts.commandMs, false);
  }

  /** RCPT TO:<to>[ params]. Resolves with the reply whatever its code. Same validation as mail(). */
  rcpt(to: string, params?: string): Promise<Reply> {
    checkArgument(to, 'RCPT TO address');
    if (params) checkArgument(params, 'RCPT TO parameters');
    return this.command('RCPT', params ? `RCPT TO:<${to}> ${params}\r\n` : `RCPT TO:<${to}>\r\n`, this.timeouts.commandMs, false);
  }

  /**
   * DATA, then the body (dot-stuffed, line ends normalised) with backpressure, then the
   * terminator; see DataResult. `body` is typically the inbound message (a MessageBody, pushed
   * into this connection's sink as it is decoded, so a message that arrives in one read leaves
   * in that read's turn); an (async) iterable of Buffers works too. The body is opened only
   * after the provider's 354 and always taken to its end once opened. Rejects with RelayError
   * UPSTREAM_CLOSED / UPSTREAM_TIMEOUT / UPSTREAM_PROTOCOL when the connection fails (once the
   * body ended), or with the body's own error if it fails (the connection is then destroyed: a
   * transaction with a partial body must never be completed). No other command may be issued
   * while data() runs.
   */
  data(body: MessageBody | AsyncIterable<Buffer> | Iterable<Buffer>, opts: DataOptions = {}): Promise<DataResult> {
    const source = isMessageBody(body) ? body : iterableBody(body);
    return new Promise<DataResult>((resolve, reject) => this.transmit(source, opts, resolve, reject));
  }

  /**
   * data() with its outcome handed to `done` or `broke` (exactly one, once) instead of a
   * promise: the relay's transaction makes its own, a promise and a microtask less a message.
   */
  transmit(body: MessageBody, opts: DataOptions, done: (r: DataResult) => void, broke: (e: unknown) => void): void {
    const sent = opts.sent ?? this.dataCommand();
    const maxBytes = opts.maxBytes ?? Infinity;
    sent.whenAnswered((reply) => {
      try {
        this.dataReplied(reply, body, maxBytes, done, broke);
      } catch (e) {
        // Opening the body ran the producer's code (the 354 to the client): its throw is this call's failure.
        this.fail(null);
        broke(e);
      }
    }, broke);
  }

  /** DATA was answered: the body is opened on 354, and not on anything else (the client then gets that reply instead of 354). */
  private dataReplied(reply: Reply, body: MessageBody, maxBytes: number, resolve: (r: DataResult) => void, reject: (e: unknown) => void): void {
    if (reply.code !== C354StartMailInput) {
      if (reply.code < 400) {
        // 250 (or any success) to DATA itself: no byte of the body was sent, so a 250 here
        // would acknowledge a message the provider never got. The session is out of step.
        this.fail(new RelayError('UPSTREAM_PROTOCOL', `reply to DATA was ${formatReply(reply)}`));
        reject(new RelayError('UPSTREAM_PROTOCOL', `reply to DATA was ${formatReply(reply)}`));
        return;
      }
      resolve({ kind: 'reply', stage: 'command', reply, bytes: 0 });
      return;
    }
    const sender = new BodySender(this.socket, body, maxBytes, this.timeouts.dataMs, this.senderHost, resolve, reject);
    // The reply to the end of DATA is queued now, so that a reply the server sends early
    // (while we are still streaming) is matched to it and not treated as unsolicited.
    if (this.phase === 'closed') sender.reject(this.closedError());
    else this.inflight.push(sender);
    body.open(sender);
  }

  /** What a BodySender needs of its connection (one object per connection, not per message). */
  private readonly senderHost: SenderHost = {
    fail: (reason) => this.fail(reason),
    terminated: (p) => {
      if (this.inflight[0] === p) this.armTimer();
    },
  };

  /**
   * The DATA command alone, so that it can leave in one write with the MAIL and RCPTs before
   * it (RFC 2920 group); pass it to data() as `sent`.
   */
  dataCommand(): SentData {
    const sent = new SentData(this.timeouts.commandMs);
    if (this.phase !== 'ready') sent.reject(this.closedError());
    else this.issue(sent, 'DATA\r\n');
    return sent;
  }

  /** RSET; resolves with the reply whatever its code. */
  rset(): Promise<Reply> {
    return this.command('RSET', 'RSET\r\n', this.timeouts.commandMs, false);
  }

  /** NOOP; resolves with the reply whatever its code (a liveness probe for idle connections). */
  noop(): Promise<Reply> {
    return this.command('NOOP', 'NOOP\r\n', this.timeouts.commandMs, true);
  }

  /** QUIT, waiting at most min(commandMs, 2 s) from now for the reply, then close. Never rejects. */
  async quit(): Promise<void> {
    if (this.phase !== 'ready') {
      this.fail(null);
      return;
    }
    const ms = Math.min(this.timeouts.commandMs, QUIT_TIMEOUT_MS);
    // A command's timer runs only once it heads the queue: a QUIT behind one with no timer of
    // its own (the end of DATA while the body is still coming) would otherwise wait as long as
    // that does, and the pool's slot with it.
    const bound = setTimeout(() => this.fail(null), ms);
    try {
      await this.command('QUIT', 'QUIT\r\n', ms, true);
    } catch {
      // best effort
    } finally {
      clearTimeout(bound);
    }
    this.fail(null);
  }

  /** Closes the socket now; anything pending rejects with UPSTREAM_CLOSED. */
  destroy(): void {
    this.fail(null);
  }

  // ---------------------------------------------------------------- state

  /** Open, ready, not closed, no 421 or timeout seen: may carry a transaction. */
  get isUsable(): boolean {
    return this.phase === 'ready';
  }

  get isClosed(): boolean {
    return this.phase === 'closed';
  }

  get supportsPipelining(): boolean {
    return this.extensions.has('PIPELINING');
  }

  /** SIZE advertised by the server (RFC 1870), or null when none or unlimited (0). */
  get maxMessageSize(): number | null {
    // Read several times per message: parsed once per EHLO reply.
    if (this.sizeOf !== this.extensions) {
      const v = this.extensions.get('SIZE');
      const n = v ? Number.parseInt(v, 10) : 0;
      this.size = Number.isFinite(n) && n > 0 ? n : null;
      this.sizeOf = this.extensions;
    }
    return this.size;
  }

  private size: number | null = null;
  private sizeOf: ReadonlyMap<string, string> | null = null;

  /** AUTH mechanisms advertised (upper case). */
  get authMechanisms(): ReadonlySet<string> {
    const v = this.extensions.get('AUTH');
    return new Set(v ? v.toUpperCase().split(/\s+/).filter(Boolean) : []);
  }

  /**
   * Registers a listener for the end of the connection (server drop, unsolicited 421, failure,
   * or local quit/destroy). Called once; immediately (next tick) if already closed.
   * Returns a function that unregisters it.
   */
  onClose(listener: CloseListener): () => void {
    if (this.phase === 'closed') {
      const reason = this.closeReason;
      process.nextTick(() => listener(reason));
      return noop;
    }
    this.closeListeners.push(listener);
    return () => {
      const i = this.closeListeners.indexOf(listener);
      if (i !== -1) this.closeListeners.splice(i, 1);
    };
  }

  // ---------------------------------------------------------------- machinery

  private ensureReady(): void {
    if (this.phase !== 'ready') {
      throw this.closedError();
    }
  }

  /**
   * Sends a command line (or queues it behind a group-ending command) and awaits its reply.
   * On a closed connection it rejects (never throws) with the reason it closed.
   */
  private command(label: string, line: string, timeoutMs: number, groupEnd: boolean): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => this.issue({ label, timeoutMs, groupEnd, resolve, reject }, line));
  }

  /** Sends `p`'s line, or queues it behind a group-ending command; on a closed connection `p` is rejected at once. */
  private issue(p: Pending, line: string): void {
    if (this.phase === 'closed') return p.reject(this.closedError());
    if (this.canSend()) this.send(p, line);
    else this.queued.push({ p, line });
  }

  /** Awaits a reply that no command asked for yet (the greeting). */
  private expect(label: string, timeoutMs: number): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      if (this.phase === 'closed') {
        reject(this.closedError());
        return;
      }
      this.inflight.push({ label, timeoutMs, groupEnd: true, resolve, reject });
      if (this.inflight.length === 1) this.armTimer();
    });
  }

  private canSend(): boolean {
    const n = this.inflight.length;
    if (n === 0) return this.queued.length === 0;
    // RFC 2920 §3.1: only with PIPELINING, and never behind a command that ends a group.
    return this.queued.length === 0 && this.phase === 'ready' && this.supportsPipelining && !this.inflight[n - 1]!.groupEnd;
  }

  private send(p: Pending, line: string): void {
    this.inflight.push(p);
    // Commands issued in the same turn (a pipelined MAIL, RCPTs and DATA) leave in one write:
    // one string, one TLS record and one segment, as the client sent them.
    if (this.out === '') process.nextTick(this.flushOut);
    this.out += line;
    if (this.inflight.length === 1) this.armTimer();
  }

  /** Command lines of this turn, not yet written (see send()). */
  private out = '';
  private readonly flushOut = (): void => {
    const out = this.out;
    this.out = '';
    if (this.phase !== 'closed') this.socket.write(out);
  };

  /**
   * The head command's reply is due `timeoutMs` from now. Called at every reply (three or four
   * times a message), so it only moves a deadline: the one Timeout is set again only when the
   * new deadline comes before the moment it fires (or none is set). When it fires early, because
   * the deadline moved on meanwhile, it is set for the rest; when nothing waits, it stops.
   * (undici's fast timers and Haraka's socket timeouts avoid a timer operation per reply too.)
   */
  private armTimer(): void {
    const head = this.inflight[0];
    const ms = head ? head.timeoutMs : 0;
    if (ms <= 0) {
      this.replyBy = 0;
      return;
    }
    const due = performance.now() + ms;
    this.replyBy = due;
    if (this.#timer === null || due < this.timerAt) this.setTimer(due);
  }

  /** performance.now() by which the head command's reply is due; 0 while nothing with a timeout waits. */
  private replyBy = 0;
  /** performance.now() at which the Timeout fires. */
  private timerAt = 0;

  private setTimer(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.timerAt = at;
    this.#timer = setTimeout(this.onTimeout, Math.max(1, Math.ceil(at - performance.now())));
  }

  private timedOut(): void {
    this.#timer = null;
    const head = this.inflight[0];
    if (!head || this.replyBy === 0) return;
    if (performance.now() < this.replyBy) {
      this.setTimer(this.replyBy);
      return;
    }
    if (head.label === 'QUIT') {
      this.fail(null);
      return;
    }
    this.fail(new RelayError('UPSTREAM_TIMEOUT', `no reply to ${head.label} from ${this.host}:${this.port} within ${head.timeoutMs} ms`));
  }

  private receive(chunk: Buffer): void {
    try {
      this.reader.push(chunk);
    } catch (err) {
      if (err instanceof ReplyParseError) this.fail(new RelayError('UPSTREAM_PROTOCOL', err.message));
      else throw err;
    }
  }

  private onReply(r: Reply): void {
    if (this.phase === 'closed') return;
    const p = this.inflight.shift();
    if (!p) {
      // Nothing was asked. A 421 is the server closing an idle connection (RFC 5321 §3.8);
      // anything else means replies no longer line up with commands.
      this.fail(
        r.code === C421ServiceUnavailable
          ? new RelayError('UPSTREAM_CLOSED', `provider closed the connection: ${formatReply(r)}`)
          : new RelayError('UPSTREAM_PROTOCOL', `unsolicited reply ${formatReply(r)}`),
      );
      return;
    }
    this.armTimer();
    p.resolve(r);
    if (this.interrupt) this.interrupt();
    if (r.code === C421ServiceUnavailable && p.label !== 'QUIT') {
      // The server is closing the channel (RFC 5321 §3.8): its reply goes to the caller, and
      // the connection must not carry anything more.
      this.fail(new RelayError('UPSTREAM_CLOSED', `provider closed the connection: ${formatReply(r)}`));
      return;
    }
    while (this.queued.length !== 0 && this.inflightAllowsNext()) {
      const q = this.queued.shift()!;
      this.send(q.p, q.line);
    }
  }

  private inflightAllowsNext(): boolean {
    const n = this.inflight.length;
    return n === 0 || (this.supportsPipelining && !this.inflight[n - 1]!.groupEnd);
  }

  /**
   * Ends the connection, once: rejects everything pending, destroys the socket and tells
   * the close listeners. `reason` null means a local close (quit, destroy, abandoned DATA).
   */
  private fail(reason: RelayError | null): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.closeReason = reason;
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const err = reason ?? new RelayError('UPSTREAM_CLOSED', 'connection closed locally');
    const inflight = this.inflight;
    const queued = this.queued;
    this.inflight = [];
    this.queued = [];
    for (const p of inflight) p.reject(err);
    for (const q of queued) q.p.reject(err);
    if (this.interrupt) this.interrupt();
    this.socket.destroy();
    if (this.raw !== this.socket) this.raw.destroy();
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const l of listeners) {
      try {
        l(reason);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  /** For a call made after the end: a fresh error naming why the connection ended. */
  private closedError(): RelayError {
    const why = this.closeReason ? ` (${this.closeReason.message})` : '';
    return new RelayError('UPSTREAM_CLOSED', `connection is closed${why}`);
  }

  private closedCode(): RelayErrorCode {
    if (this.handshaking) return 'UPSTREAM_TLS';
    return this.phase === 'opening' ? 'UPSTREAM_CONNECT_FAILED' : 'UPSTREAM_CLOSED';
  }

  private socketError(err: Error): RelayError {
    return new RelayError(this.closedCode(), `${this.host}:${this.port}: ${errorText(err)}`, { cause: err });
  }
}

// ------------------------------------------------------------------ the body

/**
 * A DATA command sent (dataCommand()), and its reply once it came. Not a promise: the 354 goes
 * straight to the one consumer that waits for it (transmit()), a promise and two microtasks
 * less a message; promise() makes one for the rare paths that wait for a whole group.
 */
export class SentData implements Pending {
  readonly label = 'DATA';
  readonly groupEnd = true;
  reply: Reply | null = null;
  private error: RelayError | null = null;
  private onReply: ((r: Reply) => void) | null = null;
  private onError: ((e: RelayError) => void) | null = null;
  private waiting: Promise<Reply> | null = null;

  constructor(readonly timeoutMs: number) {}

  /** Pending: the provider answered DATA. */
  resolve(r: Reply): void {
    this.reply = r;
    this.onReply?.(r);
  }

  /** Pending: the connection ended before the answer (passed on once it has finished ending, as a promise would). */
  reject(e: RelayError): void {
    this.error = e;
    const onError = this.onError;
    if (onError) queueMicrotask(() => onError(e));
  }

  /** Calls one of them once, when the answer comes (at once if it came). One consumer only. */
  whenAnswered(onReply: (r: Reply) => void, onError: (e: RelayError) => void): void {
    if (this.reply) return onReply(this.reply);
    if (this.error) return onError(this.error);
    this.onReply = onReply;
    this.onError = onError;
  }

  /** The answer as a promise (settles once it came), for waiting on it beside other replies. */
  promise(): Promise<Reply> {
    return (this.waiting ??= new Promise<Reply>((resolve, reject) => this.whenAnswered(resolve, reject)));
  }
}


/** What a BodySender needs of its connection. */
interface SenderHost {
  fail(reason: RelayError | null): void;
  /** The terminator is written: the reply timer runs for `p` once it heads the queue. */
  terminated(p: Pending): void;
}

const isMessageBody = (b: object): b is MessageBody => typeof (b as MessageBody).open === 'function';

/**
 * One message from the 354 to the provider's final reply: the sink the body is pushed into
 * (dot-stuffed, one chunk held back to leave with the terminator) and the queued entry for the
 * reply to the end of DATA (the Pending's resolve/reject: that reply, or the connection's end).
 * A reply before the terminator, a connection that failed or a body over maxBytes stops the
 * sending; what still comes is taken and dropped, so the client stays in step.
 */
class BodySender implements BodySink, Pending {
  readonly label = 'end of DATA';
  /** 0 while the body is being sent; armed once the terminator is written. */
  timeoutMs = 0;
  readonly groupEnd = true;
  private readonly stuffer = new DotStuffer();
  private bytes = 0;
  private held: Buffer | null = null;
  private streaming = true;
  private tooBig = false;
  /** The provider's reply to the end of DATA, or one sent before it. */
  private final: Reply | null = null;
  private failure: RelayError | null = null;
  /** The producer ended or failed the body. */
  private over = false;
  private terminatorSent = false;
  private settled = false;
  /** Set while the producer waits for the socket to drain. */
  private stall: { timer: NodeJS.Timeout; drain: () => void } | null = null;

  constructor(
    private readonly socket: net.Socket,
    private readonly body: MessageBody,
    private readonly maxBytes: number,
    private readonly dataMs: number,
    private readonly host: SenderHost,
    private readonly done: (r: DataResult) => void,
    private readonly broke: (e: unknown) => void,
  ) {}

  write(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    if (!this.streaming) return true; // taken and dropped
    if (this.final !== null || this.failure !== null) {
      this.streaming = false;
      return true;
    }
    if (this.bytes > this.maxBytes) {
      // Without the terminator the upstream discards what it got when the connection drops.
      this.tooBig = true;
      this.streaming = false;
      this.host.fail(null);
      return true;
    }
    const out = this.stuffer.push(chunk);
    if (out.length === 0) return true;
    // One chunk is held back so that the last one leaves together with the terminator
    // (one TLS record and one syscall for a typical message, instead of two).
    const prev = this.held;
    this.held = out;
    if (prev === null) return true;
    const socket = this.socket;
    // Past the socket's own mark (16 KB) its write() says wait; the producer is stopped only
    // past HIGH_WATER, so a big message goes on while the provider reads (fewer pauses).
    if (socket.write(prev) || socket.writableLength < HIGH_WATER) return true;
    this.waitForDrain();
    return false;
  }

  end(): void {
    if (this.over) return;
    this.over = true;
    this.stopWaiting();
    if (this.tooBig) return this.settle({ kind: 'too-big', bytes: this.bytes });
    if (this.final === null && this.failure !== null) return this.fault(this.failure);
    if (this.final !== null) {
      // Answered before the terminator: the message is incomplete upstream, whatever the code.
      const early = this.final;
      this.host.fail(null);
      if (early.code < 400) return this.fault(new RelayError('UPSTREAM_PROTOCOL', `reply before the end of DATA: ${formatReply(early)}`));
      return this.settle({ kind: 'reply', stage: 'early', reply: early, bytes: this.bytes });
    }
    const terminator = this.stuffer.end();
    const held = this.held;
    this.held = null;
    const socket = this.socket;
    if (held === null) {
      socket.write(terminator);
    } else if (held.length <= SMALL_WRITE) {
      socket.write(Buffer.concat([held, terminator], held.length + terminator.length));
    } else {
      socket.cork();
      socket.write(held);
      socket.write(terminator);
      socket.uncork();
    }
    this.terminatorSent = true;
    this.timeoutMs = this.dataMs;
    this.host.terminated(this);
  }

  fail(err: Error): void {
    if (this.over) return;
    // The MTA's side broke: what was sent is a partial message, which must never be
    // completed, and the session's state is unknown. Drop the connection.
    this.over = true;
    this.stopWaiting();
    this.host.fail(null);
    this.fault(err);
  }

  /** Pending: the provider answered (the end of DATA, or early while the body is still coming). */
  resolve(r: Reply): void {
    this.final = r;
    if (this.terminatorSent) this.settle({ kind: 'reply', stage: 'final', reply: r, bytes: this.bytes });
    else this.wake();
  }

  /** Pending: the connection ended before the reply (called from inside its fail(): the transaction hears of it once that is over). */
  reject(e: RelayError): void {
    this.failure = e;
    if (this.terminatorSent) queueMicrotask(() => this.fault(e));
    else this.wake();
  }

  private waitForDrain(): void {
    if (this.stall) return;
    const drain = (): void => this.wake();
    const timer = setTimeout(() => {
      this.host.fail(new RelayError('UPSTREAM_TIMEOUT', `provider stopped reading the message for ${this.dataMs} ms`));
    }, this.dataMs);
    this.socket.once('drain', drain);
    this.stall = { timer, drain };
  }

  /** The socket drained, a reply came or the connection ended: the producer goes on (and, unless drained, what it sends is dropped). */
  private wake(): void {
    if (!this.stall) return;
    this.stopWaiting();
    this.body.drained();
  }

  private stopWaiting(): void {
    const stall = this.stall;
    if (!stall) return;
    this.stall = null;
    clearTimeout(stall.timer);
    this.socket.off('drain', stall.drain);
  }

  private settle(r: DataResult): void {
    if (this.settled) return;
    this.settled = true;
    this.done(r);
  }

  private fault(e: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.broke(e);
  }
}

// ------------------------------------------------------------------ helpers

function connectTcp(opts: UpstreamOpenOptions, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const local = opts.localAddress ?? undefined;
    const socket = net.connect({
      host: opts.host,
      port: opts.port,
      ...(local ? { localAddress: local, family: net.isIP(local) } : {}),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new RelayError('UPSTREAM_TIMEOUT', `connecting to ${opts.host}:${opts.port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new RelayError('UPSTREAM_CONNECT_FAILED', `${opts.host}:${opts.port}: ${errorText(err)}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

type CaOption = UpstreamOpenOptions['ca'];
let defaultContext: tls.SecureContext | null = null;
const contextsByObject = new WeakMap<object, tls.SecureContext>();
const contextsByString = new Map<string, tls.SecureContext>();

/**
 * TLS 1.2+, and `ca` added to the system roots (Node's own `ca` option would replace them).
 * Built once per `ca` value: loading ~140 roots costs ~20 ms, too much for every connection.
 */
function secureContextFor(ca: CaOption): tls.SecureContext {
  if (!ca) return (defaultContext ??= tls.createSecureContext({ minVersion: 'TLSv1.2' }));
  const cached = typeof ca === 'string' ? contextsByString.get(ca) : contextsByObject.get(ca);
  if (cached) return cached;
  const context = tls.createSecureContext({
    minVersion: 'TLSv1.2',
    ca: [...tls.rootCertificates, ...(Array.isArray(ca) ? ca : [ca])],
  });
  if (typeof ca === 'string') contextsByString.set(ca, context);
  else contextsByObject.set(ca, context);
  return context;
}

/** EHLO reply lines after the first: "SIZE 35882577" → SIZE → "35882577"; old "AUTH=LOGIN" too. */
export function parseExtensions(ehlo: Reply): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 1; i < ehlo.lines.length; i++) {
    const line = ehlo.lines[i]!.trim();
    if (!line) continue;
    const sp = line.search(/[ =]/);
    const key = (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
    const value = sp === -1 ? '' : line.slice(sp + 1).trim();
    const prev = map.get(key);
    map.set(key, key === 'AUTH' && prev ? `${prev} ${value}` : value);
  }
  return map;
}

function decodeChallenge(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(text.trim(), 'base64').toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A reply that repeats a secret (a misbehaving server echoing the AUTH line) loses it. */
function scrubReply(r: Reply, secrets: string[]): Reply {
  let changed = false;
  const lines = r.lines.map((line) => {
    let out = line;
    for (const s of secrets) {
      if (s && out.includes(s)) {
        out = out.split(s).join('[redacted]');
        changed = true;
      }
    }
    return out;
  });
  return changed ? { code: r.code, lines } : r;
}

function checkArgument(value: string, what: string): void {
  if (UNSAFE.test(value)) throw new UnsafeArgumentError(what);
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code} ${err.message}` : err.message;
  }
  return String(err);
}
