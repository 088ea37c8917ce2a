// Taking base64 attachment parts out of a MIME message, for Graph messages over its 4 MB request
// limit: Graph creates a draft from MIME only in one request, and takes larger content only as
// file attachments uploaded to a draft (createUploadSession, up to 150 MB each). Only leaf parts
// (of any multipart, nested ones included) with Content-Transfer-Encoding base64 are taken: their
// decoded bytes are the file exactly; anything else (quoted-printable) would need re-encoding.
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
  /** The multipart it is a part of (an index into the counts of parts). */
  group: number;
}

/** How deep multiparts are followed (MIME has no limit; real messages nest two or three). */
const MAX_DEPTH = 8;

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

/**
 * The leaf parts of the multipart whose body is mime[from, to) (a part's header's last CRLF
 * included, since a delimiter right after it begins with it), nested multiparts followed; false
 * when the multipart has no closing delimiter in its range. `counts` gets each multipart's number of parts.
 */
function leaves(mime: Buffer, from: number, to: number, boundary: string, depth: number, counts: number[], out: Part[]): boolean {
  const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  const starts: number[] = [];
  let closed = false;
  for (let at = mime.indexOf(delimiter, from); at >= 0 && at < to; at = mime.indexOf(delimiter, at + delimiter.length)) {
    const after = mime.subarray(at + delimiter.length, at + delimiter.length + 2).toString('latin1');
    if (after === '--' || /^[\r \t]/.test(after)) starts.push(at);
    if (after === '--') {
      closed = true;
      break;
    }
  }
  if (!closed || starts.length < 2) return false;
  const group = counts.push(starts.length - 1) - 1;
  for (let i = 0; i + 1 < starts.length; i++) {
    const [start, end] = [starts[i]!, starts[i + 1]!];
    const headStart = mime.indexOf('\r\n', start + delimiter.length) + 2;
    const split = mime.indexOf(CRLF_CRLF, headStart - 2);
    const type = split >= 0 && split < end ? fields(mime.subarray(headStart, split).toString('latin1')).get('content-type') : undefined;
    const inner = /^\s*multipart\//i.test(type ?? '') ? param(type, 'boundary') : undefined;
    // A nested multipart's parts may go; one that cannot be read is kept whole.
    if (inner && depth < MAX_DEPTH && leaves(mime, split, end, inner, depth + 1, counts, out)) continue;
    out.push({ start, end, attachment: attachmentOf(mime.subarray(headStart, end)), group });
  }
  return true;
}

/** The leaf parts of a multipart message, or null when it is not one. */
function partsOf(mime: Buffer): { parts: Part[]; counts: number[] } | null {
  const split = mime.indexOf(CRLF_CRLF);
  if (split < 0) return null;
  const type = fields(mime.subarray(0, split).toString('latin1')).get('content-type');
  const boundary = /^\s*multipart\//i.test(type ?? '') ? param(type, 'boundary') : undefined;
  const parts: Part[] = [];
  const counts: number[] = [];
  return boundary && leaves(mime, split, mime.length, boundary, 0, counts, parts) ? { parts, counts } : null;
}

/**
 * The message with its largest base64 attachment parts (of `file.min` to `file.max` bytes decoded)
 * taken out until what is left is at most `maxRest` bytes, and those parts' files; null when no
 * such split exists (not multipart, or not enough attachments). Each multipart keeps a part. Every byte left is the MTA's, in its order; each file is its part decoded.
 */
export function takeAttachments(mime: Buffer, maxRest: number, file: { min: number; max: number }): { rest: Buffer; files: FileAttachment[] } | null {
  const found = partsOf(mime);
  if (!found) return null;
  const { parts, counts } = found;
  const candidates = parts
    .filter((p) => p.attachment && p.attachment.bytes.length >= file.min && p.attachment.bytes.length <= file.max).sort((a, b) => b.end - b.start - (a.end - a.start));
  let size = mime.length;
  const taken: Part[] = [];
  for (const p of candidates) {
    if (size <= maxRest) break;
    // A multipart keeps at least one part.
    if (counts[p.group]! <= 1) continue;
    counts[p.group]!--;
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
