// The refresh-token grant (RFC 6749 §6) against Google's and Microsoft's token endpoints.
// Microsoft's v2 endpoint requires the scope and may rotate the refresh token; Google keeps the
// consented scope and normally returns no new refresh token.
import { TokenGrantError, type Grant } from '../grant.js';
import { requestToken } from './token-request.js';

export const refreshTokenGrant: Grant = async (account, refreshToken, timeoutMs) => {
  if (!refreshToken) throw new TokenGrantError('invalid_grant', `${account.email} has no refresh token`);
  const form = new URLSearchParams({ grant_type: 'refresh_token', client_id: account.clientId, refresh_token: refreshToken });
  if (account.clientSecret) form.set('client_secret', account.clientSecret);
  if (account.scope) form.set('scope', account.scope);
  const { accessToken, expiresAt, refreshToken: rotated } = await requestToken(account.tokenUrl, form, timeoutMs);
  return { accessToken, expiresAt, refreshToken: rotated };
};
