// The inbound session's own positive replies, named once with the codes of smtp/codes.ts (RFC
// 5321 §4.2.2, RFC 3463, RFC 4954 §4). Every refusal is a RelayError and takes its reply from the
// registry (errors/registry.ts); the provider's replies pass through as they are.
import {
  C214Help,
  C220ServiceReady,
  C221Closing,
  C235AuthSuccess,
  C250Completed,
  C334ContinueAuth,
  C354StartMailInput,
  SeAddr1Other0,
  SeOther0,
  SePol7Other0,
} from '../smtp/codes.js';
import { coded, reply, type Reply } from '../smtp/reply.js';

export const OK = coded(C250Completed, SeOther0, 'OK');
export const SENDER_OK = coded(C250Completed, SeAddr1Other0, 'Sender OK');
export const FLUSHED = coded(C250Completed, SeOther0, 'Flushed');
export const HELP = coded(C214Help, SeOther0, 'See RFC 5321');
export const BYE = coded(C221Closing, SeOther0, 'Bye');
export const TLS_READY = coded(C220ServiceReady, SeOther0, 'Ready to start TLS');
export const START_INPUT = reply(C354StartMailInput, 'Start mail input; end with <CRLF>.<CRLF>');
export const AUTH_OK = coded(C235AuthSuccess, SePol7Other0, 'Authentication successful');
/** RFC 4954 §4: an empty challenge (AUTH PLAIN without an initial response). */
export const AUTH_CONTINUE = reply(C334ContinueAuth, '');
/** AUTH LOGIN's challenges, base64 of "Username:" and "Password:". */
export const AUTH_USERNAME = reply(C334ContinueAuth, 'VXNlcm5hbWU6');
export const AUTH_PASSWORD = reply(C334ContinueAuth, 'UGFzc3dvcmQ6');

export const greeting = (hostname: string): Reply => reply(C220ServiceReady, `${hostname} ESMTP xoauth2-relay`);
export const hello = (hostname: string, name: string): string => `${hostname} Hello ${name}`;
/** EHLO's reply: the hello line, then the extensions (RFC 5321 §4.1.1.1). */
export const ehloReply = (lines: string[]): Reply => ({ code: C250Completed, lines });
