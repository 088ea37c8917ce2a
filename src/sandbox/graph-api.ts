// A fake Microsoft Graph mail API: drafts created from MIME, their recipients set, and sent —
// the calls the relay makes (src/upstream/api/graph.ts) with the checks Graph makes: a bearer
// token for the Graph resource (delegated Mail.Send, or app-only .default whose app was given
// the mailbox), a mailbox that exists, base64 MIME in text/plain under 4 MB, recipient objects.
// Larger content comes as file attachments uploaded to a draft through upload sessions
// (./graph-uploads.ts), up to Exchange Online's largest message size (150 MB; a tenant's
// default is 35 MB: maxMessageBytes models a mailbox's limit). A sent draft is recorded with
// the MIME as created (without Bcc, as Exchange transmits it) and the recipients as set; its
// uploaded attachments and recipient lists (with names) under its message id. Headers are read
// by ./header-reader.ts, not the relay's reader.
//
// Sending is asynchronous, as Graph's is (202, then Exchange's transport): a sent draft stays a
// draft for `sendingMs`, then is delivered and becomes its Sent Items copy, which keeps the
// draft's id only when the draft was created with `Prefer: IdType="ImmutableId"` (without it
// an item's id changes when it moves folders). Deleting a draft still sending cancels it.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { fakeAddresses, headerFrom, MalformedHeader, withoutBcc, type FakeAddress } from './header-reader.js';
import type { AcceptedMessage } from './submission-server.js';
import { FakeApiServer, HttpError, decodeBase64 } from './api-server.js';
import { GraphUploadSessions, UPLOAD_PATH, encodedSize, type FakeFileAttachment } from './graph-uploads.js';
import { GRAPH_MAIL_READWRITE_SCOPE, GRAPH_MAIL_SEND_SCOPE, GRAPH_RESOURCE } from '../config/providers.js';
import { normaliseEmail, type AccessTokenCheck, type SandboxState } from './provider-state.js';

/** Graph's request size limit. */
export const FAKE_GRAPH_MAX_REQUEST = 4 * 1024 * 1024;

export interface FakeRecipientLists {
  to: FakeAddress[];
  cc: FakeAddress[];
  bcc: FakeAddress[];
}

interface Draft extends FakeRecipientLists {
  mailbox: string;
  mime: Buffer;
  attachments: FakeFileAttachment[];
  immutableId: boolean;
  /** Set by send: the pending delivery, until it is done. */
  sending?: NodeJS.Timeout;
}

const PATH = /^\/v1\.0\/users\/([^/]+)\/messages(?:\/([^/]+)(\/send)?)?$/;
const UPLOAD_SESSION = /^\/v1\.0\/users\/([^/]+)\/messages\/([^/]+)\/attachments\/createUploadSession$/;
/** The Drafts folder, which `accounts test` reads to check the token and permission. */
const DRAFTS = /^\/v1\.0\/users\/([^/]+)\/mailFolders\/drafts$/i;

type Recipient = { emailAddress?: { address?: unknown; name?: unknown } };

function addresses(list: unknown): FakeAddress[] {
  if (!Array.isArray(list)) throw new HttpError(400, graphError('RequestBodyRead', 'recipient lists must be arrays'));
  return list.map((r: Recipient) => {
    const a = r?.emailAddress?.address;
    if (typeof a !== 'string' || !a.includes('@')) throw new HttpError(400, graphError('ErrorInvalidRecipients', 'At least one recipient is not valid.'));
    const name = r.emailAddress?.name;
    return { address: a.toLowerCase(), name: typeof name === 'string' ? name : '' };
  });
}

const immutable = (req: IncomingMessage) => /\bIdType\s*=\s*"ImmutableId"/i.test(String(req.headers.prefer ?? ''));

const graphError = (code: string, message: string) => ({ error: { code, message, innerError: { 'request-id': randomBytes(8).toString('hex') } } });

