// Per-session bounds that smtp-server does not enforce by itself:
//  - errors: a client that keeps getting 5xx (syntax, sequence, refused AUTH or sender) is probing
//    or broken; after `maxErrors` without delivering a message its session ends with 421
//    (Postfix's smtpd_hard_error_limit). A provider's reply passed through is not the client's error.
//  - deadlines: smtp-server's idle timeout is an inactivity timer that every received byte resets,
//    so a client dripping one byte at a time holds a session — and, inside DATA, a pooled upstream
//    connection of the account — for ever (slowloris). Here the clock starts at our last reply:
//    the next complete command must follow within `idleTimeoutMs`, a whole message within
//    `dataTimeoutMs` of the 354. While the reply is ours to give (a hook or the provider working),
//    the client owes nothing and no deadline runs.
import type { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

/**
 * The SMTPConnection state read here (public members of smtp-server 3.21's typings, though
 * underscored): whether a command handler is still working, whether a message is being received
 * (`_dataStream`, with the parser still in data mode) and whether the session is already ending.
 */
export type GuardedConnection = Pick<SMTPConnection, '_handlerPending' | '_dataStream' | '_parser' | '_closing' | 'session'>;

export interface SessionLimits {
  maxErrors: number;
  idleTimeoutMs: number;
  dataTimeoutMs: number;
}

/** What the client is late with: its next command, or the rest of a message. */
export type Overdue = 'command' | 'message';

export class SessionGuard {
  private errors = 0;
  private lastReplyAt: number;

  constructor(
    private readonly limits: SessionLimits,
    now: number,
  ) {
    this.lastReplyAt = now;
  }

  /**
   * Accounts for one reply sent. `clientError`: a 5xx the relay or the protocol layer decided;
   * `delivered`: a 250 to the end of DATA, which forgives the errors before it. True when this
   * reply exhausted the session's allowance of errors.
   */
  replied(now: number, clientError: boolean, delivered: boolean): boolean {
    this.lastReplyAt = now;
    if (delivered) this.errors = 0;
    return clientError && ++this.errors >= this.limits.maxErrors;
  }

  /** Whether the client has missed its deadline: it owes us a command or a message and is late. */
  overdue(c: GuardedConnection, now: number): Overdue | null {
    if (c._closing || c._handlerPending) return null;
    if (c._dataStream) {
      if (c._parser && !c._parser._dataMode) return null; // the message is in: the reply is ours to give
      return now - this.lastReplyAt > this.limits.dataTimeoutMs ? 'message' : null;
    }
    return now - this.lastReplyAt > this.limits.idleTimeoutMs ? 'command' : null;
  }

  /** Whether the session is inside a transaction (or a command is being worked on): a graceful stop lets it finish. */
  static busy(c: GuardedConnection): boolean {
    return c._handlerPending || !!c._dataStream || !!c.session.envelope?.mailFrom;
  }
}
