// A command the protocol's own rules refuse (its grammar, a declared SIZE over the maximum),
// with the reply those rules prescribe. It lives here, below the error registry
// (src/errors/registry.ts), so that the parsers need nothing above src/smtp/; the registry
// maps it to a reply and a refusal reason like any of its own errors.
import type { Reply } from './reply.js';

/** The registry codes a protocol rule can refuse with (same names as in the registry). */
export type ProtocolErrorCode = 'SYNTAX' | 'MESSAGE_TOO_BIG';

export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;
  /** Null: the registry's reply for `code`. */
  readonly reply: Reply | null;

  /** @param detail for logs only; the client sees `reply`. */
  constructor(code: ProtocolErrorCode, reply: Reply | null, detail: string) {
    super(`${code}: ${detail}`);
    this.name = 'ProtocolError';
    this.code = code;
    this.reply = reply;
  }
}
