// A fake Gmail API: users.messages.send, as JSON with the MIME base64url in `raw` or as a media
// upload (message/rfc822), with the checks Gmail makes: a Google bearer token with a scope that
// may send, the user (`me` or the token's own address), the size limits, at least one
// recipient. Like Gmail, it sends to the To, Cc and Bcc header addresses and removes Bcc from
// what it delivers; the record holds the delivered bytes and those recipients.
import type { IncomingMessage } from 'node:http';
import { headerRecipients, headerSection } from '../upstream/api/headers.js';
import { FakeApiServer, HttpError, decodeBase64 } from './api-server.js';
import { GMAIL_SEND_SCOPE, GOOGLE_MAIL_SCOPE } from '../config/providers.js';
import { normaliseEmail, type SandboxState } from './provider-state.js';

export const FAKE_GMAIL_MAX_METADATA = 5 * 1024 * 1024;
export const FAKE_GMAIL_MAX_MEDIA = 35 * 1024 * 1024;

/** Scopes users.messages.send accepts. */
const SEND_SCOPES = new Set([GOOGLE_MAIL_SCOPE, GMAIL_SEND_SCOPE, 'https://www.googleapis.com/auth/gmail.modify', 'https://www.googleapis.com/auth/gmail.compose']);

const PATH = /^\/(upload\/)?gmail\/v1\/users\/([^/]+)\/messages\/send$/;

const STATUS: Record<number, string> = { 400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND', 413: 'INVALID_ARGUMENT', 429: 'RESOURCE_EXHAUSTED' };

/** The message without its Bcc fields (and their folded lines): what Gmail delivers. */
export function withoutBcc(mime: Buffer): Buffer {
  const section = headerSection(mime);
  // With the last field's own line break, so dropping that field leaves no blank line behind.
  const header = mime.subarray(0, section.length + (mime[section.length] === 0x0d ? 2 : mime[section.length] === 0x0a ? 1 : 0)).toString('latin1');
  const lines = header.split(/(?<=\n)/);
  let out = '';
  let dropping = false;
  for (const line of lines) {
    if (/^[ \t]/.test(line) && dropping) continue;
    dropping = /^bcc:/i.test(line);
    if (!dropping) out += line;
  }
  if (out.length === header.length) return mime;
  return Buffer.concat([Buffer.from(out, 'latin1'), mime.subarray(header.length)]);
}

export class FakeGmailApi extends FakeApiServer {
  constructor(state: SandboxState, host: string) {
    super(state, host);
  }

  protected errorBody(status: number, _code: string, message: string, reason: string): unknown {
    return { error: { code: status, message, errors: [{ message, domain: 'global', reason }], status: STATUS[status] ?? 'UNAVAILABLE' } };
  }

  protected override throttleBody(retryAfterS: number): unknown {
    const at = new Date(Date.now() + retryAfterS * 1000).toISOString();
    return this.errorBody(429, '', `User-rate limit exceeded.  Retry after ${at}`, 'rateLimitExceeded');
  }

  protected maxBody(path: string): number {
    return path.startsWith('/upload/') ? FAKE_GMAIL_MAX_MEDIA : FAKE_GMAIL_MAX_METADATA;
  }

  protected async handle(req: IncomingMessage, body: Buffer, path: string, query: URLSearchParams): Promise<{ status: number; body?: unknown } | 'hold'> {
    const m = PATH.exec(path);
    if (!m || req.method !== 'POST') throw new HttpError(404, this.errorBody(404, '', 'Not Found', 'notFound'));
    const upload = m[1] !== undefined;
    const user = normaliseEmail(decodeURIComponent(m[2]!));
    const check = this.bearer(req, user);
    const scopes = check.scope.split(/\s+/);
    if (check.app || !scopes.some((s) => SEND_SCOPES.has(s))) {
      throw new HttpError(403, this.errorBody(403, '', 'Request had insufficient authentication scopes.', 'insufficientPermissions'));
    }
    const mailbox = user === 'me' ? check.email : user;
    if (mailbox !== check.email) throw new HttpError(403, this.errorBody(403, '', `Delegation denied for ${check.email}`, 'forbidden'));
    if (this.step('send', mailbox) === 'hold') return 'hold';

    let mime: Buffer | null;
    if (upload) {
      if (query.get('uploadType') !== 'media') throw new HttpError(400, this.errorBody(400, '', 'Invalid upload request', 'badRequest'));
      if (!(req.headers['content-type'] ?? '').startsWith('message/')) throw new HttpError(400, this.errorBody(400, '', 'Media type not supported', 'badContent'));
      mime = body;
    } else {
      let raw: unknown;
      try {
        raw = (JSON.parse(body.toString('utf8')) as { raw?: unknown }).raw;
      } catch {
        throw new HttpError(400, this.errorBody(400, '', 'Invalid JSON payload received.', 'parseError'));
      }
      mime = typeof raw === 'string' ? decodeBase64(raw, true) : null;
      if (!mime) throw new HttpError(400, this.errorBody(400, '', "Invalid value for ByteString: 'raw'", 'invalidArgument'));
    }
    const h = headerRecipients(mime);
    const recipients = [...new Set([...h.to, ...h.cc, ...h.bcc].map((a) => a.address))];
    if (!recipients.length) throw new HttpError(400, this.errorBody(400, '', 'Recipient address required', 'invalidArgument'));
    const sent = this.deliver(mailbox, recipients, withoutBcc(mime));
    return { status: 200, body: { id: sent.id, threadId: sent.id, labelIds: ['SENT'] } };
  }
}
