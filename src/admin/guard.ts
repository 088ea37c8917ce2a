// Who may use the operator's HTTP port (issue 10, item 1). Loopback is not a boundary on its own:
// every local user reaches it, and so does every web page the operator opens — through a
// "simple" cross-site request (a form posted as text/plain needs no preflight) or through DNS
// rebinding (a hostname of the attacker's that resolves to 127.0.0.1). So, for every request:
//  - its Host must be the configured http.host, an IP literal or `localhost` (a rebound name is not);
//  - a cross-site Origin (or Sec-Fetch-Site) is refused;
//  - a body on /api/* must be application/json (a form cannot send that without a preflight);
//  - /api/* needs the bearer credential, on loopback too;
//  - the read-only probes and pages (PUBLIC_PATHS) are open when the port is bound to loopback,
//    and need the credential on any other address.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { isLoopbackHost } from '../config/networks.js';

/** Read-only: health for probes, metrics for scrapers, the status page and its JSON. */
const PUBLIC_PATHS = new Set(['/healthz', '/readyz', '/metrics', '/', '/status.json']);

export interface GuardOptions {
  /** http.host as configured. */
  host: string;
  /** What every /api/* request (and, off loopback, every request) must present. */
  bearerToken: string;
}

export interface Refusal {
  status: 401 | 403 | 415;
  error: string;
}

/** The host part of a Host header value (`name`, `name:port`, `[v6]:port`), lower-case. */
function hostnameOf(value: string): string {
  const v = value.trim().toLowerCase();
  if (v.startsWith('[')) return v.slice(1, v.indexOf(']') === -1 ? undefined : v.indexOf(']'));
  // A bare IPv6 literal has several colons; name:port has one.
  return (v.match(/:/g)?.length ?? 0) === 1 ? v.slice(0, v.indexOf(':')) : v;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class AdminGuard {
  private readonly loopback: boolean;
  private readonly configuredHost: string;
  private readonly token: Buffer;

  constructor(opts: GuardOptions) {
    this.loopback = isLoopbackHost(opts.host);
    this.configuredHost = hostnameOf(opts.host.includes(':') && !opts.host.startsWith('[') ? `[${opts.host}]` : opts.host);
    this.token = digest(opts.bearerToken);
  }

  /** Null when the request may go on; else the answer to give instead. */
  check(req: IncomingMessage, pathname: string): Refusal | null {
    const host = req.headers.host;
    // A browser always sends Host; a request without one cannot come from a rebound web page.
    if (host !== undefined && !this.hostAllowed(hostnameOf(host))) {
      return { status: 403, error: 'Host is not this relay: use its address, an IP literal or localhost' };
    }
    if (this.crossSite(req, host)) return { status: 403, error: 'cross-site requests are refused' };
    const api = pathname === '/api' || pathname.startsWith('/api/');
    if ((api || !this.loopback || !PUBLIC_PATHS.has(pathname)) && !this.authorized(req)) {
      return { status: 401, error: 'bearer token required (Authorization: Bearer …; see docs/security.md)' };
    }
    if (api && hasBody(req) && !isJson(req.headers['content-type'])) {
      return { status: 415, error: 'the body must be application/json' };
    }
    return null;
  }

  private hostAllowed(name: string): boolean {
    return name === this.configuredHost || name === 'localhost' || isIP(name) !== 0;
  }

  /** An Origin other than this very host and port, or a browser saying the request is cross-site. */
  private crossSite(req: IncomingMessage, host: string | undefined): boolean {
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') return true;
    const origin = req.headers.origin;
    if (origin === undefined) return false;
    // "null" is what sandboxed frames, file: pages and redirects send: never this relay's own page.
    if (!URL.canParse(origin)) return true;
    const o = new URL(origin);
    return !(o.protocol === 'http:' && host !== undefined && o.host === host.trim().toLowerCase());
  }

  private authorized(req: IncomingMessage): boolean {
    const given = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    return given !== undefined && timingSafeEqual(digest(given.trim()), this.token);
  }
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

const isJson = (type: string | undefined) => type !== undefined && /^application\/json\s*(;|$)/i.test(type.trim());
