// The health board's pass over every account (issue 22): most accounts of a large relay have
// nothing to report and are told apart by a few lookups, sharing one health object per state;
// the others go through their findings. Whatever the path, the pass must say what of() says.
import { describe, expect, it } from 'vitest';
import { AccountHealthBoard } from '../../src/admin/health.js';
import type { Relay } from '../../src/relay/relay.js';
import type { Account } from '../../src/routing/account.js';
import type { Store } from '../../src/store/store.js';
import { TokenGrantError } from '../../src/tokens/grant.js';

const NOW = 1_800_000_000_000;

interface Situation {
  /** A usable token is cached. */
  token?: boolean;
  /** The token cache's own state: pending (never fetched), healthy (fetched once), or a failure. */
  tokenState?: 'pending' | 'healthy' | TokenGrantError;
  warm?: boolean;
  openFailure?: Error;
  paused?: boolean;
  atLimit?: boolean;
  /** Has counted sending limits (stopped while the store fails). */
  counted?: boolean;
}

function relayOf(situations: Record<string, Situation>, storeDown = false, clock = () => NOW): { board: AccountHealthBoard; accounts: Account[] } {
  const accounts = Object.keys(situations).map((email) => ({ email, provider: { name: 'google' }, auth: 'oauth2', limits: {} }) as unknown as Account);
  const at = (email: string) => situations[email]!;
  const relay = {
    accounts,
    tokens: {
      current: (email: string) => (at(email).token ? { value: 'tok', expiresAt: NOW + 3_600_000 } : null),
      stateOf: (email: string) => {
        const s = at(email).tokenState ?? (at(email).token ? 'healthy' : 'pending');
        if (s instanceof TokenGrantError) return { health: s.needsConsent ? 'needs_consent' : 'failing', lastError: s.message, lastErrorAt: NOW - 5_000, lastFailure: s };
        return { health: s, lastError: null, lastErrorAt: null, lastFailure: null };
      },
    },
    pools: new Map(
      accounts.map((a) => [a.email, { openFailure: at(a.email).openFailure ? { at: NOW - 1_000, error: at(a.email).openFailure } : null, retriesAlone: true, stats: { idle: 0, busy: 0 } }]),
    ),
    pauses: { get: (email: string) => (at(email).paused ? { until: NOW + 60_000, reason: 'daily quota' } : null) },
    limiter: {
      atLimit: (email: string) => (at(email).atLimit ? { until: NOW + 30_000, why: 'messages_per_hour 100' } : null),
      plan: (a: Account) => ({ message: at(a.email).counted ? [{}] : [] }),
    },
    warmth: { isWarm: (email: string) => at(email).warm ?? false },
  } as unknown as Relay;
  const store = { connected: !storeDown, localCounting: null } as unknown as Store;
  return { board: new AccountHealthBoard(relay, store, clock), accounts };
}

describe('AccountHealthBoard.pass()', () => {
  const situations: Record<string, Situation> = {
    'sending@x.test': { token: true, warm: true },
    'sending-2@x.test': { token: true, warm: true },
    'never-used@x.test': {},
    'lapsed-while-idle@x.test': { tokenState: 'healthy' },
    'warming@x.test': { warm: true },
    'lapsed-warming@x.test': { tokenState: 'healthy', warm: true },
    'revoked@x.test': { tokenState: new TokenGrantError('invalid_grant', 'Token has been expired or revoked.'), warm: true },
    'endpoint-down-with-token@x.test': { token: true, tokenState: new TokenGrantError('network', 'ECONNRESET'), warm: true },
    'unreachable@x.test': { token: true, warm: true, openFailure: new Error('connect ECONNREFUSED 127.0.0.1:465') },
    'paused@x.test': { token: true, warm: true, paused: true },
    'full@x.test': { token: true, warm: true, atLimit: true },
    'counted@x.test': { token: true, warm: true, counted: true },
  };

  for (const storeDown of [false, true]) {
    it(`says of each account what of() says, with the counts (store ${storeDown ? 'unreachable' : 'up'})`, () => {
      const { board, accounts } = relayOf(situations, storeDown);
      const pass = board.pass(0);
      expect(pass.of).toBe(accounts);
      accounts.forEach((a, i) => expect({ email: a.email, ...pass.healths[i] }).toEqual({ email: a.email, ...board.of(a) }));
      const counts: Record<string, number> = {};
      for (const h of pass.healths) counts[h.state] = (counts[h.state] ?? 0) + 1;
      expect(pass.counts).toEqual(counts);
    });
  }

  it('names each situation by the state that needs the operator first', () => {
    const { board, accounts } = relayOf(situations);
    const pass = board.pass(0);
    const byEmail = Object.fromEntries(accounts.map((a, i) => [a.email, [pass.healths[i]!.state, pass.healths[i]!.can_send]]));
    expect(byEmail).toEqual({
      'sending@x.test': ['ok', true],
      'sending-2@x.test': ['ok', true],
      'never-used@x.test': ['cold', true],
      // Its token lapsed while it sent nothing: cold (its next message fetches one), not starting.
      'lapsed-while-idle@x.test': ['cold', true],
      'warming@x.test': ['starting', false],
      'lapsed-warming@x.test': ['starting', false],
      'revoked@x.test': ['needs_consent', false],
      'endpoint-down-with-token@x.test': ['token_endpoint_failing', true],
      'unreachable@x.test': ['provider_unreachable', false],
      'paused@x.test': ['paused_by_quota', false],
      'full@x.test': ['at_limit_until', false],
      'counted@x.test': ['ok', true],
    });
    expect(relayOf(situations, true).board.pass(0).healths[accounts.findIndex((a) => a.email === 'counted@x.test')]).toMatchObject({ state: 'store_failing', can_send: false });
  });

  it('shares one health object per quiet state: a pass allocates only for the accounts with a problem', () => {
    const many: Record<string, Situation> = {};
    for (let i = 0; i < 1_000; i++) many[`a${i}@x.test`] = i % 2 ? { token: true, warm: true } : {};
    many['revoked@x.test'] = situations['revoked@x.test']!;
    const { board } = relayOf(many);
    const pass = board.pass(0);
    expect(new Set(pass.healths).size).toBe(3);
    expect(pass.counts).toEqual({ cold: 500, ok: 500, needs_consent: 1 });
    expect(Object.isFrozen(pass.healths[0])).toBe(true);
  });

  it('is reused for a second over the same accounts, and taken anew after', () => {
    let now = NOW;
    const { board } = relayOf(situations, false, () => now);
    const first = board.pass();
    now += 999;
    expect(board.pass()).toBe(first);
    expect(board.pass(0)).not.toBe(first);
    now += 1_000;
    expect(board.pass()).not.toBe(first);
  });
});
