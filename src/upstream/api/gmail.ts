// The Gmail API: users.messages.send with the MIME as the MTA sent it.
//
// Gmail sends to the To, Cc and Bcc header addresses and takes no envelope. So that exactly the
// envelope receives it, the request's copy gets exactly one Bcc field naming the envelope
// recipients that To and Cc do not (any Bcc field the message had is replaced: Gmail removes Bcc
// before delivery, so no recipient sees it, and RFC 5322 §3.6 allows one). To and Cc addresses
// outside the envelope cannot be left out without rewriting what recipients see, so such a
// message is refused (554 5.3.3) rather than sent to them: a list the MTA expanded into its
// members is one (docs/configuration.md, "Gmail API"). The header is read by ./headers.ts; one
// it cannot read unambiguously is refused before anything is sent.
//
// Up to the simple request's size the MIME goes base64url in JSON ({"raw": ...}); above it, the
// media upload endpoint takes the bytes as message/rfc822, up to Gmail's 35 MB.
import { RelayError } from '../../errors/registry.js';
import { C554TransactionFailed, SeSys3NotCapable3 } from '../../smtp/codes.js';
import { coded } from '../../smtp/reply.js';
import { readHeader } from './headers.js';
import { ok, type ApiCalls, type ApiSender } from './sender.js';

/** The media upload endpoint's documented maximum for messages.send. */
export const GMAIL_MAX_MESSAGE_BYTES = 35 * 1024 * 1024;
/** Gmail's limit for a request that is not an upload (the JSON with `raw`). */
export const GMAIL_SIMPLE_MAX_REQUEST = 5 * 1024 * 1024;
/** Above this the request goes to the media upload endpoint: base64url in {"raw":"..."} must fit. */
export const GMAIL_SIMPLE_MAX_BYTES = Math.floor((GMAIL_SIMPLE_MAX_REQUEST - '{"raw":""}'.length) / 4) * 3;

/**
 * What Gmail is given: the message with one Bcc field for the envelope recipients To and Cc do
 * not name (none when they name them all), or a refusal when To or Cc name others.
 */
export function gmailPayload(mime: Buffer, envelope: readonly string[]): Buffer {
  const wanted = new Set(envelope.map((r) => r.toLowerCase()));
  const { fields, bodyStart, recipients: h } = readHeader(mime);
  const visible = new Set([...h.to, ...h.cc].map((a) => a.address));
  const headerOnly = [...visible].filter((a) => !wanted.has(a));
  if (headerOnly.length) {
    throw new RelayError('API_HEADER_RECIPIENTS', `gmail: header recipients not in the envelope: ${headerOnly.join(', ')}`, {
      notSent: true,
      reply: coded(C554TransactionFailed, SeSys3NotCapable3, `The Gmail API sends to every To/Cc address and cannot send to the envelope alone: ${headerOnly.length} header address(es) not in the envelope; an expanded list needs an account with upstream: smtp`),
    });
  }
  const bcc = [...wanted].filter((a) => !visible.has(a));
  if (!bcc.length && !fields.hasHeader('bcc')) return mime;
  fields.remove('bcc');
  if (bcc.length) fields.add('Bcc', bcc.join(', '));
  return Buffer.concat([fields.build(), mime.subarray(bodyStart)]);
}

export class GmailSender implements ApiSender {
  readonly api = 'gmail';
  readonly maxMessageBytes = GMAIL_MAX_MESSAGE_BYTES;

  constructor(private readonly gmailApiUrl: string) {}

  baseUrl(): string {
    return this.gmailApiUrl;
  }

  async send(calls: ApiCalls, mailbox: string, mime: Buffer, recipients: readonly string[]): Promise<void> {
    const payload = gmailPayload(mime, recipients);
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
