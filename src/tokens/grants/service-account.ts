// Google service account with domain-wide delegation: the JWT bearer grant (RFC 7523 §2.1).
// The relay signs an assertion with the key file's private key (RS256) saying "service account
// X acts as mailbox Y for scope Z"; Google checks the signature and that a Workspace admin
// delegated Z to X. No refresh token and no user consent are involved.
import { GOOGLE_MAIL_SCOPE } from '../../config/providers.js';
import { readServiceAccountKey, type ServiceAccountKey } from '../../config/service-account-key.js';
import { TokenGrantError, type Grant } from '../grant.js';
import { requestToken } from './token-request.js';

export const JWT_BEARER_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** Google refuses assertions valid for longer than an hour. */
const ASSERTION_LIFETIME_S = 3600;

/** The signed assertion for `subject` (the mailbox), valid from `nowMs` for an hour. */
export async function signAssertion(key: ServiceAccountKey, subject: string, scope: string, nowMs: number): Promise<string> {
  const iat = Math.floor(nowMs / 1000);
  // jose is loaded by the first service account's first grant, not by every relay's start-up.
  const { SignJWT } = await import('jose');
  return new SignJWT({ scope })
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', ...(key.privateKeyId ? { kid: key.privateKeyId } : {}) })
    .setIssuer(key.clientEmail)
    .setSubject(subject)
    .setAudience(key.tokenUri)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ASSERTION_LIFETIME_S)
    .sign(key.privateKey);
}

export const serviceAccountGrant: Grant = async (account, _refreshToken, timeoutMs) => {
  if (!account.serviceAccountFile) throw new TokenGrantError('invalid_client', `${account.email} has no service_account_file`);
  let key: ServiceAccountKey;
  try {
    // Read at every grant, so a key rotated on disk takes effect at the next refresh.
    key = readServiceAccountKey(account.serviceAccountFile, account.tokenUrl);
  } catch (e) {
    throw new TokenGrantError('invalid_client', (e as Error).message);
  }
  const assertion = await signAssertion(key, account.email, account.scope ?? GOOGLE_MAIL_SCOPE, Date.now());
  // Like Google's own client libraries, the assertion goes to the key file's token_uri, its audience.
  const form = new URLSearchParams({ grant_type: JWT_BEARER_GRANT_TYPE, assertion });
  const { accessToken, expiresAt } = await requestToken(key.tokenUri, form, timeoutMs);
  return { accessToken, expiresAt, refreshToken: null };
};
