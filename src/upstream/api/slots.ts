// How many messages of one account are at the API at once: its max_connections, as with SMTP
// (Graph allows 4 concurrent requests per mailbox and app; Gmail throttles bursts per user). A
// message waits its turn in FIFO order for upstream.acquire_timeout_ms, then gets 451 4.4.5.
import { RelayError } from '../../errors/registry.js';

export class Slots {
  private inUse = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(
    private readonly name: string,
    private readonly max: number,
  ) {}

  /** Resolves with the function that gives the slot back. */
  async acquire(timeoutMs: number): Promise<() => void> {
    if (this.inUse < this.max) {
      this.inUse++;
      return this.releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new RelayError('POOL_BUSY', `${this.name}: ${this.max} messages at the API for ${timeoutMs} ms`, { notSent: true }));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
    return this.releaser();
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      // The slot passes straight to the next waiter; inUse does not change.
      if (next) next();
      else this.inUse--;
    };
  }
}
