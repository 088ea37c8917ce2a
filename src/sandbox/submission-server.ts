// The sandbox submission server: what smtp.gmail.com:587 / smtp.office365.com:587 look like to
// the relay — STARTTLS, AUTH XOAUTH2 checked against the tokens the sandbox token endpoint issued,
// replies worded like the real ones — plus run-time fault injection at every step of a session,
// so each failure the relay must turn into the right reply for the MTA can be provoked on demand.
//
// It is built on smtp-server. A few of the faults (EHLO, STARTTLS, RSET, stalls, Google's AUTH
// error dialogue, exact enhanced status codes) need more than its public hooks offer; the
// internals this file relies on are listed once, in `ConnectionInternals` below, so an upgrade
// of smtp-server has one place to check.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerAuthenticationResponse,
  type SMTPServerDataStream,
  type SMTPServerOptions,
  type SMTPServerSession,
} from 'smtp-server';
import { GOOGLE_MAIL_SCOPE } from '../config/providers.js';
import { headerFrom } from './header-reader.js';
import type { SandboxState } from './provider-state.js';
import { makeSandboxTls, type SandboxTlsFiles } from './tls-material.js';

// ---- TLS material ----------------------------------------------------------------------------

/**
 * Paths of this process's sandbox TLS files (./tls-material.ts): made once, when the sandbox is
 * first loaded (the CLI loads it only for `demo` and `sandbox`), about 0.4 s.
 */
export const SANDBOX_TLS_FILES: Readonly<SandboxTlsFiles> = Object.freeze(await makeSandboxTls());

// ---- public types ----------------------------------------------------------------------------

export type SubmissionStyle = 'google' | 'microsoft';
export type SubmissionSecurity = 'starttls' | 'tls' | 'none';

export interface SubmissionServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** 'starttls' (default, like port 587), 'tls' (implicit TLS, like 465) or 'none'. */
  security?: SubmissionSecurity;
  /**
   * false: neither advertise nor accept STARTTLS, as when a man in the middle strips it. For
   * downgrade tests; such a server also accepts AUTH in clear unless `requireTls` says otherwise,
   * so a relay that wrongly carries on is caught sending its token.
   */
  offerStartTls?: boolean;
  /**
   * Refuse AUTH/MAIL/RCPT/DATA before STARTTLS (530 5.7.0) and leave AUTH out of the pre-TLS
   * EHLO, as both real providers do. Default: true when STARTTLS is offered, else false.
   */
  requireTls?: boolean;
  /** Whose wording to use in replies; default 'google'. */
  style?: SubmissionStyle;
  /** SIZE limit advertised and enforced, bytes; default 35882577 (Gmail's). */
  size?: number;
  /** Host name in the greeting and EHLO. */
  name?: string;
  /** After this many accepted messages on one connection, answer the next MAIL with 421 and close. */
  closeAfterMessages?: number | null;
  /** Most recipients per message; no limit by default. */
  maxRecipients?: number;
  /** Idle timeout of a client connection, ms; default 300000. */
  socketTimeoutMs?: number;
  /** Advertise SMTPUTF8 (default true, as both providers do). */
  smtputf8?: boolean;
  /** Advertise 8BITMIME (default true). */
  eightBitMime?: boolean;
}

/**
 * Where a fault applies. Each command point answers the command of that name; 'connect' is the
 * greeting; 'data' is the reply to the end of the message (after the bytes were read) and
 * 'dataCommand' the reply to the DATA verb itself (instead of 354).
 */
export type SmtpFaultPoint =
  | 'connect'
  | 'ehlo'
  | 'starttls'
  | 'auth'
  | 'mail'
  | 'rcpt'
  | 'dataCommand'
  | 'data'
  | 'rset'
  | 'noop'
  | 'quit';

export interface SmtpFaultRule {
  at: SmtpFaultPoint;
  /**
   * 'reply' (default): answer with `code`/`text` instead of handling the command.
   * 'stall': never answer; the socket stays open (until the client or stop() closes it).
   * 'drop': destroy the socket without answering. At 'data' the whole message is read first,
   * which is the "provider vanished after the last byte" case: the message is not accepted.
   */
  action?: 'reply' | 'stall' | 'drop';
  /** Reply code; default per point (421 connect/ehlo/rset/noop/quit, 454 starttls/auth, 451 otherwise). */
  code?: number;
  /** Enhanced status code; default the provider's usual one for `code`; null for none. */
  enhanced?: string | null;
  /** Reply text (several strings make a multi-line reply); default the provider's usual text. */
  text?: string | string[];
  /** Close the connection after the reply (a 421 always closes). Replies at 'connect' always close. */
  close?: boolean;
  /**
   * At 'data' with 'stall' or 'drop' (or a 2xx reply): record the message as accepted anyway —
   * the provider kept it but the client never learnt so, the case that produces duplicates.
   */
  keep?: boolean;
  /** Fire at most this many times. */
  times?: number;
  /** Let this many matching commands through before the rule starts firing. */
  skip?: number;
  /**
   * Fire for this fraction (0..1) of matching commands, deterministically: the n-th match fires
   * when floor(n·f) grows, so 0.5 fires on every 2nd, 0.25 on every 4th, 1 (default) on each.
   */
  fraction?: number;
  /** Only when the transaction's MAIL FROM is this address (case-insensitive). */
  sender?: string;
  /** At 'rcpt': only this recipient; at 'data'/'dataCommand': only if it is among the recipients. */
  recipient?: string;
  /** Only on connections authenticated as this account (at 'auth': the user= presented). */
  user?: string;
}

