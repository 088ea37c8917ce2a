// The OAuth2 refresh-token grant (RFC 6749 §6) against Google's and Microsoft's token
// endpoints. Microsoft's v2 endpoint requires the scope and may rotate the refresh token;
// Google keeps the consented scope and normally returns no new refresh token.
import type { Account } from '../routing/account.js';

export interface GrantResult {
  accessToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** Present when the provider rotated the refresh token. */
  refreshToken: string | null;
}

export type GrantFailure = 'invalid_grant' | 'invalid_client' | 'http' | 'timeout' | 'network' | 'bad_response';

/** Why a grant failed; the message names the status and OAuth error code, never a secret. */
export class TokenGrantError extends Error {
  constructor(
    readonly kind: GrantFailure,
    message: string,
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = 'TokenGrantError';
  }
  /** The grant itself is dead: only a new consent fixes it, retrying faster helps nobody. */
  get needsConsent(): boolean {
    return this.kind === 'invalid_grant' || this.kind === 'invalid_client';
  }
}

export type Grant = (account: Account, refreshToken: string, timeoutMs: number) => Promise<GrantResult>;

export const refreshGrant: Grant = async (account, refreshToken, timeoutMs) => {
  const form = new URLSearchParams({ grant_type: 'refresh_token', client_id: account.clientId, refresh_token: refreshToken });
  if (account.clientSecret) form.set('client_secret', account.clientSecret);
  if (account.provider.scope) form.set('scope', account.provider.scope);
  const started = Date.now();
  let res: Response;
  try {
    res = await fetch(account.provider.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    const err = e as Error;
    if (err.name === 'TimeoutError' || err.name === 'AbortError') {
      throw new TokenGrantError('timeout', `token endpoint did not answer within ${timeoutMs} ms`);
    }
    const cause = (err.cause as NodeJS.ErrnoException | undefined)?.code ?? err.message;
    throw new TokenGrantError('network', `token endpoint unreachable (${cause})`);
  }
  let body: Record<string, unknown> = {};
  try {
    body = (await res.json()) as Record<string, unknown>;
  } catch {
    if (res.ok) throw new TokenGrantError('bad_response', 'token endpoint answered with a body that is not JSON', res.status);
  }
  if (!res.ok) {
    const code = typeof body.error === 'string' ? body.error : null;
    const kind: GrantFailure = code === 'invalid_grant' ? 'invalid_grant' : code === 'invalid_client' ? 'invalid_client' : 'http';
    throw new TokenGrantError(kind, `token endpoint answered HTTP ${res.status}${code ? ` ${code}` : ''}`, res.status);
  }
  const accessToken = body.access_token;
  const expiresIn = Number(body.expires_in);
  if (typeof accessToken !== 'string' || !accessToken || !Number.isFinite(expiresIn) || expiresIn <= 0) {
    throw new TokenGrantError('bad_response', 'token endpoint answer lacks access_token or expires_in', res.status);
  }
  // Count the lifetime from when the request was sent: the token may have been minted then.
  return {
    accessToken,
    expiresAt: started + expiresIn * 1000,
    refreshToken: typeof body.refresh_token === 'string' && body.refresh_token ? body.refresh_token : null,
  };
};
