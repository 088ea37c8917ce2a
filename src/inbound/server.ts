// The inbound SMTP server the MTA talks to: the relay's own engine (session.ts), not a library.
//
// Why smtp-server (nodemailer's, which this replaced) was passed over: a proxy's inbound side
// is the product's core, and smtp-server is a terminating server built around one callback per
// command. Measured against the relay (issue 9): it hands over one command at a time, so a
// pipelined MAIL/RCPT/DATA group cannot go upstream together (half the messages per second of
// a direct client at a 20 ms provider round trip); it rewrites A-labels to UTF-8 (punycode) in
// addresses, so IDN mail was refused upstream; it offers STARTTLS with a bundled, expired
// certificate when none is configured; its success replies are fixed texts ("250 2.1.0
// Accepted"), not the provider's; and a client that half-closes after the final dot (Exim's
// default) lost its reply, so messages were delivered twice or not at all. It also cost
// 55-63 µs of CPU per message. The sandbox's fake provider still uses it: that one is a
// terminating server.
//
// This file owns the listener and who may hold a connection (slots.ts); each connection is a
// Session.
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Metrics } from '../obs/metrics.js';
import type { Refusals } from '../obs/refusals.js';
import { reasonOf, RelayError, toReply } from '../errors/registry.js';
import type { Relay } from '../relay/relay.js';
import { AuthGuard } from './auth-guard.js';
import { Session, type SessionContext } from './session.js';
import { Slots, type Admission } from './slots.js';
import { TransactionLog } from './transaction-log.js';

export interface InboundDeps {
  relay: Relay;
  logger: Logger;
  metrics?: Metrics;
  /** Where every reply of 400 or above is recorded (log line, metric, recent list). */
  refusals?: Refusals;
}

const REFUSED: Record<Exclude<Admission, 'ok'>, string> = {
  full: 'max_connections reached',
  address: 'max_connections_per_address reached for this address',
  strangers: 'the slots left are kept for trusted and authenticated clients',
};

export class InboundServer {
  readonly server: Server;
  private readonly sessions = new Set<Session>();
  private readonly slots: Slots;
  private readonly ctx: SessionContext;
  private draining = false;

  constructor(
    config: Config,
    private readonly deps: InboundDeps,
  ) {
    const inbound = config.inbound;
    const tls: SecureContext | null = inbound.tls
      ? createSecureContext({ key: readFileSync(inbound.tls.key_file), cert: readFileSync(inbound.tls.cert_file), minVersion: 'TLSv1.2' })
      : null;
    this.slots = new Slots({ max: inbound.max_connections, reserved: inbound.reserved_connections, perAddress: inbound.max_connections_per_address });
    const self = this;
    this.ctx = {
      config: inbound,
      hostname: inbound.hostname ?? hostname(),
      relay: deps.relay,
      logger: deps.logger,
      transactionLog: new TransactionLog(deps.logger),
      metrics: deps.metrics,
      refusals: deps.refusals,
      authGuard: new AuthGuard({
        failuresBeforeLockout: inbound.auth_failures_before_lockout,
        lockoutMs: inbound.auth_lockout_ms,
        failureDelayMs: inbound.auth_failure_delay_ms,
      }),
      tls,
      onAuthenticated: (s) => {
        if (!s.trusted) this.slots.authenticated();
      },
      onClose: (s) => {
        if (this.sessions.delete(s)) this.slots.leave(s.remote, !s.trusted, s.account !== null);
      },
      get draining() {
        return self.draining;
      },
    };
    // allowHalfOpen: a client that shuts its sending side after "." or QUIT still gets its replies.
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
    this.server.on('error', (err) => deps.logger.warn({ event: 'inbound_error', error: err.message }, 'inbound listener error'));
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    const remote = socket.remoteAddress ?? '';
    if (this.draining) return this.refuse(socket, remote, new RelayError('SHUTTING_DOWN'));
    const trusted = this.deps.relay.router.isTrusted(remote);
    const admission = this.slots.enter(remote, trusted);
    if (admission !== 'ok') return this.refuse(socket, remote, new RelayError('TOO_MANY_CONNECTIONS', REFUSED[admission]));
    const session = new Session(socket, this.ctx, trusted);
    this.sessions.add(session);
    session.start();
  }

  /** 421 at connect, recorded, and the connection closed. */
  private refuse(socket: Socket, remote: string, err: RelayError): void {
    const r = toReply(err);
    this.deps.refusals?.record({ stage: 'connect', reply: r, reason: reasonOf(err), remote, detail: err.message });
    socket.end(`${r.code} ${r.lines.join(' ')}\r\n`);
    setTimeout(() => socket.destroy(), 2_000).unref();
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

  /**
   * Stops accepting, closes sessions between transactions with 421 and lets each transaction
   * in flight reach its real final reply before its session is closed; after `timeoutMs`
   * whatever is left gets 421 and is closed.
   */
  async close(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) s.drain();
    while (this.sessions.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const s of this.sessions) s.kill();
    await closed;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }
}