export interface SmtpFaultInfo {
  id: number;
  rule: SmtpFaultRule;
  /** Commands that matched the rule's point and filters. */
  matched: number;
  /** Times it actually fired. */
  fired: number;
}

/** A message the sandbox accepted (answered 250 to, or kept per a `keep` fault). */
export interface AcceptedMessage {
  id: string;
  connectionId: string;
  authUser: string;
  mailFrom: string;
  rcptTo: string[];
  size: number;
  /** Hex SHA-256 of `body`. */
  sha256: string;
  /** The exact bytes received between DATA and the final CRLF.CRLF, dot-unstuffed. */
  body: Buffer;
  receivedAt: Date;
  /** Whether the connection was under TLS. */
  secure: boolean;
}

export type AuthOutcome = 'ok' | 'unknown-token' | 'expired' | 'user-mismatch' | 'shared-mailbox' | 'fault';

/** One AUTH attempt. Never holds the token. */
export interface AuthAttempt {
  at: Date;
  connectionId: string;
  /** The user= presented. */
  user: string;
  ok: boolean;
  outcome: AuthOutcome;
  secure: boolean;
}

export interface ConnectionInfo {
  id: string;
  openedAt: Date;
  closedAt: Date | null;
  secure: boolean;
  authUser: string | null;
  /** MAIL commands accepted. */
  mailCommands: number;
  /** Transactions completed with an accepted message. */
  messages: number;
  /** A 'stall' fault fired on it: it will never answer again, so only the client can close it. */
  stalled: boolean;
  /**
   * How the client's command lines arrived: for each socket read that held command lines, their
   * verbs in order (`[['MAIL', 'RCPT', 'DATA']]`: a pipelined group in one segment). Message
   * bodies are not recorded. The first 200 reads.
   */
  reads: string[][];
  /**
   * RCPT TO addresses exactly as the client wrote them (smtp-server turns A-labels into UTF-8 in
   * the envelope it hands over, so `AcceptedMessage.rcptTo` cannot show it). The first 1000.
   */
  rcptAddresses: string[];
}

export interface SubmissionStats {
  connectionsOpened: number;
  connectionsOpen: number;
  authAttempts: number;
  authSuccess: number;
  authFailure: number;
  messagesAccepted: number;
  /** Ends of DATA answered with an error (faults, size). */
  messagesRejected: number;
  /** Messages read in full and then dropped without an answer. */
  messagesDropped: number;
}

// ---- smtp-server internals -------------------------------------------------------------------

type SmtpConnection = SMTPServer['connections'] extends Set<infer C> ? C : never;

/**
 * The parts of smtp-server's SMTPConnection (3.21.x, declared in its smtp-connection.d.ts) this
 * file uses beyond the documented API. All are instance members, so overriding them on one
 * connection object affects only that connection:
 * - `_onCommand(line, next)`: every command line goes through it; wrapped to inject faults before
 *   smtp-server handles the command, and to answer Google's AUTH error dialogue.
 * - `send(code, text, context)`: the single reply writer; wrapped so that text which already
 *   carries an enhanced status code is not given a second one (see `instrument`).
 * - `_nextHandler`: set while a SASL continuation line is expected.
 * - `_ready`, `_upgrading`: the greeting was sent / a STARTTLS handshake is running; commands
 *   then are smtp-server's to refuse or discard.
 * - `_handlerPending`: while true the idle timeout re-arms instead of closing, which is what a
 *   stall needs to keep the socket open.
 * - `_socket`: the current socket (the TLS one after STARTTLS), destroyed to drop a connection.
 * - `SMTPServer.connections`: the open connections, to find the one behind a session.
 */
type ConnectionInternals = Pick<
  SmtpConnection,
  '_onCommand' | 'send' | '_nextHandler' | '_ready' | '_upgrading' | '_handlerPending' | '_socket' | 'close' | 'session' | 'secure' | 'id'
>;

// ---- provider wording ------------------------------------------------------------------------

/** RFC 3463 enhanced status code at the start of a reply line. */
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3}(?=\s|$)/;

interface Wording {
  enhanced: string;
  text: string;
}

