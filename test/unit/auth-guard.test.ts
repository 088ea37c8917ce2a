import { describe, expect, it } from 'vitest';
import { AuthGuard } from '../../src/inbound/auth-guard.js';

function guard(opts = { failuresBeforeLockout: 3, lockoutMs: 1_000, failureDelayMs: 100 }) {
  let now = 0;
  const g = new AuthGuard(opts, () => now);
  return { g, advance: (ms: number) => (now += ms) };
}

describe('AuthGuard', () => {
  it('delays each failure a step more, locks out at the limit, and forgets after the lockout', () => {
    const { g, advance } = guard();
    expect(g.failure('192.0.2.1')).toEqual({ delayMs: 100, lockedOut: false });
    expect(g.failure('192.0.2.1')).toEqual({ delayMs: 200, lockedOut: false });
    expect(g.lockedOut('192.0.2.1')).toBe(false);
    expect(g.failure('192.0.2.1')).toEqual({ delayMs: 300, lockedOut: true });
    expect(g.lockedOut('192.0.2.1')).toBe(true);
    expect(g.lockedOut('192.0.2.2')).toBe(false);
    advance(999);
    expect(g.lockedOut('192.0.2.1')).toBe(true);
    advance(2);
    expect(g.lockedOut('192.0.2.1')).toBe(false);
    expect(g.failure('192.0.2.1')).toEqual({ delayMs: 100, lockedOut: false });
  });

  it('counts failures within one window only', () => {
    const { g, advance } = guard();
    g.failure('192.0.2.1');
    g.failure('192.0.2.1');
    advance(1_001);
    expect(g.failure('192.0.2.1').lockedOut).toBe(false);
  });

  it('an IPv4-mapped address is its IPv4 address; an IPv6 /64 is one address', () => {
    const { g } = guard();
    g.failure('::ffff:192.0.2.1');
    g.failure('192.0.2.1');
    g.failure('2001:db8:1:2::1');
    g.failure('2001:db8:1:2:ffff::9');
    expect(g.failure('2001:0db8:0001:0002:0:0:0:42').lockedOut).toBe(true);
    expect(g.lockedOut('2001:db8:1:3::1')).toBe(false);
    expect(g.failure('192.0.2.1').lockedOut).toBe(true);
  });
});
