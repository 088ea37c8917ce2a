// Does an account work? A token from the provider, then an upstream connection authenticated
// with it (connect, TLS, EHLO, AUTH XOAUTH2), closed with QUIT: nothing is sent. Used by
// `accounts test`, and by the HTTP API before it adds or changes an account.
import { readFileSync } from 'node:fs';
import type { Account } from '../routing/account.js';
import type { TokenStore } from '../store/store.js';
import { accountGrant } from '../tokens/account-grant.js';
import { TokenGrantError, type Grant } from '../tokens/grant.js';
import { recordMatches, type AccessToken } from '../tokens/token-cache.js';
import { dialProvider, type ConnectorOptions } from '../upstream/connector.js';
import type { UpstreamConnection } from '../upstream/connection.js';
import { ApiCheckFailure, apiUpstreamLabel, checkApiAccount } from '../upstream/api/check.js';
import { adviceFor, type CheckStage } from './advice.js';

/** What a check found; no secret in it. */
export interface CheckResult {
  email: string;
  ok: boolean;
  /** host:port of the provider's submission server. */
  upstream: string;
  ms: number;
  /** ok: how long the fresh token lives. */
  token_expires_in_s?: number;
  /** Failed: where, what happened, the endpoint's own words (if any), and what to do. */
  stage?: CheckStage;
  error?: string;
  detail?: string;
  advice?: string;
}

export interface CheckDeps {
  /** A fresh token for the account (freshToken(), or the running relay's forced refresh). */
  token: (account: Account) => Promise<AccessToken>;
  upstream: ConnectorOptions;
  now?: () => number;
}

export async function checkAccount(account: Account, deps: CheckDeps): Promise<CheckResult> {
  const now = deps.now ?? Date.now;
  const started = now();
  const { host, port } = account.provider.smtp;
  const base = { email: account.email, upstream: account.upstream === 'smtp' ? `${host}:${port}` : apiUpstreamLabel(account) };
  const failed = (stage: CheckStage, e: unknown): CheckResult => ({
    ...base,
    ok: false,
    ms: now() - started,
    stage,
    error: (e as Error).message,
    ...(e instanceof TokenGrantError && e.description ? { detail: e.description } : {}),
    advice: adviceFor(stage, e, account),
  });

  let token: AccessToken;
  try {
    token = await deps.token(account);
  } catch (e) {
    return failed('token', e);
  }
  if (account.upstream !== 'smtp') {
    try {
      await checkApiAccount(account, token.value, deps.upstream);
    } catch (e) {
      if (e instanceof ApiCheckFailure) return failed(e.stage, e.cause);
      throw e;
    }
    return { ...base, ok: true, ms: now() - started, token_expires_in_s: Math.round((token.expiresAt - now()) / 1000) };
  }
  let conn: UpstreamConnection;
  try {
    conn = await dialProvider(account, deps.upstream, account.provider.caFile ? readFileSync(account.provider.caFile) : undefined);
  } catch (e) {
    return failed('connect', e);
  }
  try {
    await conn.authenticate(account.email, token.value);
  } catch (e) {
    conn.destroy();
    return failed('auth', e);
  }
  await conn.quit().catch(() => conn.destroy());
  return { ...base, ok: true, ms: now() - started, token_expires_in_s: Math.round((token.expiresAt - now()) / 1000) };
}

/**
 * A fresh token from the provider for an account the running relay does not hold (a new one,
 * or `accounts test` without a running relay). It starts from the refresh token the store has
 * for these credentials (a rotated one), and stores what comes back, as the relay would: a
 * provider that rotates refresh tokens must not be left holding one nobody kept.
 */
export async function freshToken(account: Account, store: TokenStore, timeoutMs: number, grant: Grant = accountGrant): Promise<AccessToken> {
  const record = await store.loadToken(account.email).catch(() => null);
  const refreshToken = record && recordMatches(record, account) ? record.refreshToken : account.refreshToken;
  const r = await grant(account, refreshToken, timeoutMs);
  await store.saveToken(account.email, {
    accessToken: r.accessToken,
    expiresAt: r.expiresAt,
    refreshToken: r.refreshToken ?? refreshToken,
    configRefreshToken: account.refreshToken,
    clientId: account.clientId,
    scope: account.scope,
  });
  return { value: r.accessToken, expiresAt: r.expiresAt };
}
