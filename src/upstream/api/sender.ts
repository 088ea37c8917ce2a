// What an API upstream is given to send one message: the account's authenticated calls and how
// to turn an error answer into the relay's error. Implemented by ./graph.ts and ./gmail.ts.
import type { RelayError } from '../../errors/registry.js';
import type { ApiName } from './failures.js';
import type { ApiRequest, ApiResponse } from './http.js';

export interface ApiCalls {
  /** One request with the account's token; a 401 refreshes the token once and repeats it. */
  call(req: Omit<ApiRequest, 'token' | 'timeoutMs'> & { long?: boolean }): Promise<ApiResponse>;
  /** One request to a URL the API pre-authenticated (Graph's upload URL): no token goes with it. */
  upload(req: Omit<ApiRequest, 'token' | 'timeoutMs'>): Promise<ApiResponse>;
  /** The error for an error answer: a throttle pauses the account; the rest per ./failures.ts. */
  fail(res: ApiResponse, step: string): RelayError;
}

export interface ApiSender {
  readonly api: ApiName;
  /** The largest message (MIME bytes as the MTA sent them) the API can take. */
  readonly maxMessageBytes: number;
  /** Base URL whose origin the keep-alive connections go to. */
  baseUrl(): string;
  /** Sends `mime` from the account's mailbox to exactly `recipients`; resolves once the API accepted it. */
  send(calls: ApiCalls, mailbox: string, mime: Buffer, recipients: readonly string[]): Promise<void>;
}

export const ok = (res: ApiResponse) => res.status >= 200 && res.status < 300;
