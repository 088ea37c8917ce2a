// The plain-words advice of `accounts test` and the API's verification, for the failures the
// integration tests cannot all provoke (service accounts, app permissions, a mailbox with SMTP
// AUTH off, a provider out of reach).
import { describe, expect, it } from 'vitest';
import { adviceFor } from '../../src/admin/advice.js';
import { buildConfig } from '../../src/config/load.js';
import { RelayError } from '../../src/errors/registry.js';
import { accountFromConfig, type Account } from '../../src/routing/account.js';
import { TokenGrantError } from '../../src/tokens/grant.js';
import { UpstreamAuthError } from '../../src/upstream/connection.js';
import { reply } from '../../src/smtp/reply.js';

const config = buildConfig(
  {
    accounts: [
      { email: 'g@x.test', provider: 'google', client_id: 'cid', refresh_token: 'rt' },
      { email: 'm@contoso.test', provider: 'microsoft', auth: 'client_credentials', client_id: 'app', client_secret: 's', tenant: 'contoso.test' },
    ],
  },
  null,
  { env: {}, checkHost: false },
);
const [google, app] = config.accounts.map((a) => accountFromConfig(a, config.providers)) as [Account, Account];

describe('adviceFor', () => {
  it('token failures: which credential to fix, by grant', () => {
    expect(adviceFor('token', new TokenGrantError('invalid_client', 'x'), google)).toMatch(/check client_id and client_secret/);
    expect(adviceFor('token', new TokenGrantError('unauthorized_client', 'x'), { ...google, auth: 'service_account' })).toMatch(/Domain-wide delegation.*https:\/\/mail\.google\.com\//);
    expect(adviceFor('token', new TokenGrantError('unauthorized_client', 'x'), app)).toMatch(/SMTP\.SendAsApp/);
    expect(adviceFor('token', new TokenGrantError('timeout', 'x'), google)).toMatch(/could not be reached.*https:\/\/oauth2\.googleapis\.com\/token/);
  });

  it('AUTH refusals: SMTP AUTH off for one mailbox, a temporary refusal', () => {
    const mailbox = new UpstreamAuthError('m@contoso.test', reply(535, '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.'));
    expect(adviceFor('auth', mailbox, app)).toMatch(/^SMTP AUTH is disabled for the mailbox m@contoso\.test\. .*Set-CASMailbox -Identity m@contoso\.test -SmtpClientAuthenticationDisabled \$false/);
    // ...or send without SMTP AUTH, through Graph.
    expect(adviceFor('auth', mailbox, app)).toMatch(/set upstream: graph on the account.*Mail\.Send/);
    expect(adviceFor('auth', new UpstreamAuthError('g@x.test', reply(454, '4.7.0 Try again later')), google)).toMatch(/^The provider refused AUTH for now/);
  });

  it('connection failures: what to check on the way to the provider', () => {
    expect(adviceFor('connect', new RelayError('UPSTREAM_CONNECT_FAILED'), google)).toBe(
      'Could not reach smtp.gmail.com:587: check that this host may connect out to it (firewall, egress to port 587).',
    );
    expect(adviceFor('auth', new RelayError('UPSTREAM_TLS'), google)).toMatch(/providers\.google\.smtp\.security and ca_file/);
    expect(adviceFor('auth', new Error('?'), google)).toMatch(/^Unexpected failure/);
  });
});
