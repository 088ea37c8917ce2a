// `xoauth2-relay auth google|microsoft`: a person consents once, the relay gets a refresh token.
// Google: authorization code with PKCE and a loopback redirect (the consent URL is printed, the
// browser's redirect comes back to 127.0.0.1). Microsoft: the device code flow (a code is printed
// to enter at the verification URL). Both end in src/cli/auth-result.ts.
//
// The consent asks for the scopes of the upstream the account will use (--upstream): a token is
// issued per resource, so a mailbox that consents to SMTP.Send alone cannot use Graph, and one
// whose tenant allows user consent to Graph's Mail.Send but not to SMTP.Send (or the reverse)
// must be asked for exactly what it will use.
import type { AccountUpstream } from '../config/schema.js';
import { GMAIL_SEND_SCOPE, GOOGLE_MAIL_SCOPE, GRAPH_DELEGATED_SCOPE, MICROSOFT_DELEGATED_SCOPE, microsoftEndpoint } from '../config/providers.js';
import { TokenGrantError } from '../tokens/grant.js';
import { authorizeWithPkce } from '../tokens/grants/auth-code-pkce.js';
import { authorizeWithDeviceCode } from '../tokens/grants/device-code.js';
import { deliverAccount, obtainedAccount, processIo, storeOf, type CliIo, type StoreTarget } from './auth-result.js';

const REQUEST_TIMEOUT_MS = 30_000;

/** What each provider's consent asks for, by upstream (the narrowest scope that sends). */
const CONSENT_SCOPES = {
  google: { smtp: GOOGLE_MAIL_SCOPE, gmail_api: GMAIL_SEND_SCOPE },
  microsoft: { smtp: MICROSOFT_DELEGATED_SCOPE, graph: GRAPH_DELEGATED_SCOPE },
} as const;

/** The consent's scope for `upstream`, or an error naming the upstreams the provider has. */
export function consentScope(kind: keyof typeof CONSENT_SCOPES, upstream = 'smtp'): { scope: string; upstream: AccountUpstream } {
  const scopes: Record<string, string> = CONSENT_SCOPES[kind];
  const scope = scopes[upstream];
  if (!scope) throw new Error(`--upstream must be one of ${Object.keys(scopes).join(', ')} for ${kind}, got "${upstream}"`);
  return { scope, upstream: upstream as AccountUpstream };
}

export interface AuthGoogleOptions extends StoreTarget {
  email: string;
  clientId: string;
  clientSecret?: string;
  authUrl: string;
  tokenUrl: string;
  /** Seconds to wait for the consent. */
  timeout: string;
  provider: string;
  /** smtp (default) or gmail_api. */
  upstream?: string;
}

export async function authGoogleCommand(opts: AuthGoogleOptions, io: CliIo = processIo): Promise<void> {
  const { scope, upstream } = consentScope('google', opts.upstream);
  const store = storeOf(opts);
  const credentials = await explained(authorizeWithPkce({
    authUrl: opts.authUrl,
    tokenUrl: opts.tokenUrl,
    clientId: opts.clientId,
    clientSecret: opts.clientSecret ?? null,
    scope,
    email: opts.email,
    // offline + consent: Google returns a refresh token only then, even to a returning user.
    extraParams: { access_type: 'offline', prompt: 'consent' },
    timeoutMs: positive(opts.timeout, '--timeout') * 1000,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    onConsentUrl: (url) => {
      io.info(`Open this URL in a browser and sign in as ${opts.email}:\n\n  ${url}\n`);
      io.info('Waiting for the browser to come back to this machine (127.0.0.1)...');
    },
    onWarning: (message) => io.info(`warning: ${message}`),
  }));
  io.info(`Consent received for ${opts.email}.`);
  const account = obtainedAccount({ email: opts.email, provider: opts.provider, clientId: opts.clientId, clientSecret: opts.clientSecret ?? null, refreshToken: credentials.refreshToken, upstream });
  await deliverAccount(account, store, io);
}

export interface AuthMicrosoftOptions extends StoreTarget {
  email: string;
  clientId: string;
  clientSecret?: string;
  tenant: string;
  authority: string;
  provider: string;
  /** Hidden, for tests: multiplies the poll interval and the code's lifetime. */
  pollScale?: string;
  /** smtp (default) or graph. */
  upstream?: string;
}

export async function authMicrosoftCommand(opts: AuthMicrosoftOptions, io: CliIo = processIo): Promise<void> {
  const { scope, upstream } = consentScope('microsoft', opts.upstream);
  const store = storeOf(opts);
  const credentials = await explained(authorizeWithDeviceCode({
    deviceCodeUrl: microsoftEndpoint(opts.authority, opts.tenant, 'devicecode'),
    tokenUrl: microsoftEndpoint(opts.authority, opts.tenant, 'token'),
    clientId: opts.clientId,
    clientSecret: opts.clientSecret ?? null,
    scope,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    pollScale: opts.pollScale === undefined ? 1 : positive(opts.pollScale, '--poll-scale'),
    onUserCode: (code) => {
      io.info(`Sign in as ${opts.email}: open ${code.verificationUri} and enter the code\n\n  ${code.userCode}\n`);
      io.info(`Waiting for the sign-in (the code expires in ${Math.round(code.expiresInSec / 60)} min)...`);
    },
  }));
  io.info(`Sign-in completed for ${opts.email}.`);
  const account = obtainedAccount({
    email: opts.email,
    provider: opts.provider,
    clientId: opts.clientId,
    clientSecret: opts.clientSecret ?? null,
    refreshToken: credentials.refreshToken,
    tenant: opts.tenant,
    upstream,
  });
  await deliverAccount(account, store, io);
}

function positive(text: string, option: string): number {
  const n = Number(text);
  if (!(n > 0 && Number.isFinite(n))) throw new Error(`${option} must be a positive number, got "${text}"`);
  return n;
}

/** A person at a terminal is helped by the endpoint's own words, which the relay's logs leave out. */
async function explained<T>(flow: Promise<T>): Promise<T> {
  try {
    return await flow;
  } catch (e) {
    if (e instanceof TokenGrantError && e.description) throw new Error(`${e.message}: ${e.description}`, { cause: e });
    throw e;
  }
}
