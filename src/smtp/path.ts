// Parsing of the inbound command lines the relay must look into: the path of MAIL FROM and
// RCPT TO, and their ESMTP parameters. Addresses are taken byte-exact from between < and >
// (a quoted local part may hold spaces or '>'); the relay checks only what it must: no control
// characters, RFC 5321 length limits (§4.5.3.1), parameters it advertised well-formed. What
// else an address may hold is the provider's to judge.
import {
  C501ParamSyntaxError,
  C555ParamsNotRecognized,
  SeAddr1BadDestMailboxSyntax3,
  SeAddr1BadSenderSyntax7,
  SeProto5BadParams4,
} from './codes.js';
import type { MailParams } from './envelope.js';
import { MAX_LOCAL_PART as MAX_LOCAL, MAX_PATH } from './limits.js';
import { ProtocolError } from './protocol-error.js';
import { coded, type Reply } from './reply.js';
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

// RFC 5321 §4.1.2: a path holds one Mailbox, Local-part "@" (Domain / address-literal). Checked
// because what else the path holds is read by someone: `<a@x.example,b@y.example>` is one
// recipient to the relay's limits and two to the Gmail API, which parses it as a list. Unquoted,
// a local part is atext and dots (no "@", ",", ";", space); the dots are not checked further,
// as real mailboxes with ".." exist. UTF-8 beyond ASCII is allowed (SMTPUTF8, RFC 6531).
const DOT_STRING = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.\u{80}-\u{10FFFF}]+$/u;
const QUOTED_STRING = /^"(?:[^"\\]|\\.)*"$/u;
const DOMAIN = /^[A-Za-z0-9\u{80}-\u{10FFFF}](?:[A-Za-z0-9\u{80}-\u{10FFFF}-]*[A-Za-z0-9\u{80}-\u{10FFFF}])?(?:\.[A-Za-z0-9\u{80}-\u{10FFFF}](?:[A-Za-z0-9\u{80}-\u{10FFFF}-]*[A-Za-z0-9\u{80}-\u{10FFFF}])?)*$/u;
const ADDRESS_LITERAL = /^\[[^[\]\\]+\]$/u;

function isMailbox(local: string, domain: string): boolean {
  return (DOT_STRING.test(local) || QUOTED_STRING.test(local)) && (DOMAIN.test(domain) || ADDRESS_LITERAL.test(domain));
}

export interface Path {
  address: string;
  params: MailParams;
}

/** `what`: the reply, or the text of a 501 5.5.4 (invalid command arguments, RFC 3463 §3.6). */
const syntax = (what: Reply | string, detail: string) =>
  new ProtocolError('SYNTAX', typeof what === 'string' ? coded(C501ParamSyntaxError, SeProto5BadParams4, what) : what, detail);
const BAD_SENDER = coded(C501ParamSyntaxError, SeAddr1BadSenderSyntax7, 'Bad sender address syntax');
const BAD_RECIPIENT = coded(C501ParamSyntaxError, SeAddr1BadDestMailboxSyntax3, 'Bad recipient address syntax');

/**
 * `arg` is what follows the verb ("FROM:<a@b> SIZE=10"). `keyword` FROM or TO. Throws a
 * ProtocolError with the 501 to give.
 */
export function parsePath(arg: string, keyword: 'FROM' | 'TO', maxBytes: number): Path {
  const bad = keyword === 'FROM' ? BAD_SENDER : BAD_RECIPIENT;
  const head = arg.slice(0, keyword.length + 1).toUpperCase();
  if (head !== `${keyword}:`) throw syntax(`Syntax: ${keyword === 'FROM' ? 'MAIL FROM:<address>' : 'RCPT TO:<address>'}`, 'missing keyword');
  let i = keyword.length + 1;
  while (arg[i] === ' ') i++;
  if (arg[i] !== '<') throw syntax(bad, 'address without angle brackets');
  const start = ++i;
  let quoted = false;
  for (; i < arg.length; i++) {
    const c = arg[i];
    if (quoted && c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (c === '>' && !quoted) break;
  }
  if (i >= arg.length) throw syntax(bad, 'unterminated address');
  let address = arg.slice(start, i);
  // A source route (<@a,@b:user@c>, RFC 5321 §4.1.2) is obsolete: dropped, as servers must accept it.
  if (address.startsWith('@')) address = address.slice(address.indexOf(':') + 1);
  if (CONTROL.test(address)) throw syntax(bad, 'control character in address');
  if (address.length + 2 > MAX_PATH) throw syntax(bad, 'address too long');
  if (address !== '' || keyword === 'TO') {
    const at = address.lastIndexOf('@');
    if (keyword === 'TO' && address.toLowerCase() === 'postmaster') {
      // RFC 5321 §4.5.1: the one address without a domain.
    } else if (at <= 0 || at === address.length - 1 || at > MAX_LOCAL) throw syntax(bad, 'address not local@domain');
    else if (!isMailbox(address.slice(0, at), address.slice(at + 1))) throw syntax(bad, 'not one mailbox (RFC 5321 4.1.2)');
  }
  const rest = arg.slice(i + 1);
  if (rest !== '' && !rest.startsWith(' ')) throw syntax(bad, 'text after the address');
  return { address, params: parseParams(rest.trim(), keyword, maxBytes) };
}

/** ESMTP parameters (RFC 5321 §4.1.2 esmtp-param). Unknown ones are accepted and not passed on. */
function parseParams(text: string, keyword: 'FROM' | 'TO', maxBytes: number): MailParams {
  const params: MailParams = {};
  if (!text) return params;
  for (const token of text.split(/ +/)) {
    const eq = token.indexOf('=');
    const key = (eq === -1 ? token : token.slice(0, eq)).toUpperCase();
    const value = eq === -1 ? undefined : token.slice(eq + 1);
    if (!/^[A-Z0-9][A-Z0-9-]*$/.test(key)) throw syntax('Invalid parameter', `bad parameter name ${JSON.stringify(key.slice(0, 20))}`);
    if (key in params) throw syntax(`Parameter ${key} given twice`, 'duplicate parameter');
    if (value !== undefined && (value === '' || CONTROL.test(xtextDecode(value)))) {
      throw syntax(`Invalid value for ${key}`, 'empty value or control character (xtext)');
    }
    if (keyword === 'FROM') checkMailParam(key, value, maxBytes);
    params[key] = value ?? true;
  }
  return params;
}

function checkMailParam(key: string, value: string | undefined, maxBytes: number): void {
  if (key === 'SIZE') {
    if (value === undefined || !/^\d{1,20}$/.test(value)) throw syntax('Invalid SIZE value', 'SIZE not a number');
    if (Number(value) > maxBytes) throw new ProtocolError('MESSAGE_TOO_BIG', null, `declared SIZE ${value} over ${maxBytes}`);
  } else if (key === 'BODY') {
    const v = value?.toUpperCase();
    if (v !== '7BIT' && v !== '8BITMIME') throw syntax(coded(C555ParamsNotRecognized, SeProto5BadParams4, 'Unsupported BODY value'), `BODY=${value ?? ''}`);
  } else if (key === 'SMTPUTF8') {
    if (value !== undefined) throw syntax('SMTPUTF8 takes no value', 'SMTPUTF8 with a value');
  }
}

/** RFC 3461 §4 xtext: "+XX" is a hex-encoded byte. */
function xtextDecode(value: string): string {
  return value.includes('+') ? value.replace(/\+([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))) : value;
}
