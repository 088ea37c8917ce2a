// The message's header block as the API upstreams need it: its fields and the addresses its
// To, Cc and Bcc fields name, for the APIs that take recipients from the header rather than from
// an envelope. The reading is libraries' (nodemailer's family): @zone-eu/mailsplit splits the
// block into fields (folding, obsolete `To :` syntax), nodemailer's addressparser reads the
// address lists (groups, comments, quoted local parts), libmime decodes RFC 2047 display names.
// This module only refuses what no reader can take without guessing, and decodes as UTF-8
// (RFC 6532): the libraries work on binary strings.
import { createRequire } from 'node:module';
import type mailsplit from '@zone-eu/mailsplit';
import type libmime from 'libmime';
import type addressparser from 'nodemailer/lib/addressparser';
import { RelayError } from '../../errors/registry.js';
import { C554TransactionFailed, SeMsg6Other0 } from '../../smtp/codes.js';
import { coded } from '../../smtp/reply.js';

// Required at the first API message, not at start-up: with iconv-lite's tables behind libmime
// they are ≈ 6 MB of a relay's memory, which a relay whose accounts all send by SMTP never uses.
const require = createRequire(import.meta.url);
let loaded: { mailsplit: typeof mailsplit; libmime: typeof libmime; addressparser: typeof addressparser } | null = null;
const libs = () =>
  (loaded ??= {
    mailsplit: require('@zone-eu/mailsplit') as typeof mailsplit,
    libmime: require('libmime') as typeof libmime,
    addressparser: require('nodemailer/lib/addressparser') as typeof addressparser,
  });

export interface HeaderAddress {
  /** The display name, RFC 2047 words decoded; '' when none. */
  name: string;
  /** Lower-cased, as the envelope's recipients are compared. */
  address: string;
}

export interface HeaderRecipients {
  to: HeaderAddress[];
  cc: HeaderAddress[];
  bcc: HeaderAddress[];
}

export interface MessageHeader {
  /** The header's fields (mailsplit's reading), for removing or adding one. */
  fields: InstanceType<typeof mailsplit.Headers>;
  /** Where the body starts: after the empty line that ends the header. */
  bodyStart: number;
  recipients: HeaderRecipients;
}

/** Where the header ends (the empty line's first byte) and the body starts. */
function headerEnd(mime: Buffer): { end: number; bodyStart: number } {
  const crlf = mime.indexOf('\r\n\r\n');
  const lf = mime.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf + 1 < lf)) return { end: crlf + 2, bodyStart: crlf + 4 };
  if (lf >= 0) return { end: lf + 1, bodyStart: lf + 2 };
  return { end: mime.length, bodyStart: mime.length };
}

const unreadable = (what: string) =>
  new RelayError('API_HEADER_UNREADABLE', what, { notSent: true, reply: coded(C554TransactionFailed, SeMsg6Other0, `Message header cannot be read unambiguously: ${what}; not sent`) });

/**
 * What makes the header's meaning depend on a parser's guess: a continuation with no field to
 * continue, a CR that is not a line break, a NUL, a line that is neither a field nor a
 * continuation (RFC 5322 §2.2, §2.2.3). Its line number is for the sender to find it.
 */
function checkReadable(header: Buffer): void {
  if (header.includes(0)) throw unreadable('NUL byte in the header');
  const text = header.toString('latin1');
  const bareCr = /\r(?!\n)/.exec(text);
  if (bareCr) throw unreadable(`bare CR (not followed by LF) in header line ${text.slice(0, bareCr.index).split('\n').length}`);
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  if (/^[ \t]/.test(lines[0] ?? '')) throw unreadable('the first header line is a continuation (starts with a space or tab)');
  // A field name is printable US-ASCII but ':'; RFC 5322 §4.5.3's obsolete syntax allows space before the colon.
  const bad = lines.findIndex((l) => !/^[ \t]/.test(l) && !/^[\x21-\x39\x3b-\x7e]+[ \t]*:/.test(l));
  if (bad >= 0) throw unreadable(`header line ${bad + 1} is neither a field nor a continuation`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function addresses(fields: InstanceType<typeof mailsplit.Headers>, key: string): HeaderAddress[] {
  return fields
    .getList()
    .filter((l) => l.key === key)
    .flatMap((l) => {
      let line: string;
      try {
        line = utf8.decode(Buffer.from(l.line, 'binary'));
      } catch {
        throw unreadable(`the ${key} field is not UTF-8`);
      }
      const value = line.slice(line.indexOf(':') + 1).replace(/\r?\n/g, '');
      return libs().addressparser(value, { flatten: true });
    })
    .filter((a) => a.address.includes('@'))
    .map((a) => ({ name: a.name ? libs().libmime.decodeWords(a.name) : '', address: a.address.toLowerCase() }));
}

/** The header block read, or API_HEADER_UNREADABLE (554 5.6.0) saying what is wrong with it. */
export function readHeader(mime: Buffer): MessageHeader {
  const { end, bodyStart } = headerEnd(mime);
  const header = mime.subarray(0, end);
  checkReadable(header);
  const fields = new (libs().mailsplit.Headers)(header);
  return { fields, bodyStart, recipients: { to: addresses(fields, 'to'), cc: addresses(fields, 'cc'), bcc: addresses(fields, 'bcc') } };
}

export function headerRecipients(mime: Buffer): HeaderRecipients {
  return readHeader(mime).recipients;
}
