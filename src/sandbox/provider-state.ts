// What the sandbox mail provider knows, shared by its two faces: the OAuth2 token endpoint hands
// out access tokens, the submission server accepts them in AUTH XOAUTH2. Keeping both behind one
// object is what lets a test revoke, expire or rotate something on one side and watch the relay
// meet the consequence on the other, exactly as with Google or Microsoft.
//
// Nothing here does I/O; the clock is injectable so expiry can be tested without waiting.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { GMAIL_SEND_SCOPE, GOOGLE_MAIL_SCOPE, GRAPH_MAIL_SEND_SCOPE, MICROSOFT_APP_SCOPE, MICROSOFT_SMTP_SCOPE } from '../config/providers.js';

export type ProviderKind = 'google' | 'microsoft';

/** The OAuth2 error codes (RFC 6749 §5.2) the sandbox token endpoint can answer with. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'temporarily_unavailable'
  | 'server_error'
  // RFC 8628 §3.5, the device flow; Microsoft says authorization_declined where the RFC says access_denied.
  | 'authorization_pending'
  | 'slow_down'
  | 'expired_token'
  | 'authorization_declined'
  | 'access_denied';


export interface SandboxAccountInput {
  email: string;
  kind: ProviderKind;
  /** Generated when omitted. Several accounts may share one client (one OAuth app, many mailboxes). */
  clientId?: string;
  /** Generated when omitted; `null` registers a public client that must not present a secret. */
  clientSecret?: string | null;
  /** Generated when omitted. */
  refreshToken?: string;
}

/** What a relay needs to be configured for an account. Holds secrets: never log it. */
export interface SandboxCredentials {
  email: string;
  kind: ProviderKind;
  clientId: string;
  clientSecret: string | null;
  refreshToken: string;
}

export interface SandboxStateOptions {
  /** Lifetime of issued access tokens, seconds (default 3600, like both real providers). */
  tokenLifetimeSec?: number;
  /**
   * Whether a refresh grant returns a new refresh token and invalidates the one presented.
   * Default: Microsoft rotates (its v2.0 endpoint returns a new refresh token on every grant),
   * Google does not.
   */
  rotateRefreshTokens?: Partial<Record<ProviderKind, boolean>>;
  /** Clock in epoch milliseconds; injectable so tests can move past an expiry instantly. */
  now?: () => number;
}

/** A refresh-token grant as it arrived, already separated from the HTTP transport. */
export interface RefreshGrantRequest {
  clientId: string | null;
  clientSecret: string | null;
  refreshToken: string | null;
  scope: string | null;
}

export type GrantResult =
  | {
      ok: true;
      email: string;
      kind: ProviderKind;
      accessToken: string;
      expiresIn: number;
      scope: string;
      /** Present only when this account's refresh tokens rotate. */
      refreshToken?: string;
    }
  | {
      ok: false;
      /** The account the request was attributed to, when it could be (for counting and faults). */
      email: string | null;
      kind: ProviderKind | null;
      status: 400 | 401;
      error: OAuthErrorCode;
      description: string;
      /** Microsoft's AADSTS number, reported in `error_codes`. */
      aadsts?: number;
    };

export interface AccessTokenCheck {
  email: string;
  expired: boolean;
  /** What the token is good for: granted scopes, or for an app-only token `<resource>/.default`. */
  scope: string;
  /** App-only (client credentials) token. */
  app: boolean;
}

/** One request seen by the token endpoint. Deliberately carries no secret. */
export interface TokenRequestRecord {
  at: Date;
  path: string;
  grantType: string | null;
  /** The account the refresh token belongs to (current or rotated-away), null if unknown. */
  email: string | null;
  kind: ProviderKind | null;
  /** Public identifier of the OAuth client; not a secret. */
  clientId: string | null;
  /** The `scope` parameter exactly as received, null when absent. */
  scope: string | null;
  /** HTTP status answered; null while the request is still pending or when it was dropped. */
  status: number | null;
  /** OAuth error code answered, if any. */
  error: string | null;
  /** Description of the injected fault that shaped the answer, if any. */
  fault: string | null;
  durationMs: number | null;
}

