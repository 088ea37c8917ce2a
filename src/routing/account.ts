// The mailbox account: the unit that owns a token, a pool of upstream connections and a set of
// sender addresses. Built once from config; immutable while the relay runs.
import type { AccountConfig, Config, ProviderConfig } from '../config/schema.js';

export interface Account {
  /** The mailbox address; always the XOAUTH2 `user=`. Lower-case. */
  readonly email: string;
  readonly provider: ProviderConfig;
  readonly clientId: string;
  readonly clientSecret: string | null;
  /** The refresh token as configured; a rotated one from the store may supersede it. */
  readonly refreshToken: string;
  /** Inbound AUTH PLAIN/LOGIN password; null: this account cannot be used by AUTH. */
  readonly password: string | null;
  readonly senders: readonly string[];
  readonly sourceIp: string | null;
  readonly maxConnections: number;
  readonly minIdle: number;
  readonly messagesPerConnection: number;
}

export function accountFromConfig(a: AccountConfig, providers: Config['providers']): Account {
  const provider = providers[a.provider];
  if (!provider) throw new Error(`unknown provider ${a.provider}`); // load.ts reports this as a ConfigError first
  return {
    email: a.email,
    provider,
    clientId: a.client_id,
    clientSecret: a.client_secret ?? null,
    refreshToken: a.refresh_token,
    password: a.password ?? null,
    senders: a.senders,
    sourceIp: a.source_ip,
    maxConnections: a.max_connections,
    minIdle: a.min_idle,
    messagesPerConnection: a.messages_per_connection,
  };
}

export const accountsFromConfig = (c: Config): Account[] => c.accounts.map((a) => accountFromConfig(a, c.providers));