// The usual reply of each provider for a code, used when a fault names only the code.
const WORDING: Record<SubmissionStyle, Record<number, Wording>> = {
  google: {
    421: { enhanced: '4.7.0', text: 'Try again later, closing connection.' },
    450: { enhanced: '4.2.1', text: 'The user you are trying to contact is receiving mail too quickly.' },
    451: { enhanced: '4.3.0', text: 'Mail server temporarily rejected message.' },
    452: { enhanced: '4.5.3', text: 'Your message has too many recipients.' },
    454: { enhanced: '4.7.0', text: 'Cannot authenticate due to a temporary system problem. Try again later.' },
    530: { enhanced: '5.7.0', text: 'Authentication Required.' },
    535: { enhanced: '5.7.8', text: 'Username and Password not accepted.' },
    550: { enhanced: '5.1.1', text: 'The email account that you tried to reach does not exist.' },
    552: { enhanced: '5.3.4', text: "Your message exceeded Google's message size limits." },
    553: { enhanced: '5.1.2', text: "We weren't able to find the recipient domain." },
    554: { enhanced: '5.7.0', text: 'Message rejected.' },
  },
  microsoft: {
    421: { enhanced: '4.3.2', text: 'Service not available, closing transmission channel' },
    450: { enhanced: '4.7.0', text: 'Temporary server error. Please try again later' },
    451: { enhanced: '4.3.0', text: 'Temporary server error. Please try again later' },
    452: { enhanced: '4.5.3', text: 'Too many recipients' },
    454: { enhanced: '4.7.0', text: 'Temporary authentication failure' },
    530: { enhanced: '5.7.57', text: 'Client not authenticated to send mail.' },
    535: { enhanced: '5.7.3', text: 'Authentication unsuccessful' },
    550: { enhanced: '5.1.10', text: 'RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup' },
    552: { enhanced: '5.3.4', text: 'Message size exceeds fixed maximum message size' },
    554: {
      enhanced: '5.2.0',
      text: 'STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception',
    },
  },
};

function wording(style: SubmissionStyle, code: number): Wording {
  return WORDING[style][code] ?? { enhanced: `${Math.floor(code / 100)}.0.0`, text: 'Sandbox: injected failure' };
}

/** Reply lines for a code in the provider's wording, each carrying the enhanced code like theirs do. */
function providerReply(style: SubmissionStyle, code: number): string[] {
  const w = wording(style, code);
  return [`${w.enhanced} ${w.text}`];
}

const DEFAULT_FAULT_CODE: Record<SmtpFaultPoint, number> = {
  connect: 421,
  ehlo: 421,
  starttls: 454,
  auth: 454,
  mail: 451,
  rcpt: 451,
  dataCommand: 451,
  data: 451,
  rset: 421,
  noop: 421,
  quit: 421,
};

const COMMAND_POINTS: Record<string, SmtpFaultPoint> = {
  EHLO: 'ehlo',
  HELO: 'ehlo',
  STARTTLS: 'starttls',
  AUTH: 'auth',
  MAIL: 'mail',
  RCPT: 'rcpt',
  DATA: 'dataCommand',
  RSET: 'rset',
  NOOP: 'noop',
  QUIT: 'quit',
};

/** Commands a provider refuses before STARTTLS when it requires TLS. */
const NEED_TLS = new Set(['AUTH', 'MAIL', 'RCPT', 'DATA']);

/** What Gmail answers a bad XOAUTH2 token with: a 334 carrying this, then 535 after the client's empty line. */
const GOOGLE_XOAUTH2_ERROR = { status: '400', schemes: 'Bearer', scope: GOOGLE_MAIL_SCOPE };

type RuleState = SmtpFaultInfo;

interface FaultContext {
  sender?: string;
  recipients?: string[];
  user?: string;
}

interface ConnectionRecord extends ConnectionInfo {
  /** Gmail style: a 334 error challenge was sent, the next line is the client's acknowledgement. */
  awaitingAuthAck: boolean;
  /** We hid AUTH from the pre-TLS EHLO through session.disabledCommands; undo after STARTTLS. */
  authHiddenUntilTls: boolean;
}

export class SandboxSubmissionServer {
  readonly style: SubmissionStyle;
  readonly security: SubmissionSecurity;
  readonly requireTls: boolean;
  private readonly server: SMTPServer;
  private readonly host: string;
  private readonly requestedPort: number;
  private readonly disabledCommands: string[];
  private readonly defaultCloseAfter: number | null;
  private closeAfter: number | null;
  private rules: RuleState[] = [];
  private nextRuleId = 1;
  private readonly accepted: AcceptedMessage[] = [];
  private readonly attempts: AuthAttempt[] = [];
  private readonly connections = new Map<string, ConnectionRecord>();
  private counters = { connectionsOpened: 0, messagesRejected: 0, messagesDropped: 0 };
  /**
   * Authenticated connections open now and at most so far, per mailbox: what a provider's
   * per-mailbox connection cap (Exchange: 3) is judged by, updated at every login and close.
   */
  private readonly concurrent = new Map<string, { open: number; peak: number }>();
  private messageSeq = 0;
  private waiters: Array<{
    count: number;
    resolve: (m: readonly AcceptedMessage[]) => void;
    reject: (err: Error) => void;
  }> = [];
  private started = false;
  private stopped = false;

