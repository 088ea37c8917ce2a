// Which grant gets an account's access tokens, by its `auth:` in relay.yaml.
import type { AccountAuthKind } from '../config/schema.js';
import type { Grant } from './grant.js';
import { clientCredentialsGrant } from './grants/client-credentials.js';
import { refreshTokenGrant } from './grants/refresh-token.js';
import { serviceAccountGrant } from './grants/service-account.js';

const GRANTS: Record<AccountAuthKind, Grant> = {
  refresh_token: refreshTokenGrant,
  service_account: serviceAccountGrant,
  client_credentials: clientCredentialsGrant,
};

export const accountGrant: Grant = (account, refreshToken, timeoutMs) => GRANTS[account.auth](account, refreshToken, timeoutMs);
