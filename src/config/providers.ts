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
