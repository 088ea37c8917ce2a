// The sandbox OAuth2 endpoints: the token endpoint with the refresh_token grant of RFC 6749 §6
// and the grants that obtain credentials (authorization code with PKCE, device code, JWT bearer,
// client credentials), Google's authorization page and Microsoft's devicecode endpoint, answered
// the way oauth2.googleapis.com and login.microsoftonline.com answer (field names, status codes,
// error wording), plus the ways those endpoints fail in production — slow, 5xx, revoked grants —
// made switchable at run time so the relay's token cache can be tested against each of them.
//
// The grant decisions live in SandboxState, SandboxConsent and SandboxApps; this file is only
// HTTP, routing and fault injection.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import {
  DEFAULT_AADSTS,
  errorDescription,
  type GrantResult,
  type OAuthErrorCode,
  type ProviderKind,
  type SandboxState,
  type TokenRequestRecord,
} from './provider-state.js';
import { SandboxApps } from './app-grants.js';
import { SandboxConsent } from './consent.js';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';

export interface TokenEndpointOptions {
  /** Listen address; default 127.0.0.1 (the sandbox is never meant to be reachable from outside). */
  host?: string;
  /** Default 0: the OS picks a free port, so parallel test files never collide. */
  port?: number;
  /** Latency added to every request, ms (e.g. 300 to approximate the real endpoints in benchmarks). */
  latencyMs?: number;
}

/**
 * A failure to inject. Each shape is one way real token endpoints fail:
 * - `{ status }`: an HTTP error not from the OAuth layer (a 500/503 from the front end); the body
 *   is `body` if given, else a generic JSON error.
 * - `{ error }`: an OAuth error answer (`invalid_grant` when a grant is revoked, …), HTTP 400 unless
 *   `status` says otherwise (`invalid_client` defaults to 401, like the real ones).
 * - `{ delayMs }`: the endpoint stalls this long and then answers normally; `Infinity` never answers.
 *   Delays combine with a later error fault (stall, then fail).
 * - `{ drop: true }`: the connection is closed without an answer.
 */
export type TokenFault =
  | { status: number; body?: string }
  | { error: OAuthErrorCode; description?: string; status?: number }
  | { delayMs: number }
  | { drop: true };

export interface TokenFaultOptions {
  /** Only requests for this account (matched by its refresh token, current or rotated-away). */
  email?: string;
  /** Fire this many times, then stop; unlimited when omitted. */
  times?: number;
}

export interface TokenFaultInfo {
  id: number;
  fault: TokenFault;
  email: string | null;
  remaining: number | null;
  fired: number;
}

type FaultEntry = TokenFaultInfo;

const MAX_BODY_BYTES = 64 * 1024;
const INTROSPECTION_PATH = '/introspect';

