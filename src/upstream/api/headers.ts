// The recipients a message's own header names (To, Cc, Bcc), for the APIs that take their
// recipients from the headers rather than from an envelope. Addresses are parsed with
// nodemailer's addressparser (groups, quoted names, comments) rather than by hand.
import addressparser from 'nodemailer/lib/addressparser';

export interface HeaderAddress {
  name: string;
  address: string;
}

export interface HeaderRecipients {
  to: HeaderAddress[];
  cc: HeaderAddress[];
  bcc: HeaderAddress[];
}

/** The header section of a message: up to the first empty line (CRLF or bare LF). */
export function headerSection(mime: Buffer): string {
  const crlf = mime.indexOf('\r\n\r\n');
  const lf = mime.indexOf('\n\n');
  const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf : lf;
  return mime.subarray(0, end >= 0 ? end : mime.length).toString('latin1');
}

/** Every occurrence of the field, unfolded (RFC 5322 §2.2.3). */
export function headerValues(header: string, name: string): string[] {
  const out: string[] = [];
  const lines = header.split(/\r?\n/);
  const prefix = name.toLowerCase() + ':';
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.toLowerCase().startsWith(prefix)) continue;
    let value = lines[i]!.slice(prefix.length);
    while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1]!)) value += ' ' + lines[++i]!.trim();
    out.push(value.trim());
  }
  return out;
}

function addresses(header: string, name: string): HeaderAddress[] {
  return headerValues(header, name)
    .flatMap((v) => addressparser(v, { flatten: true }))
    .filter((a) => a.address.includes('@'))
    .map((a) => ({ name: a.name, address: a.address.toLowerCase() }));
}

export function headerRecipients(mime: Buffer): HeaderRecipients {
  const header = headerSection(mime);
  return { to: addresses(header, 'to'), cc: addresses(header, 'cc'), bcc: addresses(header, 'bcc') };
}
