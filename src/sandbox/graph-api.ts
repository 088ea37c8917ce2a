// A fake Microsoft Graph mail API: drafts created from MIME, their recipients set, and sent —
// the calls the relay makes (src/upstream/api/graph.ts) with the checks Graph makes: a bearer
// token for the Graph resource (delegated Mail.Send, or app-only .default whose app was given
// the mailbox), a mailbox that exists, base64 MIME in text/plain under 4 MB, recipient objects.
// Larger content comes as file attachments uploaded to a draft through upload sessions
// (./graph-uploads.ts), up to Exchange Online's largest message size (150 MB; a tenant's
// default is 35 MB: maxMessageBytes models a mailbox's limit). A sent draft is recorded with
// the MIME as created and the recipients as set; its uploaded attachments under its message id.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { headerRecipients, type HeaderAddress } from '../upstream/api/headers.js';
import { headerFrom, type AcceptedMessage } from './submission-server.js';
import { FakeApiServer, HttpError, decodeBase64 } from './api-server.js';
import { GraphUploadSessions, UPLOAD_PATH, encodedSize, type FakeFileAttachment } from './graph-uploads.js';
import { GRAPH_MAIL_READWRITE_SCOPE, GRAPH_MAIL_SEND_SCOPE, GRAPH_RESOURCE } from '../config/providers.js';
import { normaliseEmail, type AccessTokenCheck, type SandboxState } from './provider-state.js';

/** Graph's request size limit. */
export const FAKE_GRAPH_MAX_REQUEST = 4 * 1024 * 1024;

interface Draft {
  mailbox: string;
  mime: Buffer;
  to: string[];
  cc: string[];
  bcc: string[];
  attachments: FakeFileAttachment[];
}

const PATH = /^\/v1\.0\/users\/([^/]+)\/messages(?:\/([^/]+)(\/send)?)?$/;
const UPLOAD_SESSION = /^\/v1\.0\/users\/([^/]+)\/messages\/([^/]+)\/attachments\/createUploadSession$/;
/** The Drafts folder, which `accounts test` reads to check the token and permission. */
const DRAFTS = /^\/v1\.0\/users\/([^/]+)\/mailFolders\/drafts$/i;

type Recipient = { emailAddress?: { address?: unknown } };

function addresses(list: unknown): string[] {
  if (!Array.isArray(list)) throw new HttpError(400, graphError('RequestBodyRead', 'recipient lists must be arrays'));
  return list.map((r: Recipient) => {
    const a = r?.emailAddress?.address;
    if (typeof a !== 'string' || !a.includes('@')) throw new HttpError(400, graphError('ErrorInvalidRecipients', 'At least one recipient is not valid.'));
    return a.toLowerCase();
  });
}

const graphError = (code: string, message: string) => ({ error: { code, message, innerError: { 'request-id': randomBytes(8).toString('hex') } } });
const list = (a: HeaderAddress[]) => a.map((x) => x.address);

export class FakeGraphApi extends FakeApiServer {
  private readonly drafts = new Map<string, Draft>();
  private readonly uploads = new GraphUploadSessions(graphError);
  /** The files uploaded to each sent message's draft, by the delivered message's id. */
  readonly sentAttachments = new Map<string, FakeFileAttachment[]>();
  /** The mailbox's message size limit, on the message as sent: draft MIME plus attachments in base64 (Exchange Online's largest). */
  maxMessageBytes = 150 * 1024 * 1024;

  constructor(state: SandboxState, host: string) {
    super(state, host);
  }

  protected errorBody(_status: number, code: string, message: string): unknown {
    return graphError(code, message);
  }

  protected maxBody(): number {
    return FAKE_GRAPH_MAX_REQUEST;
  }

  override reset(): void {
    super.reset();
    this.sentAttachments.clear();
  }

  /** The attachments uploaded to the draft `message` was sent from. */
  attachmentsOf(message: AcceptedMessage): FakeFileAttachment[] {
    return this.sentAttachments.get(message.id) ?? [];
  }

  /** Drafts created and not (yet) sent or deleted. */
  get draftCount(): number {
    return this.drafts.size;
  }

