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
// This file owns the listeners and who may hold a connection (slots.ts); each connection is a
// Session. Before the session, a listener may read the PROXY protocol header (the client's real
// address behind a TCP balancer, proxy-protocol.ts) and complete a TLS handshake (implicit TLS,
// RFC 8314): both bounded in time and in number, neither holding a slot until the client's
// address is known.
import { readFileSync } from 'node:fs';
import { createServer, type BlockList, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { addressIn, networkList } from '../config/networks.js';
import type { Config, ListenerConfig } from '../config/schema.js';
import type { Metrics } from '../obs/metrics.js';
import type { Refusals } from '../obs/refusals.js';
import { reasonOf, RelayError, toReply } from '../errors/registry.js';
import type { Relay } from '../relay/relay.js';
import { AuthGuard } from './auth-guard.js';
import { ProxyHeaderReader } from './proxy-protocol.js';
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

/** `listen` or one of `listeners` (implicit_tls is `listeners`' only). */
export type ListenerSpec = Pick<ListenerConfig, 'host' | 'port' | 'proxy_protocol'> & { implicit_tls?: boolean };

interface Listener {
  /** Only these may connect, and each must send a PROXY header first; null: the PROXY protocol is off. */
  proxyFrom: BlockList | null;
  proxyTimeoutMs: number;
  implicitTls: boolean;
}

/**
 * The longest a client on the implicit-TLS listener may take over its handshake. Shorter than
 * tls.Server's 120 s default: until it is done the connection counts against max_connections.
 */
const TLS_HANDSHAKE_MS = 10_000;

const noop = (): void => undefined;

export class InboundServer {
  private readonly servers: Server[] = [];
  private readonly sessions = new Set<Session>();
  /** Connections still reading their PROXY header or doing their TLS handshake. */
  private readonly pending = new Set<Socket>();
  private readonly tls: SecureContext | null;
  private readonly slots: Slots;
  private readonly ctx: SessionContext;
  private draining = false;

  constructor(
    config: Config,
    private readonly deps: InboundDeps,
  ) {
    const inbound = config.inbound;
    const tls: SecureContext | null = (this.tls = inbound.tls
      ? createSecureContext({ key: readFileSync(inbound.tls.key_file), cert: readFileSync(inbound.tls.cert_file), minVersion: 'TLSv1.2' })
      : null);
    this.slots = new Slots({ max: inbound.max_connections, reserved: inbound.reserved_connections, perAddress: inbound.max_connections_per_address });
    const self = this;
    this.ctx = {
      config: inbound,
      hostname: inbound.hostname ?? hostname(),
      relay: deps.relay,
      logger: deps.logger,
      transactionLog: new TransactionLog(deps.logger, config.log.recipients),
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
  }

  private connection(socket: Socket, l: Listener): void {
    socket.on('error', noop);
    const peer = socket.remoteAddress ?? '';
    if (!l.proxyFrom && !l.implicitTls) return this.admit(socket, peer, false);
    if (this.pending.size >= this.ctx.config.max_connections) {
      socket.destroy();
      return;
    }
    this.pending.add(socket);
    socket.once('close', () => this.pending.delete(socket));
    if (!l.proxyFrom) return this.handshake(socket, l, peer);
    if (!addressIn(l.proxyFrom, peer)) return this.proxyRefused(socket, peer, 'not a balancer named in proxy_protocol.from');
    this.readProxyHeader(socket, l, peer);
  }

  /** The balancer's header, then the session with the client's address it names. */
  private readProxyHeader(socket: Socket, l: Listener, balancer: string): void {
    const reader = new ProxyHeaderReader();
    const timer = setTimeout(() => this.proxyRefused(socket, balancer, `no PROXY header within ${l.proxyTimeoutMs} ms`), l.proxyTimeoutMs).unref();
    // A balancer's plain TCP health check connects and closes: nothing to report.
    socket.once('close', () => clearTimeout(timer));
    const onData = (chunk: Buffer): void => {
      let header;
      try {
        header = reader.push(chunk);
      } catch (e) {
        clearTimeout(timer);
        socket.off('data', onData);
        return this.proxyRefused(socket, balancer, (e as Error).message);
      }
      if (!header) return;
      clearTimeout(timer);
      socket.off('data', onData);
      // What followed the header is the client's (its EHLO, its TLS hello): back in the stream.
      socket.pause();
      if (header.rest.length) socket.unshift(header.rest);
      this.handshake(socket, l, header.client ?? balancer);
    };
    socket.on('data', onData);
  }

  private proxyRefused(socket: Socket, balancer: string, why: string): void {
    this.deps.logger.warn({ event: 'proxy_refused', balancer, error: why }, `PROXY protocol connection from ${balancer} closed: ${why}`);
    socket.destroy();
  }

  /** On the implicit-TLS listener, the handshake before anything else (RFC 8314 §3.3). */
  private handshake(socket: Socket, l: Listener, remote: string): void {
    if (!l.implicitTls) {
      this.pending.delete(socket);
      return this.admit(socket, remote, false);
    }
    const secure = new TLSSocket(socket, { isServer: true, secureContext: this.tls! });
    secure.on('error', noop);
    const timer = setTimeout(() => secure.destroy(), TLS_HANDSHAKE_MS).unref();
    secure.once('close', () => clearTimeout(timer));
    secure.once('secure', () => {
      clearTimeout(timer);
      this.pending.delete(socket);
      this.admit(secure, remote, true);
    });
    // The raw socket stays paused: the TLS socket reads what it holds (a hello that came with the
    // PROXY header) on its first read; resuming it here would hand that to no one.
  }

  /** `remote` is the client's address: the socket's, or the one a trusted balancer named. */
  private admit(socket: Socket, remote: string, secure: boolean): void {
    if (this.draining) return this.refuse(socket, remote, new RelayError('SHUTTING_DOWN'));
    const trusted = this.deps.relay.router.isTrusted(remote);
    const admission = this.slots.enter(remote, trusted);
    if (admission !== 'ok') return this.refuse(socket, remote, new RelayError('TOO_MANY_CONNECTIONS', REFUSED[admission]));
    const session = new Session(socket, this.ctx, { remote, trusted, secure });
    this.sessions.add(session);
    session.start();
    // A socket paused while its PROXY header was read flows again, now that the session listens.
    if (socket.isPaused()) socket.resume();
  }

  /** 421 at connect, recorded, and the connection closed. */
  private refuse(socket: Socket, remote: string, err: RelayError): void {
    const r = toReply(err);
    this.deps.refusals?.record({ stage: 'connect', reply: r, reason: reasonOf(err), remote, detail: err.message });
    socket.end(`${r.code} ${r.lines.join(' ')}\r\n`);
    setTimeout(() => socket.destroy(), 2_000).unref();
  }

  /** Opens one listener (`listen`, or one of `listeners`); resolves to the port it is bound to. */
  listen(spec: ListenerSpec): Promise<number> {
    if (spec.implicit_tls && !this.tls) throw new Error('implicit_tls needs inbound.tls'); // the schema says so first
    const l: Listener = {
      proxyFrom: spec.proxy_protocol ? networkList(spec.proxy_protocol.from) : null,
      proxyTimeoutMs: spec.proxy_protocol?.timeout_ms ?? 5_000,
      implicitTls: spec.implicit_tls === true,
    };
    // allowHalfOpen: a client that shuts its sending side after "." or QUIT still gets its replies.
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.connection(socket, l));
    server.on('error', (err) => this.deps.logger.warn({ event: 'inbound_error', error: err.message }, 'inbound listener error'));
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(spec.port, spec.host, () => {
        server.off('error', reject);
        const addr = server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : spec.port);
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
    const closed = Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const socket of this.pending) socket.destroy();
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