export class SandboxTokenEndpoint {
  /** Users' consent: the authorization endpoint (PKCE) and device codes, with their test controls. */
  readonly consent: SandboxConsent;
  /** Google service accounts and Microsoft apps (grants without a user). */
  readonly apps: SandboxApps;
  private readonly server: Server;
  private readonly host: string;
  private readonly requestedPort: number;
  private latencyMs: number;
  private readonly defaultLatencyMs: number;
  private faults: FaultEntry[] = [];
  /** Introspection requests per owner of the token asked about (they are not token requests). */
  private readonly introspected = new Map<string, number>();
  private nextFaultId = 1;
  private stopped = false;
  /** Pending sleeps, resolved early on stop() so no handler outlives the server. */
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout | null; resolve: () => void }>();

  constructor(
    private readonly state: SandboxState,
    options: TokenEndpointOptions = {},
  ) {
    this.host = options.host ?? '127.0.0.1';
    this.requestedPort = options.port ?? 0;
    this.latencyMs = validMs(options.latencyMs ?? 0, 'latencyMs');
    this.defaultLatencyMs = this.latencyMs;
    this.consent = new SandboxConsent(state);
    this.apps = new SandboxApps(state);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        // A handler bug must not take the test process down; answer like a front end would.
        if (!res.headersSent && !res.destroyed) sendJson(res, 500, { error: 'server_error' });
        else res.destroy();
      });
    });
  }

  /** Starts listening; resolves with the port and the base URL (`http://127.0.0.1:PORT`). */
  async start(): Promise<{ port: number; url: string }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.requestedPort, this.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return { port: this.port, url: this.baseUrl };
  }

  get port(): number {
    const address = this.server.address() as AddressInfo | null;
    if (!address) throw new Error('sandbox token endpoint is not listening');
    return address.port;
  }

  get baseUrl(): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `http://${host}:${this.port}`;
  }

  /**
   * The token URL to configure for a provider kind: `…/google/token`, and Microsoft's shape
   * `…/microsoft/common/oauth2/v2.0/token`, so an account's `tenant` replaces `common` as it does
   * in the real URL.
   */
  url(kind: ProviderKind): string {
    return kind === 'google' ? `${this.baseUrl}/google/token` : `${this.authority()}/common/oauth2/v2.0/token`;
  }

  /**
   * Token introspection (RFC 7662) for the sandbox's access tokens, for a submission server
   * written by someone else (Dovecot's oauth2 passdb, `introspection_mode = post`) to check the
   * tokens the sandbox issued: `{active, email, exp}`, or `{active: false}` for unknown, revoked
   * and expired ones.
   */
  introspectionUrl(): string {
    return `${this.baseUrl}${INTROSPECTION_PATH}`;
  }

  /** Google's authorization endpoint (`--auth-url` of `auth google`). */
  authorizeUrl(): string {
    return `${this.baseUrl}/google/auth`;
  }

  /** Microsoft's authority, under which `{tenant}/oauth2/v2.0/devicecode` and `/token` live (`--authority` of `auth microsoft`). */
  authority(): string {
    return `${this.baseUrl}/microsoft`;
  }

  /** Latency added to every request from now on (0 to remove). */
  setLatency(ms: number): void {
    this.latencyMs = validMs(ms, 'latencyMs');
  }

  /** Clears faults and restores the latency given at construction. The request log lives in the state. */
  reset(): void {
    this.faults = [];
    this.latencyMs = this.defaultLatencyMs;
  }

  /** Adds a fault; account-specific faults are consulted before global ones. Returns its id. */
  injectFault(fault: TokenFault, options: TokenFaultOptions = {}): number {
    validateFault(fault);
    if (options.times !== undefined && !(Number.isInteger(options.times) && options.times > 0)) {
      throw new Error('sandbox token fault: times must be a positive integer');
    }
    const entry: FaultEntry = {
      id: this.nextFaultId++,
      fault,
      email: options.email === undefined ? null : options.email.trim().toLowerCase(),
      remaining: options.times ?? null,
      fired: 0,
    };
    this.faults.push(entry);
    return entry.id;
  }

  /** Removes one fault by id, all faults of an account, or (no argument) every fault. */
  clearFaults(target?: number | string): void {
    if (target === undefined) this.faults = [];
    else if (typeof target === 'number') this.faults = this.faults.filter((f) => f.id !== target);
    else {
      const email = target.trim().toLowerCase();
      this.faults = this.faults.filter((f) => f.email !== email);
    }
  }

  /** Active faults and how often each fired. */
  listFaults(): readonly TokenFaultInfo[] {
    return this.faults.map((f) => ({ ...f }));
  }

  /** Makes the account's refresh token answer invalid_grant (consent withdrawn). */
  revokeGrant(email: string): void {
    this.state.revokeGrant(email);
  }

  /** Requests received for an account, or in total (faulted and failed ones included). */
  requests(email?: string): number {
    return this.state.tokenRequests(email);
  }

  /** The request log, without secrets. */
  log(email?: string): readonly TokenRequestRecord[] {
    return this.state.tokenRequestLog(email);
  }

  /** Closes the listener and every open connection, including ones held by a stalled request. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const sleeper of this.sleepers) {
      if (sleeper.timer) clearTimeout(sleeper.timer);
      sleeper.resolve();
    }
    this.sleepers.clear();
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Keep-alive connections (fetch keeps them) would hold close() open until they idle out.
    this.server.closeAllConnections();
    await closed;
  }

  // ---- request handling ----------------------------------------------------------------

  /** Introspection requests about the account's tokens (revoked and expired ones included). */
  introspections(email: string): number {
    return this.introspected.get(email.trim().toLowerCase()) ?? 0;
  }

  private introspect(req: IncomingMessage, res: ServerResponse, body: Buffer | null): void {
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      sendJson(res, 405, { error: 'invalid_request', error_description: 'Method not allowed' });
      return;
    }
    const token = body === null ? null : parseForm(req, body)?.get('token');
    if (!token) {
      sendJson(res, 400, { error: 'invalid_request', error_description: 'Expected a form-urlencoded token parameter' });
      return;
    }
    const owner = this.state.ownerOfAccessToken(token);
    if (owner) this.introspected.set(owner, (this.introspected.get(owner) ?? 0) + 1);
    const check = this.state.checkAccessToken(token);
    if (!check || check.expired) sendJson(res, 200, { active: false });
    else sendJson(res, 200, { active: true, email: check.email, token_type: 'Bearer' });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const pathKind: ProviderKind = path.toLowerCase().includes('microsoft') ? 'microsoft' : 'google';
    // The browser's page, not a token request: no latency, faults or request log.
    if (path.endsWith('/auth')) return this.authorize(req, res, pathKind);
    const body = await readBody(req);
    // A resource server asking about a token, not a client getting one: no latency, faults or log.
    if (path === INTROSPECTION_PATH) return this.introspect(req, res, body);

    const form = body === null ? null : parseForm(req, body);
    const basic = parseBasicAuth(req.headers.authorization);
    const refreshToken = form?.get('refresh_token') ?? null;
    const ownerEmail = this.state.accountForRefreshToken(refreshToken)?.email ?? this.consent.attribute(form) ?? this.apps.attribute(form);
    const owner = ownerEmail && this.state.hasAccount(ownerEmail) ? { email: ownerEmail, kind: this.state.kindOf(ownerEmail) } : null;
    const record: TokenRequestRecord = {
      at: new Date(started),
      path,
      grantType: form?.get('grant_type') ?? null,
      email: owner?.email ?? null,
      kind: owner?.kind ?? null,
      clientId: form?.get('client_id') ?? basic?.clientId ?? null,
      scope: form?.get('scope') ?? null,
      status: null,
      error: null,
      fault: null,
      durationMs: null,
    };
    // Recorded on arrival, not on answer (nor after the latency), so a request held by a stall
    // or given up by the client while it waited is already counted.
    this.state.recordTokenRequest(record);
    if (this.latencyMs > 0) await this.sleep(this.latencyMs);
    if (this.stopped) return;
    const kind = owner?.kind ?? pathKind;
    const answer = (status: number, payload: Record<string, unknown> | string): void => {
      record.status = status;
      record.durationMs = Date.now() - started;
      if (typeof payload !== 'string' && typeof payload.error === 'string') record.error = payload.error;
      if (res.destroyed || res.writableEnded) return; // the client gave up while we stalled
      if (typeof payload === 'string') {
        res.writeHead(status, { 'Content-Type': 'text/html; charset=UTF-8', 'Content-Length': Buffer.byteLength(payload) });
        res.end(payload);
      } else sendJson(res, status, payload);
    };
    const oauthError = (status: number, error: OAuthErrorCode, description?: string, aadsts?: number): void =>
      answer(status, errorBody(kind, error, description ?? errorDescription(kind, error, aadsts), aadsts));

    // Faults come before validation: a front end that fails does so whatever the request said.
    for (const entry of this.matchingFaults(owner?.email ?? null)) {
      const fault = entry.fault;
      record.fault = record.fault ? `${record.fault}, ${describeFault(fault)}` : describeFault(fault);
      if ('delayMs' in fault) {
        await this.sleep(fault.delayMs);
        if (this.stopped) return;
        continue;
      }
      if ('drop' in fault) {
        record.durationMs = Date.now() - started;
        req.socket.destroy();
        return;
      }
      if ('error' in fault) {
        oauthError(fault.status ?? (fault.error === 'invalid_client' ? 401 : 400), fault.error, fault.description);
        return;
      }
      answer(fault.status, fault.body ?? { error: 'server_error', error_description: 'Sandbox: injected failure' });
      return;
    }

    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      answer(405, { error: 'invalid_request', error_description: 'Method not allowed' });
      return;
    }
    if (body === null) {
      answer(413, { error: 'invalid_request', error_description: 'Request body too large' });
      return;
    }
    if (!form) {
      oauthError(400, 'invalid_request', 'Expected a form-urlencoded body');
      return;
    }
    if (path.endsWith('/devicecode')) {
      const device = this.consent.startDevice(form, tenantOf(path));
      if (device.ok) answer(200, device.body);
      else oauthError(device.status, device.error, device.description, device.aadsts);
      return;
    }
    const grantType = form.get('grant_type');
    if (!grantType) {
      oauthError(400, 'invalid_request', undefined, 90014);
      return;
    }
    // RFC 6749 §2.3.1: client credentials in the body or in HTTP Basic, not both.
    const bodyClientId = form.get('client_id');
    const bodySecret = form.get('client_secret');
    if (basic && (bodySecret !== null || (bodyClientId !== null && bodyClientId !== basic.clientId))) {
      oauthError(400, 'invalid_request', 'Client authentication must use only one method');
      return;
    }
    const client = { clientId: basic?.clientId ?? bodyClientId, clientSecret: basic?.clientSecret ?? bodySecret };
    const result = this.grant(grantType, form, client, path, pathKind);
    if (!result) {
      oauthError(400, 'unsupported_grant_type');
      return;
    }
    if (!result.ok) {
      oauthError(result.status, result.error, result.description, result.aadsts);
      return;
    }
    answer(200, successBody(result.kind, result));
  }

  /** The grant a request asks for, decided by the part of the sandbox that knows it; null: not this provider's. */
  private grant(
    grantType: string,
    form: URLSearchParams,
    client: { clientId: string | null; clientSecret: string | null },
    path: string,
    kind: ProviderKind,
  ): GrantResult | null {
    switch (grantType) {
      case 'refresh_token':
        return this.state.grantRefreshToken({ ...client, refreshToken: form.get('refresh_token'), scope: form.get('scope') }, kind);
      case 'authorization_code':
        return this.consent.redeemCode(form, client, kind);
      case DEVICE_CODE:
        return kind === 'microsoft' ? this.consent.pollDevice(form, client) : null;
      case JWT_BEARER:
        // Google wants its own token URL as the assertion's audience: the URL this request came to.
        return kind === 'google' ? this.apps.grantJwtBearer(form.get('assertion'), this.baseUrl + path) : null;
      case 'client_credentials':
        return kind === 'microsoft' ? this.apps.grantClientCredentials(client, form.get('scope'), tenantOf(path)) : null;
      default:
        return null;
    }
  }

  /** GET on the authorization endpoint: the sandbox's stand-in user consents (or refuses) at once. */
  private authorize(req: IncomingMessage, res: ServerResponse, kind: ProviderKind): void {
    const query = new URL(req.url ?? '/', this.baseUrl).searchParams;
    const outcome = req.method === 'GET' ? this.consent.authorize(query, kind) : { status: 400 as const, text: 'Error 400: the authorization endpoint is a page: GET it' };
    if ('redirect' in outcome) {
      res.writeHead(302, { Location: outcome.redirect, 'Content-Length': 0 });
      res.end();
      return;
    }
    res.writeHead(outcome.status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(outcome.text) });
    res.end(outcome.text);
  }

  /** Active faults for a request, account-specific first, each consuming one of its `times`. */
  private matchingFaults(email: string | null): FaultEntry[] {
    const candidates = [
      ...this.faults.filter((f) => f.email !== null && f.email === email),
      ...this.faults.filter((f) => f.email === null),
    ];
    const selected: FaultEntry[] = [];
    for (const entry of candidates) {
      selected.push(entry);
      entry.fired++;
      if (entry.remaining !== null) entry.remaining--;
      // Only delays let the request go on to a later fault or to the real answer.
      if (!('delayMs' in entry.fault)) break;
    }
    this.faults = this.faults.filter((f) => f.remaining === null || f.remaining > 0);
    return selected;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const sleeper = { timer: null as NodeJS.Timeout | null, resolve };
      // An infinite stall has no timer: it ends only when stop() resolves it.
      if (Number.isFinite(ms)) {
        sleeper.timer = setTimeout(() => {
          this.sleepers.delete(sleeper);
          resolve();
        }, ms);
      }
      this.sleepers.add(sleeper);
    });
  }
}

