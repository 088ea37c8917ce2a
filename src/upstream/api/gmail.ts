// The Gmail API: users.messages.send with the MIME as the MTA sent it.
//
// Gmail sends to the To, Cc and Bcc header addresses and takes no envelope. So that exactly the
// envelope receives it: envelope recipients the header does not name are added in a Bcc field
// prepended to the request's copy (Gmail removes Bcc before delivery, so recipients get the
// MTA's bytes); header recipients outside the envelope cannot be left out without rewriting the
// visible header, so such a message is refused (554 5.3.3) rather than sent to them again.
//
// Up to the simple request's size the MIME goes base64url in JSON ({"raw": ...}); above it, the
// media upload endpoint takes the bytes as message/rfc822, up to Gmail's 35 MB.
import { RelayError } from '../../errors/registry.js';
import { headerRecipients } from './headers.js';
import { ok, type ApiCalls, type ApiSender } from './sender.js';

/** The media upload endpoint's documented maximum for messages.send. */
export const GMAIL_MAX_MESSAGE_BYTES = 35 * 1024 * 1024;
/** Gmail's limit for a request that is not an upload (the JSON with `raw`). */
export const GMAIL_SIMPLE_MAX_REQUEST = 5 * 1024 * 1024;
/** Above this the request goes to the media upload endpoint: base64url in {"raw":"..."} must fit. */
export const GMAIL_SIMPLE_MAX_BYTES = Math.floor((GMAIL_SIMPLE_MAX_REQUEST - '{"raw":""}'.length) / 4) * 3;

/** The Bcc field to prepend for envelope-only recipients, or a refusal for header-only ones. */
export function gmailBcc(mime: Buffer, envelope: readonly string[]): Buffer {
  const wanted = new Set(envelope.map((r) => r.toLowerCase()));
  const h = headerRecipients(mime);
  const named = new Set([...h.to, ...h.cc, ...h.bcc].map((a) => a.address));
  const headerOnly = [...named].filter((a) => !wanted.has(a));
  if (headerOnly.length) {
    throw new RelayError('API_HEADER_RECIPIENTS', `gmail: header recipients not in the envelope: ${headerOnly.join(', ')}`, { notSent: true });
  }
  const extra = [...wanted].filter((a) => !named.has(a));
  return extra.length ? Buffer.from(`Bcc: ${extra.join(', ')}\r\n`) : Buffer.alloc(0);
}

export class GmailSender implements ApiSender {
  readonly api = 'gmail';
  readonly maxMessageBytes = GMAIL_MAX_MESSAGE_BYTES;

  constructor(private readonly gmailApiUrl: string) {}

  baseUrl(): string {
    return this.gmailApiUrl;
  }

  async send(calls: ApiCalls, mailbox: string, mime: Buffer, recipients: readonly string[]): Promise<void> {
    const bcc = gmailBcc(mime, recipients);
    const payload = bcc.length ? Buffer.concat([bcc, mime]) : mime;
    if (payload.length > GMAIL_MAX_MESSAGE_BYTES) throw new RelayError('MESSAGE_TOO_BIG', `${payload.length} bytes with the Bcc field`, { notSent: true });
    const user = encodeURIComponent(mailbox);
    const res =
      payload.length <= GMAIL_SIMPLE_MAX_BYTES
        ? await calls.call({
            method: 'POST',
            url: `${this.gmailApiUrl}/gmail/v1/users/${user}/messages/send`,
            contentType: 'application/json',
            body: JSON.stringify({ raw: payload.toString('base64url') }),
            long: true,
          })
        : await calls.call({
            method: 'POST',
            url: `${this.gmailApiUrl}/upload/gmail/v1/users/${user}/messages/send?uploadType=media`,
            contentType: 'message/rfc822',
            body: payload,
            long: true,
          });
    if (!ok(res)) throw calls.fail(res, 'send');
  }
}
