// The HTTP API upstreams of the accounts configured with `upstream: graph | gmail_api`: the
// shared keep-alive connections, each account's concurrency, and a transaction per message.
// The relay asks for a transaction at MAIL FROM (Relay.begin), as it asks the SMTP pool.
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.js';
import type { AccountPauses } from '../../limits/pauses.js';
import { RelayError } from '../../errors/registry.js';
import type { MailParams } from '../../smtp/envelope.js';
import type { UpstreamReplyObserver } from '../observer.js';
import type { Account } from '../../routing/account.js';
import type { ConnectionSlots } from '../../store/store.js';
import type { TokenCache } from '../../tokens/token-cache.js';
import { GmailSender } from './gmail.js';
import { GraphSender } from './graph.js';
import { ApiHttp } from './http.js';
import type { ApiSender } from './sender.js';
import { ApiPermits } from './permits.js';
import { ApiTransaction } from './transaction.js';

/** At most this many connections are opened ahead per API origin at start-up. */
const MAX_WARM_PER_ORIGIN = 16;

export const usesApi = (a: Account): boolean => a.upstream !== 'smtp';

/**
 * How long a Graph send whose answer was lost is watched: as long as the send's own answer was
 * waited for, at most a minute (Exchange's transport takes seconds; every 5xx costs the MTA's
 * connection this long). The MTA waits for both: Postfix's smtp_data_done_timeout is 600 s.
 */
const MAX_CONFIRM_MS = 60_000;

export function senderFor(account: Account, confirmWithinMs = MAX_CONFIRM_MS): ApiSender {
  return account.upstream === 'graph'
    ? new GraphSender(account.provider.graphUrl, { withinMs: confirmWithinMs, everyMs: Math.min(2_000, Math.max(100, Math.floor(confirmWithinMs / 10))) })
    : new GmailSender(account.provider.gmailApiUrl);
}

export class ApiUpstreams {
  readonly http: ApiHttp;
  /** Per Account object: a changed account (a new object) starts afresh, a removed one is collected. */
  private readonly perAccount = new WeakMap<Account, { sender: ApiSender; permits: ApiPermits }>();

  constructor(
    private readonly upstream: Config['upstream'],
    private readonly tokens: TokenCache,
    private readonly pauses: AccountPauses,
    /** Where each mailbox's max_connections is counted: the fleet's store, or this process. */
    private readonly slots: ConnectionSlots,
    private readonly logger: Logger,
  ) {
    this.http = new ApiHttp({ connectTimeoutMs: upstream.connect_timeout_ms, idleTimeoutMs: upstream.idle_timeout_ms });
  }

  private of(account: Account): { sender: ApiSender; permits: ApiPermits } {
    let it = this.perAccount.get(account);
    if (!it) {
      const u = this.upstream;
      const permits = new ApiPermits(account.email, { maxConnections: account.maxConnections, acquireTimeoutMs: u.acquire_timeout_ms, slots: this.slots, slotTtlMs: u.slot_ttl_ms }, this.logger);
      this.perAccount.set(account, (it = { sender: senderFor(account, Math.min(u.data_timeout_ms, MAX_CONFIRM_MS)), permits }));
    }
    return it;
  }

  /**
   * At MAIL FROM: a declared SIZE over the API's maximum is refused now (552 5.3.4, RFC 1870), and
   * the account needs a token (454 now rather than after the whole message).
   */
  async begin(account: Account, mailFrom: string, params: MailParams, observe: UpstreamReplyObserver): Promise<ApiTransaction> {
    const { sender, permits } = this.of(account);
    const declared = typeof params.SIZE === 'string' ? Number(params.SIZE) : 0;
    if (declared > sender.maxMessageBytes) {
      throw new RelayError('MESSAGE_TOO_BIG', `SIZE=${declared} over ${sender.maxMessageBytes} (${sender.api})`, { notSent: true });
    }
    await this.tokens.get(account);
    return new ApiTransaction(account, sender, mailFrom, {
      http: this.http,
      tokens: this.tokens,
      pauses: this.pauses,
      permits,
      commandTimeoutMs: this.upstream.command_timeout_ms,
      dataTimeoutMs: this.upstream.data_timeout_ms,
      observe,
    });
  }

  /** Opens the API accounts' min_idle keep-alive connections (per origin, bounded). */
  async warm(accounts: readonly Account[]): Promise<void> {
    const byOrigin = new Map<string, { account: Account; count: number }>();
    for (const a of accounts.filter(usesApi)) {
      const base = this.of(a).sender.baseUrl();
      const key = `${new URL(base).origin}|${a.sourceIp ?? ''}`;
      const g = byOrigin.get(key) ?? { account: a, count: 0 };
      g.count = Math.min(MAX_WARM_PER_ORIGIN, g.count + a.minIdle);
      byOrigin.set(key, g);
    }
    await Promise.allSettled([...byOrigin.values()].map((g) => this.http.warm(g.account, this.of(g.account).sender.baseUrl(), g.count, this.upstream.connect_timeout_ms)));
  }

  close(): Promise<void> {
    return this.http.close();
  }
}
