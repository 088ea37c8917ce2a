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
