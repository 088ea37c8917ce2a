// A relayed transaction with its account's sending limits around it: each RCPT is reserved
// before it goes upstream, the reservation is kept or given back by how the transaction ends,
// and a provider reply that says the account is over its quota pauses the account (see
// src/limits/limiter.ts for what counts when). The relaying itself is RelayTransaction's.
import type { Limiter, Reservation } from '../limits/limiter.js';
import type { MessageBody } from '../smtp/body.js';
import type { Reply } from '../smtp/reply.js';
import { certainlyNotSent, toReply } from '../errors/registry.js';
import type { Envelope } from '../smtp/envelope.js';
import { settle, type RelayTransaction } from './transaction.js';

/** What the inbound side drives: the SMTP relay's transaction or an HTTP API's (src/upstream/api/). */
export type UpstreamTransaction = Pick<RelayTransaction, 'account' | 'envelope' | 'bytes' | 'mailReply' | 'open' | 'rcpt' | 'data' | 'abort'>;

/** One RCPT relayed and the reply the client got for it (the provider's, as given). */
export interface RecipientReply {
  to: string;
  reply: Reply;
}

const refusedRecipients = new WeakMap<object, string>();

/** Marks a refusal as a recipient's, for its `refused` log line. */
function refusalOf(err: unknown, to: string): unknown {
  if (typeof err === 'object' && err !== null) refusedRecipients.set(err, to);
  return err;
}

/** The recipient a refused RCPT was for, when `err` is such a refusal. */
export const recipientOf = (err: unknown): string | undefined => (typeof err === 'object' && err !== null ? refusedRecipients.get(err) : undefined);

export class LimitedTransaction {
  /** Every RCPT that went to the provider, accepted or not, in order: for the transaction log line. */
  readonly recipients: RecipientReply[] = [];

  constructor(
    private readonly inner: UpstreamTransaction,
    private readonly reservation: Reservation,
    private readonly limiter: Limiter,
    /** Recipients reserved before begin() sent them upstream with MAIL (a pipelined group). */
    private prereserved = 0,
  ) {}

  get account() {
    return this.inner.account;
  }

  get envelope(): Envelope {
    return this.inner.envelope;
  }

  get bytes(): number {
    return this.inner.bytes;
  }

  /** The provider's reply to MAIL; a backend without one leaves it null (the client gets a plain 250). */
  get mailReply(): Reply | null {
    return this.inner.mailReply;
  }

  get open(): boolean {
    return this.inner.open;
  }

  rcpt(to: string): Promise<Reply> {
    if (this.prereserved > 0) {
      this.prereserved--;
      return this.relayRcpt(to);
    }
    let held;
    try {
      held = this.reservation.addRecipient();
    } catch (e) {
      return Promise.reject(refusalOf(e, to));
    }
    return held ? held.then(() => this.relayRcpt(to), (e: unknown) => Promise.reject(refusalOf(e, to))) : this.relayRcpt(to);
  }

  private relayRcpt(to: string): Promise<Reply> {
    return settle(() => this.inner.rcpt(to)).then(
      (reply) => {
        this.recipients.push({ to, reply });
        return reply;
      },
      (e: unknown) => {
        this.reservation.recipientRefused();
        const err = this.limiter.providerRefusal(this.account, e);
        this.recipients.push({ to, reply: toReply(err) });
        throw refusalOf(err, to);
      },
    );
  }

  data(body: MessageBody, maxBytes: number): Promise<Reply> {
    const wasOpen = this.inner.open;
    return settle(() => this.inner.data(body, maxBytes)).then(
      (reply) => {
        this.reservation.sent();
        return reply;
      },
      (e: unknown) => {
        // Refused, too big, or never started: the provider does not have it. A connection lost
        // after the body was sent may have delivered it: that one stays counted.
        const notSent = !wasOpen || certainlyNotSent(e);
        if (notSent) this.reservation.unsent();
        else this.reservation.sent();
        throw this.limiter.providerRefusal(this.account, e);
      },
    );
  }

  async abort(): Promise<void> {
    try {
      await this.inner.abort();
    } finally {
      this.reservation.unsent();
    }
  }
}
