// How the fakes (the APIs, and the SMTP submission server's Send As check) read a message's
// header: their own strict RFC 5322 field splitter (§2.2, §2.2.3; §4.5.3's obsolete space
// before the colon) and postal-mime's address parser, which is
// not the library the relay reads headers with (src/upstream/api/headers.ts), so a relay bug
// cannot hide behind the same bug in the fake. A header a strict reader cannot take (a first
// line that continues nothing, a bare CR, a NUL, a line that is no field) is refused: the
// real APIs' reading of such a header is unknown, so the fake sends nothing.
import { addressParser } from 'postal-mime';

export interface FakeField {
  /** Lower-case, without the spaces an obsolete `To :` puts before the colon. */
  name: string;
  /** The field's bytes with its line breaks, as in the message. */
  raw: Buffer;
}

export interface FakeAddress {
  name: string;
  address: string;
}

export class MalformedHeader extends Error {}

/** The header's fields and where its body begins; throws MalformedHeader for what it cannot read. */
export function fakeFields(mime: Buffer): { fields: FakeField[]; bodyStart: number } {
  const fields: FakeField[] = [];
  let at = 0;
  for (;;) {
    const eol = mime.indexOf(0x0a, at);
    const next = eol < 0 ? mime.length : eol + 1;
    const line = mime.subarray(at, next);
    const text = line.toString('latin1').replace(/\r?\n$/, '');
    if (text === '') return { fields, bodyStart: next };
    if (text.includes('\r') || text.includes('\0')) throw new MalformedHeader('bare CR or NUL in the header');
    if (/^[ \t]/.test(text)) {
      const last = fields.at(-1);
      if (!last) throw new MalformedHeader('continuation line with no field');
      last.raw = Buffer.concat([last.raw, line]);
    } else {
      const m = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/.exec(text);
      if (!m) throw new MalformedHeader(`not a header field: ${text.slice(0, 40)}`);
      fields.push({ name: m[1]!.toLowerCase(), raw: line });
    }
    if (next >= mime.length) return { fields, bodyStart: mime.length };
    at = next;
  }
}

/** A field's value, unfolded, as UTF-8 text (RFC 6532). */
export function fieldValue(field: FakeField): string {
  const text = field.raw.toString('utf8');
  return text.slice(text.indexOf(':') + 1).replace(/\r?\n(?=[ \t])/g, '').trim();
}

/** The addresses of every `name` field (groups' members included), names decoded. */
export function fakeAddresses(mime: Buffer, name: 'from' | 'to' | 'cc' | 'bcc'): FakeAddress[] {
  return fakeFields(mime)
    .fields.filter((f) => f.name === name)
    .flatMap((f) => addressParser(fieldValue(f)))
    .flatMap((a) => ('group' in a && a.group ? a.group : [a]))
    .filter((a): a is FakeAddress => typeof a.address === 'string' && a.address.includes('@'))
    .map((a) => ({ name: a.name ?? '', address: a.address.toLowerCase() }));
}

/**
 * The From address the providers' Send As check looks at (the first, lower-cased); '' when the
 * message has none. A header the strict reader refuses has none either: the SMTP fake accepts such
 * a message and checks only its envelope sender (the API fakes refuse it before they get here).
 */
export function headerFrom(mime: Buffer): string {
  try {
    return fakeAddresses(mime, 'from')[0]?.address ?? '';
  } catch (e) {
    if (e instanceof MalformedHeader) return '';
    throw e;
  }
}

/** The message without its Bcc fields: what a provider delivers. */
export function withoutBcc(mime: Buffer): Buffer {
  const { fields } = fakeFields(mime);
  if (!fields.some((f) => f.name === 'bcc')) return mime;
  const kept = fields.filter((f) => f.name !== 'bcc').map((f) => f.raw);
  const headerEnd = fields.reduce((n, f) => n + f.raw.length, 0);
  return Buffer.concat([...kept, mime.subarray(headerEnd)]);
}

