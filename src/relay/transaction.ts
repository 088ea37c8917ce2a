// One mail transaction relayed step by step, so every reply the MTA sees is the provider's:
// MAIL FROM opens the upstream transaction on a pooled connection, each RCPT is relayed and its
// reply returned, DATA is streamed through and the provider's final reply returned. Only after
// the provider said 250 does the MTA hear 250: nothing acknowledged is ever lost.
// (The model is Haraka's queue/smtp_proxy, which opens the upstream transaction at MAIL FROM.)
import type { DataResult, SentData, UpstreamConnection } from '../upstream/connection.js';
import type { AccountPool, Lease } from '../upstream/pool.js';
import type { UpstreamReplyObserver } from '../upstream/observer.js';
import type { MessageBody } from '../smtp/body.js';
import type { Envelope, MailParams } from '../smtp/envelope.js';
import {
  C552StorageExceeded,
  C555ParamsNotRecognized,
  SeMsg6ConversionRequired3,
  SeMsg6NonASCIIAddrNotPermitted7,
  SeSys3MsgTooBig4,
} from '../smtp/codes.js';
import { coded, isPositive, type Reply } from '../smtp/reply.js';
import type { Account } from '../routing/account.js';
import { RelayError, UpstreamReplyError } from '../errors/registry.js';


type Pool = AccountPool<UpstreamConnection>;

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

/** What the client pipelined behind MAIL, already cleared by the relay to go upstream with it. */
export interface Group {
  rcpts: readonly string[];
  data: boolean;
}

const NO_GROUP: Group = { rcpts: [], data: false };

interface Pipelined {
  mail: Promise<Reply>;
  rcpts: Array<{ to: string; reply: Promise<Reply> }>;
  /** rcpts[next] is the one the client's next RCPT takes its reply from. */
  next: number;
  data: SentData | null;
}

/** DATA, pipelined with the group, was answered 354: only a message (or a dropped connection) ends it now. */
const dataOpened = (sent: Pipelined) => sent.data?.reply?.code === 354;

/**
 * MAIL, the group's RCPTs and its DATA, issued in one turn so they leave in one write. The
 * caller handles MAIL's reply at once; the others may never be asked for (the client reset).
 */
function pipeline(conn: UpstreamConnection, from: string, params: string, group: Group): Pipelined {
  const mail = conn.mail(from, params);
  const rcpts = group.rcpts.map((to) => {
    const reply = conn.rcpt(to);
    reply.catch(noop);
    return { to, reply };
  });
  return { mail, rcpts, next: 0, data: group.data ? conn.dataCommand() : null };
}

/** Every reply of the group, answered or failed (they keep the connection's reply FIFO in step). */
const settled = (sent: Pipelined) => Promise.allSettled([sent.mail, ...sent.rcpts.map((r) => r.reply), ...(sent.data ? [sent.data.promise()] : [])]);

const noop = (): void => undefined;

