// The token endpoint fails for one account while both accounts carry load: that account's
// messages get 454 4.7.0 (the MTA keeps them), the other account's go through untouched, the
// endpoint is asked again only on the backoff schedule, and the account recovers by itself once
// the endpoint heals — after which the deferred messages, resent, arrive exactly once.
import { describe, expect, it } from 'vitest';
import type { TokenFault } from '../../src/sandbox/index.js';
import { drive, Ledger, resendPending, type DriveOptions } from '../helpers/ledger.js';
import { startStack } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

const FAILING = 'g@gmail.test';
const HEALTHY = 'h@gmail.test';
const TOKENS = { request_timeout_ms: 300, retry_min_ms: 200, retry_max_ms: 1_000 };
const LOAD: DriveOptions = { connections: 20, timeLimitMs: 30_000 };
const WAVES = 4;
const PER_WAVE = 100;
const PAUSE_MS = 600;

/**
 * The most refresh attempts capped exponential backoff allows in `ms` (jitter can shorten a delay
 * to 0.8 of its nominal value), plus the first attempt. A dead grant waits retry_max every time.
 */
function backoffBound(ms: number, deadGrant: boolean): number {
  let n = 1;
  let elapsed = 0;
  for (let k = 0; ; k++) {
    const nominal = deadGrant ? TOKENS.retry_max_ms : Math.min(TOKENS.retry_max_ms, TOKENS.retry_min_ms * 2 ** k);
    elapsed += 0.8 * nominal;
    if (elapsed > ms) return n;
    n++;
  }
}

async function tokenFaultUnderLoad(name: string, fault: TokenFault): Promise<void> {
  const stack = await startStack({
    accounts: [
      { email: FAILING, kind: 'google', senders: [FAILING] },
      { email: HEALTHY, kind: 'google', senders: [HEALTHY] },
    ],
    overrides: { tokens: TOKENS },
    // A cold process on a loaded machine answers its first token requests slower than this
    // test's 300 ms request timeout. Made so on purpose: the start-up's failed requests and
    // their retries must not be counted as the fault's.
    sandbox: { tokenLatencyMs: 2 * TOKENS.request_timeout_ms },
  });
  try {
    const { sandbox, app } = stack;
    // The fault starts from a relay whose accounts both have their token: a start-up request
    // that timed out is retried on the backoff schedule, and until it succeeds the healthy
    // account has no token (454s, and token requests counted as if the fault had caused them).
    sandbox.tokens.setLatency(0);
    await until(() => [FAILING, HEALTHY].every((e) => app.relay.tokens.statusOf(e)?.health === 'healthy'), 15_000, 'both tokens at start');
    sandbox.tokens.injectFault(fault, { email: FAILING });
    // The provider forgets the failing account's token and drops every pooled connection: the
    // next connection for it needs a new token, which the endpoint will not give.
    sandbox.state.revokeAccessTokens(FAILING);
    sandbox.smtp.dropAllConnections();
    const before = { failing: sandbox.state.tokenRequests(FAILING), healthy: sandbox.state.tokenRequests(HEALTHY) };

    const ledger = new Ledger(name, WAVES * PER_WAVE, [FAILING, HEALTHY]);
    const started = Date.now();
    for (let w = 0; w < WAVES; w++) {
      await drive(stack.port, ledger.entries.slice(w * PER_WAVE, (w + 1) * PER_WAVE), LOAD);
      if (w < WAVES - 1) await sleep(PAUSE_MS);
    }
    const elapsed = Date.now() - started;
    const c = ledger.report(name, sandbox.messages);
    const requests = sandbox.state.tokenRequests(FAILING) - before.failing;
    console.log(`[tokens] ${name}: ${requests} token requests for the failing account in ${elapsed} ms (${WAVES * PER_WAVE / 2} of its messages)`);

    expect(c).toMatchObject({ sent: WAVES * PER_WAVE, refused: 0, noReply: 0, unknown: 0, lost: 0, duplicated: 0 });
    const first = (from: string) => ledger.entries.filter((e) => e.from === from).map((e) => e.attempts[0]!);
    // That account only, and at MAIL: nothing of it reached the provider.
    for (const o of first(FAILING)) expect(`${o.stage} ${o.code} ${o.text.slice(0, 5)}`).toBe('mail 454 4.7.0');
    for (const o of first(HEALTHY)) expect(`${o.code} ${o.text}`).toMatch(/^250 /);
    expect(sandbox.messages.filter((m) => m.authUser === FAILING)).toHaveLength(0);
    expect(sandbox.state.tokenRequests(HEALTHY) - before.healthy).toBe(0);
    // Backoff, not one request per message.
    expect(requests).toBeGreaterThanOrEqual(1);
    expect(requests).toBeLessThanOrEqual(backoffBound(elapsed, 'error' in fault && fault.error === 'invalid_grant') + 1);

    // Healed: the account recovers on its own (no message needed), then the MTA's retries go through.
    sandbox.tokens.clearFaults();
    await until(() => app.relay.tokens.statusOf(FAILING)?.health === 'healthy', TOKENS.retry_max_ms * 1.2 + 15_000, 'recovery');
    await resendPending(stack.port, ledger, LOAD);
    expect(ledger.problems(sandbox.messages)).toEqual([]);
    ledger.report(`${name} (after recovery)`, sandbox.messages);
  } finally {
    await stack.stop();
  }
}

// A load plus its resends takes 5-30 s; a loaded 2-core machine may stretch that past vitest's 30 s.
describe('token endpoint faults under load', { timeout: 120_000 }, () => {
  it('the endpoint answers 500', () => tokenFaultUnderLoad('token endpoint 500', { status: 500 }));

  it('the endpoint stalls past tokens.request_timeout_ms', () => tokenFaultUnderLoad('token endpoint stall', { delayMs: 10_000 }));

  it('the grant is revoked (invalid_grant), then consent is given again', () => tokenFaultUnderLoad('invalid_grant', { error: 'invalid_grant' }));
});