  constructor(
    private readonly state: SandboxState,
    options: SubmissionServerOptions = {},
  ) {
    this.style = options.style ?? 'google';
    this.security = options.security ?? 'starttls';
    const offerStartTls = this.security === 'starttls' && (options.offerStartTls ?? true);
    this.requireTls = this.security === 'starttls' && (options.requireTls ?? offerStartTls);
    this.host = options.host ?? '127.0.0.1';
    this.requestedPort = options.port ?? 0;
    this.defaultCloseAfter = validCloseAfter(options.closeAfterMessages ?? null);
    this.closeAfter = this.defaultCloseAfter;
    const size = options.size ?? 35_882_577;
    if (!Number.isInteger(size) || size <= 0) throw new Error('sandbox submission: size must be a positive integer');
    this.disabledCommands = offerStartTls ? [] : ['STARTTLS'];

    const google = this.style === 'google';
    const serverOptions: SMTPServerOptions = {
      secure: this.security === 'tls',
      key: readFileSync(SANDBOX_TLS_FILES.key),
      cert: readFileSync(SANDBOX_TLS_FILES.cert),
      name: options.name ?? (google ? 'smtp.gmail.sandbox' : 'smtp.office365.sandbox'),
      banner: google ? 'sandbox - gsmtp' : 'Microsoft ESMTP MAIL Service ready (sandbox)',
      heloResponse: google ? '%s at your service, %s' : '%s Hello %s',
      size,
      authMethods: ['XOAUTH2'],
      // TLS policy is applied by this file (see `onCommand`), so that refusals carry the
      // providers' 530 wording rather than smtp-server's 538, and only when `requireTls` is set.
      allowInsecureAuth: true,
      disabledCommands: this.disabledCommands,
      authRequiredMessage: providerReply(this.style, 530)[0],
      // Both providers advertise enhanced status codes and put one on every reply. smtp-server
      // hides them by default; with them shown it also prepends one to texts given to it, which
      // `instrument` prevents for texts that already carry their own.
      hideENHANCEDSTATUSCODES: false,
      hideDSN: true,
      hideREQUIRETLS: true,
      disableReverseLookup: true,
      logger: false,
      socketTimeout: options.socketTimeoutMs ?? 300_000,
      ...(options.maxRecipients !== undefined ? { maxRecipients: options.maxRecipients } : {}),
      hideSMTPUTF8: options.smtputf8 === false,
      hide8BITMIME: options.eightBitMime === false,
      onConnect: (session, callback) => this.onConnect(session, callback),
      onSecure: (_socket, session, callback) => this.onSecure(session, callback),
      onAuth: (auth, session, callback) => this.onAuth(auth, session, callback),
      onMailFrom: (address, session, callback) => this.onMailFrom(address, session, callback),
      onRcptTo: (_address, _session, callback) => callback(),
      onData: (stream, session, callback) => this.onData(stream, session, callback),
      onClose: (session) => this.onClose(session),
    };
    this.server = new SMTPServer(serverOptions);
    // Connection errors (a client resetting mid-transaction, a failed TLS handshake) are
    // re-emitted by the server; unhandled they would crash the test process. They are part of
    // what the sandbox exists to provoke, so they are expected and ignored here.
    this.server.on('error', () => undefined);
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  async start(): Promise<{ port: number }> {
    if (this.started) throw new Error('sandbox submission server already started');
    this.started = true;
    await new Promise<void>((resolve, reject) => {
      this.server.server.once('error', reject);
      this.server.listen(this.requestedPort, this.host, () => {
        this.server.server.off('error', reject);
        resolve();
      });
    });
    return { port: this.port };
  }

  get port(): number {
    const address = this.server.server.address() as AddressInfo | null;
    if (!address) throw new Error('sandbox submission server is not listening');
    return address.port;
  }

  get hostname(): string {
    return this.host;
  }

  /** Drops every client connection and closes the listener. */
  async stop(): Promise<void> {
    if (this.stopped || !this.started) return;
    this.stopped = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // smtp-server's close() waits up to 30 s for clients to leave; tests should not.
    this.dropAllConnections();
    await closed;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.reject(new Error('sandbox: submission server stopped'));
  }

  /**
   * Destroys every open client connection without a word, as when the provider's front end
   * goes away. Returns how many were dropped.
   */
  dropAllConnections(): number {
    let n = 0;
    for (const conn of [...this.server.connections]) {
      const c = conn as ConnectionInternals;
      if (!c._socket.destroyed) {
        c._socket.destroy();
        n++;
      }
    }
    return n;
  }

  // ---- run-time controls ---------------------------------------------------------------------

  /** Adds a fault rule (see SmtpFaultRule); rules are tried in the order they were added. */
  addFault(rule: SmtpFaultRule): number {
    validateRule(rule);
    const id = this.nextRuleId++;
    this.rules.push({ id, rule: { ...rule }, matched: 0, fired: 0 });
    return id;
  }

  removeFault(id: number): void {
    this.rules = this.rules.filter((r) => r.id !== id);
  }

  clearFaults(): void {
    this.rules = [];
  }

  listFaults(): readonly SmtpFaultInfo[] {
    return this.rules.map((r) => ({ ...r, rule: { ...r.rule } }));
  }

  /** Gmail-like per-connection message limit; null removes it. */
  setCloseAfterMessages(n: number | null): void {
    this.closeAfter = validCloseAfter(n);
  }

  /** Forgets messages, counters, logs and faults, and restores the closeAfterMessages option. */
  reset(): void {
    this.accepted.length = 0;
    this.attempts.length = 0;
    this.rules = [];
    this.closeAfter = this.defaultCloseAfter;
    this.counters = { connectionsOpened: 0, messagesRejected: 0, messagesDropped: 0 };
    for (const c of this.concurrent.values()) c.peak = c.open;
    for (const [id, record] of this.connections) if (record.closedAt) this.connections.delete(id);
    for (const record of this.connections.values()) {
      record.mailCommands = 0;
      record.messages = 0;
    }
  }

  // ---- observations --------------------------------------------------------------------------

  /** Per mailbox: authenticated connections open now, and the most open at once since start (or reset). */
  connectionConcurrency(): Map<string, { open: number; peak: number }> {
    return new Map([...this.concurrent].map(([email, c]) => [email, { ...c }]));
  }

  /** Accepted messages, oldest first. */
  get messages(): readonly AcceptedMessage[] {
    return this.accepted;
  }

  /** Resolves once at least `count` messages were accepted; rejects after `timeoutMs`. */
  waitForMessages(count: number, timeoutMs = 5000): Promise<readonly AcceptedMessage[]> {
    if (this.accepted.length >= count) return Promise.resolve(this.accepted);
    return new Promise((resolve, reject) => {
      const waiter = {
        count,
        resolve: (m: readonly AcceptedMessage[]) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`sandbox: ${count} message(s) expected, ${this.accepted.length} accepted within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  authAttempts(): readonly AuthAttempt[] {
    return this.attempts;
  }

  /** Every connection seen since start (or reset), open ones included. */
  connectionLog(): ConnectionInfo[] {
    return [...this.connections.values()].map(({ awaitingAuthAck: _a, authHiddenUntilTls: _h, ...info }) => ({ ...info }));
  }

  stats(): SubmissionStats {
    const authSuccess = this.attempts.filter((a) => a.ok).length;
    return {
      connectionsOpened: this.counters.connectionsOpened,
      connectionsOpen: this.server.connections.size,
      authAttempts: this.attempts.length,
      authSuccess,
      authFailure: this.attempts.length - authSuccess,
      messagesAccepted: this.accepted.length,
      messagesRejected: this.counters.messagesRejected,
      messagesDropped: this.counters.messagesDropped,
    };
  }

  // ---- smtp-server hooks ---------------------------------------------------------------------

  private onConnect(session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const conn = this.connectionOf(session);
    if (!conn) return callback();
    this.instrument(conn);
    this.counters.connectionsOpened++;
    const record: ConnectionRecord = {
      id: session.id,
      openedAt: new Date(),
      closedAt: null,
      secure: session.secure,
      authUser: null,
      mailCommands: 0,
      messages: 0,
      stalled: false,
      reads: [],
      rcptAddresses: [],
      awaitingAuthAck: false,
      authHiddenUntilTls: false,
    };
    this.connections.set(session.id, record);
    recordReads(conn._socket, record);
    if (this.requireTls && !session.secure) {
      // Neither provider lists AUTH before STARTTLS; a client must not rely on the pre-TLS EHLO.
      session.disabledCommands = [...this.disabledCommands, 'AUTH'];
      record.authHiddenUntilTls = true;
    }
    const rule = this.pickFault('connect', {});
    if (!rule) return callback();
    // The greeting is the fault: the callback is never called, so smtp-server never greets.
    const action = rule.action ?? 'reply';
    if (action === 'reply') {
      const { code, lines } = this.faultReply('connect', rule);
      conn.send(code, lines, false);
      conn.close();
    } else this.applyNonReply(conn, action);
  }

  private onSecure(session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const record = this.connections.get(session.id);
    const conn = this.connectionOf(session);
    if (record && conn) recordReads(conn._socket, record);
    if (record) {
      record.secure = true;
      if (record.authHiddenUntilTls) {
        session.disabledCommands = undefined;
        record.authHiddenUntilTls = false;
      }
    }
    callback();
  }

  private onAuth(
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
  ): void {
    const record = this.connections.get(session.id);
    const user = (auth.username ?? '').trim();
    const check = auth.method === 'XOAUTH2' && auth.accessToken ? this.state.checkAccessToken(auth.accessToken, user) : null;
    // Gmail requires user= to name the token's account (SPEC "On the wire"); addresses compare
    // case-insensitively as the providers do.
    // A shared mailbox cannot log in, whoever's token comes with it: Exchange's plain 535 5.7.3.
    const outcome: AuthOutcome = this.state.isSharedMailbox(user)
      ? 'shared-mailbox'
      : !check
      ? 'unknown-token'
      : check.expired
        ? 'expired'
        : check.email !== user.toLowerCase()
          ? 'user-mismatch'
          : 'ok';
    this.attempts.push({ at: new Date(), connectionId: session.id, user, ok: outcome === 'ok', outcome, secure: session.secure });
    if (outcome === 'ok' && check) {
      if (record && record.authUser === null) {
        record.authUser = check.email;
        const c = this.concurrent.get(check.email) ?? { open: 0, peak: 0 };
        c.open++;
        c.peak = Math.max(c.peak, c.open);
        this.concurrent.set(check.email, c);
      }
      return callback(null, { user: check.email });
    }
    // A shared mailbox is Exchange's: its refusal in Exchange's words, whatever this server's style.
    if (this.style === 'google' && outcome !== 'shared-mailbox') {
      // smtp-server sends this as `334 base64(JSON)` and routes the client's next line to its
      // own 535; `onCommand` answers that line instead, in Gmail's wording.
      if (record) record.awaitingAuthAck = true;
      return callback(null, { data: GOOGLE_XOAUTH2_ERROR });
    }
    const w = wording('microsoft', 535);
    callback(smtpError(535, [`${w.enhanced} ${w.text} [${session.id}.sandbox.prod.outlook.com]`]));
  }

  private onMailFrom(_address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    const record = this.connections.get(session.id);
    if (record) record.mailCommands++;
    callback();
  }

  private onData(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    callback: (err?: Error | null, message?: string) => void,
  ): void {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => {
      // Past the limit the bytes are only counted; the message will be refused anyway.
      if (!stream.sizeExceeded) chunks.push(chunk);
    });
    // A client that disconnects mid-message destroys the stream with an error: nothing to record.
    stream.on('error', () => undefined);
    stream.on('end', () => {
      const record = this.connections.get(session.id);
      if (stream.sizeExceeded) {
        this.counters.messagesRejected++;
        return callback(smtpError(552, providerReply(this.style, 552)));
      }
      const body = Buffer.concat(chunks);
      const envelope = session.envelope;
      const sender = envelope.mailFrom ? envelope.mailFrom.address : '';
      const recipients = envelope.rcptTo.map((r) => r.address);
      const keep = (): AcceptedMessage => this.record(session, body, sender, recipients, record);
      const rule = this.pickFault('data', { sender, recipients, user: userOf(session) });
      const action = rule?.action ?? 'reply';
      if (rule && action !== 'reply') {
        if (rule.keep) keep();
        else if (action === 'drop') this.counters.messagesDropped++;
        const conn = this.connectionOf(session);
        if (conn) this.applyNonReply(conn, action);
        return; // no callback: smtp-server never answers the end of DATA
      }
      if (rule) {
        const { code, lines } = this.faultReply('data', rule);
        if (code >= 400) {
          this.counters.messagesRejected++;
          return callback(smtpError(code, lines));
        }
        keep();
        return callback(null, lines.join('\n'));
      }
      // Shared mailboxes are Exchange's; the check applies whatever wording the server uses.
      const denied = this.sendAsDenied(userOf(session) ?? '', sender, body);
      if (denied) {
        this.counters.messagesRejected++;
        return callback(smtpError(554, [denied]));
      }
      const message = keep();
      callback(null, this.acceptedText(message));
    });
  }

  /**
   * Exchange checks Send As when it submits the message, so the refusal is the reply to the end
   * of DATA, not to MAIL FROM; it looks at the envelope sender and the From header alike.
   */
  private sendAsDenied(login: string, mailFrom: string, body: Buffer): string | null {
    const from = headerFrom(body);
    const address = [mailFrom, from].find((a) => a && !this.state.maySendAs(login, a));
    if (!address) return null;
    return `5.2.252 SendAsDenied; ${login} not allowed to send as ${address}; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message. [Hostname=SANDBOX.prod.outlook.com]`;
  }

  private onClose(session: SMTPServerSession): void {
    const record = this.connections.get(session.id);
    if (!record || record.closedAt) return;
    record.closedAt = new Date();
    const c = record.authUser ? this.concurrent.get(record.authUser) : undefined;
    if (c) c.open--;
  }

  // ---- command interception ------------------------------------------------------------------

  /** Wraps one connection's reply writer and command dispatcher; see ConnectionInternals. */
  private instrument(conn: ConnectionInternals): void {
    const send = conn.send.bind(conn);
    conn.send = (code, data, context) => {
      // The providers' own success texts for MAIL and RCPT (smtp-server's is "Accepted"), so a
      // relay that answers with its own text instead of passing the provider's on is caught.
      if (context === 'MAIL_FROM_OK' || context === 'RCPT_TO_OK') {
        const enhanced = context === 'MAIL_FROM_OK' ? '2.1.0' : '2.1.5';
        return send(code, this.style === 'google' ? `${enhanced} OK ${conn.id} - gsmtp` : `${enhanced} ${context === 'MAIL_FROM_OK' ? 'Sender' : 'Recipient'} OK`, false);
      }
      // Provider texts carry their enhanced code, as on the wire ("550 5.1.1 ..."); smtp-server
      // with enhanced codes on would prepend its own guess and send two. Lines that already
      // start with one are therefore sent as they are. A '\n' in such a text (only this file
      // writes one) separates the lines of a multi-line reply; every line is still sanitised
      // by smtp-server, so no client-supplied value can split a reply.
      if (context !== false && data) {
        const lines = typeof data === 'string' ? data.split('\n') : data;
        if (lines.length > 0 && lines.every((l) => ENHANCED.test(l))) {
          return send(code, lines.length === 1 ? lines[0] : lines, false);
        }
      }
      return send(code, data, context);
    };
    const onCommand = conn._onCommand.bind(conn);
    conn._onCommand = (command, callback) => this.onCommand(conn, onCommand, command, callback);
  }

  private onCommand(
    conn: ConnectionInternals,
    original: (command: Buffer, callback?: () => void) => void,
    command: Buffer,
    callback?: () => void,
  ): void {
    const next = (): void => {
      if (callback) setImmediate(callback);
    };
    const record = this.connections.get(conn.session.id);
    if (conn._nextHandler) {
      // A SASL continuation line. The only one that is ours is the acknowledgement of Gmail's
      // 334 error challenge, which Gmail answers with its two-line 535 whatever the line says.
      if (record?.awaitingAuthAck) {
        record.awaitingAuthAck = false;
        conn._nextHandler = false;
        const w = wording('google', 535);
        conn.send(
          535,
          [
            `${w.enhanced} ${w.text} For more information, go to`,
            `${w.enhanced}  https://support.google.com/mail/?p=BadCredentials ${conn.session.id} - gsmtp`,
          ],
          false,
        );
        return next();
      }
      return original(command, callback);
    }
    // Before the greeting, or during a TLS handshake, smtp-server refuses or discards the line.
    if (!conn._ready || conn._upgrading || !record) return original(command, callback);

    const line = command.toString('utf8');
    const verb = (line.split(' ')[0] ?? '').trim().toUpperCase();

    if (this.requireTls && !conn.secure && NEED_TLS.has(verb)) {
      conn.send(530, '5.7.0 Must issue a STARTTLS command first.', false);
      return next();
    }
    if (verb === 'MAIL' && this.closeAfter !== null && record.messages >= this.closeAfter) {
      // Gmail's per-connection limit: the session ends at the next MAIL; 421 makes send() close.
      const text =
        this.style === 'google'
          ? `4.7.0 Try again later, closing connection. (MAIL) ${conn.session.id} - gsmtp`
          : providerReply('microsoft', 421);
      conn.send(421, text, false);
      return next();
    }
    if (verb === 'RCPT' && record.rcptAddresses.length < 1000) record.rcptAddresses.push(commandAddress(line) ?? '');
    const point = COMMAND_POINTS[verb];
    if (point) {
      const rule = this.pickFault(point, this.commandContext(conn.session, point, line));
      if (rule) {
        const action = rule.action ?? 'reply';
        if (action !== 'reply') return this.applyNonReply(conn, action);
        if (point === 'auth') {
          this.attempts.push({
            at: new Date(),
            connectionId: conn.session.id,
            user: xoauth2User(line) ?? '',
            ok: false,
            outcome: 'fault',
            secure: conn.secure,
          });
        }
        const { code, lines } = this.faultReply(point, rule);
        conn.send(code, lines, false);
        if (rule.close && code !== 421) conn.close();
        return next();
      }
    }
    original(command, callback);
  }

