// Sizes the protocol sets (RFC 5321 §4.5.3.1, the minimums every implementation must accept),
// and the relay's own bounds where real peers go past those minimums.

/** A path, angle brackets included (RFC 5321 §4.5.3.1.3). */
export const MAX_PATH = 256;
/** The local part of a mailbox (RFC 5321 §4.5.3.1.1). */
export const MAX_LOCAL_PART = 64;
/** A domain name, as in EHLO's argument (RFC 5321 §4.5.3.1.2). */
export const MAX_DOMAIN = 255;
/**
 * The longest command line the relay reads, CRLF excluded. RFC 5321 §4.5.3.1.4 asks for 512
 * octets, plus room for each advertised extension's parameters (§4.5.3.1.4 and RFC 1869); 16 KiB
 * holds any sane set; beyond it the session ends (LINE_TOO_LONG).
 */
export const MAX_COMMAND_LINE = 16 * 1024;
/**
 * The longest reply line read from a provider, CRLF excluded. RFC 5321 §4.5.3.1.5 says 512;
 * providers' multi-line texts exceed it, so a reader allows this much before calling it broken.
 */
export const MAX_REPLY_LINE = 4096;
/** Most lines in one multi-line reply (RFC 5321 sets none): bounds what a reader buffers. */
export const MAX_REPLY_LINES = 1000;
