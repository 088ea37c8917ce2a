// Sending limits as configured (provider defaults, overrides, null), provider replies that mean
// "over quota", and the candidates of an account pool.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { buildConfig } from '../../src/config/load.js';
import { NO_LIMITS, PROVIDER_LIMITS } from '../../src/config/account-limits.js';
import { chargePlan } from '../../src/limits/limits.js';
import { CONCURRENCY_PAUSE_MS, DAILY_PAUSE_MS, quotaSignal } from '../../src/limits/quota-replies.js';
import { accountsFromConfig } from '../../src/routing/account.js';
import { Router } from '../../src/routing/router.js';
import { reply } from '../../src/smtp/reply.js';

const build = (accounts: Record<string, unknown>[]) =>
  buildConfig({ accounts: accounts.map((a) => ({ client_id: 'cid', refresh_token: 'rt', ...a })) }, null, { env: {}, checkHost: false });

describe('limits in the config', () => {
  it('each provider kind brings its published limits and connection cap when the account sets none', () => {
    const cfg = build([
      { email: 'g@gmail.test', provider: 'google' },
      { email: 'm@outlook.test', provider: 'microsoft' },
    ]);
    const [g, m] = cfg.accounts;
    expect(g!.limits).toEqual({ ...NO_LIMITS, messages_per_day: 2_000, recipients_per_day: 10_000, recipients_per_message: 100 });
    expect(g!.max_connections).toBe(5);
    expect(m!.limits).toEqual({ ...NO_LIMITS, messages_per_minute: 30, recipients_per_day: 10_000, recipients_per_message: 500 });
    expect(m!.max_connections).toBe(3);
  });

  it('a provider pointed at another server than its own service gets no published limits and max_connections 5', () => {
    const cfg = buildConfig(
      {
        providers: { microsoft: { smtp: { host: '127.0.0.1', port: 2587 } } },
        accounts: [
          { email: 'm@outlook.test', provider: 'microsoft', client_id: 'cid', refresh_token: 'rt' },
          { email: 'n@outlook.test', provider: 'microsoft', client_id: 'cid', refresh_token: 'rt', limits: { messages_per_minute: 10 } },
        ],
      },
      null,
      { env: {}, checkHost: false },
    );
    const [m, n] = cfg.accounts;
    expect(m!.limits).toEqual(NO_LIMITS);
    expect(m!.max_connections).toBe(5);
    expect(n!.limits).toEqual({ ...NO_LIMITS, messages_per_minute: 10 });
  });

  it('an account overrides single keys, null switches a limit off, an explicit max_connections is kept', () => {
    const [a] = build([{ email: 'm@outlook.test', provider: 'microsoft', max_connections: 6, limits: { messages_per_day: 500, messages_per_minute: null } }]).accounts;
    expect(a!.limits).toEqual({ ...PROVIDER_LIMITS.microsoft, messages_per_day: 500, messages_per_minute: null });
    expect(a!.max_connections).toBe(6);
  });

  it('min_idle is checked against the provider default connection cap', () => {
    expect(() => build([{ email: 'm@outlook.test', provider: 'microsoft', min_idle: 4 }])).toThrow(/max_connections \(3\)/);
  });

  it.each([
    [{ messages_per_day: 0 }, 'accounts[0].limits.messages_per_day'],
    [{ messages_per_day: 1.5 }, 'accounts[0].limits.messages_per_day'],
    [{ messages_per_week: 10 }, 'accounts[0].limits.messages_per_week'],
  ])('%j is a config error naming the key', (limits, path) => {
    let err: unknown;
    try {
      build([{ email: 'g@gmail.test', provider: 'google', limits }]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).path).toBe(path);
  });

  it('a message is charged against every counted limit, a further recipient only against recipient limits', () => {
    const plan = chargePlan(PROVIDER_LIMITS.microsoft);
    expect(plan.message.map((c) => c.counter.name)).toEqual(['messages_per_minute', 'recipients_per_day']);
    expect(plan.recipient.map((c) => c.counter.name)).toEqual(['recipients_per_day']);
    expect(chargePlan(NO_LIMITS)).toEqual({ message: [], recipient: [] });
  });
});

describe('provider replies that mean the account is over its quota', () => {
  it.each([
    [reply(550, '5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits go to', '5.4.5 https://support.google.com/a/answer/166852'), 'daily'],
    [reply(550, '5.4.5 Daily sending quota exceeded. n37sm954097wag - gsmtp'), 'daily'],
    [reply(421, '4.7.0 Daily sending limit reached, try again later'), 'daily'],
    [reply(554, '5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message'), 'daily'],
    [reply(432, '4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=AM0PR01MB1234]'), 'concurrency'],
    [reply(432, '4.3.2 Concurrent connection limit exceeded'), 'concurrency'],
    [reply(450, '4.7.0 Message rate limit exceeded for this client'), 'rate'],
  ])('%j → %s', (r, kind) => {
    expect(quotaSignal(r)?.kind).toBe(kind);
  });

  it('pauses for the time each kind needs', () => {
    expect(quotaSignal(reply(550, '5.4.5 Daily user sending limit exceeded.'))?.pauseMs).toBe(DAILY_PAUSE_MS);
    expect(quotaSignal(reply(432, '4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded'))?.pauseMs).toBe(CONCURRENCY_PAUSE_MS);
  });

  it.each([
    reply(550, '5.1.1 The email account that you tried to reach does not exist'),
    reply(421, '4.7.0 Try again later, closing connection. (EHLO)'),
    reply(421, '4.3.2 Service not available, closing transmission channel'),
    reply(451, '4.4.5 All connections of the account are busy, try again later'),
    reply(452, '4.5.3 Your message has too many recipients'),
    reply(250, '2.0.0 OK quota fine'),
  ])('%j is not a quota reply', (r) => {
    expect(quotaSignal(r)).toBeNull();
  });
});

describe('account pools: Router.candidates', () => {
  const cfg = build([
    { email: 'a@gmail.test', provider: 'google', senders: ['*@pool.test', 'vip@pool.test'], password: 'pw-a' },
    { email: 'b@gmail.test', provider: 'google', senders: ['*@pool.test'] },
    { email: 'c@outlook.test', provider: 'microsoft', senders: ['*@pool.test', 'vip@pool.test', 'vip@pool.test'] },
  ]);
  const accounts = accountsFromConfig(cfg);
  const router = new Router(accounts, ['127.0.0.0/8']);
  const trusted = { account: null, remoteAddress: '127.0.0.1' };
  const emails = (list: readonly { email: string }[]) => list.map((a) => a.email);

  it('every account listing the winning sender entry is a candidate, in config order, each once', () => {
    expect(emails(router.candidates(trusted, 'news@pool.test'))).toEqual(['a@gmail.test', 'b@gmail.test', 'c@outlook.test']);
    // An exact address still wins over *@domain: its pool is the accounts that list it.
    expect(emails(router.candidates(trusted, 'VIP@pool.test'))).toEqual(['a@gmail.test', 'c@outlook.test']);
    expect(router.route(trusted, 'news@pool.test').email).toBe('a@gmail.test');
  });

  it('an authenticated session has its own account as the only candidate', () => {
    expect(emails(router.candidates({ account: accounts[0]!, remoteAddress: '127.0.0.1' }, 'news@pool.test'))).toEqual(['a@gmail.test']);
  });
});