  /** What a command-level rule can match on. */
  private commandContext(session: SMTPServerSession, point: SmtpFaultPoint, line: string): FaultContext {
    const envelope = session.envelope;
    const context: FaultContext = {
      recipients: envelope.rcptTo.map((r) => r.address),
      user: userOf(session),
    };
    if (envelope.mailFrom) context.sender = envelope.mailFrom.address;
    if (point === 'mail') context.sender = commandAddress(line) ?? '';
    if (point === 'rcpt') context.recipients = [commandAddress(line) ?? ''];
    if (point === 'auth') context.user = xoauth2User(line) ?? '';
    return context;
  }

  private applyNonReply(conn: ConnectionInternals, action: 'stall' | 'drop'): void {
    if (action === 'drop') {
      conn._socket.destroy();
      return;
    }
    // Stall: never answer. Marking a handler as pending keeps smtp-server's idle timeout from
    // closing the socket, so the client is left waiting as on a hung provider.
    conn._handlerPending = true;
    const record = this.connections.get(conn.session.id);
    if (record) record.stalled = true;
  }

  // ---- faults --------------------------------------------------------------------------------

  private pickFault(point: SmtpFaultPoint, context: FaultContext): SmtpFaultRule | null {
    for (const state of this.rules) {
      const rule = state.rule;
      if (rule.at !== point || !matches(rule, context)) continue;
      if (rule.times !== undefined && state.fired >= rule.times) continue;
      state.matched++;
      const n = state.matched - (rule.skip ?? 0);
      if (n <= 0) continue;
      const f = rule.fraction ?? 1;
      // Deterministic thinning: fire when floor(n·f) steps up. The epsilon absorbs binary
      // rounding (0.1·10 must count as 1).
      if (Math.floor(n * f + 1e-9) <= Math.floor((n - 1) * f + 1e-9)) continue;
      state.fired++;
      return rule;
    }
    return null;
  }

