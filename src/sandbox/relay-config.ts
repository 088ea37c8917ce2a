// The relay.yaml document for a relay pointed at a sandbox provider. One builder serves `demo`,
// the integration tests and the benchmarks, so all three exercise the same config surface an
// operator writes.
import type { SandboxAccount, SandboxProvider } from './provider.js';

export interface SandboxRelayAccount {
  account: SandboxAccount;
  password?: string;
  senders?: string[];
  /**
   * The account's credential keys (auth: service_account / client_credentials and theirs) in
   * place of the refresh-token ones its sandbox registration gives.
   */
  credentials?: Record<string, unknown>;
  /** Any other account key of relay.yaml (max_connections, min_idle, ...). */
  extra?: Record<string, unknown>;
}

/** A plain config document (as YAML would give) using only the keys of SPEC plus `overrides`. */
export function sandboxRelayConfig(
  sandbox: SandboxProvider,
  accounts: readonly SandboxRelayAccount[],
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const smtp = { host: sandbox.smtpHost, port: sandbox.smtpPort, security: 'starttls' };
  return {
    listen: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    providers: {
      google: { token_url: sandbox.tokenUrl('google'), smtp, gmail_api_url: sandbox.gmail.url, ca_file: sandbox.caFile },
      microsoft: { token_url: sandbox.tokenUrl('microsoft'), smtp, graph_url: sandbox.graph.url, ca_file: sandbox.caFile },
    },
    accounts: accounts.map(({ account, password, senders, credentials, extra }) => ({
      email: account.email,
      provider: account.kind,
      ...(credentials ?? {
        client_id: account.clientId,
        ...(account.clientSecret ? { client_secret: account.clientSecret } : {}),
        refresh_token: account.refreshToken,
      }),
      ...(password ? { password } : {}),
      ...(senders ? { senders } : {}),
      ...extra,
    })),
    ...overrides,
  };
}