  protected async handle(req: IncomingMessage, body: Buffer, path: string, query: URLSearchParams): Promise<{ status: number; body?: unknown; headers?: Record<string, string> } | 'hold'> {
    const upload = UPLOAD_PATH.exec(path);
    if (upload) {
      const draft = this.drafts.get(this.uploads.draftOf(upload[1]!, query.get('authtoken')));
      if (!draft) throw new HttpError(404, graphError('ErrorItemNotFound', 'The specified object was not found in the store.'));
      if (this.step('upload', draft.mailbox) === 'hold') return 'hold';
      const { answer, attachment } = this.uploads.put(req, upload[1]!, body, this.url);
      if (attachment) draft.attachments.push(attachment);
      return answer;
    }
    const session = UPLOAD_SESSION.exec(path);
    if (session) {
      const mailbox = normaliseEmail(decodeURIComponent(session[1]!));
      this.authorize(this.bearer(req, mailbox), mailbox, 'session');
      if (this.step('session', mailbox) === 'hold') return 'hold';
      if (req.method !== 'POST') throw new HttpError(405, graphError('ErrorInvalidRequest', 'method not allowed'));
      const id = decodeURIComponent(session[2]!);
      const draft = this.drafts.get(id);
      if (!draft || draft.mailbox !== mailbox) throw new HttpError(404, graphError('ErrorItemNotFound', 'The specified object was not found in the store.'));
      const used = draft.attachments.reduce((n, a) => n + encodedSize(a.bytes.length), draft.mime.length);
      return this.uploads.create(id, body, this.url, this.maxMessageBytes - used);
    }
    const folder = DRAFTS.exec(path);
    if (folder && req.method === 'GET') {
      const owner = normaliseEmail(decodeURIComponent(folder[1]!));
      this.authorize(this.bearer(req, owner), owner, 'folder');
      if (this.step('folder', owner) === 'hold') return 'hold';
      return { status: 200, body: { id: 'drafts', displayName: 'Drafts' } };
    }
    const m = PATH.exec(path);
    if (!m) throw new HttpError(404, graphError('BadRequest', `Resource not found for the segment '${path}'.`));
    const mailbox = normaliseEmail(decodeURIComponent(m[1]!));
    const id = m[2] ? decodeURIComponent(m[2]) : null;
    const step = !id ? 'create' : m[3] ? 'send' : ({ PATCH: 'patch', GET: 'get', DELETE: 'delete' } as Record<string, string>)[req.method ?? ''] ?? 'other';
    this.authorize(this.bearer(req, mailbox), mailbox, step);
    if (this.step(step, mailbox) === 'hold') return 'hold';

    if (!id) {
      if (req.method !== 'POST') throw new HttpError(405, graphError('ErrorInvalidRequest', 'method not allowed'));
      if (!(req.headers['content-type'] ?? '').startsWith('text/plain')) throw new HttpError(415, graphError('UnsupportedMediaType', 'expected text/plain MIME'));
      const mime = decodeBase64(body.toString('latin1'), false);
      if (!mime || !mime.length) throw new HttpError(400, graphError('ErrorMimeContentInvalidBase64String', 'Invalid base64 string for MIME content.'));
      const h = headerRecipients(mime);
      const draftId = 'AAMk' + randomBytes(12).toString('base64url');
      this.drafts.set(draftId, { mailbox, mime, to: list(h.to), cc: list(h.cc), bcc: list(h.bcc), attachments: [] });
      return { status: 201, body: { id: draftId, isDraft: true } };
    }

    const draft = this.drafts.get(id);
    if (!draft || draft.mailbox !== mailbox) throw new HttpError(404, graphError('ErrorItemNotFound', 'The specified object was not found in the store.'));
    switch (step) {
      case 'get':
        return { status: 200, body: { id, isDraft: true } };
      case 'delete':
        this.drafts.delete(id);
        this.uploads.dropDraft(id);
        return { status: 204 };
      case 'patch': {
        let patch: Record<string, unknown>;
        try {
          patch = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
        } catch {
          throw new HttpError(400, graphError('RequestBodyRead', 'Invalid JSON.'));
        }
        if ('toRecipients' in patch) draft.to = addresses(patch.toRecipients);
        if ('ccRecipients' in patch) draft.cc = addresses(patch.ccRecipients);
        if ('bccRecipients' in patch) draft.bcc = addresses(patch.bccRecipients);
        return { status: 200, body: { id, isDraft: true } };
      }
      case 'send': {
        const recipients = [...new Set([...draft.to, ...draft.cc, ...draft.bcc])];
        if (!recipients.length) throw new HttpError(400, graphError('ErrorInvalidRecipients', 'At least one recipient is not valid., A message can\'t be sent because it contains no recipients.'));
        // Exchange's Send As check, made when the message is submitted (SandboxState.maySendAs).
        const from = headerFrom(draft.mime);
        if (from && !this.state.maySendAs(mailbox, from)) {
          throw new HttpError(403, graphError('ErrorSendAsDenied', 'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.'));
        }
        this.drafts.delete(id);
        this.uploads.dropDraft(id);
        const sent = this.deliver(mailbox, recipients, draft.mime);
        if (draft.attachments.length) this.sentAttachments.set(sent.id, draft.attachments);
        return { status: 202 };
      }
      default:
        throw new HttpError(405, graphError('ErrorInvalidRequest', 'method not allowed'));
    }
  }

  /**
   * Graph's audience and permission checks, in its order: the resource, the mailbox, the grant
   * (a delegated token needs Mail.Send to send a draft, Mail.ReadWrite for the draft itself).
   */
  private authorize(check: AccessTokenCheck, mailbox: string, step: string): void {
    const scopes = check.scope.toLowerCase().split(/\s+/);
    const graphToken = check.app ? check.scope === `${GRAPH_RESOURCE}/.default` : scopes.some((s) => s.startsWith(`${GRAPH_RESOURCE}/`));
    // A token for another resource (outlook.office.com's SMTP.Send) is refused by audience.
    if (!graphToken) throw new HttpError(401, graphError('InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.'));
    if (!this.state.hasAccount(mailbox)) throw new HttpError(404, graphError('ErrorInvalidUser', `The requested user '${mailbox}' is invalid.`));
    // Delegated: only the signed-in user's mailbox. App-only: the mailboxes its access policy allows.
    const needed = step === 'send' ? GRAPH_MAIL_SEND_SCOPE : GRAPH_MAIL_READWRITE_SCOPE;
    if (check.email !== mailbox || (!check.app && !scopes.includes(needed.toLowerCase()))) {
      throw new HttpError(403, graphError('ErrorAccessDenied', 'Access is denied. Check credentials and try again.'));
    }
  }
}