  private faultReply(point: SmtpFaultPoint, rule: SmtpFaultRule): { code: number; lines: string[] } {
    const code = rule.code ?? DEFAULT_FAULT_CODE[point];
    const w = wording(this.style, code);
    const texts = rule.text === undefined ? [w.text] : Array.isArray(rule.text) ? rule.text : [rule.text];
    const enhanced = rule.enhanced === undefined ? w.enhanced : rule.enhanced;
    const lines = texts.map((t) => (enhanced && !ENHANCED.test(t) ? `${enhanced} ${t}` : t));
    return { code, lines };
  }

  // ---- records -------------------------------------------------------------------------------

  private record(
    session: SMTPServerSession,
    body: Buffer,
    mailFrom: string,
    rcptTo: string[],
    connection: ConnectionRecord | undefined,
  ): AcceptedMessage {
    const message: AcceptedMessage = {
      id: `sbx${(++this.messageSeq).toString().padStart(6, '0')}${randomBytes(4).toString('hex')}`,
      connectionId: session.id,
      authUser: userOf(session) ?? '',
      mailFrom,
      rcptTo,
      size: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      body,
      receivedAt: new Date(),
      secure: session.secure,
    };
    this.accepted.push(message);
    if (connection) connection.messages++;
    const ready = this.waiters.filter((w) => this.accepted.length >= w.count);
    this.waiters = this.waiters.filter((w) => this.accepted.length < w.count);
    for (const waiter of ready) waiter.resolve(this.accepted);
    return message;
  }

