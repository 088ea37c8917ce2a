// Grants without a user at all, as the sandbox plays them:
//  - Google service accounts with domain-wide delegation: the JWT bearer grant (RFC 7523). The
//    sandbox holds each service account's public key, checks the RS256 signature and the claims
//    the way Google documents them, and issues a token for the mailbox named in `sub`.
//  - Microsoft 365 apps: the client credentials grant (RFC 6749 §4.4) in the app's tenant, with
//    the `.default` scope. The token names the app; it is good for AUTH XOAUTH2 as the mailboxes
//    an admin gave the app.
// The signature is checked with node:crypto, not with the library the relay signs with, so a
// mistake in how the relay uses that library cannot cancel itself out here.
import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { GMAIL_SEND_SCOPE, GOOGLE_MAIL_SCOPE, GRAPH_RESOURCE, MICROSOFT_SMTP_RESOURCE, MICROSOFT_SMTP_SCOPE } from '../config/providers.js';
import {
  grantFailure,
  normaliseEmail,
  random,
  secretEquals,
  type GrantRefusal,
  type GrantResult,
  type OAuthErrorCode,
  type SandboxState,
} from './provider-state.js';

export interface ServiceAccountInput {
  /** The public half of the key the relay signs with (PEM or KeyObject). */
  publicKey: KeyObject | string;
  /** Generated (`relay-N@sandbox-project.iam.gserviceaccount.com`) when omitted. */
  clientEmail?: string;
  /** The key's id (`kid`); generated when omitted. */
  privateKeyId?: string;
  /** Domains a Workspace admin delegated the mail scope to this account for; every domain when omitted. */
  domains?: string[];
}

export interface SandboxServiceAccount {
  clientEmail: string;
  privateKeyId: string;
  clientId: string;
}

export interface AppInput {
  /** The tenant the app is registered in (id or domain); client credentials must name it. */
  tenant: string;
  /** Mailboxes the app may send as (Add-MailboxPermission for its service principal). */
  mailboxes: string[];
  clientId?: string;
  clientSecret?: string;
}

/** Holds a secret: never log it. */
export interface SandboxApp {
  tenant: string;
  clientId: string;
  clientSecret: string;
}

interface ServiceAccountRecord extends SandboxServiceAccount {
  publicKey: KeyObject;
  domains: Set<string> | null;
}

interface AppRecord extends SandboxApp {
  mailboxes: Set<string>;
}

/** Google accepts assertions valid for at most an hour, and a few minutes of clock skew. */
const MAX_ASSERTION_LIFETIME_S = 3600;
const CLOCK_SKEW_S = 300;
const APP_SCOPE_RESOURCES = new Set([MICROSOFT_SMTP_RESOURCE, new URL(MICROSOFT_SMTP_SCOPE).origin, GRAPH_RESOURCE]);

const GOOGLE_TEXT = {
  signature: 'Invalid JWT Signature.',
  time: 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.',
  audience: 'Invalid JWT: aud claim does not match the token endpoint.',
  subject: 'Invalid email or User ID',
  delegation: 'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
};

export class SandboxApps {
  private readonly serviceAccounts = new Map<string, ServiceAccountRecord>();
  private readonly apps = new Map<string, AppRecord>();

  constructor(private readonly state: SandboxState) {}

  // ---- registration --------------------------------------------------------------------

  addServiceAccount(input: ServiceAccountInput): SandboxServiceAccount {
    const clientEmail = input.clientEmail ?? `relay-${this.serviceAccounts.size + 1}@sandbox-project.iam.gserviceaccount.com`;
    if (this.serviceAccounts.has(clientEmail)) throw new Error(`sandbox: service account ${clientEmail} is already registered`);
    const publicKey = typeof input.publicKey === 'string' ? createPublicKey(input.publicKey) : input.publicKey;
    if (publicKey.asymmetricKeyType !== 'rsa') throw new Error('sandbox: a service account key must be RSA');
    const record: ServiceAccountRecord = {
      clientEmail,
      privateKeyId: input.privateKeyId ?? randomBytes(20).toString('hex'),
      clientId: String(100_000_000_000_000_000_000n + BigInt(this.serviceAccounts.size + 1)),
      publicKey,
      domains: input.domains ? new Set(input.domains.map((d) => d.toLowerCase())) : null,
    };
    this.serviceAccounts.set(clientEmail, record);
    return { clientEmail: record.clientEmail, privateKeyId: record.privateKeyId, clientId: record.clientId };
  }

  /** An admin withdraws (or, with null, widens to every domain) the delegation. */
  setDelegatedDomains(clientEmail: string, domains: string[] | null): void {
    const record = this.serviceAccounts.get(clientEmail);
    if (!record) throw new Error(`sandbox: no service account ${clientEmail}`);
    record.domains = domains ? new Set(domains.map((d) => d.toLowerCase())) : null;
  }

  addApp(input: AppInput): SandboxApp {
    const record: AppRecord = {
      tenant: input.tenant,
      clientId: input.clientId ?? random('sbx-app-'),
      clientSecret: input.clientSecret ?? random('sbx-app-secret-'),
      mailboxes: new Set(input.mailboxes.map(normaliseEmail)),
    };
    if (this.apps.has(record.clientId)) throw new Error(`sandbox: app ${record.clientId} is already registered`);
    this.apps.set(record.clientId, record);
    return { tenant: record.tenant, clientId: record.clientId, clientSecret: record.clientSecret };
  }

