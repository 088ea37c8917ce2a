// One mail transaction through an HTTP API, with the shape the inbound side drives (as
// RelayTransaction's): RCPT is the relay's own (the API takes no recipient before the message),
// DATA collects the message, sends it in one go and answers 250 only once the API accepted it.
import { RelayError } from '../../errors/registry.js';
import { collectBody, type MessageBody } from '../../smtp/body.js';
import type { Envelope } from '../../smtp/envelope.js';
import type { UpstreamReplyObserver } from '../observer.js';
import type { AccountPauses } from '../../limits/pauses.js';
import type { Account } from '../../routing/account.js';
import type { AccessToken, TokenCache } from '../../tokens/token-cache.js';
import { C250Completed, SeAddr1DestValid5, SeOther0 } from '../../smtp/codes.js';
import { coded, type Reply } from '../../smtp/reply.js';
import { apiFailure, isThrottle, retryAfterMs, throttled } from './failures.js';
import type { ApiHttp, ApiResponse } from './http.js';
import type { ApiCalls, ApiSender } from './sender.js';
import type { ApiPermits } from './permits.js';

export interface ApiTransactionDeps {
  http: ApiHttp;
  tokens: TokenCache;
  pauses: AccountPauses;
  permits: ApiPermits;
  /** For small requests, and for those carrying the message. */
  commandTimeoutMs: number;
  dataTimeoutMs: number;
  observe: UpstreamReplyObserver;
}

/** An error raised before the message was handed to the API: the provider certainly does not have it. */
function beforeSending(e: unknown): unknown {
  if (!(e instanceof RelayError) || e.notSent) return e;
  return new RelayError(e.code, e.message, { cause: e, reply: e.reply, notSent: true });
}

export class ApiTransaction {
  readonly envelope: Envelope;
  bytes = 0;
  /** No provider reply to MAIL: the API has no such step (the inbound side answers a plain 250). */
  readonly mailReply: Reply | null = null;
  private live = true;

  constructor(
    readonly account: Account,
    private readonly sender: ApiSender,
    mailFrom: string,
    private readonly deps: ApiTransactionDeps,
  ) {
    this.envelope = { mailFrom, rcptTo: [] };
  }

  get open(): boolean {
    return this.live;
  }

  /** Recorded for DATA; the reply is the relay's (syntax and limits were checked before). */
  async rcpt(to: string): Promise<Reply> {
    if (!this.live) throw new RelayError('UPSTREAM_CLOSED', `${this.account.email}: transaction already ended`);
    this.envelope.rcptTo.push(to);
    return coded(C250Completed, SeAddr1DestValid5, 'Recipient OK');
  }

  async data(body: MessageBody, maxBytes: number): Promise<Reply> {
    // Refused before the body is opened: the MTA then gets this instead of 354 (the inbound engine
    // answers 354 when the body is opened).
    if (!this.live) throw new RelayError('UPSTREAM_CLOSED', `${this.account.email}: transaction already ended`);
    this.live = false;
    const limit = Math.min(maxBytes, this.sender.maxMessageBytes);
    // Read to its end even past the limit (the client stays in step), kept only up to it.
    const { bytes: mime, size: bytes, over } = await collectBody(body, limit);
    this.bytes = bytes;
    if (over) throw new RelayError('MESSAGE_TOO_BIG', `${bytes} bytes over ${limit} (${this.sender.api} takes at most ${this.sender.maxMessageBytes})`);
    let release: () => void;
    try {
      release = await this.deps.permits.acquire();
    } catch (e) {
      throw beforeSending(e);
    }
    try {
      await this.sender.send(await this.calls(), this.account.email, mime, this.envelope.rcptTo);
    } catch (e) {
      if (e instanceof RelayError) this.deps.observe(this.account, 'DATA', e.reply.code);
      throw e;
    } finally {
      release();
    }
    this.deps.observe(this.account, 'DATA', 250);
    return coded(C250Completed, SeOther0, `OK, accepted by ${this.sender.api === 'graph' ? 'Microsoft Graph' : 'the Gmail API'}`);
  }

  async abort(): Promise<void> {
    this.live = false;
  }

  /** The account's authenticated calls for one message: one token refresh on a 401, then its answer stands. */
  private async calls(): Promise<ApiCalls> {
    const { http, tokens, pauses } = this.deps;
    const account = this.account;
    let token: AccessToken;
    try {
      token = await tokens.get(account);
    } catch (e) {
      throw beforeSending(e);
    }
    let refreshed = false;
    const api = this.sender.api;
    return {
      call: async ({ long, ...req }) => {
        const timeoutMs = long ? this.deps.dataTimeoutMs : this.deps.commandTimeoutMs;
        let res: ApiResponse = await http.request(account, { ...req, token: token.value, timeoutMs });
        if (res.status === 401 && !refreshed) {
          refreshed = true;
          try {
            token = await tokens.replaceRejected(account, token.value);
          } catch (e) {
            throw beforeSending(e);
          }
          res = await http.request(account, { ...req, token: token.value, timeoutMs });
        }
        return res;
      },
      upload: (req) => http.request(account, { ...req, timeoutMs: this.deps.dataTimeoutMs }),
      fail: (res, step) => {
        if (!isThrottle(api, res)) return apiFailure(api, res, step);
        const waitMs = retryAfterMs(res);
        const pause = pauses.pause(account.email, waitMs, `${api} throttled the account (HTTP ${res.status})`);
        return throttled(api, pause.until - Date.now(), `${account.email}: ${api} ${step}: HTTP ${res.status}`);
      },
    };
  }
}