/** The promise `start` returns, or its synchronous throw as a rejection (as an async function would). */
export function settle<T>(start: () => Promise<T>): Promise<T> {
  try {
    return start();
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * What the picked account's provider cannot carry is refused at MAIL in SMTP terms, not dropped:
 * the relay's EHLO could only guess before it knew the account.
 */
function checkCarriable(params: MailParams, conn: UpstreamConnection): void {
  const ext = conn.extensions;
  if (params.SMTPUTF8 && !ext.has('SMTPUTF8')) {
    throw new RelayError('NOT_CARRIABLE', 'SMTPUTF8 not offered by the provider', { reply: coded(C555ParamsNotRecognized, SeMsg6NonASCIIAddrNotPermitted7, 'SMTPUTF8 is not supported by this account\'s provider') });
  }
  if (typeof params.BODY === 'string' && params.BODY.toUpperCase() === '8BITMIME' && !ext.has('8BITMIME')) {
    throw new RelayError('NOT_CARRIABLE', '8BITMIME not offered by the provider', { reply: coded(C555ParamsNotRecognized, SeMsg6ConversionRequired3, '8-bit content is not supported by this account\'s provider') });
  }
  const limit = conn.maxMessageSize;
  if (limit !== null && typeof params.SIZE === 'string' && Number(params.SIZE) > limit) {
    throw new RelayError('MESSAGE_TOO_BIG', `declared ${params.SIZE} bytes over the provider's ${limit}`, { reply: coded(C552StorageExceeded, SeSys3MsgTooBig4, `Message size exceeds the provider's limit of ${limit} bytes`) });
  }
}

/** What begin() was asked to open, kept across its retry. */
interface Opening {
  account: Account;
  pool: Pool;
  mailFrom: string;
  params: MailParams;
  observe: UpstreamReplyObserver;
  group: Group;
}

/** Errors that mean the socket, not the transaction, failed: worth one retry on a fresh connection. */
const isConnectionFailure = (e: unknown) =>
  e instanceof RelayError && (e.code === 'UPSTREAM_CLOSED' || e.code === 'UPSTREAM_TIMEOUT');

export class RelayTransaction {
  readonly envelope: Envelope;
  private lease: Lease<UpstreamConnection> | null;
  bytes = 0;
  /** The provider's reply to MAIL (the client gets it as it is). */
  mailReply: Reply | null = null;

  private constructor(
    readonly account: Account,
    private readonly pool: Pool,
    lease: Lease<UpstreamConnection>,
    mailFrom: string,
    private readonly observe: UpstreamReplyObserver,
    private sent: Pipelined | null,
  ) {
    this.lease = lease;
    this.envelope = { mailFrom, rcptTo: [] };
  }

  /**
   * Opens the upstream transaction. `group` is what the client pipelined behind MAIL (RCPTs the
   * relay has already cleared, and DATA): it leaves with MAIL in one write and the replies are
   * kept for rcpt() and data(). A connection-level failure before the provider accepted MAIL (a
   * pooled socket the provider had closed, a 421 at MAIL) is retried once, group and all, on a
   * fresh connection before the MTA hears of it. A refusal is thrown as UpstreamReplyError.
   */
  static begin(account: Account, pool: Pool, mailFrom: string, params: MailParams, observe = ignore, group: Group = NO_GROUP): Promise<RelayTransaction> {
    const o: Opening = { account, pool, mailFrom, params, observe, group };
    // An idle connection is taken at once: MAIL and its group are written in this same turn.
    const lease = pool.ready();
    return lease ? RelayTransaction.attempt(o, lease, 1) : pool.acquire().then((l) => RelayTransaction.attempt(o, l, 1));
  }

  private static attempt(o: Opening, lease: Lease<UpstreamConnection>, attempt: number): Promise<RelayTransaction> {
    let sent: Pipelined;
    try {
      checkCarriable(o.params, lease.conn);
      sent = pipeline(lease.conn, o.mailFrom, mailParams(o.params, lease.conn), o.group);
    } catch (e) {
      return RelayTransaction.failed(o, lease, attempt, e);
    }
    return sent.mail.then(
      (reply) => {
        o.observe(o.account, 'MAIL', reply.code);
        if (!isPositive(reply)) return RelayTransaction.refused(o, lease, attempt, reply, sent);
        const tx = new RelayTransaction(o.account, o.pool, lease, o.mailFrom, o.observe, sent);
        tx.mailReply = reply;
        return tx;
      },
      (e: unknown) => RelayTransaction.failed(o, lease, attempt, e),
    );
  }

  /** MAIL could not be sent or was not answered: the first time, for a connection failure, on a fresh connection. */
  private static failed(o: Opening, lease: Lease<UpstreamConnection>, attempt: number, e: unknown): Promise<RelayTransaction> {
    // A refused argument leaves the connection as good as it was; a dead socket does not.
    o.pool.release(lease, lease.conn.isUsable);
    if (attempt > 1 || !isConnectionFailure(e)) return Promise.reject(e);
    return o.pool.acquire(true).then((fresh) => RelayTransaction.attempt(o, fresh, attempt + 1));
  }

  /** The provider refused MAIL: a 421 the first time is retried on a fresh connection. */
  private static async refused(o: Opening, lease: Lease<UpstreamConnection>, attempt: number, reply: Reply, sent: Pipelined): Promise<RelayTransaction> {
    // The pipelined RCPTs and DATA were refused too (503); their replies keep the FIFO in step.
    await settled(sent);
    if (reply.code === 421 && attempt === 1) {
      o.pool.release(lease, false);
      return RelayTransaction.attempt(o, await o.pool.acquire(true), attempt + 1);
    }
    // No transaction was opened: the connection is as good as before, unless the provider is closing it.
    o.pool.release(lease, reply.code !== 421 && !dataOpened(sent));
    throw new UpstreamReplyError(reply);
  }

  /** Relays one RCPT; a refusal is thrown as UpstreamReplyError and the transaction goes on. */
  rcpt(to: string): Promise<Reply> {
    let lease: Lease<UpstreamConnection>;
    let pending: Promise<Reply>;
    try {
      lease = this.live();
      const sent = this.sent;
      const ahead = sent?.rcpts[sent.next];
      if (ahead && ahead.to === to) {
        sent!.next++;
        pending = ahead.reply;
      } else {
        this.unexpected();
        pending = lease.conn.rcpt(to); // a synchronous throw (unsafe argument) is caught below
      }
    } catch (e) {
      return Promise.reject(e);
    }
    return pending.then(
      (reply) => this.rcptReplied(to, reply),
      (e: unknown) => {
        if (!lease.conn.isUsable) this.drop();
        throw e;
      },
    );
  }

  private rcptReplied(to: string, reply: Reply): Reply {
    this.observe(this.account, 'RCPT', reply.code);
    if (!isPositive(reply)) {
      if (reply.code === 421) this.drop();
      throw new UpstreamReplyError(reply);
    }
    this.envelope.rcptTo.push(to);
    return reply;
  }

  /**
   * Streams the message upstream as it arrives and returns the provider's final reply. Once
   * the provider said 354 the body is taken to its end, whatever happens upstream, so the
   * inbound session stays in step.
   */
  data(body: MessageBody, maxBytes: number): Promise<Reply> {
    const lease = this.lease;
    if (!lease) {
      // The upstream is gone: the body is not opened, so the MTA gets this instead of 354.
      return Promise.reject(new RelayError('UPSTREAM_CLOSED', `${this.account.email}: upstream transaction lost before DATA`));
    }
    this.lease = null;
    const sent = this.sent?.data ?? undefined;
    this.sent = null;
    // The provider's own SIZE is a limit too: over it, 552 rather than a dropped connection.
    const limit = Math.min(maxBytes, lease.conn.maxMessageSize ?? Infinity);
    return new Promise<Reply>((resolve, reject) => {
      lease.conn.transmit(
        body,
        { maxBytes: limit, ...(sent ? { sent } : {}) },
        (result) => {
          try {
            resolve(this.dataResult(lease, result, maxBytes));
          } catch (e) {
            reject(e);
          }
        },
        (e) => {
          this.pool.release(lease, false);
          reject(e);
        },
      );
    });
  }

  private dataResult(lease: Lease<UpstreamConnection>, result: DataResult, maxBytes: number): Reply {
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
    if (result.stage === 'command' && reply.code !== 421) {
      // DATA itself refused: the provider still holds MAIL and the RCPTs (only the end of the
      // message or RSET ends a transaction), and the next MAIL on this connection would get
      // "503 nested MAIL". Reset while the MTA already has its answer.
      void this.resetAndRelease(lease);
    } else {
      // After its final reply the provider has reset the transaction: the connection is reusable.
      this.pool.release(lease, reply.code !== 421 && lease.conn.isUsable);
    }
    if (!isPositive(reply)) throw new UpstreamReplyError(reply);
    return reply;
  }

  /** The MTA reset or left mid-transaction: RSET upstream and give the connection back. */
  async abort(): Promise<void> {
    const lease = this.lease;
    if (!lease) return;
    this.lease = null;
    const sent = this.sent;
    this.sent = null;
    if (sent) {
      // Commands pipelined for a group the client did not finish: their replies first. A DATA
      // the provider answered 354 cannot be taken back without sending a message: drop it.
      await settled(sent);
      if (dataOpened(sent)) {
        this.pool.release(lease, false);
        return;
      }
    }
    await this.resetAndRelease(lease);
  }

  /** RSET upstream; the connection goes back to the pool only if the provider agreed. */
  private async resetAndRelease(lease: Lease<UpstreamConnection>): Promise<void> {
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

  /** An RCPT the group did not announce: whatever was pipelined ahead of it is not for it. */
  private unexpected(): void {
    if (this.sent && (this.sent.rcpts.length > this.sent.next || this.sent.data)) throw new RelayError('INTERNAL', 'RCPT out of the pipelined order');
  }

  /** Whether DATA was sent ahead with the group (data() then uses its reply). */
  get dataSent(): boolean {
    return this.sent?.data != null;
  }

  private drop(): void {
    if (this.lease) this.pool.release(this.lease, false);
    this.lease = null;
  }
}