interface AccountRecord {
  email: string;
  kind: ProviderKind;
  clientId: string;
  clientSecret: string | null;
  refreshToken: string;
  grantRevoked: boolean;
  /** Google: the scope the person consented to (its refresh grants keep it); the SMTP one by default. */
  googleScope?: string;
}

interface AccessTokenRecord {
  /** The mailbox, or for an app-only token the app (`app:<client id>`). */
  email: string;
  expiresAt: number;
  revoked: boolean;
  /** App-only tokens: the mailboxes the app was given (Exchange's Add-MailboxPermission). */
  mailboxes?: ReadonlySet<string>;
  scope: string;
}

const DEFAULT_ROTATION: Record<ProviderKind, boolean> = { google: false, microsoft: true };

/** Scopes Microsoft accepts but does not echo back: they describe the grant, not the resource. */
const OIDC_SCOPES = new Set(['offline_access', 'openid', 'profile', 'email']);

const speaksFor = (record: AccessTokenRecord, email: string): boolean => record.email === email || record.mailboxes?.has(email) === true;

export function random(prefix: string): string {
  return prefix + randomBytes(24).toString('base64url');
}

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

// Compares secrets in constant time. Hashing first gives equal-length inputs, which
// timingSafeEqual requires, without leaking the secret's length through an early return.
export function secretEquals(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export class SandboxState {
  readonly now: () => number;
  private lifetimeSec: number;
  private readonly rotation: Record<ProviderKind, boolean>;
  private readonly accounts = new Map<string, AccountRecord>();
  /** Shared mailbox → the users with Send As on it. */
  private readonly shared = new Map<string, Set<string>>();
  /** Every refresh token ever issued, current or rotated away, to the account it belonged to. */
  private readonly refreshTokenOwners = new Map<string, string>();
  private readonly accessTokens = new Map<string, AccessTokenRecord>();
  private readonly requestLog: TokenRequestRecord[] = [];

  constructor(options: SandboxStateOptions = {}) {
    const lifetime = options.tokenLifetimeSec ?? 3600;
    assertPositiveSeconds(lifetime, 'tokenLifetimeSec');
    this.lifetimeSec = lifetime;
    this.rotation = { ...DEFAULT_ROTATION, ...options.rotateRefreshTokens };
    this.now = options.now ?? Date.now;
  }

  // ---- accounts ------------------------------------------------------------------------

  /** Registers a mailbox and returns its credentials (generated where not given). */
  addAccount(input: SandboxAccountInput): SandboxCredentials {
    const email = normaliseEmail(input.email);
    if (!email.includes('@')) throw new Error(`sandbox: account email must be an address, got "${email}"`);
    if (input.kind !== 'google' && input.kind !== 'microsoft') {
      throw new Error(`sandbox: account kind must be "google" or "microsoft", got "${String(input.kind)}"`);
    }
    if (this.accounts.has(email)) throw new Error(`sandbox: account ${email} is already registered`);
    const refreshToken = input.refreshToken ?? random('sbx-rt-');
    if (this.refreshTokenOwners.has(refreshToken)) {
      // Refresh tokens identify the account in a grant request, so they must be unique.
      throw new Error(`sandbox: the refresh token given for ${email} is already in use by another account`);
    }
    const record: AccountRecord = {
      email,
      kind: input.kind,
      clientId: input.clientId ?? random('sbx-client-'),
      clientSecret: input.clientSecret === undefined ? random('sbx-secret-') : input.clientSecret,
      refreshToken,
      grantRevoked: false,
    };
    this.accounts.set(email, record);
    this.refreshTokenOwners.set(refreshToken, email);
    return this.credentialsOf(record);
  }

  /** Current credentials of an account (the refresh token changes when it rotates). */
  credentials(email: string): SandboxCredentials {
    return this.credentialsOf(this.account(email));
  }

  /** Registered accounts, without secrets. */
  listAccounts(): Array<{ email: string; kind: ProviderKind; grantRevoked: boolean }> {
    return [...this.accounts.values()].map((a) => ({ email: a.email, kind: a.kind, grantRevoked: a.grantRevoked }));
  }

  hasAccount(email: string): boolean {
    return this.accounts.has(normaliseEmail(email));
  }

  kindOf(email: string): ProviderKind {
    return this.account(email).kind;
  }

  /** The user withdrew consent / an admin revoked the app: the refresh token now gets invalid_grant. */
  revokeGrant(email: string): void {
    this.account(email).grantRevoked = true;
  }

  /** Undoes revokeGrant (as if the user consented again and kept the same refresh token). */
  restoreGrant(email: string): void {
    this.account(email).grantRevoked = false;
  }

  // ---- shared mailboxes (Exchange Online) ----------------------------------------------

  /**
   * A shared mailbox: it has no licence and no sign-in of its own, so it cannot be the XOAUTH2
   * identity (535 5.7.3); a licensed user granted Send As on it logs in as themself and sends
   * with it as From, else Exchange refuses the message at the end of DATA (554 5.2.252).
   */
  addSharedMailbox(address: string, sendAs: readonly string[] = []): void {
    this.shared.set(normaliseEmail(address), new Set(sendAs.map(normaliseEmail)));
  }

  /** Grants (or, with `granted` false, removes) `delegate`'s Send As on a shared mailbox. */
  setSendAs(shared: string, delegate: string, granted = true): void {
    const grants = this.shared.get(normaliseEmail(shared));
    if (!grants) throw new Error(`sandbox: ${shared} is not a shared mailbox`);
    if (granted) grants.add(normaliseEmail(delegate));
    else grants.delete(normaliseEmail(delegate));
  }

  isSharedMailbox(address: string): boolean {
    return this.shared.has(normaliseEmail(address));
  }

  /**
   * Whether `login` may send with `address` as the sender. Only shared mailboxes are checked:
   * any other address passes, so tests may use senders the sandbox does not know.
   */
  maySendAs(login: string, address: string): boolean {
    const grants = this.shared.get(normaliseEmail(address));
    return !grants || grants.has(normaliseEmail(login));
  }

  // ---- access tokens -------------------------------------------------------------------

  get tokenLifetimeSec(): number {
    return this.lifetimeSec;
  }

  /** Changes the lifetime of tokens issued from now on; tokens already out keep theirs. */
  setTokenLifetime(seconds: number): void {
    assertPositiveSeconds(seconds, 'tokenLifetimeSec');
    this.lifetimeSec = seconds;
  }

  setRotation(kind: ProviderKind, rotate: boolean): void {
    this.rotation[kind] = rotate;
  }

  /**
   * Issues an access token for an account without going through the token endpoint, for tests
   * of the submission side that do not care how the token was obtained.
   */
  issueAccessToken(email: string, lifetimeSec: number = this.lifetimeSec, scope?: string): string {
    const account = this.account(email);
    const token = random('sbx-at-');
    const granted = scope ?? (account.kind === 'google' ? GOOGLE_MAIL_SCOPE : MICROSOFT_SMTP_SCOPE);
    this.accessTokens.set(token, { email: account.email, expiresAt: this.now() + lifetimeSec * 1000, revoked: false, scope: granted });
    return token;
  }

  /**
   * What the submission server learns from a bearer token: whose it is and whether it is still
   * alive. Unknown and revoked tokens are both null: a real provider cannot tell them apart either.
   */
  checkAccessToken(token: string, user?: string): AccessTokenCheck | null {
    const record = this.accessTokens.get(token);
    if (!record || record.revoked) return null;
    // An app-only token speaks for whichever of its mailboxes the client names in user=.
    const mailbox = user === undefined ? undefined : normaliseEmail(user);
    const email = mailbox !== undefined && record.mailboxes?.has(mailbox) ? mailbox : record.email;
    return { email, expired: this.now() >= record.expiresAt, scope: record.scope, app: record.mailboxes !== undefined };
  }

  /** Whom an access token was issued to, revoked or not (null for a token never issued). */
  ownerOfAccessToken(token: string): string | null {
    return this.accessTokens.get(token)?.email ?? null;
  }

  /** Revokes every access token issued to the account (they fail AUTH from now on). */
  revokeAccessTokens(email: string): number {
    const key = normaliseEmail(email);
    let n = 0;
    for (const record of this.accessTokens.values()) {
      if (speaksFor(record, key) && !record.revoked) {
        record.revoked = true;
        n++;
      }
    }
    return n;
  }

  /** Makes every access token of the account expired now, e.g. to provoke the 535 → refresh → retry path. */
  expireAccessTokens(email: string): number {
    const key = normaliseEmail(email);
    const now = this.now();
    let n = 0;
    for (const record of this.accessTokens.values()) {
      if (speaksFor(record, key) && record.expiresAt > now) {
        record.expiresAt = now;
        n++;
      }
    }
    return n;
  }

  /** Number of access tokens issued to the account (or to all) that are still valid. */
  liveAccessTokens(email?: string): number {
    const key = email === undefined ? undefined : normaliseEmail(email);
    const now = this.now();
    let n = 0;
    for (const record of this.accessTokens.values()) {
      if ((key === undefined || speaksFor(record, key)) && !record.revoked && record.expiresAt > now) n++;
    }
    return n;
  }

  // ---- the refresh grant ---------------------------------------------------------------

  /** Which account a refresh token belongs (or belonged) to; used to attribute requests and faults. */
  accountForRefreshToken(refreshToken: string | null): { email: string; kind: ProviderKind } | null {
    if (!refreshToken) return null;
    const email = this.refreshTokenOwners.get(refreshToken);
    const account = email === undefined ? undefined : this.accounts.get(email);
    return account ? { email: account.email, kind: account.kind } : null;
  }

  /**
   * Decides a refresh_token grant the way the real endpoints do, in their order: the client must
   * authenticate, Microsoft then wants the SMTP scope, and only then is the refresh token looked at.
   * `pathKind` words the errors when the request cannot be attributed to an account.
   */
  grantRefreshToken(req: RefreshGrantRequest, pathKind: ProviderKind): GrantResult {
    const owner = this.accountForRefreshToken(req.refreshToken);
    const account = owner ? this.accounts.get(owner.email) : undefined;
    const kind = account?.kind ?? pathKind;
    const fail = (status: 400 | 401, error: OAuthErrorCode, aadsts?: number): GrantResult =>
      grantFailure(kind, status, error, { email: account?.email ?? null, kind: account?.kind ?? null, aadsts });

    if (!req.clientId) return fail(400, 'invalid_request', 900144);
    // The client is authenticated against the clients the sandbox knows, independently of the
    // refresh token, so a wrong secret is invalid_client even with a valid refresh token.
    const clientError = this.authenticateClient(req.clientId, req.clientSecret, account?.email);
    if (clientError !== null) return fail(401, 'invalid_client', clientError);
    if (kind === 'microsoft') {
      const scopes = (req.scope ?? '').split(/\s+/).filter(Boolean);
      // A refresh token is good for any resource the user consented to: SMTP, or Graph's Mail.Send.
      const resources = [MICROSOFT_SMTP_SCOPE, GRAPH_MAIL_SEND_SCOPE].map((s) => s.toLowerCase());
      if (!scopes.some((s) => resources.includes(s.toLowerCase()))) {
        return fail(400, 'invalid_scope', 70011);
      }
    }
    if (!req.refreshToken) return fail(400, 'invalid_request', 900144);
    if (!account || account.clientId !== req.clientId) return fail(400, 'invalid_grant', 9002313);
    if (account.refreshToken !== req.refreshToken) return fail(400, 'invalid_grant', 70000); // rotated away
    if (account.grantRevoked) return fail(400, 'invalid_grant', 50173);

    const scope = account.kind === 'google' ? (account.googleScope ?? GOOGLE_MAIL_SCOPE) : grantedMicrosoftScope(req.scope ?? '');
    const accessToken = this.issueAccessToken(account.email, this.lifetimeSec, scope);
    const result: GrantResult = {
      ok: true,
      email: account.email,
      kind: account.kind,
      accessToken,
      expiresIn: this.lifetimeSec,
      scope,
    };
    if (this.rotation[account.kind]) {
      const next = random('sbx-rt-');
      account.refreshToken = next;
      this.refreshTokenOwners.set(next, account.email);
      result.refreshToken = next;
    }
    return result;
  }

  // ---- request log ---------------------------------------------------------------------

  recordTokenRequest(record: TokenRequestRecord): void {
    this.requestLog.push(record);
  }

  /** Requests the token endpoint received for one account, or in total. */
  tokenRequests(email?: string): number {
    if (email === undefined) return this.requestLog.length;
    const key = normaliseEmail(email);
    return this.requestLog.filter((r) => r.email === key).length;
  }

  /** The request log (oldest first), optionally for one account. Contains no secrets. */
  tokenRequestLog(email?: string): readonly TokenRequestRecord[] {
    if (email === undefined) return this.requestLog;
    const key = normaliseEmail(email);
    return this.requestLog.filter((r) => r.email === key);
  }

  /** Forgets the request log. Accounts, grants and issued tokens stay. */
  resetCounters(): void {
    this.requestLog.length = 0;
  }

  // ---- internals -----------------------------------------------------------------------

  private account(email: string): AccountRecord {
    const record = this.accounts.get(normaliseEmail(email));
    if (!record) throw new Error(`sandbox: no account ${normaliseEmail(email)}`);
    return record;
  }

  /**
   * An app-only access token (client credentials) for `app`, usable as any of `mailboxes`.
   * Revoking or expiring a mailbox's tokens reaches these too.
   */
  issueAppToken(app: string, mailboxes: Iterable<string>, lifetimeSec: number = this.lifetimeSec, scope = MICROSOFT_APP_SCOPE): string {
    const token = random('sbx-at-');
    const set = new Set([...mailboxes].map(normaliseEmail));
    this.accessTokens.set(token, { email: app, expiresAt: this.now() + lifetimeSec * 1000, revoked: false, mailboxes: set, scope });
    return token;
  }

  /** A registered OAuth client (accounts carry their client), or null. */
  client(clientId: string): { clientId: string; clientSecret: string | null; kind: ProviderKind } | null {
    const a = this.findClient(clientId);
    return a ? { clientId: a.clientId, clientSecret: a.clientSecret, kind: a.kind } : null;
  }

  /**
   * The outcome of a user's consent (authorization code or device code): a new refresh token
   * for the account, bound to the client that asked, and a first access token.
   */
  grantConsent(email: string, client: { clientId: string; clientSecret: string | null }, requestedScope: string): GrantResult {
    const account = this.account(email);
    account.clientId = client.clientId;
    account.clientSecret = client.clientSecret;
    account.grantRevoked = false;
    const refreshToken = random('sbx-rt-');
    account.refreshToken = refreshToken;
    this.refreshTokenOwners.set(refreshToken, account.email);
    // Google grants what was asked of its two sending scopes; Microsoft echoes the resource scopes.
    if (account.kind === 'google') account.googleScope = requestedScope.split(/\s+/).includes(GMAIL_SEND_SCOPE) && !requestedScope.split(/\s+/).includes(GOOGLE_MAIL_SCOPE) ? GMAIL_SEND_SCOPE : GOOGLE_MAIL_SCOPE;
    const scope = account.kind === 'google' ? account.googleScope! : grantedMicrosoftScope(requestedScope);
    return {
      ok: true,
      email: account.email,
      kind: account.kind,
      accessToken: this.issueAccessToken(account.email, this.lifetimeSec, scope),
      expiresIn: this.lifetimeSec,
      scope,
      refreshToken,
    };
  }

  /**
   * RFC 6749 §2.3: null when the client is known and its secret is right (a public client must
   * present none); else the AADSTS number of the failure. Accounts normally share a client (one
   * OAuth app, many mailboxes); `preferEmail`'s own client wins, so two apps that happen to
   * reuse an id cannot be confused.
   */
  authenticateClient(clientId: string, clientSecret: string | null, preferEmail?: string): number | null {
    const own = preferEmail === undefined ? undefined : this.accounts.get(preferEmail);
    const client = own && own.clientId === clientId ? own : this.findClient(clientId);
    if (!client) return 700016;
    if (client.clientSecret === null) return clientSecret ? 700025 : null;
    return clientSecret && secretEquals(clientSecret, client.clientSecret) ? null : 7000215;
  }

  private findClient(clientId: string): AccountRecord | undefined {
    for (const account of this.accounts.values()) if (account.clientId === clientId) return account;
    return undefined;
  }

  private credentialsOf(a: AccountRecord): SandboxCredentials {
    return { email: a.email, kind: a.kind, clientId: a.clientId, clientSecret: a.clientSecret, refreshToken: a.refreshToken };
  }
}

function assertPositiveSeconds(value: number, name: string): void {
  if (!Number.isFinite(value) || value <= 0) throw new Error(`sandbox: ${name} must be a positive number of seconds`);
}

/** Microsoft echoes the resource scopes it granted, without the OpenID ones. */
function grantedMicrosoftScope(requested: string): string {
  return requested
    .split(/\s+/)
    .filter((s) => s && !OIDC_SCOPES.has(s.toLowerCase()))
    .join(' ');
}

// Error texts as the real endpoints word them, so log lines and operator messages built from
// them look the same against the sandbox as in production. None includes a request value.
const GOOGLE_ERRORS: Record<OAuthErrorCode, string> = {
  invalid_request: 'Missing required parameter',
  invalid_client: 'Unauthorized',
  invalid_grant: 'Token has been expired or revoked.',
  unauthorized_client: 'Unauthorized',
  unsupported_grant_type: 'Invalid grant_type',
  invalid_scope: 'Invalid scope',
  temporarily_unavailable: 'The service is temporarily unavailable.',
  server_error: 'Internal error',
  authorization_pending: 'Precondition Required',
  slow_down: 'Forbidden',
  expired_token: 'Expired token',
  authorization_declined: 'Forbidden',
  access_denied: 'Forbidden',
};

const MICROSOFT_ERRORS: Record<number, string> = {
  900144: "AADSTS900144: The request body must contain the following parameter: 'grant_type, client_id or refresh_token'.",
  700016: 'AADSTS700016: Application was not found in the directory.',
  700025: "AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
  7000215: 'AADSTS7000215: Invalid client secret provided.',
  70011: `AADSTS70011: The provided request must include a 'scope' input parameter that contains ${MICROSOFT_SMTP_SCOPE} or ${GRAPH_MAIL_SEND_SCOPE}.`,
  9002313: 'AADSTS9002313: Invalid request. Request is malformed or invalid.',
  70000: "AADSTS70000: The provided value for the 'refresh_token' is not valid.",
  50173: 'AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed.',
  70008: 'AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.',
  90014: "AADSTS90014: The required field 'grant_type' is missing from the credential.",
  70003: 'AADSTS70003: The app requested an unsupported grant type.',
  50001: 'AADSTS50001: The service is temporarily unavailable.',
  70016: 'AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.',
  70020: "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
  65004: 'AADSTS65004: User declined to consent to access the app.',
  54005: 'AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.',
  501481: 'AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request.',
  1002012: 'AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).',
  700024: 'AADSTS700024: Client assertion is not within its valid time range.',
};

/** AADSTS numbers used when an error code is injected without one. */
export const DEFAULT_AADSTS: Record<OAuthErrorCode, number> = {
  invalid_request: 900144,
  invalid_client: 7000215,
  invalid_grant: 70008,
  unauthorized_client: 700016,
  unsupported_grant_type: 70003,
  invalid_scope: 70011,
  temporarily_unavailable: 50001,
  server_error: 50001,
  authorization_pending: 70016,
  // Entra has no number of its own for slow_down; it reuses the pending one.
  slow_down: 70016,
  expired_token: 70020,
  authorization_declined: 65004,
  access_denied: 65004,
};

export type GrantRefusal = Extract<GrantResult, { ok: false }>;

/** A refused grant, worded as `kind`'s endpoint words it. */
export function grantFailure(
  kind: ProviderKind,
  status: 400 | 401,
  error: OAuthErrorCode,
  opts: { email?: string | null; kind?: ProviderKind | null; aadsts?: number | undefined; description?: string } = {},
): GrantRefusal {
  return {
    ok: false,
    email: opts.email ?? null,
    kind: opts.kind ?? null,
    status,
    error,
    description: opts.description ?? errorDescription(kind, error, opts.aadsts),
    ...(kind === 'microsoft' && opts.aadsts !== undefined ? { aadsts: opts.aadsts } : {}),
  };
}

export function errorDescription(kind: ProviderKind, error: OAuthErrorCode, aadsts?: number): string {
  if (kind === 'google') return GOOGLE_ERRORS[error];
  const code = aadsts ?? DEFAULT_AADSTS[error];
  return MICROSOFT_ERRORS[code] ?? `AADSTS${code}: ${error}`;
}
