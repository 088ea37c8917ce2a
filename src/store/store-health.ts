// Whether the store takes writes. A full disk or an I/O error must not stop the relay (tokens
// live in memory, mail flows), but it must be seen: /readyz, the accounts and the log say so,
// and it clears by itself at the next write that succeeds.
export interface StoreHealthState {
  failing: boolean;
  /** The last write error's message (an SQLite or Redis error: no secret in it). */
  error: string | null;
  /** Epoch ms of the first failure of the current run of failures. */
  since: number | null;
}

export class StoreHealth {
  private current: StoreHealthState = { failing: false, error: null, since: null };
  private readonly listeners = new Set<(state: StoreHealthState) => void>();

  get state(): StoreHealthState {
    return this.current;
  }

  get failing(): boolean {
    return this.current.failing;
  }

  /** Called on every change between failing and working (for the log line). */
  onChange(listener: (state: StoreHealthState) => void): void {
    this.listeners.add(listener);
  }

  failed(e: unknown, now = Date.now()): void {
    const was = this.current.failing;
    this.current = { failing: true, error: (e as Error).message ?? String(e), since: this.current.since ?? now };
    if (!was) this.emit();
  }

  succeeded(): void {
    if (!this.current.failing) return;
    this.current = { failing: false, error: null, since: null };
    this.emit();
  }

  private emit(): void {
    for (const l of this.listeners) {
      try {
        l(this.current);
      } catch {
        // A listener's fault is not the store's.
      }
    }
  }
}
