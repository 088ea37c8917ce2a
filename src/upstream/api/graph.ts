// Microsoft Graph: the MIME as a draft, its recipients set to the envelope, then sent.
//
// sendMail with MIME would take the recipients from the To/Cc/Bcc headers. Creating the draft
// from the MIME (POST /users/{id}/messages, text/plain, base64) keeps the message as the MTA
// wrote it; PATCHing toRecipients/ccRecipients/bccRecipients makes the recipients the envelope
// (header addresses in the envelope stay To/Cc, envelope-only ones become Bcc, header-only ones
// are dropped); POST .../send sends it from the mailbox (and saves it to Sent Items).
//
// A message over the 4 MB request limit goes as a draft of what is left once its base64
// attachment parts of 3 to 150 MB are taken out (./mime-attachments.ts), each of those then
// uploaded to the draft as a file attachment through an upload session (createUploadSession,
// then PUTs of byte ranges under 4 MB to the pre-authenticated upload URL, without the token):
// Graph's only way to carry more than 4 MB (docs: "Attach large files to Outlook messages").
//
// The send step is the only one that delivers. When it times out or fails with a 5xx, the
// draft tells whether it went: still a draft means not sent (it is deleted, the MTA gets 451
// and retries), gone means sent (250): no message is sent twice for a lost answer.
import { RelayError } from '../../errors/registry.js';
import { headerRecipients, type HeaderAddress } from './headers.js';
import { takeAttachments, type FileAttachment } from './mime-attachments.js';
import { ok, type ApiCalls, type ApiSender } from './sender.js';

const MB = 1024 * 1024;
/** Graph refuses request bodies over 4 MB; the MIME goes base64-encoded (4 bytes per 3). */
export const GRAPH_MAX_REQUEST_BYTES = 4 * MB;
export const GRAPH_MAX_MIME_BYTES = (GRAPH_MAX_REQUEST_BYTES / 4) * 3;
/** What an upload session takes: files of 3 MB to 150 MB. */
export const GRAPH_UPLOAD_FILE_BYTES = { min: 3 * MB, max: 150 * MB };
/** Exchange Online's largest message size (a tenant's default is 35 MB; an admin can raise it to this). */
export const GRAPH_MAX_MESSAGE_BYTES = 150 * MB;
/** Byte ranges per PUT: under the 4 MB request limit, as the docs ask. */
export const GRAPH_UPLOAD_RANGE_BYTES = 3 * MB;

interface Recipient {
  emailAddress: { address: string; name?: string };
}

const recipient = (a: HeaderAddress): Recipient => ({ emailAddress: { address: a.address, ...(a.name ? { name: a.name } : {}) } });

/** The envelope as Graph's three recipient lists, keeping the header's names and To/Cc placement. */
export function graphRecipients(mime: Buffer, envelope: readonly string[]): { toRecipients: Recipient[]; ccRecipients: Recipient[]; bccRecipients: Recipient[] } {
  const wanted = new Set(envelope.map((r) => r.toLowerCase()));
  const placed = new Set<string>();
  const pick = (list: HeaderAddress[]) =>
    list.filter((a) => wanted.has(a.address) && !placed.has(a.address) && placed.add(a.address)).map(recipient);
  const h = headerRecipients(mime);
  const toRecipients = pick(h.to);
  const ccRecipients = pick(h.cc);
  const bccRecipients = [...wanted].filter((a) => !placed.has(a)).map((address) => recipient({ name: '', address }));
  return { toRecipients, ccRecipients, bccRecipients };
}

export class GraphSender implements ApiSender {
  readonly api = 'graph';
  readonly maxMessageBytes = GRAPH_MAX_MESSAGE_BYTES;

  constructor(private readonly graphUrl: string) {}

  baseUrl(): string {
    return this.graphUrl;
  }

