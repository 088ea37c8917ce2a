// Which accounts are kept warm (src/relay/warmth.ts): all of a small relay; of a large one the
// pinned and those active within the window, which go cold again when it has passed.
import { describe, expect, it } from 'vitest';
import { Warmth } from '../../src/relay/warmth.js';

const HOUR = 3_600_000;

describe('Warmth', () => {
  const make = () => {
    let now = 1_000 * HOUR;
    const w = new Warmth({ all_up_to: 2, active_within_ms: 24 * HOUR, pinned: ['Pinned@Example.com'] }, () => now);
    return { w, advance: (ms: number) => (now += ms), at: () => now };
  };

  it('keeps every account warm while there are at most all_up_to', () => {
    const { w } = make();
    w.setAccountCount(2);
    expect(w.allWarm).toBe(true);
    expect(w.isWarm('never@example.com')).toBe(true);
    w.setAccountCount(3);
    expect(w.isWarm('never@example.com')).toBe(false);
  });

  it('beyond it: pinned always, others from their activity until the window has passed', () => {
    const { w, advance } = make();
    w.setAccountCount(3);
    expect(w.isWarm('pinned@example.com')).toBe(true);
    expect(w.seen('a@example.com')).toBe(true); // cold → warm: the caller opens its connections
    expect(w.seen('a@example.com')).toBe(false);
    advance(24 * HOUR);
    expect(w.isWarm('a@example.com')).toBe(true);
    advance(1);
    expect(w.isWarm('a@example.com')).toBe(false);
    expect(w.seen('a@example.com')).toBe(true);
  });

  it('takes activity seeded from a stored token, and an older one changes nothing', () => {
    const { w, at } = make();
    w.setAccountCount(3);
    expect(w.seen('b@example.com', at() - 25 * HOUR)).toBe(false);
    expect(w.isWarm('b@example.com')).toBe(false);
    expect(w.seen('b@example.com', at() - HOUR)).toBe(true);
    expect(w.seen('b@example.com', at() - 2 * HOUR)).toBe(false);
    expect(w.isWarm('b@example.com')).toBe(true);
    w.forget('b@example.com');
    expect(w.isWarm('b@example.com')).toBe(false);
  });
});
