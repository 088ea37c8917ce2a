// What every way of getting an access token has in common: the result the token cache keeps,
// and the one error type it understands. The grants themselves are in ./grants/, one per file;
// ./account-grant.ts picks the one an account is configured for.
import type { Account } from '../routing/account.js';

export interface GrantResult {
  accessToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** Present when the provider rotated (or, in a consent flow, issued) the refresh token. */
  refreshToken: string | null;
}

export type GrantFailure =
  | 'invalid_grant'
  | 'invalid_client'
  | 'unauthorized_client'
  | 'http'
  | 'timeout'
  | 'network'
  | 'bad_response';

/** Why a grant failed; the message names the status and OAuth error code, never a secret. */
export class TokenGrantError extends Error {
  constructor(
    readonly kind: GrantFailure,
    message: string,
    readonly status: number | null = null,
    /** The endpoint's OAuth `error` code (`authorization_pending`, `slow_down`, ...), if it sent one. */
    readonly oauthError: string | null = null,
    /** The first line of its `error_description`, for a person at a terminal; not logged by the relay. */
    readonly description: string | null = null,
    /** The endpoint's Retry-After (429, 503), in ms: no new request before it has passed. */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
    this.name = 'TokenGrantError';
  }
  /**
   * The grant itself is dead: only the operator (a new consent, a fixed delegation or app
   * permission) fixes it, retrying faster helps nobody.
   */
  get needsConsent(): boolean {
    return this.kind === 'invalid_grant' || this.kind === 'invalid_client' || this.kind === 'unauthorized_client';
  }
}

/** `refreshToken` is the current one for auth: refresh_token accounts, null for the others. */
export type Grant = (account: Account, refreshToken: string | null, timeoutMs: number) => Promise<GrantResult>;

/** An interactive consent that did not end in credentials: refused, expired, or never completed. */
export class ConsentError extends Error {
  override name = 'ConsentError';
}

/** What a consent flow obtains: the refresh token to configure, and a first access token. Secrets. */
export interface ObtainedCredentials extends GrantResult {
  refreshToken: string;
  /** The scope the provider says it granted, when it says. */
  scope: string | null;
}
