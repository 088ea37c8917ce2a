// Getting a refresh token from a person at a browser: the authorization code grant with PKCE
// (RFC 7636, S256) and a loopback redirect (RFC 8252 §7.3) — Google's flow for desktop clients.
// The consent URL is handed to the caller to show; nothing is opened from here. The redirect is
// received on 127.0.0.1 on an ephemeral port, and only with the `state` this flow made up, so a
// page that fires a request at the port (CSRF) cannot slip its own code in.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConsentError, type ObtainedCredentials } from '../grant.js';
import { requestToken, requireRefreshToken } from './token-request.js';

export interface PkceFlowOptions {
  authUrl: string;
  tokenUrl: string;
  clientId: string;
  /** Google's desktop clients have one (it is not confidential there); null for a public client. */
  clientSecret: string | null;
  scope: string;
  /** Sent as login_hint, so the browser offers the right account. */
  email: string;
  /** Provider-specific parameters of the consent URL (Google: access_type=offline, prompt=consent). */
  extraParams?: Record<string, string>;
  /** How long to wait for the person to consent. */
  timeoutMs: number;
  requestTimeoutMs: number;
  /** Shows the consent URL to the person. */
  onConsentUrl: (url: string) => void;
  /** Told about a redirect refused for its state: something other than the browser is knocking. */
  onWarning?: (message: string) => void;
}

export interface Pkce {
  verifier: string;
  challenge: string;
}

/** RFC 7636 §4.1-4.2: 32 random bytes as the verifier (43 characters), its SHA-256 as the challenge. */
export function createPkce(): Pkce {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export async function authorizeWithPkce(opts: PkceFlowOptions): Promise<ObtainedCredentials> {
  const pkce = createPkce();
  const state = randomBytes(16).toString('base64url');
  const redirect = await listenForRedirect(state, opts.timeoutMs, opts.onWarning);
  try {
    const url = new URL(opts.authUrl);
    const params = {
      response_type: 'code',
      client_id: opts.clientId,
      redirect_uri: redirect.uri,
      scope: opts.scope,
      state,
      code_challenge: pkce.challenge,
      code_challenge_method: 'S256',
      login_hint: opts.email,
      ...opts.extraParams,
    };
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    opts.onConsentUrl(url.toString());
    const code = await redirect.code;
    const form = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      code_verifier: pkce.verifier,
      redirect_uri: redirect.uri,
      client_id: opts.clientId,
    });
    if (opts.clientSecret) form.set('client_secret', opts.clientSecret);
    return requireRefreshToken(await requestToken(opts.tokenUrl, form, opts.requestTimeoutMs), opts.scope);
  } finally {
    await redirect.close();
  }
}

interface Redirect {
  uri: string;
  code: Promise<string>;
  close(): Promise<void>;
}

async function listenForRedirect(state: string, timeoutMs: number, onWarning?: (message: string) => void): Promise<Redirect> {
  let settle!: { resolve: (code: string) => void; reject: (e: Error) => void };
  const code = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
  const server = createServer((req, res) => {
    const outcome = readRedirect(req, state);
    if (outcome.kind === 'ignore') return reply(res, 404, 'Not found.');
    if (outcome.kind === 'wrong-state') {
      onWarning?.('ignored a request to the redirect address with a wrong state');
      return reply(res, 400, 'This sign-in was not started here (state mismatch).');
    }
    if (outcome.kind === 'error') {
      reply(res, 200, `Sign-in failed: ${outcome.error}. You can close this window.`);
      return settle.reject(new ConsentError(`consent refused: ${outcome.error}${outcome.description ? ` (${outcome.description})` : ''}`));
    }
    reply(res, 200, 'Signed in. You can close this window and return to the terminal.');
    settle.resolve(outcome.code);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // RFC 8252 §8.3: the loopback IP literal, not "localhost", which may resolve elsewhere.
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const timer = setTimeout(() => settle.reject(new ConsentError(`no consent within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
  const { port } = server.address() as AddressInfo;
  return {
    uri: `http://127.0.0.1:${port}/`,
    code,
    close: () =>
      new Promise<void>((resolve) => {
        clearTimeout(timer);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type RedirectOutcome =
  | { kind: 'ignore' }
  | { kind: 'wrong-state' }
  | { kind: 'error'; error: string; description: string | null }
  | { kind: 'code'; code: string };

function readRedirect(req: IncomingMessage, state: string): RedirectOutcome {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  if (req.method !== 'GET' || url.pathname !== '/') return { kind: 'ignore' };
  const q = url.searchParams;
  if (q.get('state') !== state) return { kind: 'wrong-state' };
  const error = q.get('error');
  // Printed to a terminal: keep the provider's words to one short line of safe characters.
  const clean = (s: string | null) => (s ? s.replace(/[^\x20-\x7e]/g, '').slice(0, 200) : null);
  if (error) return { kind: 'error', error: clean(error)!, description: clean(q.get('error_description')) };
  const code = q.get('code');
  return code ? { kind: 'code', code } : { kind: 'ignore' };
}

function reply(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), Connection: 'close' });
  res.end(text);
}
