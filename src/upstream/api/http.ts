// The HTTP side of the API upstreams: one undici Pool of keep-alive connections per API origin
// (and source address and CA), shared by the accounts that send through it, warmed at start-up
// so a message pays no TCP or TLS handshake, as with the SMTP pool. undici rather than Node's
// bundled fetch: fetch cannot bind a source address per account, take a CA per provider or be
// warmed and closed on demand.
import { readFileSync } from 'node:fs';
import type { Pool } from 'undici';
import { RelayError } from '../../errors/registry.js';
import type { Account } from '../../routing/account.js';

export interface ApiHttpOptions {
  connectTimeoutMs: number;
  /** Idle keep-alive connections are closed after this long. */
  idleTimeoutMs: number;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface ApiRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  /** Absolute URL under the account's API origin (or one the API gave, as Graph's upload URL). */
  url: string;
  token?: string;
  contentType?: string;
  /** Further request headers (Graph's Content-Range on an upload). */
  headers?: Record<string, string>;
  body?: Buffer | string;
  timeoutMs: number;
}

/** undici's error codes that say the request never reached the server. */
const NOT_SENT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** A request that got no HTTP answer, as the relay's error (timeouts and lost connections are 451 4.4.x). */
export function transportError(e: unknown, what: string): RelayError {
  const code = (e as { code?: string }).code ?? '';
  const detail = `${what}: ${code || (e as Error).message}`;
  if (NOT_SENT_CODES.has(code)) return new RelayError(code === 'UND_ERR_CONNECT_TIMEOUT' ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_CONNECT_FAILED', detail, { cause: e, notSent: true });
  if (TIMEOUT_CODES.has(code)) return new RelayError('UPSTREAM_TIMEOUT', detail, { cause: e });
  return new RelayError('UPSTREAM_CLOSED', detail, { cause: e });
}

export class ApiHttp {
  private readonly pools = new Map<string, Pool>();
  private closed = false;

  constructor(private readonly opts: ApiHttpOptions) {}

  /**
   * undici, loaded by the first API request: most relays send only over SMTP, and loading it
   * is a sixth of a second of every start-up.
   */
  private undici: Promise<typeof import('undici')> | null = null;

  private poolFor(PoolClass: typeof Pool, account: Account, origin: string): Pool {
    const key = `${origin}|${account.sourceIp ?? ''}|${account.provider.caFile ?? ''}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new PoolClass(origin, {
        keepAliveTimeout: this.opts.idleTimeoutMs,
        keepAliveMaxTimeout: this.opts.idleTimeoutMs,
        connect: {
          timeout: this.opts.connectTimeoutMs,
          // Headers and body go in separate writes: with Nagle on, each request waits for the
          // server's delayed ACK (tens of ms on loopback).
          noDelay: true,
          ...(account.sourceIp ? { localAddress: account.sourceIp } : {}),
          ...(account.provider.caFile ? { ca: readFileSync(account.provider.caFile) } : {}),
        },
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** One request; an HTTP error status is an answer, not an exception. Throws RelayError without one. */
  async request(account: Account, req: ApiRequest): Promise<ApiResponse> {
    if (this.closed) throw new RelayError('SHUTTING_DOWN', 'API client closed', { notSent: true });
    const url = new URL(req.url);
    const headers: Record<string, string> = { ...req.headers };
    if (req.token) headers.authorization = `Bearer ${req.token}`;
    if (req.contentType) headers['content-type'] = req.contentType;
    try {
      const { Pool: PoolClass } = await (this.undici ??= import('undici'));
      const res = await this.poolFor(PoolClass, account, url.origin).request({
        method: req.method,
        path: url.pathname + url.search,
        headers,
        ...(req.body !== undefined ? { body: req.body } : {}),
        headersTimeout: req.timeoutMs,
        bodyTimeout: req.timeoutMs,
      });
      return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
    } catch (e) {
      throw transportError(e, `${req.method} ${url.pathname}`);
    }
  }

  /**
   * Opens keep-alive connections to `base`'s origin by requests for its root (their answer does
   * not matter, only the connections they leave open). Each of `count` sequences sends two: an
   * undici pool opens another connection for the request that follows a connection's first one
   * (the first's completion frees it a tick late), so the pool reaches its steady size here and
   * not on a message's path. Failures are the first message's to report.
   */
  async warm(account: Account, base: string, count: number, timeoutMs: number): Promise<void> {
    const root = `${new URL(base).origin}/`;
    const twice = async () => {
      await this.request(account, { method: 'GET', url: root, timeoutMs });
      await this.request(account, { method: 'GET', url: root, timeoutMs });
    };
    await Promise.allSettled(Array.from({ length: count }, twice));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.pools.values()].map((p) => p.destroy()));
    this.pools.clear();
  }
}
