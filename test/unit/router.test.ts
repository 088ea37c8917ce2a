import { describe, it, expect } from 'vitest';
import { buildConfig } from '../../src/config/load.js';
import { accountFromConfig, type Account } from '../../src/routing/account.js';
import { Router, matchesSender } from '../../src/routing/router.js';
import { RelayError, toReply, type RelayErrorCode } from '../../src/errors/registry.js';
import { enhancedCode } from '../../src/smtp/reply.js';

function accounts(list: Record<string, unknown>[]): Account[] {
  const cfg = buildConfig(
    { accounts: list.map((a) => ({ provider: 'google', client_id: 'cid', refresh_token: 'rt', ...a })) },
    null,
    { env: {}, checkHost: false },
  );
  return cfg.accounts.map((a) => accountFromConfig(a, cfg.providers));
}

function routeError(fn: () => unknown): RelayError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(RelayError);
    return e as RelayError;
  }
  throw new Error('expected a RelayError, route() returned');
}

function expectRelayError(fn: () => unknown, code: RelayErrorCode, replyCode: number, enhanced: string): void {
  const err = routeError(fn);
  expect(err.code).toBe(code);
  expect(err.reply.code).toBe(replyCode);
  expect(enhancedCode(err.reply)).toBe(enhanced);
  expect(toReply(err)).toEqual(err.reply);
}

const TRUSTED = ['127.0.0.0/8', '::1/128', '10.1.0.0/16'];

describe('matchesSender', () => {
  it('matches exact addresses and *@domain patterns, not subdomains or other domains', () => {
    expect(matchesSender('a@example.com', 'a@example.com')).toBe(true);
    expect(matchesSender('a@example.com', 'b@example.com')).toBe(false);
    expect(matchesSender('*@example.com', 'anyone@example.com')).toBe(true);
    expect(matchesSender('*@example.com', 'x@sub.example.com')).toBe(false);
    expect(matchesSender('*@example.com', 'x@notexample.com')).toBe(false);
    expect(matchesSender('*@example.com', 'x@example.com.evil.org')).toBe(false);
  });
});

describe('authenticated sessions', () => {
  const [withSenders, open] = accounts([
    { email: 'box@gmail.com', password: 'pw1', senders: ['*@example.com', 'noreply@example.org'] },
    { email: 'free@gmail.com', password: 'pw2' },
  ]) as [Account, Account];
  const router = new Router([withSenders, open], TRUSTED);

  it('a MAIL FROM matching one of the senders sends through the authenticated account', () => {
    const s = { account: withSenders, remoteAddress: '198.51.100.9' };
    expect(router.route(s, 'anyone@example.com')).toBe(withSenders);
    expect(router.route(s, 'noreply@example.org')).toBe(withSenders);
    expect(router.route(s, 'Someone@EXAMPLE.com')).toBe(withSenders);
  });

  it('a MAIL FROM matching no sender is SENDER_NOT_ALLOWED 550 5.7.1', () => {
    const s = { account: withSenders, remoteAddress: '127.0.0.1' };
    expectRelayError(() => router.route(s, 'other@example.org'), 'SENDER_NOT_ALLOWED', 550, '5.7.1');
    expectRelayError(() => router.route(s, 'x@sub.example.com'), 'SENDER_NOT_ALLOWED', 550, '5.7.1');
  });

  it('the null sender is allowed to an authenticated account whatever its senders (the provider decides)', () => {
    expect(router.route({ account: withSenders, remoteAddress: '127.0.0.1' }, '')).toBe(withSenders);
  });

  it('sender domains compare case-insensitively and A-label = U-label', () => {
    const idn = new Router([{ ...withSenders, email: 'idn@example.com', senders: ['*@xn--mnchen-3ya.example'] }], []);
    const s = { account: null, remoteAddress: '10.9.9.9' };
    expect(() => idn.route({ ...s, account: idn.account('idn@example.com') }, 'info@München.example')).not.toThrow();
    expect(() => idn.route({ ...s, account: idn.account('idn@example.com') }, 'info@XN--MNCHEN-3YA.example')).not.toThrow();
  });

  it('an authenticated account never sends as another account, even from a trusted network', () => {
    // free@gmail.com has no senders, but box@... must not be able to use free@'s routing
    const s = { account: withSenders, remoteAddress: '127.0.0.1' };
    expectRelayError(() => router.route(s, 'free@gmail.com'), 'SENDER_NOT_ALLOWED', 550, '5.7.1');
  });

  it('an account without senders may use any MAIL FROM (the provider decides)', () => {
    const s = { account: open, remoteAddress: '198.51.100.9' };
    expect(router.route(s, 'whoever@anywhere.test')).toBe(open);
    expect(router.route(s, '')).toBe(open);
  });
});