  private acceptedText(message: AcceptedMessage): string {
    if (this.style === 'google') {
      return `2.0.0 OK  ${Math.floor(message.receivedAt.getTime() / 1000)} ${message.id} - gsmtp`;
    }
    return `2.0.0 OK <${message.id}@sandbox.prod.outlook.com> [Hostname=SANDBOX]`;
  }

  /** The smtp-server connection behind a session (see ConnectionInternals). */
  private connectionOf(session: SMTPServerSession): ConnectionInternals | undefined {
    for (const conn of this.server.connections) if (conn.session === session) return conn;
    return undefined;
  }
}

// ---- helpers -----------------------------------------------------------------------------------

/** An error smtp-server turns into a reply: `code` with the given lines (see `instrument`). */
function smtpError(code: number, lines: string[]): Error & { responseCode: number } {
  return Object.assign(new Error(lines.join('\n')), { responseCode: code });
}

function userOf(session: SMTPServerSession): string | undefined {
  return typeof session.user === 'string' ? session.user : undefined;
}

function lower(s: string | undefined): string | undefined {
  return s === undefined ? undefined : s.toLowerCase();
}

function matches(rule: SmtpFaultRule, context: FaultContext): boolean {
  if (rule.sender !== undefined && lower(context.sender) !== rule.sender.toLowerCase()) return false;
  if (rule.user !== undefined && lower(context.user) !== rule.user.toLowerCase()) return false;
  if (rule.recipient !== undefined) {
    const wanted = rule.recipient.toLowerCase();
    if (!(context.recipients ?? []).some((r) => r.toLowerCase() === wanted)) return false;
  }
  return true;
}

