// Built-in provider defaults (SPEC "providers"). An operator's `providers:` entry overrides any
// field; a provider with another name must say which kind of grant it speaks.
import type { AccountAuthKind, AccountUpstream, ProviderConfig, ProviderKind } from './schema.js';

/** Delegated SMTP submission to Exchange Online (AUTH XOAUTH2 with a user's token). */
export const MICROSOFT_SMTP_SCOPE = 'https://outlook.office.com/SMTP.Send';
/** The resource Exchange Online's SMTP answers as for app-only tokens (client credentials). */
export const MICROSOFT_SMTP_RESOURCE = 'https://outlook.office365.com';
/** Microsoft Graph; app-only tokens for it ask for `${GRAPH_RESOURCE}/.default`. */
export const GRAPH_RESOURCE = 'https://graph.microsoft.com';

export const PROVIDER_DEFAULTS: Record<ProviderKind, Omit<ProviderConfig, 'name'>> = {
  google: {
    kind: 'google',
    tokenUrl: 'https://oauth2.googleapis.com/token',
    // Google's refresh grant keeps the scope the user consented to; none is sent.
    scope: null,
    smtp: { host: 'smtp.gmail.com', port: 587, security: 'starttls' },
    graphUrl: GRAPH_RESOURCE,
    gmailApiUrl: 'https://gmail.googleapis.com',
    caFile: null,
  },
  microsoft: {
    kind: 'microsoft',
    tokenUrl: 'https://login.microsoftonline.com/common/oauth2/v2.0/token',
    // The v2 endpoint requires the scope on every refresh grant.
    scope: `${MICROSOFT_SMTP_SCOPE} offline_access`,
    smtp: { host: 'smtp.office365.com', port: 587, security: 'starttls' },
    graphUrl: GRAPH_RESOURCE,
    gmailApiUrl: 'https://gmail.googleapis.com',
    caFile: null,
  },
};

export const isProviderKind = (s: string): s is ProviderKind => s === 'google' || s === 'microsoft';

/** The one scope Google grants for SMTP with XOAUTH2; consent and service accounts ask for it. */
export const GOOGLE_MAIL_SCOPE = 'https://mail.google.com/';
export const GOOGLE_AUTH_URL = 'https://accounts.google.com/o/oauth2/v2/auth';
export const GOOGLE_TOKEN_URL = PROVIDER_DEFAULTS.google.tokenUrl;
/** Delegated SMTP plus a refresh token: what the device-code consent asks for. */
export const MICROSOFT_DELEGATED_SCOPE = PROVIDER_DEFAULTS.microsoft.scope!;
/** App-only tokens name the resource, never a permission: Entra grants the app's admin-consented roles. */
export const MICROSOFT_APP_SCOPE = `${MICROSOFT_SMTP_RESOURCE}/.default`;
export const MICROSOFT_AUTHORITY = 'https://login.microsoftonline.com';

/** Microsoft's endpoints under an authority for a tenant (`common`, a tenant id or a domain). */
export const microsoftEndpoint = (authority: string, tenant: string, name: 'token' | 'devicecode'): string =>
  `${authority.replace(/\/+$/, '')}/${encodeURIComponent(tenant)}/oauth2/v2.0/${name}`;

/** The multi-tenant names, which cannot issue an app-only (client credentials) token. */
export const MULTI_TENANT_NAMES: ReadonlySet<string> = new Set(['common', 'organizations', 'consumers']);

const TENANT_SEGMENT = /\/(common|organizations|consumers)(?=\/oauth2\/)/i;

/**
 * A Microsoft token URL with its multi-tenant segment (`/common/oauth2/...`) replaced by
 * `tenant`; null when the URL has no such segment to replace.
 */
export function withTenant(tokenUrl: string, tenant: string): string | null {
  return TENANT_SEGMENT.test(tokenUrl) ? tokenUrl.replace(TENANT_SEGMENT, `/${encodeURIComponent(tenant)}`) : null;
}

/**
 * Delegated Graph sending plus a refresh token (upstream: graph, auth: refresh_token). The relay
 * creates a draft from the MIME and sets its recipients (Mail.ReadWrite) before sending it
 * (Mail.Send): sendMail alone would take the recipients from the headers (src/upstream/api/graph.ts).
 */
export const GRAPH_MAIL_SEND_SCOPE = `${GRAPH_RESOURCE}/Mail.Send`;
export const GRAPH_MAIL_READWRITE_SCOPE = `${GRAPH_RESOURCE}/Mail.ReadWrite`;
export const GRAPH_DELEGATED_SCOPE = `${GRAPH_MAIL_READWRITE_SCOPE} ${GRAPH_MAIL_SEND_SCOPE} offline_access`;
/** App-only Graph tokens: Entra grants the app's admin-consented Mail.Send application permission. */
export const GRAPH_APP_SCOPE = `${GRAPH_RESOURCE}/.default`;
/** The narrowest Gmail API scope that sends (https://mail.google.com/ includes it). */
export const GMAIL_SEND_SCOPE = 'https://www.googleapis.com/auth/gmail.send';

/**
 * The scope an account's grant asks for: it follows the upstream, since a token for SMTP is no
 * good for Graph and the reverse (Microsoft issues a token per resource). null: no scope is sent
 * (Google's refresh grant keeps what the user consented to; https://mail.google.com/ covers the
 * Gmail API too). An operator's providers.X.scope applies to SMTP accounts with a refresh token.
 */
export function accountScope(provider: ProviderConfig, auth: AccountAuthKind, upstream: AccountUpstream): string | null {
  if (provider.kind === 'microsoft') {
    if (upstream === 'graph') return auth === 'client_credentials' ? GRAPH_APP_SCOPE : GRAPH_DELEGATED_SCOPE;
    return auth === 'client_credentials' ? MICROSOFT_APP_SCOPE : provider.scope;
  }
  if (auth === 'service_account') return upstream === 'gmail_api' ? GMAIL_SEND_SCOPE : GOOGLE_MAIL_SCOPE;
  return provider.scope;
}

/** Which upstreams a provider kind offers besides SMTP. */
export const API_UPSTREAM_KIND: Record<Exclude<AccountUpstream, 'smtp'>, ProviderKind> = { graph: 'microsoft', gmail_api: 'google' };
