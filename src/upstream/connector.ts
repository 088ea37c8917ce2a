// Opens one upstream connection for an account, ready for transactions: connect, TLS, EHLO,
// AUTH XOAUTH2 with the cached token. A 535 on a cached token (revoked, or expired early) is
// answered with one token refresh and one more AUTH before the failure is reported (SPEC).
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { RelayError } from '../errors/registry.js';
import type { Account } from '../routing/account.js';
import type { TokenCache } from '../tokens/token-cache.js';
import { UpstreamAuthError, UpstreamConnection } from './connection.js';
import type { Opened } from './pool.js';

export interface ConnectorOptions {
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  dataTimeoutMs: number;
  ehloName?: string | undefined;
}

export type Connector = (account: Account) => Promise<Opened<UpstreamConnection>>;

export const connectorOptions = (u: Config['upstream']): ConnectorOptions => ({
  connectTimeoutMs: u.connect_timeout_ms,
  commandTimeoutMs: u.command_timeout_ms,
  dataTimeoutMs: u.data_timeout_ms,
  ehloName: u.ehlo_name,
});

/** A connection to the account's provider, ready for AUTH: connected, TLS, EHLO. */
export function dialProvider(account: Account, opts: ConnectorOptions, ca: Buffer | undefined): Promise<UpstreamConnection> {
  return UpstreamConnection.open({
    host: account.provider.smtp.host,
    port: account.provider.smtp.port,
    security: account.provider.smtp.security,
    ca,
    localAddress: account.sourceIp,
    ehloName: opts.ehloName ?? hostname(),
    timeouts: { connectMs: opts.connectTimeoutMs, commandMs: opts.commandTimeoutMs, dataMs: opts.dataTimeoutMs },
  });
}

export function createConnector(tokens: TokenCache, opts: ConnectorOptions, logger: Logger): Connector {
  const caCache = new Map<string, Buffer>();
  const ca = (file: string | null) => {
    if (!file) return undefined;
    let pem = caCache.get(file);
    if (!pem) caCache.set(file, (pem = readFileSync(file)));
    return pem;
  };
  const ehloName = opts.ehloName ?? hostname();
  const dial = (account: Account) => dialProvider(account, { ...opts, ehloName }, ca(account.provider.caFile));

  return async (account) => {
    let token = await tokens.get(account);
    let conn = await dial(account);
    try {
      await conn.authenticate(account.email, token.value);
    } catch (e) {
      if (!(e instanceof UpstreamAuthError)) {
        conn.destroy();
        throw e;
      }
      logger.warn(
        { event: 'upstream_auth_rejected', account: account.email, reply: e.upstreamReply.code, retry: true },
        'provider refused the cached token; refreshing it once',
      );
      token = await tokens.replaceRejected(account, token.value);
      // Some providers close after a failed AUTH; a new connection is the reliable retry.
      if (!conn.isUsable) conn = await dial(account);
      try {
        await conn.authenticate(account.email, token.value);
      } catch (e2) {
        conn.destroy();
        if (e2 instanceof UpstreamAuthError) {
          logger.error({ event: 'upstream_auth_rejected', account: account.email, reply: e2.upstreamReply.code, retry: false }, 'provider refused a fresh token');
          throw new RelayError('UPSTREAM_AUTH_REJECTED', `${account.email}: provider refused a fresh token (${e2.upstreamReply.code})`, { cause: e2 });
        }
        throw e2;
      }
    }
    return { conn, tokenExpiresAt: token.expiresAt };
  };
}
