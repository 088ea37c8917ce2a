// Every reply of 400 or above the relay gives an MTA (at connect, AUTH, MAIL, RCPT or DATA; its
// own or a provider's passed through) is recorded here, once: one `refused` log line, one count
// in xoauth2_relay_refusals_total{stage,class,reason,account}, and a place in the short list of
// recent refusals that the status page and /api/status show. The inbound engine calls record()
// where it writes such a reply; nothing else decides what is counted.
import type { Logger } from 'pino';
import type { RefusalReason } from '../errors/registry.js';
import { formatReply, type Reply } from '../smtp/reply.js';
import type { Metrics } from './metrics.js';

export type RefusalStage = 'connect' | 'auth' | 'mail' | 'rcpt' | 'data' | 'session';

export interface RefusalInput {
  stage: RefusalStage;
  reply: Reply;
  reason: RefusalReason;
  /** The account, when one was picked (or authenticated as). */
  account?: string | null | undefined;
  session?: string | undefined;
  remote?: string | undefined;
  mailFrom?: string | undefined;
  /** For the log only: what went wrong, never a secret. */
  detail?: string | undefined;
}

export interface Refusal {
  at: number;
  stage: RefusalStage;
  code: number;
  /** '4xx' or '5xx'. */
  class: string;
  reason: RefusalReason;
  account: string | null;
  reply: string;
  mailFrom: string | null;
}

const RECENT = 50;

export class Refusals {
  private readonly ring: Refusal[] = [];
  private next = 0;

  constructor(
    private readonly logger: Logger,
    private readonly metrics?: Metrics,
  ) {}

  record(r: RefusalInput): void {
    const cls = `${Math.floor(r.reply.code / 100)}xx`;
    const account = r.account ?? null;
    this.metrics?.refusals.inc({ stage: r.stage, class: cls, reason: r.reason, account: account ?? '' });
    const entry: Refusal = {
      at: Date.now(),
      stage: r.stage,
      code: r.reply.code,
      class: cls,
      reason: r.reason,
      account,
      reply: formatReply(r.reply),
      mailFrom: r.mailFrom ?? null,
    };
    if (this.ring.length < RECENT) this.ring.push(entry);
    else this.ring[this.next] = entry;
    this.next = (this.next + 1) % RECENT;
    if (!this.logger.isLevelEnabled('info')) return;
    this.logger.info(
      {
        event: 'refused',
        stage: r.stage,
        code: r.reply.code,
        reason: r.reason,
        account: account ?? undefined,
        session: r.session,
        remote: r.remote,
        mail_from: r.mailFrom,
        reply: entry.reply,
        ...(r.detail ? { error: r.detail } : {}),
      },
      'refused',
    );
  }

  /** Newest first. */
  recent(limit = RECENT): Refusal[] {
    const ordered = this.ring.length < RECENT ? [...this.ring] : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
    return ordered.reverse().slice(0, limit);
  }
}
