// What the sandbox's fake Graph and Gmail API servers share: an HTTP listener on 127.0.0.1
// (plain HTTP, like the sandbox token endpoint), the bearer token check against the sandbox's
// issued tokens, injected faults, and the record of every message delivered — in the shape the
// submission server records (AcceptedMessage), so one ledger checks all three upstreams.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AccessTokenCheck, SandboxState } from './provider-state.js';
import type { AcceptedMessage } from './submission-server.js';

/**
 * A fault the fake answers with instead of doing the request; `lost_answer` does the request and
 * then never answers (a send whose answer the network lost), where the fake passes the request to
 * step(); elsewhere it is a timeout.
 */
export type ApiFaultKind = 'throttle' | 'server_error' | 'unauthorized' | 'forbidden' | 'timeout' | 'lost_answer';

export interface ApiFaultRule {
  kind: ApiFaultKind;
  /** The request it applies to (the fakes name theirs: create, patch, send, get, delete; Graph's session, upload); every one when omitted. */
  step?: string;
  /** Only for this mailbox. */
  mailbox?: string;
  /** Every n-th matching request (default 1: each). */
  every?: number;
  /** At most this many times (default: unbounded). */
  times?: number;
  /** Throttle: the Retry-After, in seconds (default 1). */
  retryAfterS?: number;
  /** server_error: the status (default 503). */
  status?: number;
}

interface ActiveRule extends ApiFaultRule {
  seen: number;
  fired: number;
}

export interface ApiFaultInfo {
  kind: ApiFaultKind;
  step: string;
  mailbox: string;
  at: Date;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(`HTTP ${status}`);
  }
}

export abstract class FakeApiServer {
  private readonly server: Server;
  /** Requests held open by a timeout fault, answered never (their sockets close at stop). */
  private readonly held = new Set<ServerResponse>();
  /** Requests done whose answer a lost_answer fault swallows. */
  private readonly losing = new WeakSet<IncomingMessage>();
  private rules: ActiveRule[] = [];
  readonly faultsFired: ApiFaultInfo[] = [];
  readonly messages: AcceptedMessage[] = [];
  /** Requests seen, by step name. */
  readonly requests = new Map<string, number>();
  /** TCP connections accepted since start (not reset): keep-alive reuse shows as no new ones. */
  connectionsOpened = 0;
  /** How long each answer is held back: a provider some way off, so a mailbox's requests overlap. */
  latencyMs = 0;
  /** Per mailbox: requests in flight now and the most at once (issue 22: the fleet's cap, as the provider sees it). */
  private readonly concurrent = new Map<string, { open: number; peak: number }>();
  private readonly counted = new WeakSet<IncomingMessage>();
  private readonly answers = new WeakMap<IncomingMessage, ServerResponse>();

  protected constructor(
    protected readonly state: SandboxState,
    private readonly host: string,
  ) {
    this.server = createServer((req, res) => {
      this.route(req, res).catch((e: unknown) => {
        if (res.headersSent || res.destroyed) return void res.destroy();
        if (e instanceof HttpError) return this.send(res, e.status, e.body, e.headers);
        this.send(res, 500, this.errorBody(500, 'InternalServerError', 'internal error', ''));
      });
    });
    this.server.keepAliveTimeout = 60_000;
    this.server.on('connection', () => this.connectionsOpened++);
  }