describe('trusted unauthenticated sessions', () => {
  // The domain account is configured first; the exact address must still win.
  const [domain, exact, other] = accounts([
    { email: 'domain@gmail.com', senders: ['*@example.com'] },
    { email: 'exact@gmail.com', senders: ['ceo@example.com'] },
    { email: 'other@contoso.com', senders: ['*@contoso.com'] },
  ]) as [Account, Account, Account];
  const router = new Router([domain, exact, other], TRUSTED);
  const trusted = { account: null, remoteAddress: '127.0.0.1' };

  it('an exact sender wins over a *@domain pattern configured earlier', () => {
    expect(router.route(trusted, 'ceo@example.com')).toBe(exact);
    expect(router.route(trusted, 'CEO@Example.com')).toBe(exact);
    expect(router.route(trusted, 'staff@example.com')).toBe(domain);
    expect(router.route(trusted, 'x@contoso.com')).toBe(other);
  });

  it('a MAIL FROM no account sends as is NO_ROUTE 550 5.7.1', () => {
    expectRelayError(() => router.route(trusted, 'x@unknown.test'), 'NO_ROUTE', 550, '5.7.1');
    expectRelayError(() => router.route(trusted, 'x@sub.example.com'), 'NO_ROUTE', 550, '5.7.1');
    expectRelayError(() => router.route(trusted, ''), 'NO_ROUTE', 550, '5.7.1');
  });

  it('the account mailbox itself is not a sender unless listed', () => {
    expectRelayError(() => router.route(trusted, 'exact@gmail.com'), 'NO_ROUTE', 550, '5.7.1');
  });

  it('among two accounts claiming the same exact sender the first configured wins', () => {
    const [a, b] = accounts([
      { email: 'a@gmail.com', senders: ['same@example.com'] },
      { email: 'b@gmail.com', senders: ['same@example.com'] },
    ]) as [Account, Account];
    expect(new Router([a, b], TRUSTED).route(trusted, 'same@example.com')).toBe(a);
  });

  it('gives the same answers when asked again (pools are remembered per sender as written, trust still per client)', () => {
    const senders: Array<[string, Account | null]> = [
      ['ceo@example.com', exact],
      ['staff@example.com', domain],
      ['CEO@EXAMPLE.COM', exact],
      ['x@unknown.test', null],
      ['x@contoso.com', other],
      ['ceo@xn--mnchen-3ya.example', null],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [from, want] of senders) {
        if (want) expect(router.route(trusted, from)).toBe(want);
        else expectRelayError(() => router.route(trusted, from), 'NO_ROUTE', 550, '5.7.1');
        expectRelayError(() => router.route({ account: null, remoteAddress: '203.0.113.5' }, from), 'AUTH_REQUIRED', 530, '5.7.0');
      }
    }
  });

  it('trusted networks: CIDR blocks, IPv6 loopback and IPv4-mapped IPv6 addresses', () => {
    expect(router.isTrusted('127.0.0.1')).toBe(true);
    expect(router.isTrusted('127.255.0.9')).toBe(true);
    expect(router.isTrusted('::ffff:127.0.0.1')).toBe(true);
    expect(router.isTrusted('::ffff:10.1.200.3')).toBe(true);
    expect(router.isTrusted('::1')).toBe(true);
    expect(router.isTrusted('10.2.0.1')).toBe(false);
    expect(router.isTrusted('::ffff:10.2.0.1')).toBe(false);
    expect(router.isTrusted('::2')).toBe(false);
    expect(router.isTrusted('not-an-ip')).toBe(false);
    expect(router.route({ account: null, remoteAddress: '::ffff:127.0.0.1' }, 'ceo@example.com')).toBe(exact);
  });
});

describe('untrusted unauthenticated sessions', () => {
  const [acct] = accounts([{ email: 'domain@gmail.com', senders: ['*@example.com'] }]) as [Account];
  const router = new Router([acct], ['127.0.0.0/8']);

  it('get AUTH_REQUIRED 530 5.7.0 even for a routable MAIL FROM: the relay is never open', () => {
    expectRelayError(() => router.route({ account: null, remoteAddress: '203.0.113.5' }, 'a@example.com'), 'AUTH_REQUIRED', 530, '5.7.0');
    expectRelayError(() => router.route({ account: null, remoteAddress: '::ffff:203.0.113.5' }, 'a@example.com'), 'AUTH_REQUIRED', 530, '5.7.0');
    expectRelayError(() => router.route({ account: null, remoteAddress: '2001:db8::1' }, 'a@example.com'), 'AUTH_REQUIRED', 530, '5.7.0');
  });

  it('with no trusted networks at all, even localhost must authenticate', () => {
    const closed = new Router([acct], []);
    expectRelayError(() => closed.route({ account: null, remoteAddress: '127.0.0.1' }, 'a@example.com'), 'AUTH_REQUIRED', 530, '5.7.0');
  });
});

describe('authenticate', () => {
  const [withPw, noPw] = accounts([
    { email: 'box@gmail.com', password: 'correct horse' },
    { email: 'nopw@gmail.com' },
  ]) as [Account, Account];
  const router = new Router([withPw, noPw], TRUSTED);

  it('the right password returns the account; the username is case-insensitive', () => {
    expect(router.authenticate('box@gmail.com', 'correct horse')).toBe(withPw);
    expect(router.authenticate('Box@GMAIL.com', 'correct horse')).toBe(withPw);
  });

  it('a wrong password, an unknown user or an account without password gives null', () => {
    expect(router.authenticate('box@gmail.com', 'wrong')).toBeNull();
    expect(router.authenticate('box@gmail.com', 'Correct horse')).toBeNull();
    expect(router.authenticate('box@gmail.com', '')).toBeNull();
    expect(router.authenticate('stranger@gmail.com', 'correct horse')).toBeNull();
    expect(router.authenticate('nopw@gmail.com', '')).toBeNull();
    expect(router.authenticate('nopw@gmail.com', '\0no-password')).toBeNull();
    expect(router.authenticate('nopw@gmail.com', 'correct horse')).toBeNull();
  });

  it('account() looks up by lower-case email', () => {
    expect(router.account('box@gmail.com')).toBe(withPw);
    expect(router.account('nobody@gmail.com')).toBeNull();
  });
});
