// The hook through which both upstream paths (SMTP transactions in src/relay/transaction.ts,
// the HTTP APIs in src/upstream/api/) report every provider reply, for the upstream replies
// metric. Declared here, with the upstreams, so that they need nothing from the relay stage.
import type { Account } from '../routing/account.js';

/** Sees every reply the provider gives a transaction (the upstream replies metric). */
export type UpstreamReplyObserver = (account: Account, command: 'MAIL' | 'RCPT' | 'DATA', code: number) => void;
