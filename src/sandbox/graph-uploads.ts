// The fake Graph's attachment upload sessions, as "Attach large files to Outlook messages or
// events" describes them: createUploadSession on a draft takes an AttachmentItem (file, 3 to
// 150 MB) and answers 201 with a pre-authenticated uploadUrl and nextExpectedRanges ["0-"]; PUTs to
// that URL carry `Content-Range: bytes {start}-{end}/{total}` and the bytes, in order; each but the
// last answers 200 with the next expected range, the last 201 with a Location header naming the
// attachment, which is then on the draft. The URL carries its own token: the docs say to send no
// Authorization header, and the fake refuses one so the relay is held to that.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { HttpError } from './api-server.js';

const MB = 1024 * 1024;
export const FAKE_GRAPH_UPLOAD_MIN = 3 * MB;
export const FAKE_GRAPH_UPLOAD_MAX = 150 * MB;

/** A file's size once base64-encoded in the sent message, which Exchange's size limits count. */
export const encodedSize = (bytes: number) => Math.ceil(bytes / 3) * 4;

export interface FakeFileAttachment {
  id: string;
  name: string;
  contentType: string;
  isInline: boolean;
  contentId?: string;
  bytes: Buffer;
}

interface Session {
  draftId: string;
  item: Omit<FakeFileAttachment, 'id' | 'bytes'>;
  size: number;
  chunks: Buffer[];
  next: number;
  expires: Date;
}

export const UPLOAD_PATH = /^\/upload\/attachmentSessions\/([^/]+)$/;

type ErrorBody = (code: string, message: string) => unknown;

export class GraphUploadSessions {
  private readonly sessions = new Map<string, Session & { token: string }>();

  constructor(private readonly error: ErrorBody) {}

  /** createUploadSession's answer; `room` is what the mailbox's size limit leaves for this file, encoded. */
  create(draftId: string, body: Buffer, baseUrl: string, room: number): { status: number; body: unknown } {
    let item: Record<string, unknown> | undefined;
    try {
      item = (JSON.parse(body.toString('utf8')) as { AttachmentItem?: Record<string, unknown> }).AttachmentItem;
    } catch {
      throw new HttpError(400, this.error('RequestBodyRead', 'Invalid JSON.'));
    }
    if (!item || item.attachmentType !== 'file' || typeof item.name !== 'string' || !item.name || typeof item.size !== 'number' || !Number.isInteger(item.size)) {
      throw new HttpError(400, this.error('ErrorInvalidRequest', 'AttachmentItem needs attachmentType "file", a name and a size.'));
    }
    if (item.size < FAKE_GRAPH_UPLOAD_MIN) throw new HttpError(400, this.error('ErrorAttachmentSizeShouldNotBeLessThanMinimumSize', 'Attachment size should not be less than minimum size.'));
    if (item.size > FAKE_GRAPH_UPLOAD_MAX || encodedSize(item.size) > room) throw new HttpError(400, this.error('ErrorMessageSizeExceeded', 'The message exceeds the maximum supported size.'));
    const id = randomBytes(9).toString('base64url');
    const token = randomBytes(18).toString('base64url');
    const expires = new Date(Date.now() + 15 * 60_000);
    this.sessions.set(id, {
      draftId,
      token,
      item: {
        name: item.name,
        contentType: typeof item.contentType === 'string' ? item.contentType : 'application/octet-stream',
        isInline: item.isInline === true,
        ...(typeof item.contentId === 'string' ? { contentId: item.contentId } : {}),
      },
      size: item.size,
      chunks: [],
      next: 0,
      expires,
    });
    return {
      status: 201,
      body: { uploadUrl: `${baseUrl}/upload/attachmentSessions/${id}?authtoken=${token}`, expirationDateTime: expires.toISOString(), nextExpectedRanges: ['0-'] },
    };
  }

  /** The draft an upload URL is for; 404 for an unknown, expired or wrongly signed one. */
  draftOf(id: string, token: string | null): string {
    const s = this.sessions.get(id);
    if (!s || token !== s.token || s.expires.getTime() < Date.now()) throw new HttpError(404, this.error('ErrorItemNotFound', 'The upload session was not found or has expired.'));
    return s.draftId;
  }

  /** One PUT of a byte range (to a session draftOf accepted); the attachment once the last byte is in. */
  put(req: IncomingMessage, id: string, body: Buffer, baseUrl: string): { answer: { status: number; body?: unknown; headers?: Record<string, string> }; attachment?: FakeFileAttachment } {
    const s = this.sessions.get(id)!;
    if (req.headers.authorization) throw new HttpError(401, this.error('InvalidAuthenticationToken', 'The upload URL is pre-authenticated: send no Authorization header.'));
    if (req.method !== 'PUT') throw new HttpError(405, this.error('ErrorInvalidRequest', 'method not allowed'));
    const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(req.headers['content-range'] ?? ''));
    if (!range) throw new HttpError(400, this.error('ErrorInvalidRequest', 'Content-Range is required: bytes {start}-{end}/{total}.'));
    const [start, end, total] = [Number(range[1]), Number(range[2]), Number(range[3])];
    if (total !== s.size || start !== s.next || end < start || end >= total || end - start + 1 !== body.length) {
      throw new HttpError(416, this.error('ErrorInvalidRange', `Expected bytes from ${s.next} of ${s.size}.`), {});
    }
    s.chunks.push(body);
    s.next = end + 1;
    if (s.next < s.size) return { answer: { status: 200, body: { expirationDateTime: s.expires.toISOString(), nextExpectedRanges: [String(s.next)] } } };
    this.sessions.delete(id);
    const attachment: FakeFileAttachment = { id: 'AAMkAtt' + randomBytes(9).toString('base64url'), ...s.item, bytes: Buffer.concat(s.chunks) };
    return {
      answer: { status: 201, headers: { location: `${baseUrl}/v1.0/messages('${s.draftId}')/attachments('${attachment.id}')` } },
      attachment,
    };
  }

  /** Sessions of a draft that is gone end with it. */
  dropDraft(draftId: string): void {
    for (const [id, s] of this.sessions) if (s.draftId === draftId) this.sessions.delete(id);
  }

  get open(): number {
    return this.sessions.size;
  }
}
