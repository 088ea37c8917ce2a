// Password guessing over AUTH PLAIN/LOGIN (RFC 4954 §15 asks servers to make it slow). Per client
// address: every failed attempt has its reply delayed a little longer than the one before
// (tarpit), and after `failuresBeforeLockout` failures within `lockoutMs` the address may not
// try AUTH at all until that window has passed — not even with the right password, so the
// lockout caps the guesses an address gets per window whatever it does in parallel.
//
// Other clients are not slowed: the delay is a timer on the one reply, never a wait on the event
// loop, and the counts are per address. Failures are counted the moment the password check fails
// (synchronously), so parallel connections cannot all slip in before the first one is counted.
import { isIPv6 } from 'node:net';

export interface AuthGuardOptions {
  failuresBeforeLockout: number;
  lockoutMs: number;
  /** Reply delay per failure so far from the address; 0 disables the tarpit. */
  failureDelayMs: number;
}

interface AddressRecord {
  failures: number;
  /** Start of the window the failures are counted in. */
  since: number;
  lockedUntil: number;
}

/** Beyond this many addresses the oldest records are forgotten, so a botnet cannot grow the map without bound. */
const MAX_TRACKED = 10_000;

/**
 * IPv6 clients usually own a whole /64, so that is the unit an attacker cannot cheaply rotate
 * within; IPv4 (also IPv4-mapped) addresses count one by one.
 */
export function addressKey(address: string): string {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (!isIPv6(v4)) return v4;
  const [head = '', tail = ''] = v4.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = v4.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':') + '::/64';
}

export class AuthGuard {
  private readonly records = new Map<string, AddressRecord>();

  constructor(
    private readonly opts: AuthGuardOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether AUTH from this address is refused right now. */
  lockedOut(address: string): boolean {
    const r = this.current(addressKey(address));
    return r !== null && r.lockedUntil > this.now();
  }

  /** Counts a failed attempt; returns how long to hold its reply back and whether the address is now locked out. */
  failure(address: string): { delayMs: number; lockedOut: boolean } {
    const key = addressKey(address);
    const now = this.now();
    const r = this.current(key) ?? { failures: 0, since: now, lockedUntil: 0 };
    r.failures++;
    if (r.failures >= this.opts.failuresBeforeLockout) r.lockedUntil = now + this.opts.lockoutMs;
    // Re-inserted so the map's order is least recently failed first, for the eviction below.
    this.records.delete(key);
    this.records.set(key, r);
    if (this.records.size > MAX_TRACKED) this.records.delete(this.records.keys().next().value!);
    return { delayMs: this.opts.failureDelayMs * r.failures, lockedOut: r.lockedUntil > now };
  }

  /** The address's record, unless its window and lockout are over (then it is forgotten). */
  private current(key: string): AddressRecord | null {
    const r = this.records.get(key);
    if (!r) return null;
    const now = this.now();
    if (now - r.since > this.opts.lockoutMs && r.lockedUntil <= now) {
      this.records.delete(key);
      return null;
    }
    return r;
  }
}
