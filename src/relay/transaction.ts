// One mail transaction relayed step by step, so every reply the MTA sees is the provider's:
// MAIL FROM opens the upstream transaction on a pooled connection, each RCPT is relayed and its
// reply returned, DATA is streamed through and the provider's final reply returned. Only after
// the provider said 250 does the MTA hear 250: nothing acknowledged is ever lost.
// (The model is Haraka's queue/smtp_proxy, which opens the upstream transaction at MAIL FROM.)
import type { UpstreamConnection } from '../upstream/connection.js';
import type { AccountPool, Lease } from '../upstream/pool.js';
import { isPositive, type Reply } from '../upstream/reply.js';
import type { Account } from '../routing/account.js';
import { RelayError, UpstreamReplyError } from './errors.js';

/** ESMTP parameters of MAIL FROM as the inbound parser gave them (upper-case keys). */
export type MailParams = Record<string, string | boolean | undefined>;

export interface Envelope {
  mailFrom: string;
  rcptTo: string[];
}

type Pool = AccountPool<UpstreamConnection>;

/** Sees every reply the provider gives a transaction (the upstream replies metric). */
export type UpstreamReplyObserver = (account: Account, command: 'MAIL' | 'RCPT' | 'DATA', code: number) => void;

const ignore: UpstreamReplyObserver = () => undefined;

/**
 * MAIL FROM parameters the provider understands, and only those: a parameter it did not
 * advertise would make it refuse the whole transaction (RFC 5321 §4.1.1.11).
 */
function mailParams(params: MailParams, conn: UpstreamConnection): string {
  const out: string[] = [];
  const ext = conn.extensions;
  if (typeof params.SIZE === 'string' && ext.has('SIZE')) out.push(`SIZE=${params.SIZE}`);
  if (typeof params.BODY === 'string' && ext.has('8BITMIME')) out.push(`BODY=${params.BODY}`);
  if (params.SMTPUTF8 && ext.has('SMTPUTF8')) out.push('SMTPUTF8');
  return out.join(' ');
}

/** Errors that mean the socket, not the transaction, failed: worth one retry on a fresh connection. */
const isConnectionFailure = (e: unknown) =>
  e instanceof RelayError && (e.code === 'UPSTREAM_CLOSED' || e.code === 'UPSTREAM_TIMEOUT');

export class RelayTransaction {
  readonly envelope: Envelope;
  private lease: Lease<UpstreamConnection> | null;
  bytes = 0;

  private constructor(
    readonly account: Account,
    private readonly pool: Pool,
    lease: Lease<UpstreamConnection>,
    mailFrom: string,
    private readonly observe: UpstreamReplyObserver,
  ) {
    this.lease = lease;
    this.envelope = { mailFrom, rcptTo: [] };
  }

  /**
   * Opens the upstream transaction. A connection-level failure before the provider accepted
   * MAIL (a pooled socket the provider had closed, a 421 at MAIL) is retried once on a fresh
   * connection before the MTA hears of it. A refusal is thrown as UpstreamReplyError.
   */
  static async begin(account: Account, pool: Pool, mailFrom: string, params: MailParams, observe = ignore): Promise<RelayTransaction> {
    let lease = await pool.acquire();
    for (let attempt = 1; ; attempt++) {
      let reply: Reply;
      try {
        reply = await lease.conn.mail(mailFrom, mailParams(params, lease.conn));
      } catch (e) {
        // A refused argument leaves the connection as good as it was; a dead socket does not.
        pool.release(lease, lease.conn.isUsable);
        if (attempt > 1 || !isConnectionFailure(e)) throw e;
        lease = await pool.acquire(true);
        continue;
      }
      observe(account, 'MAIL', reply.code);
      if (isPositive(reply)) return new RelayTransaction(account, pool, lease, mailFrom, observe);
      if (reply.code === 421 && attempt === 1) {
        pool.release(lease, false);
        lease = await pool.acquire(true);
        continue;
      }
      // No transaction was opened: the connection is as good as before, unless the provider is closing it.
      pool.release(lease, reply.code !== 421);
      throw new UpstreamReplyError(reply);
    }
  }

  /** Relays one RCPT; a refusal is thrown as UpstreamReplyError and the transaction goes on. */
  async rcpt(to: string): Promise<Reply> {
    const lease = this.live();
    let reply: Reply;
    try {
      reply = await lease.conn.rcpt(to);
    } catch (e) {
      if (!lease.conn.isUsable) this.drop();
      throw e;
    }
    this.observe(this.account, 'RCPT', reply.code);
    if (!isPositive(reply)) {
      if (reply.code === 421) this.drop();
      throw new UpstreamReplyError(reply);
    }
    this.envelope.rcptTo.push(to);
    return reply;
  }

  /**
   * Streams the message upstream as it arrives and returns the provider's final reply. The body
   * is always read to its end, whatever happens upstream, so the inbound session stays in step.
   */
  async data(body: AsyncIterable<Buffer>, maxBytes: number): Promise<Reply> {
    const lease = this.lease;
    if (!lease) {
      for await (const _ of body); // the upstream is gone; the MTA still sends the message
      throw new RelayError('UPSTREAM_CLOSED', `${this.account.email}: upstream transaction lost before DATA`);
    }
    this.lease = null;
    let result;
    try {
      result = await lease.conn.data(body, { maxBytes });
    } catch (e) {
      this.pool.release(lease, false);
      throw e;
    }
    this.bytes = result.bytes;
    if (result.kind === 'too-big') {
      // The connection was dropped without the final dot: the provider discards the partial message.
      this.pool.release(lease, false);
      throw new RelayError('MESSAGE_TOO_BIG', `${this.bytes} bytes over ${maxBytes}`);
    }
    const reply = result.reply;
    // DATA's own refusal (instead of 354) or the reply to the end of the message: the provider's answer to DATA.
    this.observe(this.account, 'DATA', reply.code);
    if (isPositive(reply)) lease.uses++;
    // After its final reply the provider has reset the transaction: the connection is reusable.
    this.pool.release(lease, reply.code !== 421 && lease.conn.isUsable);
    if (!isPositive(reply)) throw new UpstreamReplyError(reply);
    return reply;
  }

  /** The MTA reset or left mid-transaction: RSET upstream and give the connection back. */
  async abort(): Promise<void> {
    const lease = this.lease;
    if (!lease) return;
    this.lease = null;
    let reusable = false;
    if (lease.conn.isUsable) {
      try {
        reusable = isPositive(await lease.conn.rset());
      } catch {
        reusable = false;
      }
    }
    this.pool.release(lease, reusable);
  }

  get open(): boolean {
    return this.lease !== null;
  }

  private live(): Lease<UpstreamConnection> {
    if (!this.lease) throw new RelayError('UPSTREAM_CLOSED', `${this.account.email}: upstream transaction lost`);
    return this.lease;
  }

  private drop(): void {
    if (this.lease) this.pool.release(this.lease, false);
    this.lease = null;
  }
}