  // ---- the JWT bearer grant ------------------------------------------------------------

  /** `audience` is the URL the assertion was posted to: Google wants its own token URL in `aud`. */
  grantJwtBearer(assertion: string | null, audience: string): GrantResult {
    const jwt = decodeJwt(assertion);
    const sub = typeof jwt?.payload.sub === 'string' ? normaliseEmail(jwt.payload.sub) : null;
    const fail = (error: OAuthErrorCode, description?: string) =>
      grantFailure('google', 400, error, { email: sub, kind: sub ? 'google' : null, ...(description ? { description } : {}) });
    if (!jwt) return fail('invalid_request', 'Invalid assertion format');
    const { header, payload } = jwt;
    const account = typeof payload.iss === 'string' ? this.serviceAccounts.get(payload.iss) : undefined;
    if (!account) return fail('invalid_grant', GOOGLE_TEXT.signature);
    if (header.alg !== 'RS256' || (header.kid !== undefined && header.kid !== account.privateKeyId)) return fail('invalid_grant', GOOGLE_TEXT.signature);
    if (!verify('sha256', Buffer.from(jwt.signedPart), account.publicKey, jwt.signature)) return fail('invalid_grant', GOOGLE_TEXT.signature);
    if (payload.aud !== audience) return fail('invalid_grant', GOOGLE_TEXT.audience);
    const now = this.state.now() / 1000;
    const { iat, exp } = payload;
    if (typeof iat !== 'number' || typeof exp !== 'number' || exp <= iat || exp - iat > MAX_ASSERTION_LIFETIME_S || iat > now + CLOCK_SKEW_S || exp < now) {
      return fail('invalid_grant', GOOGLE_TEXT.time);
    }
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(/\s+/) : [];
    // The mail scope (SMTP and the Gmail API) or the Gmail API's send-only one, as delegated.
    const granted = [GOOGLE_MAIL_SCOPE, GMAIL_SEND_SCOPE].find((s) => scopes.includes(s));
    if (!granted) return fail('invalid_scope');
    // Without sub the token would be the service account's own, which has no mailbox.
    if (!sub || !this.state.hasAccount(sub) || this.state.kindOf(sub) !== 'google') return fail('invalid_grant', GOOGLE_TEXT.subject);
    if (account.domains && !account.domains.has(sub.split('@')[1]!)) return fail('unauthorized_client', GOOGLE_TEXT.delegation);
    return {
      ok: true,
      email: sub,
      kind: 'google',
      accessToken: this.state.issueAccessToken(sub, this.state.tokenLifetimeSec, granted),
      expiresIn: this.state.tokenLifetimeSec,
      // Google's answer to a JWT bearer grant carries no scope and no refresh token.
      scope: '',
    };
  }

  // ---- the client credentials grant ----------------------------------------------------

  grantClientCredentials(client: { clientId: string | null; clientSecret: string | null }, scope: string | null, tenant: string): GrantResult {
    const fail = (status: 400 | 401, error: OAuthErrorCode, aadsts: number): GrantRefusal => grantFailure('microsoft', status, error, { aadsts });
    if (!client.clientId) return fail(400, 'invalid_request', 900144);
    const app = this.apps.get(client.clientId);
    // An app is only found in the directory of its own tenant.
    if (!app || app.tenant.toLowerCase() !== tenant.toLowerCase()) return fail(401, 'invalid_client', 700016);
    if (!client.clientSecret || !secretEquals(client.clientSecret, app.clientSecret)) return fail(401, 'invalid_client', 7000215);
    const resource = /^(.*)\/\.default$/.exec((scope ?? '').trim())?.[1];
    if (!resource || !APP_SCOPE_RESOURCES.has(resource.toLowerCase())) return fail(400, 'invalid_scope', 1002012);
    const principal = `app:${app.clientId}`;
    return {
      ok: true,
      email: principal,
      kind: 'microsoft',
      accessToken: this.state.issueAppToken(principal, app.mailboxes, this.state.tokenLifetimeSec, `${resource.toLowerCase()}/.default`),
      expiresIn: this.state.tokenLifetimeSec,
      scope: '',
    };
  }

  /** The mailbox a JWT bearer request is for (unverified: only to attribute it in the request log). */
  attribute(form: URLSearchParams | null): string | null {
    const sub = decodeJwt(form?.get('assertion') ?? null)?.payload.sub;
    return typeof sub === 'string' ? normaliseEmail(sub) : null;
  }
}

interface DecodedJwt {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signedPart: string;
  signature: Buffer;
}

function decodeJwt(token: string | null): DecodedJwt | null {
  const parts = (token ?? '').split('.');
  if (parts.length !== 3) return null;
  try {
    const [h, p, sig] = parts as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as unknown;
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as unknown;
    if (!header || typeof header !== 'object' || !payload || typeof payload !== 'object') return null;
    return { header: header as Record<string, unknown>, payload: payload as Record<string, unknown>, signedPart: `${h}.${p}`, signature: Buffer.from(sig, 'base64url') };
  } catch {
    return null;
  }
}
