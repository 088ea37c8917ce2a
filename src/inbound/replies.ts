// The inbound session's own positive replies, named once (RFC 5321 §4.2.2 for the codes, RFC 3463
// for the enhanced codes, RFC 4954 §4 for AUTH's). Every refusal is a RelayError and takes its
// reply from the registry (errors/registry.ts); the provider's replies pass through as they are.
import { reply, type Reply } from '../smtp/reply.js';

export const OK = reply(250, '2.0.0 OK');
export const SENDER_OK = reply(250, '2.1.0 Sender OK');
export const FLUSHED = reply(250, '2.0.0 Flushed');
export const HELP = reply(214, '2.0.0 See RFC 5321');
export const BYE = reply(221, '2.0.0 Bye');
export const TLS_READY = reply(220, '2.0.0 Ready to start TLS');
export const START_INPUT = reply(354, 'Start mail input; end with <CRLF>.<CRLF>');
export const AUTH_OK = reply(235, '2.7.0 Authentication successful');
/** RFC 4954 §4: an empty challenge (AUTH PLAIN without an initial response). */
export const AUTH_CONTINUE = reply(334, '');
/** AUTH LOGIN's challenges, base64 of "Username:" and "Password:". */
export const AUTH_USERNAME = reply(334, 'VXNlcm5hbWU6');
export const AUTH_PASSWORD = reply(334, 'UGFzc3dvcmQ6');

export const greeting = (hostname: string): Reply => reply(220, `${hostname} ESMTP xoauth2-relay`);
export const hello = (hostname: string, name: string): string => `${hostname} Hello ${name}`;
/** EHLO's reply: the hello line, then the extensions (RFC 5321 §4.1.1.1). */
export const ehloReply = (lines: string[]): Reply => ({ code: 250, lines });
