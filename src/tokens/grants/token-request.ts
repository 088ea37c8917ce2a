// One POST of a form to an OAuth endpoint (RFC 6749 §4-6, RFC 8628 §3.1), shared by every
// grant: the transport failures, the OAuth error answer and the token answer are classified
// once, the same way for the relay's background refreshes and the interactive `auth` commands.
import { ConsentError, TokenGrantError, type GrantFailure, type GrantResult, type ObtainedCredentials } from '../grant.js';

export interface TokenAnswer extends GrantResult {
  /** The scope the endpoint says it granted, when it says. */
  scope: string | null;
}

const FAILURE_BY_CODE: Record<string, GrantFailure> = {
  invalid_grant: 'invalid_grant',
  invalid_client: 'invalid_client',
  unauthorized_client: 'unauthorized_client',
};

/**
 * The JSON body of a 2xx answer. Anything else throws a TokenGrantError whose message names the
 * endpoint (`what`), the status and the OAuth error code — never a request value.
 */
export async function postForm(url: string, form: URLSearchParams, timeoutMs: number, what = 'token endpoint'): Promise<Record<string, unknown>> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    const err = e as Error;
    if (err.name === 'TimeoutError' || err.name === 'AbortError') {
      throw new TokenGrantError('timeout', `${what} did not answer within ${timeoutMs} ms`);
    }
    const cause = (err.cause as NodeJS.ErrnoException | undefined)?.code ?? err.message;
    throw new TokenGrantError('network', `${what} unreachable (${cause})`);
  }
  let body: Record<string, unknown> = {};
  try {
    body = (await res.json()) as Record<string, unknown>;
  } catch {
    if (res.ok) throw new TokenGrantError('bad_response', `${what} answered with a body that is not JSON`, res.status);
  }
  if (!res.ok) {
    const code = typeof body.error === 'string' ? body.error : null;
    const kind = (code && FAILURE_BY_CODE[code]) || 'http';
    throw new TokenGrantError(kind, `${what} answered HTTP ${res.status}${code ? ` ${code}` : ''}`, res.status, code, firstLine(body.error_description));
  }
  return body;
}

/** A token request: the access token with its expiry, and a refresh token if one came. */
export async function requestToken(url: string, form: URLSearchParams, timeoutMs: number): Promise<TokenAnswer> {
  const started = Date.now();
  const body = await postForm(url, form, timeoutMs);
  const accessToken = body.access_token;
  const expiresIn = Number(body.expires_in);
  if (typeof accessToken !== 'string' || !accessToken || !Number.isFinite(expiresIn) || expiresIn <= 0) {
    throw new TokenGrantError('bad_response', 'token endpoint answer lacks access_token or expires_in');
  }
  // Count the lifetime from when the request was sent: the token may have been minted then.
  return {
    accessToken,
    expiresAt: started + expiresIn * 1000,
    refreshToken: typeof body.refresh_token === 'string' && body.refresh_token ? body.refresh_token : null,
    scope: typeof body.scope === 'string' ? body.scope : null,
  };
}

/** The answer must hold what the relay will live on: a refresh token, for the scope asked. */
export function requireRefreshToken(answer: TokenAnswer, scope: string): ObtainedCredentials {
  if (!answer.refreshToken) throw new ConsentError('the token endpoint returned no refresh token (was offline access refused?)');
  const wanted = scope.split(/\s+/).filter((s) => s !== 'offline_access');
  const granted = answer.scope?.toLowerCase().split(/\s+/);
  // Google lets the person untick a permission; a refresh token without the mail scope is useless.
  if (granted && !wanted.every((s) => granted.includes(s.toLowerCase()))) {
    throw new ConsentError(`the consent did not grant ${wanted.join(' ')} (granted: ${answer.scope})`);
  }
  return { ...answer, refreshToken: answer.refreshToken };
}

/** Microsoft appends trace lines to its descriptions; a terminal needs only the first. */
function firstLine(description: unknown): string | null {
  if (typeof description !== 'string' || !description) return null;
  return description.split(/\r?\n/)[0]!.slice(0, 300);
}
