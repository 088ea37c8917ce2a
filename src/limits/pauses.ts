// Accounts a provider said are over their quota, left alone until a time. Kept in memory for the
// message path, written to the store so a restart does not forget them, and read back from it
// every second so every instance sharing the store pauses the account together.
import type { Logger } from 'pino';
import type { AccountPause, Store } from '../store/store.js';

const SYNC_INTERVAL_MS = 1_000;

export class AccountPauses {
  private readonly local = new Map<string, AccountPause>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  async start(): Promise<void> {
    await this.sync();
    this.timer = setInterval(() => void this.sync(), SYNC_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** The pause in force for the account, if any. */
  get(email: string): AccountPause | null {
    const p = this.local.get(email);
    return p && p.until > this.now() ? p : null;
  }

  pause(email: string, ms: number, reason: string): AccountPause {
    const pause = { until: this.now() + ms, reason };
    const current = this.get(email);
    if (current && current.until >= pause.until) return current;
    this.local.set(email, pause);
    this.logger.warn({ event: 'account_paused', account: email, reason, pause_s: Math.round(ms / 1000) }, 'account paused: the provider says it is over its quota');
    this.store.savePause(email, pause).catch((e: Error) => {
      this.logger.warn({ event: 'store_error', account: email, error: e.message }, 'could not share the pause; it holds on this instance');
    });
    return pause;
  }

  private async sync(): Promise<void> {
    let shared: Map<string, AccountPause>;
    try {
      shared = await this.store.loadPauses();
    } catch {
      return; // the store logs its outage once; local pauses keep holding
    }
    for (const [email, p] of shared) {
      if ((this.get(email)?.until ?? 0) < p.until) this.local.set(email, p);
    }
  }
}