// ---- wire formats ------------------------------------------------------------------------

/** `/microsoft/{tenant}/oauth2/v2.0/...`: the tenant a Microsoft request is addressed to. */
function tenantOf(path: string): string {
  return decodeURIComponent(/\/microsoft\/([^/]+)\/oauth2\//i.exec(path)?.[1] ?? 'common');
}

function successBody(
  kind: ProviderKind,
  r: { accessToken: string; expiresIn: number; scope: string; refreshToken?: string },
): Record<string, unknown> {
  // Field order as each provider sends it; clients must not care, but a diff against a capture
  // of the real thing should be empty.
  if (kind === 'google') {
    return {
      access_token: r.accessToken,
      expires_in: r.expiresIn,
      ...(r.refreshToken ? { refresh_token: r.refreshToken } : {}),
      // Grants without a user (JWT bearer, client credentials) answer without a scope.
      ...(r.scope ? { scope: r.scope } : {}),
      token_type: 'Bearer',
    };
  }
  return {
    token_type: 'Bearer',
    ...(r.scope ? { scope: r.scope } : {}),
    expires_in: r.expiresIn,
    ext_expires_in: r.expiresIn,
    access_token: r.accessToken,
    ...(r.refreshToken ? { refresh_token: r.refreshToken } : {}),
  };
}

function errorBody(kind: ProviderKind, error: OAuthErrorCode, description: string, aadsts?: number): Record<string, unknown> {
  if (kind === 'google') return { error, error_description: description };
  // Microsoft appends trace data to the description (on CRLF-separated lines, which a client that
  // logs the description must cope with) and repeats it in separate fields.
  const code = aadsts ?? DEFAULT_AADSTS[error];
  const traceId = randomUUID();
  const correlationId = randomUUID();
  const timestamp = new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  return {
    error,
    error_description: `${description}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${timestamp}`,
    error_codes: [code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  };
}

function sendJson(res: ServerResponse, status: number, payload: Record<string, unknown>): void {
  const text = JSON.stringify(payload);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    // RFC 6749 §5.1: token responses must not be cached.
    'Cache-Control': 'no-store',
    Pragma: 'no-cache',
  });
  res.end(text);
}

