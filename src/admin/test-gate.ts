// `accounts test` (POST /api/accounts/{email}/test) costs a token grant and a provider login.
// Left free, a caller could make dozens a second per mailbox (a provider may lock the account
// for it) and open connections past its max_connections. So, per account: tests asked while one
// runs share its result (one grant, one connection beside the pool at most), and at most
// TESTS_PER_WINDOW start per window; past that the answer is 429 with when to come back.
import type { CheckResult } from './account-check.js';

export const TESTS_PER_WINDOW = 5;
export const TEST_WINDOW_MS = 60_000;

export class TestRateLimited extends Error {
  constructor(readonly retryAfterS: number) {
    super(`too many tests of this account: try again in ${retryAfterS} s`);
    this.name = 'TestRateLimited';
  }
}

export class TestGate {
  private readonly running = new Map<string, Promise<CheckResult>>();
  private readonly started = new Map<string, number[]>();

  constructor(private readonly now: () => number = Date.now) {}

  run(email: string, check: () => Promise<CheckResult>): Promise<CheckResult> {
    const joined = this.running.get(email);
    if (joined) return joined;
    const now = this.now();
    const recent = (this.started.get(email) ?? []).filter((t) => now - t < TEST_WINDOW_MS);
    if (recent.length >= TESTS_PER_WINDOW) {
      this.started.set(email, recent);
      throw new TestRateLimited(Math.max(1, Math.ceil((recent[0]! + TEST_WINDOW_MS - now) / 1000)));
    }
    recent.push(now);
    this.started.set(email, recent);
    const run = check().finally(() => this.running.delete(email));
    this.running.set(email, run);
    return run;
  }
}
