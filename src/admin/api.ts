// The operator's JSON API on the HTTP port (src/admin/http.ts authenticates and serves it):
//   GET    /api/accounts                 every account, with health, token expiry, recent sends
//   POST   /api/accounts[?verify=false]  add one (relay.yaml account keys as JSON), verified first
//   GET    /api/accounts/{email}
//   PUT    /api/accounts/{email}         replace its keys;  PATCH: change some (null removes one)
//   DELETE /api/accounts/{email}
//   POST   /api/accounts/{email}/test    fresh token + authenticated connection, nothing sent
//   POST   /api/reload                   re-read relay.yaml and the stored accounts
// Answers are JSON; errors are { "error": "..." } with a status that says whose fault it is.
import type { IncomingMessage } from 'node:http';
import { ConfigError } from '../config/errors.js';
import { RelayError } from '../errors/registry.js';
import { AdminError, type AccountAdmin, type ReloadReport } from './accounts.js';

export interface ApiDeps {
  accounts: AccountAdmin;
  reload: () => Promise<ReloadReport>;
}

export interface ApiAnswer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

const MAX_BODY_BYTES = 64 * 1024;
const ONE = /^\/api\/accounts\/([^/]+)(\/test)?$/;

/** The answer for an /api/accounts or /api/reload request; null for any other path. */
export async function routeApi(req: IncomingMessage, url: URL, deps: ApiDeps): Promise<ApiAnswer | null> {
  const path = url.pathname;
  if (path !== '/api/reload' && path !== '/api/accounts' && !ONE.test(path)) return null;
  try {
    return await dispatch(req, url, deps);
  } catch (e) {
    if (e instanceof AdminError) {
      const retryAfter = e.body.retry_after_s;
      return { status: e.status, body: { error: e.message, ...e.body }, ...(retryAfter ? { headers: { 'retry-after': String(retryAfter) } } : {}) };
    }
    // A reload whose new config does not load: nothing changed, and the message names the key.
    if (e instanceof ConfigError) return { status: 422, body: { error: e.message, key: e.path } };
    if (e instanceof RelayError && e.code === 'STORE_UNAVAILABLE') return { status: 503, body: { error: e.message } };
    throw e;
  }
}

async function dispatch(req: IncomingMessage, url: URL, { accounts, reload }: ApiDeps): Promise<ApiAnswer> {
  const method = req.method ?? 'GET';
  const verify = url.searchParams.get('verify') !== 'false';
  const path = url.pathname;
  if (path === '/api/reload') {
    if (method !== 'POST') return notAllowed('POST');
    return { status: 200, body: await reload() };
  }
  if (path === '/api/accounts') {
    if (method === 'GET') return { status: 200, body: { accounts: accounts.list() } };
    if (method === 'POST') return { status: 201, body: await accounts.add(await readJson(req), verify) };
    return notAllowed('GET, POST');
  }
  const [, encoded, test] = ONE.exec(path)!;
  const email = decodeURIComponent(encoded!).trim().toLowerCase();
  if (test) {
    if (method !== 'POST') return notAllowed('POST');
    return { status: 200, body: await accounts.test(email) };
  }
  switch (method) {
    case 'GET':
      return { status: 200, body: accounts.get(email) };
    case 'PUT':
      return { status: 200, body: await accounts.replace(email, await readJson(req), verify) };
    case 'PATCH':
      return { status: 200, body: await accounts.patch(email, await readJson(req), verify) };
    case 'DELETE':
      await accounts.remove(email);
      return { status: 204 };
    default:
      return notAllowed('GET, PUT, PATCH, DELETE');
  }
}

const notAllowed = (allow: string): ApiAnswer => ({ status: 405, body: { error: 'method not allowed' }, headers: { allow } });

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new AdminError(413, `the body is over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new AdminError(400, 'the body is not JSON');
  }
}
