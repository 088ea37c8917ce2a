// The operator's HTTP port: /healthz (the process answers), /readyz (the relay can send now:
// listener up and at least one account able to send, ./health.ts), /metrics (Prometheus),
// /api/status (JSON), the status page (/ and /status.json, ./status-page.ts and ./status.ts),
// and the accounts and reload API (./api.ts). Loopback by default; on any other address the config
// must set http.bearer_token (load.ts refuses it otherwise), and when one is set every request
// needs it.
import { timingSafeEqual, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Metrics } from '../obs/metrics.js';
import type { Refusals } from '../obs/refusals.js';
import type { Relay } from '../relay/relay.js';
import { routeApi, type ApiDeps } from './api.js';
import type { AccountHealthBoard, Readiness } from './health.js';
import { statusPage } from './status-page.js';
import { statusSnapshot } from './status.js';

export interface AdminDeps extends ApiDeps {
  relay: Relay;
  health: AccountHealthBoard;
  refusals: Refusals;
  metrics: Metrics;
  isListening: () => boolean;
  inboundSessions: () => number;
  bearerToken: string | null;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class AdminServer {
  private readonly server: Server;

  constructor(private readonly deps: AdminDeps) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e: Error) => send(res, 500, { error: e.message }));
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

  /** Ready: this relay can send now (listening, and at least one account can). */
  ready(): Readiness {
    return this.deps.health.readiness(this.deps.isListening());
  }

  status() {
    return {
      listening: this.deps.isListening(),
      inbound_sessions: this.deps.inboundSessions(),
      accounts: this.deps.accounts.list(),
    };
  }

  private sendStatusPage(res: ServerResponse): void {
    const { headers, body } = statusPage();
    res.writeHead(200, headers);
    res.end(body);
  }

  private authorized(req: IncomingMessage): boolean {
    const token = this.deps.bearerToken;
    if (!token) return true;
    const given = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
    return timingSafeEqual(digest(given), digest(token));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.authorized(req)) return send(res, 401, { error: 'bearer token required' });
    const url = new URL(req.url ?? '/', 'http://relay');
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
      case '/metrics': {
        const body = await this.deps.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.deps.metrics.registry.contentType });
        res.end(body);
        return;
      }
      case '/api/status':
        return send(res, 200, this.status());
      case '/':
        return this.sendStatusPage(res);
      case '/status.json':
        return send(res, 200, statusSnapshot(this.deps), { 'cache-control': 'no-store' });
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
