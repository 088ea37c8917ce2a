// The operator's HTTP port: /healthz (the process answers), /readyz (the relay can send now:
// listener up, a store that takes writes, and at least one account able to send, ./health.ts),
// /metrics (Prometheus), /api/status (JSON), the status page (/ and /status.json, ./status-page.ts
// and ./status.ts), and the accounts and reload API (./api.ts). Who may use which is ./guard.ts's:
// /api/* always needs the bearer credential (http.bearer_token, or the generated admin.token), the
// probes and the page only off loopback.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Metrics } from '../obs/metrics.js';
import { routeApi, type ApiDeps } from './api.js';
import type { Readiness } from './health.js';
import { statusPage } from './status-page.js';
import { statusQuery, statusSnapshot, type StatusDeps } from './status.js';
import type { StoreHealthState } from '../store/store-health.js';
import { AdminGuard } from './guard.js';

export interface AdminDeps extends ApiDeps, StatusDeps {
  metrics: Metrics;
  /** http.host, as configured: the Host every request must name (or an IP literal, or localhost). */
  host: string;
  bearerToken: string;
  /** Whether the store takes writes (absent: not known, taken as working). */
  storeHealth?: () => StoreHealthState | undefined;
}

export class AdminServer {
  private readonly server: Server;
  private readonly guard: AdminGuard;

  constructor(private readonly deps: AdminDeps) {
    this.guard = new AdminGuard({ host: deps.host, bearerToken: deps.bearerToken });
    this.server = createServer((req, res) => {
      // The message of an unexpected error may name a file or quote a store error: not for API callers.
      this.handle(req, res).catch(() => send(res, 500, { error: 'internal error' }));
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const addr = this.server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /**
   * Ready: this relay can send now: listening, at least one account can send, and a store that
   * takes writes (a failing one would lose rotated refresh tokens at the next restart: the
   * operator must see it, and a fleet should send through an instance whose store works).
   */
  ready(): Readiness & { store?: StoreHealthState } {
    const r = this.deps.health.readiness(this.deps.isListening());
    const store = this.deps.storeHealth?.();
    if (!store?.failing) return r;
    return { ...r, ready: false, reasons: [...r.reasons, `store: writes fail (${store.error ?? 'unknown error'})`], store };
  }

  status() {
    return {
      listening: this.deps.isListening(),
      inbound_sessions: this.deps.inboundSessions(),
      store: this.deps.storeHealth?.() ?? null,
      accounts: this.deps.accounts.list(),
    };
  }

  private sendStatusPage(res: ServerResponse): void {
    const { headers, body } = statusPage();
    res.writeHead(200, headers);
    res.end(body);
  }

  /** Written as it is made (Metrics.writeExposition()); a failure once it has begun cuts the response short. */
  private async sendMetrics(res: ServerResponse): Promise<void> {
    res.writeHead(200, { 'content-type': this.deps.metrics.registry.contentType });
    try {
      await this.deps.metrics.writeExposition((chunk) => res.write(chunk));
      res.end();
    } catch {
      res.destroy();
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://relay');
    const refused = this.guard.check(req, url.pathname);
    if (refused) return send(res, refused.status, { error: refused.error });
    const answer = await routeApi(req, url, this.deps);
    if (answer) return send(res, answer.status, answer.body, answer.headers);
    if (req.method !== 'GET') return send(res, 405, { error: 'method not allowed' });
    switch (url.pathname) {
      case '/healthz':
        return send(res, 200, { ok: true });
      case '/readyz': {
        const r = this.ready();
        return send(res, r.ready ? 200 : 503, r);
      }
      case '/metrics':
        return this.sendMetrics(res);
      case '/api/status':
        return send(res, 200, this.status());
      case '/':
        return this.sendStatusPage(res);
      case '/status.json':
        return send(res, 200, statusSnapshot(this.deps, statusQuery(url.searchParams)), { 'cache-control': 'no-store' });
      default:
        return send(res, 404, { error: 'not found' });
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}
