// The mailbox account: the unit that owns a token, a pool of upstream connections and a set of
// sender addresses. Built from config (or a stored account); immutable. A change at run time
// (reload, the HTTP API) builds a new Account, and the relay compares old and new to decide
// whether the token and the pool can be kept (src/relay/relay.ts applyAccounts).
import { accountScope, withTenant } from '../config/providers.js';
import type { AccountAuthKind, AccountUpstream, Config, ProviderConfig, ResolvedAccountConfig } from '../config/schema.js';
import type { AccountLimits } from '../config/account-limits.js';

export interface Account {
  /** The mailbox address; always the XOAUTH2 `user=`. Lower-case. */
  readonly email: string;
  readonly provider: ProviderConfig;
  /** Which grant gets its access tokens (src/tokens/account-grant.ts). */
  readonly auth: AccountAuthKind;
  /** SMTP with XOAUTH2, Microsoft Graph or the Gmail API (src/upstream/api/). */
  readonly upstream: AccountUpstream;
  /** The scope its grant asks for, which follows the upstream (config/providers.ts accountScope). */
  readonly scope: string | null;
  /**
   * The OAuth client the tokens belong to. A service account's client is in its key file, so
   * there it is the file's path: a token stored for another key file is not reused.
   */
  readonly clientId: string;
  readonly clientSecret: string | null;
  /** The refresh token as configured (auth: refresh_token); a rotated one from the store may supersede it. */
  readonly refreshToken: string | null;
  /** Absolute path of the Google service account key (auth: service_account). */
  readonly serviceAccountFile: string | null;
  readonly tenant: string | null;
  /** Where grants are sent: the provider's token URL, in the account's tenant if it names one. */
  readonly tokenUrl: string;
  /** Inbound AUTH PLAIN/LOGIN password; null: this account cannot be used by AUTH. */
  readonly password: string | null;
  readonly senders: readonly string[];
  readonly sourceIp: string | null;
  readonly maxConnections: number;
  readonly minIdle: number;
  readonly messagesPerConnection: number;
  /** Sending limits, provider defaults filled in (src/config/account-limits.ts). */
  readonly limits: AccountLimits;
}

export function accountFromConfig(a: ResolvedAccountConfig, providers: Config['providers']): Account {
  const provider = providers[a.provider];
  if (!provider) throw new Error(`unknown provider ${a.provider}`); // load.ts reports this as a ConfigError first
  return {
    email: a.email,
    provider,
    auth: a.auth,
    upstream: a.upstream,
    scope: accountScope(provider, a.auth, a.upstream),
    clientId: a.client_id ?? `service-account:${a.service_account_file}`,
    clientSecret: a.client_secret ?? null,
    refreshToken: a.refresh_token ?? null,
    serviceAccountFile: a.service_account_file ?? null,
    tenant: a.tenant ?? null,
    // load.ts has checked that a tenant fits the URL.
    tokenUrl: a.tenant ? (withTenant(provider.tokenUrl, a.tenant) ?? provider.tokenUrl) : provider.tokenUrl,
    password: a.password ?? null,
    senders: a.senders,
    sourceIp: a.source_ip,
    maxConnections: a.max_connections,
    minIdle: a.min_idle,
    messagesPerConnection: a.messages_per_connection,
    limits: a.limits,
  };
}

export const accountsFromConfig = (c: Config): Account[] => c.accounts.map((a) => accountFromConfig(a, c.providers));

/** Nothing about the account changed (Accounts are plain data built in one fixed key order). */
export const sameAccount = (a: Account, b: Account): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Same grant, same client, same secrets: a token obtained for one serves the other. */
export function sameCredentials(a: Account, b: Account): boolean {
  return (
    a.email === b.email &&
    a.auth === b.auth &&
    a.clientId === b.clientId &&
    a.clientSecret === b.clientSecret &&
    a.refreshToken === b.refreshToken &&
    a.serviceAccountFile === b.serviceAccountFile &&
    a.tenant === b.tenant &&
    a.tokenUrl === b.tokenUrl &&
    a.scope === b.scope
  );
}

/** Same credentials and the same way of connecting: a pooled connection of one serves the other. */
export function sameConnections(a: Account, b: Account): boolean {
  const p = a.provider;
  const q = b.provider;
  return (
    sameCredentials(a, b) &&
    p.smtp.host === q.smtp.host &&
    p.smtp.port === q.smtp.port &&
    p.smtp.security === q.smtp.security &&
    p.caFile === q.caFile &&
    a.upstream === b.upstream &&
    p.graphUrl === q.graphUrl &&
    p.gmailApiUrl === q.gmailApiUrl &&
    a.sourceIp === b.sourceIp &&
    a.maxConnections === b.maxConnections &&
    a.minIdle === b.minIdle &&
    a.messagesPerConnection === b.messagesPerConnection
  );
}