  /** The request's answer; throw HttpError for an error answer. `hold` keeps it open (timeout fault). */
  protected abstract handle(req: IncomingMessage, body: Buffer, path: string, query: URLSearchParams): Promise<{ status: number; body?: unknown; headers?: Record<string, string> } | 'hold'>;
  /** The provider's error body for a status. */
  protected abstract errorBody(status: number, code: string, message: string, reason: string): unknown;
  /** The largest request body the API reads, by path. */
  protected abstract maxBody(path: string): number;

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, this.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  get url(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${port}`;
  }

  fault(rule: ApiFaultRule): void {
    this.rules.push({ ...rule, seen: 0, fired: 0 });
  }

  clearFaults(): void {
    this.rules = [];
  }

  reset(): void {
    this.rules = [];
    this.faultsFired.length = 0;
    this.messages.length = 0;
    this.requests.clear();
    this.latencyMs = 0;
    for (const c of this.concurrent.values()) c.peak = c.open;
  }

  /** Per mailbox: authenticated requests in flight now, and the most at once since start (or reset). */
  requestConcurrency(): Map<string, { open: number; peak: number }> {
    return new Map([...this.concurrent].map(([email, c]) => [email, { ...c }]));
  }

  async stop(): Promise<void> {
    for (const res of this.held) res.destroy();
    this.held.clear();
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  /** The bearer token's owner, or the 401 the API gives. */
  protected bearer(req: IncomingMessage, mailbox: string): AccessTokenCheck {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    const check = m ? this.state.checkAccessToken(m[1]!, mailbox) : null;
    if (!check) throw new HttpError(401, this.errorBody(401, 'InvalidAuthenticationToken', 'Access token is empty or invalid.', 'authError'));
    if (check.expired) throw new HttpError(401, this.errorBody(401, 'InvalidAuthenticationToken', 'Lifetime validation failed, the token is expired.', 'authError'));
    this.inFlight(req, mailbox);
    return check;
  }

  /** Counts the request as the mailbox's until its answer is sent (or its socket closes). */
  protected inFlight(req: IncomingMessage, mailbox: string): void {
    const res = this.answers.get(req);
    if (!res || this.counted.has(req)) return;
    this.counted.add(req);
    let c = this.concurrent.get(mailbox);
    if (!c) this.concurrent.set(mailbox, (c = { open: 0, peak: 0 }));
    c.peak = Math.max(c.peak, ++c.open);
    res.once('close', () => c.open--);
  }

  /** Records a delivery the way the submission server does. */
  protected deliver(mailbox: string, recipients: string[], mime: Buffer): AcceptedMessage {
    const message: AcceptedMessage = {
      id: randomBytes(8).toString('hex'),
      connectionId: this.constructor.name,
      authUser: mailbox,
      mailFrom: mailbox,
      rcptTo: recipients,
      size: mime.length,
      sha256: createHash('sha256').update(mime).digest('hex'),
      body: mime,
      receivedAt: new Date(),
      secure: false,
    };
    this.messages.push(message);
    return message;
  }

  /** The fault to answer with for this request, if a rule says so (counted per rule). */
  protected injected(step: string, mailbox: string): ActiveRule | null {
    for (const rule of this.rules) {
      if ((rule.step && rule.step !== step) || (rule.mailbox && rule.mailbox !== mailbox)) continue;
      if (rule.times !== undefined && rule.fired >= rule.times) continue;
      rule.seen++;
      if (rule.seen % (rule.every ?? 1) !== 0) continue;
      rule.fired++;
      this.faultsFired.push({ kind: rule.kind, step, mailbox, at: new Date() });
      return rule;
    }
    return null;
  }

  /** Counts the request and applies an injected fault: throws its answer, or returns 'hold'. */
  protected step(step: string, mailbox: string, req?: IncomingMessage): 'hold' | null {
    this.requests.set(step, (this.requests.get(step) ?? 0) + 1);
    const rule = this.injected(step, mailbox);
    if (!rule) return null;
    switch (rule.kind) {
      case 'lost_answer':
        if (!req) return 'hold';
        this.losing.add(req);
        return null;
      case 'timeout':
        return 'hold';
      case 'throttle':
        throw new HttpError(429, this.throttleBody(rule.retryAfterS ?? 1), { 'retry-after': String(rule.retryAfterS ?? 1) });
      case 'server_error':
        throw new HttpError(rule.status ?? 503, this.errorBody(rule.status ?? 503, 'ServiceUnavailable', 'The service is temporarily unavailable.', 'backendError'));
      case 'unauthorized':
        throw new HttpError(401, this.errorBody(401, 'InvalidAuthenticationToken', 'Access token validation failure.', 'authError'));
      case 'forbidden':
        throw new HttpError(403, this.errorBody(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.', 'insufficientPermissions'));
    }
  }

  protected throttleBody(retryAfterS: number): unknown {
    return this.errorBody(429, 'ApplicationThrottled', `Too many requests. Retry after ${retryAfterS} s.`, 'rateLimitExceeded');
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const limit = this.maxBody(url.pathname);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    }
    if (size > limit) throw new HttpError(413, this.errorBody(413, 'RequestEntityTooLarge', `The request is larger than ${limit} bytes.`, 'uploadTooLarge'));
    if (req.method === 'HEAD' || url.pathname === '/') return this.send(res, 200, null);
    this.answers.set(req, res);
    let answer: Awaited<ReturnType<FakeApiServer['handle']>>;
    try {
      answer = await this.handle(req, Buffer.concat(chunks), url.pathname, url.searchParams);
    } finally {
      if (this.latencyMs) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    }
    if (answer === 'hold' || this.losing.has(req)) {
      this.held.add(res);
      res.on('close', () => this.held.delete(res));
      return;
    }
    this.send(res, answer.status, answer.body ?? null, answer.headers);
  }

  private send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (body === null || body === undefined) {
      // An explicit length, so the connection stays open for the next request.
      res.writeHead(status, { 'content-length': 0, ...headers }).end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers }).end(text);
  }
}

/** A base64 (or base64url) text the real APIs would decode, or null. */
export function decodeBase64(text: string, url: boolean): Buffer | null {
  const clean = text.replace(/[\r\n]/g, '');
  if (!(url ? /^[A-Za-z0-9_-]*=*$/ : /^[A-Za-z0-9+/]*=*$/).test(clean)) return null;
  return Buffer.from(clean, url ? 'base64url' : 'base64');
}
