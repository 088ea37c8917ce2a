// Who may hold an inbound connection (issue 10 item 3): max_connections in all; of those,
// `reserved` are never held by sessions from outside trusted_networks that have not
// authenticated, and one such address (an IPv6 /64) holds at most `perAddress`. Trusted
// addresses are not capped per address: they are the operator's own MTAs. Together with the
// authentication deadline (SessionGuard) a crowd of idle strangers cannot keep the MTA out.
import { addressKey } from './auth-guard.js';

export interface SlotLimits {
  max: number;
  reserved: number;
  perAddress: number;
}

export type Admission = 'ok' | 'full' | 'address' | 'strangers';

export class Slots {
  private total = 0;
  /** Untrusted, unauthenticated sessions. */
  private strangers = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(private readonly limits: SlotLimits) {}

  get count(): number {
    return this.total;
  }

  /** Takes a slot, or says why not. A stranger's slot must be given back with leave(…, true). */
  enter(address: string, trusted: boolean): Admission {
    if (this.total >= this.limits.max) return 'full';
    if (!trusted) {
      const key = addressKey(address);
      const held = this.byAddress.get(key) ?? 0;
      if (held >= this.limits.perAddress) return 'address';
      if (this.strangers >= Math.max(0, this.limits.max - this.limits.reserved)) return 'strangers';
      this.byAddress.set(key, held + 1);
      this.strangers++;
    }
    this.total++;
    return 'ok';
  }

  /** A stranger authenticated: its slot no longer counts against the strangers' share. */
  authenticated(): void {
    this.strangers--;
  }

  /** `stranger`: the session entered untrusted (whether or not it authenticated since). */
  leave(address: string, stranger: boolean, authenticated: boolean): void {
    this.total--;
    if (!stranger) return;
    if (!authenticated) this.strangers--;
    const key = addressKey(address);
    const held = (this.byAddress.get(key) ?? 1) - 1;
    if (held <= 0) this.byAddress.delete(key);
    else this.byAddress.set(key, held);
  }
}
