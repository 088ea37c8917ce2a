// Which accounts the relay keeps warm: a token refreshed ahead of expiry and min_idle
// authenticated connections open. Warmth costs a token request an hour and idle TLS sessions
// the providers cut after a while; with thousands of mailboxes most of them sending once a week,
// that is thousands of token requests and connections for nothing (issue 22). So beyond
// `warm.all_up_to` accounts only those that sent within `warm.active_within_ms`, and the pinned
// ones, are warm. A cold account's first message waits for one token request and one login
// (the documented exception to "no token on a message's path"), and it is warm from then on.
//
// Activity is what this process saw, seeded at start-up from the store's token records: a warm
// account's token is kept fresh, a cold one's is not, so the time its stored token was obtained
// says when it was last warm (to within a token's life).

export interface WarmthSettings {
  all_up_to: number;
  active_within_ms: number;
  pinned: readonly string[];
}

export class Warmth {
  private readonly lastActive = new Map<string, number>();
  private readonly pinned: ReadonlySet<string>;
  private accountCount = 0;

  constructor(
    private readonly settings: WarmthSettings,
    private readonly now: () => number = Date.now,
  ) {
    this.pinned = new Set(settings.pinned.map((e) => e.toLowerCase()));
  }

  /** The relay's account count: at most `all_up_to`, every account is warm. */
  setAccountCount(n: number): void {
    this.accountCount = n;
  }

  /** Whether every account is warm whatever its activity (a small relay). */
  get allWarm(): boolean {
    return this.accountCount <= this.settings.all_up_to;
  }

  isWarm(email: string): boolean {
    if (this.allWarm || this.pinned.has(email)) return true;
    const at = this.lastActive.get(email);
    return at !== undefined && this.now() - at <= this.settings.active_within_ms;
  }

  /**
   * The account was active at `at` (a message routed to it, or a token obtained then). Returns
   * true when this made a cold account warm: the caller restores its ready connections.
   */
  seen(email: string, at = this.now()): boolean {
    const before = this.lastActive.get(email);
    if (before !== undefined && before >= at) return false;
    const wasWarm = this.isWarm(email);
    this.lastActive.set(email, at);
    return !wasWarm && this.isWarm(email);
  }

  forget(email: string): void {
    this.lastActive.delete(email);
  }
}
