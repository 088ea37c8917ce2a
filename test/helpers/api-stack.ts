// Accounts sending through the sandbox's fake Graph and Gmail APIs, and messages of an exact size.
import type { StackAccount } from './stack.js';

export const GRAPH = 'graph-box@contoso.test';
export const GMAIL = 'gmail-box@example.org';
export const SMTP = 'smtp-box@example.com';

export const graphAccount = (email = GRAPH, extra: Record<string, unknown> = {}): StackAccount => ({
  email,
  kind: 'microsoft',
  senders: [email],
  extra: { upstream: 'graph', ...extra },
});

export const gmailAccount = (email = GMAIL, extra: Record<string, unknown> = {}): StackAccount => ({
  email,
  kind: 'google',
  senders: [email],
  extra: { upstream: 'gmail_api', ...extra },
});

/** A message of exactly `bytes` bytes (CRLF lines of at most 78 characters, none starting with a dot). */
export function sizedMessage(from: string, to: readonly string[], tag: string, bytes: number): string {
  const head = [`From: <${from}>`, `To: ${to.map((t) => `<${t}>`).join(', ')}`, `Subject: ${tag}`, `Message-ID: <${tag}@test.example>`, '', ''].join('\r\n');
  let left = bytes - head.length;
  if (left < 0) throw new Error(`${bytes} bytes is less than the header`);
  const lines: string[] = [];
  while (left > 0) {
    // A line is its text plus CRLF; the last one takes what is left (at least 1 character + CRLF).
    const take = left >= 80 + 3 ? 78 : Math.max(1, left - 2);
    lines.push('x'.repeat(take) + '\r\n');
    left -= take + 2;
  }
  const raw = head + lines.join('');
  if (raw.length !== bytes) throw new Error(`sizedMessage: ${raw.length} != ${bytes}`);
  return raw;
}

export interface Base64Part {
  type: string;
  filename: string;
  /** Inline with this Content-ID (else an attachment). */
  contentId?: string;
  bytes: Buffer;
}

/** `n` bytes of text: 78-character lines and a shorter last one, no CRLF at the end. */
const text = (n: number) => ('x'.repeat(78) + '\r\n').repeat(Math.floor(n / 80)) + 'x'.repeat(n % 80);

/**
 * A multipart/mixed message of a text part and base64 parts (76-character lines), of exactly
 * `bytes` bytes when given (the text part takes what is left); `without(i, ...)` is the same
 * message with those base64 parts taken out, each from the CRLF before its delimiter line.
 */
export function multipartMessage(from: string, to: readonly string[], tag: string, parts: readonly Base64Part[], bytes?: number): { raw: string; without(...indices: number[]): string } {
  const boundary = `=_${tag}_boundary`;
  const head = [`From: <${from}>`, `To: ${to.map((t) => `<${t}>`).join(', ')}`, `Subject: ${tag}`, `Message-ID: <${tag}@test.example>`, 'MIME-Version: 1.0', `Content-Type: multipart/mixed; boundary="${boundary}"`, '', ''].join('\r\n');
  const segments = parts.map((p) => {
    const fields = [
      `Content-Type: ${p.type}; name="${p.filename}"`,
      'Content-Transfer-Encoding: base64',
      p.contentId ? `Content-Disposition: inline; filename="${p.filename}"` : `Content-Disposition: attachment; filename="${p.filename}"`,
      ...(p.contentId ? [`Content-ID: <${p.contentId}>`] : []),
    ];
    const b64 = p.bytes.toString('base64').replace(/.{76}(?=.)/g, '$&\r\n');
    return `\r\n--${boundary}\r\n${fields.join('\r\n')}\r\n\r\n${b64}`;
  });
  const textHead = `--${boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`;
  const close = `\r\n--${boundary}--\r\n`;
  const fixed = head.length + textHead.length + segments.reduce((n, s) => n + s.length, 0) + close.length;
  const pad = bytes === undefined ? 40 : bytes - fixed;
  if (pad < 0) throw new Error(`multipartMessage: ${fixed} bytes before the text, over ${bytes}`);
  const build = (skip: readonly number[]) => head + textHead + text(pad) + segments.filter((_, i) => !skip.includes(i)).join('') + close;
  const raw = build([]);
  if (bytes !== undefined && raw.length !== bytes) throw new Error(`multipartMessage: ${raw.length} != ${bytes}`);
  return { raw, without: (...indices) => build(indices) };
}
