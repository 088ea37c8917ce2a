// The API upstreams under load with faults: 500 messages over 10 MTA connections through the
// fake Graph and the fake Gmail API while they throttle (429 + Retry-After), fail (503), refuse a
// token (401) and never answer (timeouts). The ledger (test/helpers/ledger.ts): nothing
// acknowledged lost or doubled, everything deferred arrives exactly once when resent, no 5xx
// the provider did not cause; the 429 paused the account and the MTA's retries got through.
import { describe, expect, it } from 'vitest';
import type { FakeApiServer } from '../../src/sandbox/index.js';
import { gmailAccount, graphAccount } from '../helpers/api-stack.js';
import { drive, Ledger, type DriveOptions } from '../helpers/ledger.js';
import { startStack, type StackAccount } from '../helpers/stack.js';

const COUNT = 500;
const LOAD: DriveOptions = { connections: 10, timeLimitMs: 90_000 };
/** An MTA's retries, shortened: rounds a little longer than the fakes' Retry-After. */
const RETRY_ROUNDS = 15;
const RETRY_WAIT_MS = 1_200;

async function underFaults(name: string, account: StackAccount, fake: (s: Awaited<ReturnType<typeof startStack>>) => FakeApiServer): Promise<void> {
  const stack = await startStack({
    accounts: [account],
    // Short timeouts so a held request costs the test seconds, not minutes.
    overrides: { upstream: { data_timeout_ms: 1_500, command_timeout_ms: 1_500 } },
  });
  try {
    const api = fake(stack);
    api.fault({ kind: 'throttle', step: 'send', every: 97, times: 2, retryAfterS: 1 });
    api.fault({ kind: 'server_error', step: 'send', every: 41 });
    api.fault({ kind: 'unauthorized', every: 59 });
    api.fault({ kind: 'timeout', step: 'send', every: 113, times: 3 });
    const ledger = new Ledger(name, COUNT, [account.email]);
    let paused = false;
    await drive(stack.port, ledger.entries, {
      ...LOAD,
      onOutcome: () => {
        paused ||= stack.app.relay.pauses.get(account.email) !== null;
      },
    });
    const first = ledger.report(name, api.messages);
    expect(ledger.refusals()).toEqual([]);
    expect(first).toMatchObject({ sent: COUNT, refused: 0, noReply: 0, unknown: 0, lost: 0, duplicated: 0 });
    expect(first.deferred).toBeGreaterThan(0);
    expect(paused).toBe(true);
    const throttled = ledger.entries.flatMap((e) => e.attempts).filter((o) => o.code === 451 && /4\.7\.1 .*throttling/.test(o.text));
    expect(throttled.length).toBeGreaterThan(0);

    // The MTA retries its deferred queue; the faults stay (each rule is bounded or periodic).
    for (let round = 0; round < RETRY_ROUNDS && ledger.pending().length; round++) {
      await new Promise((r) => setTimeout(r, RETRY_WAIT_MS));
      await drive(stack.port, ledger.pending(), LOAD);
    }
    const fired = new Set(api.faultsFired.map((f) => f.kind));
    expect([...fired].sort()).toEqual(['server_error', 'throttle', 'timeout', 'unauthorized']);
    expect(ledger.problems(api.messages)).toEqual([]);
    expect(ledger.refusals()).toEqual([]);
    const after = ledger.report(`${name} (after retries)`, api.messages);
    expect(after).toMatchObject({ lost: 0, duplicated: 0 });
    // Every delivery went to exactly the envelope, from the mailbox.
    const byHash = new Map(ledger.entries.map((e) => [e.sha, e]));
    for (const m of api.messages) {
      expect(m.mailFrom).toBe(account.email);
      expect(m.rcptTo).toEqual([byHash.get(m.sha256)!.to]);
    }
  } finally {
    await stack.stop();
  }
}

describe('API upstream faults under load', () => {
  it('Microsoft Graph: 429, 503, 401 and timeouts over 500 messages', () => underFaults('graph', graphAccount(), (s) => s.sandbox.graph), 240_000);
  it('Gmail API: 429, 503, 401 and timeouts over 500 messages', () => underFaults('gmail', gmailAccount(), (s) => s.sandbox.gmail), 240_000);
});
