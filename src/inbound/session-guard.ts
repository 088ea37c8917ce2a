// Per-session bounds, with one timer per connection:
//  - errors: a client that keeps getting 5xx (syntax, sequence, refused AUTH or sender) is probing
//    or broken; after `maxErrors` without delivering a message its session ends with 421
//    (Postfix's smtpd_hard_error_limit). A provider's reply passed through is not the client's error.
//  - deadlines, not inactivity timers (a client dripping one byte at a time would hold a session,
//    and inside DATA a pooled upstream connection, for ever): from our last reply, the next
//    complete command must follow within `idleTimeoutMs`, a whole message within `dataTimeoutMs`
//    of the 354. While the reply is ours to give, the client owes nothing and no deadline runs,
//    except that a MAIL must be answered within `mailReplyTimeoutMs` (the session then says 451).
//  - a session from outside trusted_networks must have authenticated by `authBy` (fixed at
//    connect: NOOP, RSET and HELP do not move it).
// Moving a deadline costs an assignment, never a timer: the one timer fires at the earliest
// deadline or `step` ms after it was armed, whichever is first, and re-arms itself from there.
// `step` is the shortest of the limits, so no deadline set after the timer was armed can fall
// before it fires. (Re-arming whenever a deadline moved earlier made a clearTimeout/setTimeout
// pair at every MAIL.)

export interface SessionLimits {
  maxErrors: number;
  idleTimeoutMs: number;
  dataTimeoutMs: number;
  mailReplyTimeoutMs: number;
}

export type Expiry = 'command' | 'message' | 'auth' | 'mail';

export class SessionGuard {
  private errors = 0;
  private deadline = Infinity;
  private what: Expiry = 'command';
  private authBy: number;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly step: number;

  constructor(
    private readonly limits: SessionLimits,
    authDeadlineMs: number | null,
    private readonly onExpire: (what: Expiry) => void,
  ) {
    this.authBy = authDeadlineMs === null ? Infinity : Date.now() + authDeadlineMs;
    this.step = Math.max(1, Math.min(limits.idleTimeoutMs, limits.dataTimeoutMs, limits.mailReplyTimeoutMs, authDeadlineMs ?? Infinity));
    this.arm();
  }

  /** A 5xx the relay decided; true when the session's allowance is spent. */
  error(): boolean {
    return ++this.errors >= this.limits.maxErrors;
  }

  /** A message delivered forgives the errors before it. */
  delivered(): void {
    this.errors = 0;
  }

  authenticated(): void {
    this.authBy = Infinity;
  }

  /** Our reply is out: the client owes its next command (or, after 354, the message). */
  waitFor(what: 'command' | 'message'): void {
    this.what = what;
    this.set(Date.now() + (what === 'message' ? this.limits.dataTimeoutMs : this.limits.idleTimeoutMs));
  }

  /** The reply is ours to give: no deadline but the authentication one. */
  ours(): void {
    this.deadline = Infinity;
  }

  /** A MAIL is being opened upstream: its reply is ours, within mailReplyTimeoutMs. */
  opening(): void {
    this.what = 'mail';
    this.set(Date.now() + this.limits.mailReplyTimeoutMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private set(at: number): void {
    this.deadline = at;
    this.arm();
  }

  private arm(): void {
    if (this.timer || this.stopped) return;
    const now = Date.now();
    this.timer = setTimeout(this.fire, Math.max(1, Math.min(this.deadline, this.authBy, now + this.step) - now));
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = null;
    const now = Date.now();
    // Each deadline expires once: cleared before the session hears of it.
    if (now >= this.authBy) {
      this.authBy = Infinity;
      this.onExpire('auth');
    } else if (now >= this.deadline) {
      this.deadline = Infinity;
      this.onExpire(this.what);
    }
    this.arm();
  };
}
