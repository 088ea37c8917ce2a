// An SMTP reply as read off the wire (RFC 5321 §4.2): a three-digit code and one or more text
// lines. The enhanced status code (RFC 3463), when the server sends one, stays in the text
// so the reply can be handed to the MTA exactly as the provider wrote it.

export interface Reply {
  code: number;
  /** Text of each line, without the code and separator; at least one (possibly empty) line. */
  lines: string[];
}

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)/;

export function reply(code: number, ...lines: string[]): Reply {
  return { code, lines: lines.length ? lines : [''] };
}

/**
 * A reply with its enhanced status code (RFC 2034 §3): `se` is subject.detail, a constant of
 * ./codes.ts, and the class digit is the code's own.
 */
export function coded(code: number, se: string, text: string): Reply {
  return { code, lines: [`${Math.floor(code / 100)}.${se} ${text}`] };
}

/** The enhanced status code the reply carries on its first line, if any ("5.7.1"). */
export function enhancedCode(r: Reply): string | null {
  const m = ENHANCED.exec(r.lines[0] ?? '');
  return m ? m[0] : null;
}

export function textCarriesEnhancedCode(text: string): boolean {
  return ENHANCED.test(text);
}

export const isPositive = (r: Reply): boolean => r.code >= 200 && r.code < 300;
export const isTransient = (r: Reply): boolean => r.code >= 400 && r.code < 500;
export const isPermanent = (r: Reply): boolean => r.code >= 500;

/** The reply as it goes on the wire: "250-first\r\n250 last\r\n". */
export function wireReply(r: Reply): string {
  const n = r.lines.length;
  let text = '';
  for (let i = 0; i < n; i++) text += `${r.code}${i === n - 1 ? ' ' : '-'}${r.lines[i]}\r\n`;
  return text;
}

/** One-line rendering for logs and error messages. */
export function formatReply(r: Reply): string {
  return `${r.code} ${r.lines.join(' / ')}`.trimEnd();
}