/** Reads the body; null when it exceeds the limit (the sandbox is not a place for large uploads). */
function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooLarge ? null : Buffer.concat(chunks)));
    // An aborted request still resolves; the answer then goes nowhere, which is fine.
    req.on('error', () => resolve(tooLarge ? null : Buffer.concat(chunks)));
  });
}

function parseForm(req: IncomingMessage, body: Buffer): URLSearchParams | null {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') return null;
  return new URLSearchParams(body.toString('utf8'));
}

function parseBasicAuth(header: string | undefined): { clientId: string; clientSecret: string } | null {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!m?.[1]) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  try {
    // RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
    const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { clientId: decode(decoded.slice(0, colon)), clientSecret: decode(decoded.slice(colon + 1)) };
  } catch {
    return null;
  }
}

function validateFault(fault: TokenFault): void {
  if ('delayMs' in fault) {
    if (!(fault.delayMs >= 0)) throw new Error('sandbox token fault: delayMs must be >= 0 (Infinity stalls forever)');
  } else if ('error' in fault) {
    if (fault.status !== undefined) validStatus(fault.status);
  } else if ('status' in fault) {
    validStatus(fault.status);
  } else if (!('drop' in fault)) {
    throw new Error('sandbox token fault: expected one of status, error, delayMs, drop');
  }
}

function validStatus(status: number): void {
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new Error('sandbox token fault: status must be an HTTP status code');
  }
}

function validMs(ms: number, name: string): number {
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`sandbox: ${name} must be a finite number of milliseconds >= 0`);
  return ms;
}

function describeFault(fault: TokenFault): string {
  if ('delayMs' in fault) return `delay ${fault.delayMs}ms`;
  if ('drop' in fault) return 'drop';
  if ('error' in fault) return `error ${fault.error}`;
  return `status ${fault.status}`;
}