  async send(calls: ApiCalls, mailbox: string, mime: Buffer, recipients: readonly string[]): Promise<void> {
    let draftMime = mime;
    let files: FileAttachment[] = [];
    if (mime.length > GRAPH_MAX_MIME_BYTES) {
      const split = takeAttachments(mime, GRAPH_MAX_MIME_BYTES, GRAPH_UPLOAD_FILE_BYTES);
      if (!split) {
        throw new RelayError('MESSAGE_TOO_BIG', `graph: ${mime.length} bytes, and no base64 attachments of 3 to 150 MB whose removal leaves ${GRAPH_MAX_MIME_BYTES}`, { notSent: true });
      }
      ({ rest: draftMime, files } = split);
    }
    const messages = `${this.graphUrl}/v1.0/users/${encodeURIComponent(mailbox)}/messages`;
    const created = await calls.call({ method: 'POST', url: messages, contentType: 'text/plain', body: draftMime.toString('base64'), long: true });
    if (!ok(created)) throw calls.fail(created, 'create draft');
    const id = (JSON.parse(created.body) as { id?: unknown }).id;
    if (typeof id !== 'string') throw new RelayError('UPSTREAM_PROTOCOL', 'graph: the created draft has no id', { notSent: true });
    const draft = `${messages}/${encodeURIComponent(id)}`;
    const discard = () => calls.call({ method: 'DELETE', url: draft }).catch(() => undefined);

    let patched;
    try {
      patched = await calls.call({ method: 'PATCH', url: draft, contentType: 'application/json', body: JSON.stringify(graphRecipients(mime, recipients)) });
    } catch (e) {
      await discard();
      throw e;
    }
    if (!ok(patched)) {
      await discard();
      throw calls.fail(patched, 'set recipients');
    }
    try {
      for (const file of files) await this.attach(calls, draft, file);
    } catch (e) {
      await discard();
      throw e;
    }

    let sent;
    try {
      sent = await calls.call({ method: 'POST', url: `${draft}/send`, long: true });
    } catch (e) {
      if (await this.wasSent(calls, draft, discard)) return;
      throw e;
    }
    if (ok(sent)) return;
    if (sent.status >= 500 && (await this.wasSent(calls, draft, discard))) return;
    if (sent.status < 500) await discard();
    throw calls.fail(sent, 'send');
  }

  /** One file through an upload session: ranges in order, 200 for each but the last, 201 for it. */
  private async attach(calls: ApiCalls, draft: string, file: FileAttachment): Promise<void> {
    const item = { attachmentType: 'file', name: file.name, size: file.bytes.length, contentType: file.contentType, isInline: file.isInline, ...(file.contentId ? { contentId: file.contentId } : {}) };
    const res = await calls.call({ method: 'POST', url: `${draft}/attachments/createUploadSession`, contentType: 'application/json', body: JSON.stringify({ AttachmentItem: item }) });
    if (!ok(res)) throw calls.fail(res, 'create upload session');
    const uploadUrl = (JSON.parse(res.body) as { uploadUrl?: unknown }).uploadUrl;
    // The message's bytes go where the answer says (outlook.office.com for Graph): never over a
    // weaker scheme than the Graph URL's own. The URL carries a token: it stays out of errors.
    if (typeof uploadUrl !== 'string' || !URL.canParse(uploadUrl) || new URL(uploadUrl).protocol !== new URL(this.graphUrl).protocol) {
      throw new RelayError('UPSTREAM_PROTOCOL', 'graph: the upload session has no usable uploadUrl', { notSent: true });
    }
    const total = file.bytes.length;
    for (let start = 0; start < total; start += GRAPH_UPLOAD_RANGE_BYTES) {
      const end = Math.min(start + GRAPH_UPLOAD_RANGE_BYTES, total) - 1;
      const put = await calls.upload({
        method: 'PUT',
        url: uploadUrl,
        contentType: 'application/octet-stream',
        headers: { 'content-range': `bytes ${start}-${end}/${total}` },
        body: file.bytes.subarray(start, end + 1),
      });
      const last = end === total - 1;
      if (put.status !== (last ? 201 : 200)) {
        if (ok(put)) throw new RelayError('UPSTREAM_PROTOCOL', `graph: upload of bytes ${start}-${end}/${total} answered ${put.status}`, { notSent: true });
        throw calls.fail(put, 'upload attachment');
      }
    }
  }

  /**
   * After a send whose answer was lost or a 5xx: a draft still there was not sent (and is
   * deleted); a draft gone was sent. When even that cannot be told, it may have been sent.
   */
  private async wasSent(calls: ApiCalls, draft: string, discard: () => Promise<unknown>): Promise<boolean> {
    try {
      const res = await calls.call({ method: 'GET', url: `${draft}?$select=isDraft` });
      if (res.status === 404) return true;
      if (ok(res) && (JSON.parse(res.body) as { isDraft?: unknown }).isDraft === false) return true;
      if (ok(res)) await discard();
      return false;
    } catch {
      return false;
    }
  }
}
