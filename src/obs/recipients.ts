// How recipient addresses appear in log lines (log.recipients): the `transaction` line's
// recipients and the `refused` line of a refused RCPT.
import { createHash } from 'node:crypto';

/** log.recipients: addresses as given, pseudonymised, or left out. */
export type RecipientLogging = 'full' | 'hash' | 'drop';

/**
 * `sha256:` and the first 16 hex digits of the address's SHA-256 (lower-cased). Unkeyed on
 * purpose: the same address gives the same value on every instance of a fleet and in every
 * year's logs, and an operator asked about one address can compute it with `sha256sum`. The
 * price is that it is a pseudonym, not a secret: whoever guesses an address can confirm it.
 */
export function hashAddress(address: string): string {
  return `sha256:${createHash('sha256').update(address.toLowerCase()).digest('hex').slice(0, 16)}`;
}

/** The address as `mode` logs it; undefined: left out. */
export function loggedAddress(mode: RecipientLogging, address: string): string | undefined {
  return mode === 'full' ? address : mode === 'hash' ? hashAddress(address) : undefined;
}
