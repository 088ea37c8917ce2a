// `accounts test` for an API account: the API host is reachable, and the token is accepted for
// the mailbox with the permission to send — without sending anything. Graph: reading the
// mailbox's Drafts folder (the relay's drafts need Mail.ReadWrite; the mailbox must be one an
// application access policy allows). Gmail: users.messages.send with an empty message, which
// Gmail checks token and scope for before answering 400 "Recipient address required".
import type { Account } from '../../routing/account.js';
import type { ConnectorOptions } from '../connector.js';
import { apiFailure } from './failures.js';
import { ApiHttp } from './http.js';
import { senderFor } from './upstreams.js';

/** Where a check stopped, and why (a RelayError). */
export class ApiCheckFailure extends Error {
  constructor(
    readonly stage: 'connect' | 'auth',
    override readonly cause: Error,
  ) {
    super(cause.message);
  }
}

export async function checkApiAccount(account: Account, token: string, opts: ConnectorOptions): Promise<void> {
  const http = new ApiHttp({ connectTimeoutMs: opts.connectTimeoutMs, idleTimeoutMs: 1_000 });
  const base = senderFor(account).baseUrl();
  const timeoutMs = opts.commandTimeoutMs;
  try {
    try {
      await http.request(account, { method: 'GET', url: `${new URL(base).origin}/`, timeoutMs });
    } catch (e) {
      throw new ApiCheckFailure('connect', e as Error);
    }
    const user = encodeURIComponent(account.email);
    const graph = account.upstream === 'graph';
    let res;
    try {
      res = graph
        ? await http.request(account, { method: 'GET', url: `${base}/v1.0/users/${user}/mailFolders/drafts?$select=id`, token, timeoutMs })
        : await http.request(account, { method: 'POST', url: `${base}/gmail/v1/users/${user}/messages/send`, token, contentType: 'application/json', body: '{"raw":""}', timeoutMs });
    } catch (e) {
      throw new ApiCheckFailure('connect', e as Error);
    }
    const accepted = graph ? res.status === 200 : res.status === 400;
    if (!accepted) throw new ApiCheckFailure('auth', apiFailure(graph ? 'graph' : 'gmail', res, 'check'));
  } finally {
    await http.close();
  }
}

/** What `accounts test` shows as the upstream of an API account. */
export const apiUpstreamLabel = (account: Account): string => senderFor(account).baseUrl();
