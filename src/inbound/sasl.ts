// The SASL exchange of inbound AUTH (RFC 4954) for the two mechanisms the relay offers: PLAIN
// (RFC 4616: one response "authzid NUL user NUL password") and LOGIN (the de-facto pair of
// challenges for user and password). This file knows the challenges and the encoding; whether
// the pair is good, and what a failure costs, is the session's `check` (as smtp-server's
// lib/sasl.js leaves it to onAuth).
import { refusal } from '../errors/registry.js';
import type { Reply } from '../smtp/reply.js';
import { AUTH_CONTINUE, AUTH_PASSWORD, AUTH_USERNAME } from './replies.js';

/** A reply now, later (a delayed refusal), or null when the session answered itself (it is closing). */
export type Verdict = Reply | Promise<Reply> | null;
/** Judges a user and password the client gave. */
export type Check = (user: string, password: string) => Verdict;
/** Takes the client's next line of the exchange. */
export type Step = (line: string) => Verdict;

export const MECHANISMS = new Set(['PLAIN', 'LOGIN']);

/**
 * Begins an exchange for `mechanism` (one of MECHANISMS) with the client's initial response, if
 * it sent one. Returns the first reply; `expect` is given the step for the line the client owes.
 */
export function startSasl(mechanism: string, initial: string | undefined, check: Check, expect: (next: Step) => void): Verdict {
  if (mechanism === 'PLAIN') {
    const plain: Step = (response) => {
      const parts = decode(response).split('\0');
      if (parts.length !== 3) throw refusal('SYNTAX_ARGUMENTS', '5.5.2 Malformed AUTH PLAIN response', 'AUTH PLAIN response malformed');
      return check(parts[1]!, parts[2]!);
    };
    if (initial !== undefined) return plain(initial);
    expect(plain);
    return AUTH_CONTINUE;
  }
  const password = (user: string): Reply => {
    expect((line) => check(user, decode(line)));
    return AUTH_PASSWORD;
  };
  if (initial !== undefined) return password(decode(initial));
  expect((line) => password(decode(line)));
  return AUTH_USERNAME;
}

/** A client response: base64, or "*" to cancel the exchange (RFC 4954 §4). */
function decode(b64: string): string {
  const t = b64.trim();
  if (t === '*') throw refusal('SYNTAX_ARGUMENTS', '5.0.0 Authentication cancelled', 'AUTH cancelled');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t)) throw refusal('SYNTAX_ARGUMENTS', '5.5.2 Cannot decode response', 'AUTH response not base64');
  return Buffer.from(t, 'base64').toString('utf8');
}
