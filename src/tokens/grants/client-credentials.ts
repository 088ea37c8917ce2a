// Microsoft 365 app-only SMTP: the client credentials grant (RFC 6749 §4.4) in the app's own
// tenant. The token names the app, not a user; Exchange lets it send as the mailboxes an admin
// gave the app's service principal (Add-MailboxPermission), with the mailbox as XOAUTH2 user=.
import { MICROSOFT_APP_SCOPE } from '../../config/providers.js';
import { TokenGrantError, type Grant } from '../grant.js';
import { requestToken } from './token-request.js';

export const clientCredentialsGrant: Grant = async (account, _refreshToken, timeoutMs) => {
  if (!account.clientSecret) throw new TokenGrantError('invalid_client', `${account.email} has no client_secret`);
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: account.clientId,
    client_secret: account.clientSecret,
    scope: account.scope ?? MICROSOFT_APP_SCOPE,
  });
  const { accessToken, expiresAt } = await requestToken(account.tokenUrl, form, timeoutMs);
  return { accessToken, expiresAt, refreshToken: null };
};
