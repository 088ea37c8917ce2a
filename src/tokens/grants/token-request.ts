// One POST of a form to an OAuth endpoint (RFC 6749 §4-6, RFC 8628 §3.1), shared by every
// grant: the transport failures, the OAuth error answer and the token answer are classified
// once, the same way for the relay's background refreshes and the interactive `auth` commands.
import { ConsentError, TokenGrantError, type GrantFailure, type GrantResult, type ObtainedCredentials } from '../grant.js';

export interface TokenAnswer extends GrantResult {
  /** The scope the endpoint says it granted, when it says. */
  scope: string | null;
}

/**
 * Bounds on what an endpoint may answer (issue 10 item 5: a 400 MB access_token was once taken
 * whole). Real answers are a few KiB: Microsoft's JWT access tokens run to ~4 KiB with many
 * claims, Google's are ~200 bytes, refresh tokens ~1-2 KiB.
 */
export const MAX_BODY_BYTES = 256 * 1024;
export const MAX_TOKEN_CHARS = 32 * 1024;

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
  // The same signal bounds the body: a body dripped forever ends at `timeoutMs` from the request.
  const text = await boundedText(res, what, timeoutMs);
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    if (res.ok) throw new TokenGrantError('bad_response', `${what} answered with a body that is not JSON`, res.status);
  }
  if (!res.ok) {
    const code = typeof body.error === 'string' ? body.error : null;
    const kind = (code && FAILURE_BY_CODE[code]) || 'http';
    throw new TokenGrantError(kind, `${what} answered HTTP ${res.status}${code ? ` ${code}` : ''}`, res.status, code, firstLine(body.error_description), retryAfterMs(res.headers.get('retry-after')));
  }
  return body;
}

/** Retry-After as delay-seconds or an HTTP date (RFC 9110 10.2.3), in ms; null when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | null {
  if (!header) return null;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
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
  for (const [key, value] of [['access_token', accessToken], ['refresh_token', body.refresh_token]] as const) {
    if (typeof value === 'string' && value.length > MAX_TOKEN_CHARS) {
      throw new TokenGrantError('bad_response', `token endpoint answered with a ${key} of ${value.length} characters (at most ${MAX_TOKEN_CHARS} taken)`);
    }
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

/** The body as text, at most MAX_BODY_BYTES of it; a longer one is cut off and refused. */
async function boundedText(res: Response, what: string, timeoutMs: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (declared > MAX_BODY_BYTES) {
    await res.body?.cancel().catch(() => undefined);
    throw new TokenGrantError('bad_response', `${what} answered with a body of ${declared} bytes (at most ${MAX_BODY_BYTES} taken)`, res.status);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_BODY_BYTES) {
        await reader.cancel().catch(() => undefined);
        throw new TokenGrantError('bad_response', `${what} answered with a body over ${MAX_BODY_BYTES} bytes`, res.status);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof TokenGrantError) throw e;
    const err = e as Error;
    if (err.name === 'TimeoutError' || err.name === 'AbortError') throw new TokenGrantError('timeout', `${what} did not finish its answer within ${timeoutMs} ms`);
    throw new TokenGrantError('network', `${what} broke off its answer (${(err.cause as NodeJS.ErrnoException | undefined)?.code ?? err.message})`);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Microsoft appends trace lines to its descriptions; a terminal needs only the first. */
function firstLine(description: unknown): string | null {
  if (typeof description !== 'string' || !description) return null;
  return description.split(/\r?\n/)[0]!.slice(0, 300);
}
