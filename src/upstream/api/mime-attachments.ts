// Taking base64 attachment parts out of a MIME message, for Graph messages over its 4 MB request
// limit: Graph creates a draft from MIME only in one request, and takes larger content only as
// file attachments uploaded to a draft (createUploadSession, up to 150 MB each). Only parts of
// the top-level multipart with Content-Transfer-Encoding base64 are taken: their decoded bytes are
// the file exactly; anything else (nested multiparts, quoted-printable) would need re-encoding.
// A hand-written scan rather than a MIME library: the rest of the message must stay byte for
// byte as the MTA sent it, which parsers that rebuild the message do not promise.

export interface FileAttachment {
  name: string;
  contentType: string;
  isInline: boolean;
  contentId?: string;
  bytes: Buffer;
}

const CRLF_CRLF = Buffer.from('\r\n\r\n');

/** A header block's unfolded fields, names lower-cased (first occurrence wins). */
function fields(head: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of head.replace(/\r\n[ \t]+/g, ' ').split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!out.has(name)) out.set(name, line.slice(colon + 1).trim());
  }
  return out;
}

/** A parameter of a structured field (`boundary`, `filename`, `name`), quoted or not. */
function param(value: string | undefined, name: string): string | undefined {
  if (!value) return undefined;
  const m = new RegExp(`;\\s*${name}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, 'i').exec(value);
  return m ? (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]) : undefined;
}

interface Part {
  /** From the CRLF before its delimiter line to the CRLF before the next one. */
  start: number;
  end: number;
  attachment: FileAttachment | null;
}

function attachmentOf(part: Buffer): FileAttachment | null {
  const split = part.indexOf(CRLF_CRLF);
  if (split < 0) return null;
  const f = fields(part.subarray(0, split).toString('latin1'));
  if ((f.get('content-transfer-encoding') ?? '').toLowerCase() !== 'base64') return null;
  const type = f.get('content-type') ?? 'application/octet-stream';
  if (/^\s*multipart\//i.test(type)) return null;
  const disposition = f.get('content-disposition');
  const name = param(disposition, 'filename') ?? param(type, 'name');
  const contentId = f.get('content-id')?.replace(/^<|>$/g, '');
  if (!name && !contentId) return null;
  const text = part.subarray(split + 4).toString('latin1');
  if (/[^A-Za-z0-9+/=\s]/.test(text)) return null;
  return {
    name: name ?? contentId!,
    contentType: type.split(';')[0]!.trim().toLowerCase(),
    isInline: /^\s*inline\b/i.test(disposition ?? '') || (!disposition && !!contentId),
    ...(contentId ? { contentId } : {}),
    bytes: Buffer.from(text, 'base64'),
  };
}

/** The top-level parts of a multipart message, or null when it is not one. */
function topParts(mime: Buffer): Part[] | null {
  const split = mime.indexOf(CRLF_CRLF);
  if (split < 0) return null;
  const type = fields(mime.subarray(0, split).toString('latin1')).get('content-type');
  const boundary = /^\s*multipart\//i.test(type ?? '') ? param(type, 'boundary') : undefined;
  if (!boundary) return null;
  const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  const starts: number[] = [];
  // The header's last CRLF counts for a delimiter right after it (an empty preamble).
  for (let at = mime.indexOf(delimiter, split); at >= 0; at = mime.indexOf(delimiter, at + delimiter.length)) {
    const after = mime.subarray(at + delimiter.length, at + delimiter.length + 2).toString('latin1');
    if (after === '--' || /^[\r \t]/.test(after)) starts.push(at);
    if (after === '--') break;
  }
  if (starts.length < 2 || mime.subarray(starts.at(-1)! + delimiter.length, starts.at(-1)! + delimiter.length + 2).toString('latin1') !== '--') return null;
  const parts: Part[] = [];
  for (let i = 0; i + 1 < starts.length; i++) {
    const bodyStart = mime.indexOf('\r\n', starts[i]! + delimiter.length);
    parts.push({ start: starts[i]!, end: starts[i + 1]!, attachment: attachmentOf(mime.subarray(bodyStart + 2, starts[i + 1]!)) });
  }
  return parts;
}

/**
 * The message with its largest base64 attachment parts (of `file.min` to `file.max` bytes decoded)
 * taken out until what is left is at most `maxRest` bytes, and those parts' files; null when no such split exists (not multipart, or not
 * enough attachments). Every byte left is the MTA's, in its order; each file is its part decoded.
 */
export function takeAttachments(mime: Buffer, maxRest: number, file: { min: number; max: number }): { rest: Buffer; files: FileAttachment[] } | null {
  const parts = topParts(mime);
  if (!parts) return null;
  const candidates = parts
    .filter((p) => p.attachment && p.attachment.bytes.length >= file.min && p.attachment.bytes.length <= file.max).sort((a, b) => b.end - b.start - (a.end - a.start));
  let size = mime.length;
  const taken: Part[] = [];
  for (const p of candidates) {
    if (size <= maxRest) break;
    // A multipart keeps at least one part.
    if (taken.length + 1 >= parts.length) break;
    taken.push(p);
    size -= p.end - p.start;
  }
  if (size > maxRest) return null;
  taken.sort((a, b) => a.start - b.start);
  const pieces: Buffer[] = [];
  let at = 0;
  for (const p of taken) {
    pieces.push(mime.subarray(at, p.start));
    at = p.end;
  }
  pieces.push(mime.subarray(at));
  return { rest: Buffer.concat(pieces), files: taken.map((p) => p.attachment!) };
}
