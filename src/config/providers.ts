// Built-in provider defaults (SPEC "providers"). An operator's `providers:` entry overrides any
// field; a provider with another name must say which kind of grant it speaks.
import type { ProviderConfig, ProviderKind } from './schema.js';

export const PROVIDER_DEFAULTS: Record<ProviderKind, Omit<ProviderConfig, 'name'>> = {
  google: {
    kind: 'google',
    tokenUrl: 'https://oauth2.googleapis.com/token',
    // Google's refresh grant keeps the scope the user consented to; none is sent.
    scope: null,
    smtp: { host: 'smtp.gmail.com', port: 587, security: 'starttls' },
    caFile: null,
  },
  microsoft: {
    kind: 'microsoft',
    tokenUrl: 'https://login.microsoftonline.com/common/oauth2/v2.0/token',
    // The v2 endpoint requires the scope on every refresh grant.
    scope: 'https://outlook.office.com/SMTP.Send offline_access',
    smtp: { host: 'smtp.office365.com', port: 587, security: 'starttls' },
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
export const MICROSOFT_APP_SCOPE = 'https://outlook.office365.com/.default';
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
