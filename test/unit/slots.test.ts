// Inbound slots (issue 10 item 3): strangers (untrusted, not authenticated) never hold the
// reserved share nor more than perAddress per address; trusted clients only meet the total.
import { describe, expect, it } from 'vitest';
import { Slots } from '../../src/inbound/slots.js';

describe('Slots', () => {
  it('caps strangers per address and to max - reserved; trusted clients get the rest', () => {
    const slots = new Slots({ max: 6, reserved: 2, perAddress: 3 });
    expect([1, 2, 3, 4].map(() => slots.enter('10.0.0.1', false))).toEqual(['ok', 'ok', 'ok', 'address']);
    expect(slots.enter('10.0.0.2', false)).toBe('ok');
    expect(slots.enter('10.0.0.3', false)).toBe('strangers');
    expect(slots.enter('127.0.0.1', true)).toBe('ok');
    expect(slots.enter('127.0.0.1', true)).toBe('ok');
    expect(slots.enter('127.0.0.1', true)).toBe('full');
    expect(slots.count).toBe(6);
  });

  it('a stranger that authenticates frees a strangers\' slot; leaving gives back the right counts', () => {
    const slots = new Slots({ max: 10, reserved: 8, perAddress: 5 });
    expect(slots.enter('10.0.0.1', false)).toBe('ok');
    expect(slots.enter('10.0.0.1', false)).toBe('ok');
    expect(slots.enter('10.0.0.1', false)).toBe('strangers');
    slots.authenticated();
    expect(slots.enter('10.0.0.1', false)).toBe('ok');
    slots.leave('10.0.0.1', true, true);
    slots.leave('10.0.0.1', true, false);
    slots.leave('10.0.0.1', true, false);
    expect(slots.count).toBe(0);
    expect([1, 2, 3].map(() => slots.enter('10.0.0.9', false))).toEqual(['ok', 'ok', 'strangers']);
  });

  it('IPv6 strangers are counted per /64', () => {
    const slots = new Slots({ max: 10, reserved: 0, perAddress: 2 });
    expect(slots.enter('2001:db8:1:2::1', false)).toBe('ok');
    expect(slots.enter('2001:db8:1:2::ffff', false)).toBe('ok');
    expect(slots.enter('2001:db8:1:2:aaaa::1', false)).toBe('address');
    expect(slots.enter('2001:db8:1:3::1', false)).toBe('ok');
  });
});