/** The address of `MAIL FROM:<a>` / `RCPT TO:<a>`; the relay always uses the bracketed form. */
function commandAddress(line: string): string | null {
  const m = /^\s*(?:MAIL\s+FROM|RCPT\s+TO)\s*:\s*<?([^<>\s]*)>?/i.exec(line);
  return m ? (m[1] ?? '') : null;
}

/** The user= of an `AUTH XOAUTH2 <initial response>` line, for matching; the token is not kept. */
function xoauth2User(line: string): string | null {
  const parts = line.trim().split(/\s+/);
  if ((parts[1] ?? '').toUpperCase() !== 'XOAUTH2' || !parts[2]) return null;
  const decoded = Buffer.from(parts[2], 'base64').toString('utf8');
  const m = /(?:^|\x01)user=([^\x01]*)/.exec(decoded);
  return m ? (m[1] ?? '').trim() : null;
}

function validCloseAfter(n: number | null): number | null {
  if (n !== null && !(Number.isInteger(n) && n > 0)) {
    throw new Error('sandbox submission: closeAfterMessages must be a positive integer or null');
  }
  return n;
}

const VERBS = /^(EHLO|HELO|MAIL|RCPT|DATA|RSET|NOOP|QUIT|AUTH|STARTTLS|VRFY|BDAT)\b/i;
const MAX_READS = 200;

/**
 * Records, per socket read, the verbs of the command lines it held (see ConnectionInfo.reads).
 * A listener beside smtp-server's own: it observes the bytes and changes nothing.
 */
function recordReads(socket: NodeJS.EventEmitter, record: ConnectionInfo): void {
  socket.on('data', (chunk: Buffer) => {
    if (record.reads.length >= MAX_READS) return;
    const verbs: string[] = [];
    for (const line of chunk.toString('latin1').split('\n')) {
      const m = VERBS.exec(line);
      if (m) verbs.push(m[1]!.toUpperCase());
    }
    if (verbs.length) record.reads.push(verbs);
  });
}

const POINTS = new Set<SmtpFaultPoint>(Object.keys(DEFAULT_FAULT_CODE) as SmtpFaultPoint[]);

function validateRule(rule: SmtpFaultRule): void {
  const fail = (why: string): never => {
    throw new Error(`sandbox submission fault: ${why}`);
  };
  if (!POINTS.has(rule.at)) fail(`unknown point "${String(rule.at)}"`);
  if (rule.action !== undefined && !['reply', 'stall', 'drop'].includes(rule.action)) fail('action must be reply, stall or drop');
  if (rule.code !== undefined && !(Number.isInteger(rule.code) && rule.code >= 200 && rule.code <= 599)) {
    fail('code must be an SMTP reply code (200-599)');
  }
  if (rule.enhanced !== undefined && rule.enhanced !== null && !ENHANCED.test(rule.enhanced)) {
    fail('enhanced must look like 5.1.1');
  }
  if (rule.times !== undefined && !(Number.isInteger(rule.times) && rule.times > 0)) fail('times must be a positive integer');
  if (rule.skip !== undefined && !(Number.isInteger(rule.skip) && rule.skip >= 0)) fail('skip must be an integer >= 0');
  if (rule.fraction !== undefined && !(rule.fraction > 0 && rule.fraction <= 1)) fail('fraction must be in (0, 1]');
  if (rule.keep && rule.at !== 'data') fail('keep applies only at "data"');
  if (rule.recipient !== undefined && !['rcpt', 'data', 'dataCommand'].includes(rule.at)) {
    fail('recipient applies only at rcpt, data and dataCommand');
  }
  if (rule.sender !== undefined && !['mail', 'rcpt', 'data', 'dataCommand'].includes(rule.at)) {
    fail('sender applies only at mail, rcpt, data and dataCommand');
  }
  const texts = rule.text === undefined ? [] : Array.isArray(rule.text) ? rule.text : [rule.text];
  if (texts.some((t) => /[\r\n]/.test(t))) fail('text lines must not contain CR or LF (use an array for several lines)');
}
