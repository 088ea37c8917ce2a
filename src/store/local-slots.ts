// The embedded store's connection slots: the same protocol as the fleet's (src/store/store.ts
// ConnectionSlots), counted in this process, so the pool runs one code path on either store.
import type { ConnectionSlots } from './store.js';

export class LocalConnectionSlots implements ConnectionSlots {
  /** Holder → expiry (epoch ms), by mailbox. */
  private readonly held = new Map<string, Map<string, number>>();

  constructor(private readonly now: () => number = Date.now) {}

  take(email: string, holder: string, cap: number, ttlMs: number): Promise<boolean> {
    const slots = this.live(email);
    if (!slots.has(holder) && slots.size >= cap) return Promise.resolve(false);
    slots.set(holder, this.now() + ttlMs);
    return Promise.resolve(true);
  }

  renew(email: string, holders: readonly string[], cap: number, ttlMs: number): Promise<string[]> {
    const slots = this.live(email);
    const lost: string[] = [];
    for (const h of holders) {
      if (slots.has(h) || slots.size < cap) slots.set(h, this.now() + ttlMs);
      else lost.push(h);
    }
    return Promise.resolve(lost);
  }

  give(email: string, holder: string): Promise<void> {
    const slots = this.held.get(email);
    slots?.delete(holder);
    if (slots?.size === 0) this.held.delete(email);
    return Promise.resolve();
  }

  // One process: its pool already hands a freed connection to its own waiters.
  want(): void {}
  onWanted(): void {}

  private live(email: string): Map<string, number> {
    let slots = this.held.get(email);
    if (!slots) this.held.set(email, (slots = new Map()));
    const now = this.now();
    for (const [h, until] of slots) if (until <= now) slots.delete(h);
    return slots;
  }
}