export class FakeGraphApi extends FakeApiServer {
  private readonly drafts = new Map<string, Draft>();
  private readonly uploads = new GraphUploadSessions(graphError);
  /** The files uploaded to each sent message's draft, by the delivered message's id. */
  readonly sentAttachments = new Map<string, FakeFileAttachment[]>();
  /** The recipient lists (with display names) each delivered message was sent to, by its id. */
  readonly sentLists = new Map<string, FakeRecipientLists>();
  /** Sent Items: the ids of sent drafts' copies. */
  private readonly sentItems = new Map<string, string>();
  /** How long a sent draft stays a draft before it is delivered (Exchange's transport at work). */
  sendingMs = 0;
  /**
   * A Graph that keeps a MIME draft's recipients from its header and answers a PATCH of them
   * with 200 anyway: what the relay would face if Graph applied "MIME properties cannot be
   * updated individually" ("Send messages with MIME content") without saying so.
   */
  mimeRecipientsFixed = false;
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
    this.sentLists.clear();
    this.sentItems.clear();
    this.sendingMs = 0;
    this.mimeRecipientsFixed = false;
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
    if (this.step(step, mailbox, req) === 'hold') return 'hold';

    if (!id) {
      if (req.method !== 'POST') throw new HttpError(405, graphError('ErrorInvalidRequest', 'method not allowed'));
      if (!(req.headers['content-type'] ?? '').startsWith('text/plain')) throw new HttpError(415, graphError('UnsupportedMediaType', 'expected text/plain MIME'));
      const mime = decodeBase64(body.toString('latin1'), false);
      if (!mime || !mime.length) throw new HttpError(400, graphError('ErrorMimeContentInvalidBase64String', 'Invalid base64 string for MIME content.'));
      let lists: FakeRecipientLists;
      try {
        lists = { to: fakeAddresses(mime, 'to'), cc: fakeAddresses(mime, 'cc'), bcc: fakeAddresses(mime, 'bcc') };
      } catch (e) {
        if (!(e instanceof MalformedHeader)) throw e;
        throw new HttpError(400, graphError('ErrorMimeContentInvalid', `Invalid MIME content: ${e.message}`));
      }
      const draftId = 'AAMk' + randomBytes(12).toString('base64url');
      this.drafts.set(draftId, { mailbox, mime, ...lists, attachments: [], immutableId: immutable(req) });
      return { status: 201, body: { id: draftId, isDraft: true } };
    }

    const draft = this.drafts.get(id);
    if (!draft || draft.mailbox !== mailbox) {
      if (step === 'get' && this.sentItems.get(id) === mailbox) return { status: 200, body: { id, isDraft: false } };
      throw new HttpError(404, graphError('ErrorItemNotFound', 'The specified object was not found in the store.'));
    }
    switch (step) {
      case 'get':
        return { status: 200, body: { id, isDraft: true } };
      case 'delete':
        clearTimeout(draft.sending);
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
        const set = { to: 'toRecipients' in patch ? addresses(patch.toRecipients) : draft.to, cc: 'ccRecipients' in patch ? addresses(patch.ccRecipients) : draft.cc, bcc: 'bccRecipients' in patch ? addresses(patch.bccRecipients) : draft.bcc };
        if (!this.mimeRecipientsFixed) Object.assign(draft, set);
        // As Graph: the updated message, its recipient lists included.
        const listed = (l: FakeAddress[]) => l.map((a) => ({ emailAddress: { address: a.address, name: a.name || a.address } }));
        return { status: 200, body: { id, isDraft: true, toRecipients: listed(draft.to), ccRecipients: listed(draft.cc), bccRecipients: listed(draft.bcc) } };
      }
      case 'send': {
        const recipients = [...new Set([...draft.to, ...draft.cc, ...draft.bcc].map((a) => a.address))];
        if (!recipients.length) throw new HttpError(400, graphError('ErrorInvalidRecipients', 'At least one recipient is not valid., A message can\'t be sent because it contains no recipients.'));
        // Exchange's Send As check, made when the message is submitted (SandboxState.maySendAs).
        const from = headerFrom(draft.mime);
        if (from && !this.state.maySendAs(mailbox, from)) {
          throw new HttpError(403, graphError('ErrorSendAsDenied', 'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.'));
        }
        if (draft.sending) return { status: 202 };
        const done = () => {
          this.drafts.delete(id);
          this.uploads.dropDraft(id);
          this.sentItems.set(draft.immutableId ? id : 'AAMk' + randomBytes(12).toString('base64url'), mailbox);
          const sent = this.deliver(mailbox, recipients, withoutBcc(draft.mime));
          this.sentLists.set(sent.id, { to: draft.to, cc: draft.cc, bcc: draft.bcc });
          if (draft.attachments.length) this.sentAttachments.set(sent.id, draft.attachments);
        };
        if (this.sendingMs > 0) draft.sending = setTimeout(done, this.sendingMs).unref();
        else done();
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
