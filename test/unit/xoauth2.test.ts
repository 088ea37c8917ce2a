import { describe, expect, it } from 'vitest';
import { xoauth2String } from '../../src/upstream/xoauth2.js';

describe('xoauth2String', () => {
  it('is base64("user=" user "\\x01auth=Bearer " token "\\x01\\x01")', () => {
    const s = xoauth2String('someuser@example.com', 'ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg');
    expect(s).toBe(
      // The example from Google's XOAUTH2 protocol documentation.
      'dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==',
    );
    expect(Buffer.from(s, 'base64').toString()).toBe(
      'user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01',
    );
  });

  it('encodes a non-ASCII user as UTF-8', () => {
    expect(Buffer.from(xoauth2String('jörg@example.de', 't'), 'base64').toString('utf8')).toBe(
      'user=jörg@example.de\x01auth=Bearer t\x01\x01',
    );
  });

  it('refuses control characters (field or line injection) without echoing the token', () => {
    expect(() => xoauth2String('a@b\x01auth=Bearer x', 'tok')).toThrow(/user/);
    expect(() => xoauth2String('a@b', 'secret-token\r\nQUIT')).toThrow(/access token/);
    expect(() => xoauth2String('a@b', 'secret-token\r\nQUIT')).not.toThrow(/secret-token/);
    expect(() => xoauth2String('', 'tok')).toThrow(TypeError);
    expect(() => xoauth2String('a@b', '')).toThrow(TypeError);
  });
});
