// The commands' way to the running relay: its HTTP API at the config's http.host:port, with
// http.bearer_token, or else the credential the relay generated into admin.token at its first
// start (src/admin/admin-token.ts), so the operator has nothing to pass. "Not running" (nothing listens there) is an answer of its
// own, so a command can fall back to what it can do without the relay.
import { adminTokenPath, readAdminToken } from '../admin/admin-token.js';
import type { Config } from '../config/schema.js';

export interface RelayApi {
  /** http://host:port, for messages. */
  base: string;
  bearerToken: string | null;
  /** Where the generated credential is, for messages. */
  tokenFile: string;
}

export interface ApiReply {
  status: number;
  body: Record<string, unknown>;
}

/** Where the running relay answers, or null when the config turns its HTTP port off. */
export function relayApi(config: Config): RelayApi | null {
  const { enabled, host, port, bearer_token: bearerToken } = config.http;
  if (!enabled) return null;
  // A relay listening on every address is reached on loopback.
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const tokenFile = adminTokenPath(config);
  // Read when needed: a relay that has never run has no file yet (and callRelay finds it not running).
  return { base: `http://${target.includes(':') ? `[${target}]` : target}:${port}`, bearerToken: bearerToken ?? readAdminToken(tokenFile), tokenFile };
}

/** The relay's answer, or null when nothing listens (connection refused): the relay is not running. */
export async function callRelay(api: RelayApi | null, method: string, path: string, body?: unknown, timeoutMs = 60_000): Promise<ApiReply | null> {
  if (!api) return null;
  let res: Response;
  try {
    res = await fetch(api.base + path, {
      method,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(api.bearerToken ? { authorization: `Bearer ${api.bearerToken}` } : {}),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    const code = ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ECONNREFUSED') return null;
    throw new Error(`the relay at ${api.base} did not answer ${method} ${path}: ${code ?? (e as Error).message}`, { cause: e });
  }
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    if (text) parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { error: text.slice(0, 200) };
  }
  if (res.status === 401) {
    throw new Error(
      `the relay at ${api.base} refused the request: its credential is not ${api.bearerToken ? 'the one this command sent' : `in ${api.tokenFile}`} (http.bearer_token changed since it started, or it runs with another store?)`,
    );
  }
  return { status: res.status, body: parsed };
}
