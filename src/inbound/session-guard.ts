// Per-session bounds, with one timer per connection:
//  - errors: a client that keeps getting 5xx (syntax, sequence, refused AUTH or sender) is probing
//    or broken; after `maxErrors` without delivering a message its session ends with 421
//    (Postfix's smtpd_hard_error_limit). A provider's reply passed through is not the client's error.
//  - deadlines, not inactivity timers (a client dripping one byte at a time would hold a session,
//    and inside DATA a pooled upstream connection, for ever): from our last reply, the next
//    complete command must follow within `idleTimeoutMs`, a whole message within `dataTimeoutMs`
//    of the 354. While the reply is ours to give, the client owes nothing and no deadline runs.
//  - a session from outside trusted_networks must have authenticated by `authBy` (fixed at
//    connect: NOOP, RSET and HELP do not move it).
// The timer is re-armed only when it fires early or a deadline moves earlier, so refreshing a
// deadline on every reply costs an assignment, not a clearTimeout/setTimeout pair.

export interface SessionLimits {
  maxErrors: number;
  idleTimeoutMs: number;
  dataTimeoutMs: number;
}

export type Expiry = 'command' | 'message' | 'auth';

export class SessionGuard {
  private errors = 0;
  private deadline = Infinity;
  private what: Expiry = 'command';
  private authBy: number;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;

  constructor(
    private readonly limits: SessionLimits,
    authDeadlineMs: number | null,
    private readonly onExpire: (what: Expiry) => void,
  ) {
    this.authBy = authDeadlineMs === null ? Infinity : Date.now() + authDeadlineMs;
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

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    this.authBy = Infinity;
    this.deadline = Infinity;
  }

  private set(at: number): void {
    this.deadline = at;
    this.arm();
  }

  private arm(): void {
    const at = Math.min(this.deadline, this.authBy);
    if (at === Infinity || at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.fire, Math.max(1, at - Date.now()));
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    const now = Date.now();
    if (now >= this.authBy) return this.onExpire('auth');
    if (now >= this.deadline) return this.onExpire(this.what);
    this.arm();
  };
}
