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
// The send step is the only one that delivers, and it is asynchronous: 202 means Exchange took
// the draft, whose Sent Items copy "isn't created until the message is successfully sent, which
// may take time" (docs: "Obtain immutable identifiers for Outlook resources"). Every call asks
// for immutable ids (Prefer: IdType="ImmutableId"), so the draft's id stays its Sent Items
// copy's. When the send's answer is lost or is a 5xx, the relay reads that id every `everyMs`
// for up to `withinMs`: isDraft false means sent (250). Still a draft at the end: it is deleted
// and, once gone, the MTA gets 451 and resends. Anything else (the id unknown, the reads
// failing) cannot tell, and the MTA gets the send's own 451: a resend may duplicate, never lose.
import { RelayError } from '../../errors/registry.js';
import { C451LocalError, SeNet4Other0, SeProto5Other0 } from '../../smtp/codes.js';
import { coded } from '../../smtp/reply.js';
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

/** Whether Graph's answer to the PATCH names exactly the recipients set, list by list. */
function sameRecipients(body: string, lists: ReturnType<typeof graphRecipients>): boolean {
  let got: Record<string, unknown>;
  try {
    got = JSON.parse(body) as Record<string, unknown>;
  } catch {
    return false;
  }
  const key = (l: unknown) => (Array.isArray(l) ? l.map((r: Recipient) => String(r?.emailAddress?.address ?? '').toLowerCase()).sort().join('\n') : null);
  return (['toRecipients', 'ccRecipients', 'bccRecipients'] as const).every((k) => key(got[k]) === key(lists[k]));
}

/** Graph keeps an item's id when it moves (the draft becoming its Sent Items copy) only when asked. */
const IMMUTABLE_IDS = { prefer: 'IdType="ImmutableId"' };

/** How long, and how often, a send whose answer was lost is looked for. */
export interface SendConfirmation {
  withinMs: number;
  everyMs: number;
}

export class GraphSender implements ApiSender {
  readonly api = 'graph';
  readonly maxMessageBytes = GRAPH_MAX_MESSAGE_BYTES;

  constructor(
    private readonly graphUrl: string,
    private readonly confirm: SendConfirmation = { withinMs: 60_000, everyMs: 2_000 },
  ) {}

  baseUrl(): string {
    return this.graphUrl;
  }

  async send(calls: ApiCalls, mailbox: string, mime: Buffer, recipients: readonly string[]): Promise<void> {
    // Read (or refused as unreadable) before anything reaches Graph.
    const lists = graphRecipients(mime, recipients);
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
    const created = await calls.call({ method: 'POST', url: messages, contentType: 'text/plain', headers: IMMUTABLE_IDS, body: draftMime.toString('base64'), long: true });
    if (!ok(created)) throw calls.fail(created, 'create draft');
    const id = (JSON.parse(created.body) as { id?: unknown }).id;
    if (typeof id !== 'string') throw new RelayError('UPSTREAM_PROTOCOL', 'graph: the created draft has no id', { notSent: true });
    const draft = `${messages}/${encodeURIComponent(id)}`;
    const discard = () => calls.call({ method: 'DELETE', url: draft, headers: IMMUTABLE_IDS }).catch(() => undefined);

    let patched;
    try {
      patched = await calls.call({ method: 'PATCH', url: draft, contentType: 'application/json', headers: IMMUTABLE_IDS, body: JSON.stringify(lists) });
    } catch (e) {
      await discard();
      throw e;
    }
    if (!ok(patched)) {
      await discard();
      throw calls.fail(patched, 'set recipients');
    }
    // Graph documents no PATCH of a draft created from MIME ("Send messages with MIME content":
    // MIME properties cannot be updated individually); the updated message it answers with must
    // show the recipients set, or nothing is sent (a change of Graph's would show here first).
    if (!sameRecipients(patched.body, lists)) {
      await discard();
      throw new RelayError('UPSTREAM_PROTOCOL', 'graph: the draft does not show the recipients set by PATCH', {
        notSent: true,
        reply: coded(C451LocalError, SeProto5Other0, 'Microsoft Graph did not keep the recipients the relay set on the draft; not sent, try again later'),
      });
    }
    try {
      for (const file of files) await this.attach(calls, draft, file);
    } catch (e) {
      await discard();
      throw e;
    }

    let sent;
    try {
      sent = await calls.call({ method: 'POST', url: `${draft}/send`, headers: IMMUTABLE_IDS, long: true });
    } catch (e) {
      const failed = await this.unlessSent(calls, draft, e);
      if (failed) throw failed;
      return;
    }
    if (ok(sent)) return;
    if (sent.status < 500) {
      await discard();
      throw calls.fail(sent, 'send');
    }
    const failed = await this.unlessSent(calls, draft, calls.fail(sent, 'send'));
    if (failed) throw failed;
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

  /** The draft's state by its immutable id: sent, still a draft, or unknown (gone, or no answer). */
  private async state(calls: ApiCalls, draft: string): Promise<'sent' | 'draft' | 'unknown'> {
    try {
      const res = await calls.call({ method: 'GET', url: `${draft}?$select=isDraft`, headers: IMMUTABLE_IDS });
      if (!ok(res)) return 'unknown';
      const isDraft = (JSON.parse(res.body) as { isDraft?: unknown }).isDraft;
      return isDraft === false ? 'sent' : isDraft === true ? 'draft' : 'unknown';
    } catch {
      return 'unknown';
    }
  }

  /**
   * After a send whose answer was lost or a 5xx: resolves (250) once the draft is its Sent Items
   * copy; returns the error to answer otherwise, `notSent` only when the draft, still a draft
   * at the end, was deleted and is gone.
   */
  private async unlessSent(calls: ApiCalls, draft: string, error: unknown): Promise<unknown | null> {
    const until = Date.now() + this.confirm.withinMs;
    let last: 'sent' | 'draft' | 'unknown' = 'unknown';
    for (;;) {
      last = await this.state(calls, draft);
      if (last === 'sent') return null;
      if (Date.now() + this.confirm.everyMs > until) break;
      await new Promise((r) => setTimeout(r, this.confirm.everyMs));
    }
    if (last === 'draft') {
      const deleted = await calls.call({ method: 'DELETE', url: draft, headers: IMMUTABLE_IDS }).catch(() => null);
      if (deleted && ok(deleted)) {
        return new RelayError('API_SERVER_ERROR', `graph send: no answer, and the draft was still a draft after ${this.confirm.withinMs} ms (deleted)`, {
          cause: error,
          notSent: true,
          reply: coded(C451LocalError, SeNet4Other0, 'Microsoft Graph did not send the message (still a draft after its send failed, now deleted), try again later'),
        });
      }
      if ((await this.state(calls, draft)) === 'sent') return null;
    }
    return error;
  }
}
