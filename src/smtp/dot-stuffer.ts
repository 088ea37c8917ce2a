// Outbound encoder for the DATA phase (RFC 5321 §4.5.2 and §2.3.8), with state across chunks.
//
//  - Every line end becomes CRLF: CRLF stays, a bare LF becomes CRLF, a bare CR becomes CRLF.
//  - A "." that starts a line is doubled (transparency), including at the very start of DATA.
//  - end() returns the terminator: "." CRLF after the body's final CRLF (a CRLF is added first
//    when the body does not end with one).
//
// SMTP smuggling (CVE-2023-51764/51765/51766 and friends): the upstream may treat a bare LF or
// bare CR around a dot as the end of DATA, and whatever follows as new commands - a second,
// spoofed message sent over our authenticated connection. The two rules above make that
// impossible: after normalisation the only line ends in the output are CRLF, and a line that
// consists of a single "." is always sent as "..", so CRLF "." CRLF can only ever appear in
// the terminator. Neither rule depends on where the chunks were split (the state below
// carries a line start and a trailing CR across chunk boundaries).
//
// Byte-exactness: for input whose line ends are all CRLF (what an MTA sends, what nodemailer
// writes) the only change is the doubled leading dots, which the server strips again, so the
// message arrives byte-identical.
//
// Cost: the common chunk (CRLF lines, no leading dots) is scanned with two native indexOf
// calls per line and returned as is, with no copy. A chunk that needs changes is copied once.

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

const CR_BUF = Buffer.from('\r');
const LF_BUF = Buffer.from('\n');
const DOT_BUF = Buffer.from('.');
// The terminators; shared and frozen in meaning: callers only write them.
const END_AT_LINE_START = Buffer.from('.\r\n');
const END_AFTER_CR = Buffer.from('\n.\r\n');
const END_MID_LINE = Buffer.from('\r\n.\r\n');
const EMPTY = Buffer.alloc(0);

export class DotStuffer {
  /** Bytes of input seen so far (the message as the MTA sent it, before stuffing). */
  bytesIn = 0;
  /** The next output byte starts a line (true at the start of DATA). */
  private bol = true;
  /** The last input byte was a CR: the output ends with it and owes the LF. */
  private cr = false;
  /** Reused list of output pieces for a chunk that needs changes. */
  private readonly pieces: Buffer[] = [];
  private piecesLength = 0;
  private from = 0;

  /**
   * Encodes one chunk. Returns the chunk itself when nothing had to change (the caller must
   * not modify it afterwards), else one new buffer. May return an empty buffer.
   */
  push(chunk: Buffer): Buffer {
    const n = chunk.length;
    if (n === 0) return EMPTY;
    this.bytesIn += n;
    this.from = 0;
    this.piecesLength = 0;
    let i = 0;

    if (this.cr) {
      // The previous chunk ended with CR: this chunk's first byte decides CRLF or bare CR.
      this.cr = false;
      if (chunk[0] === LF) i = 1;
      else this.insert(chunk, 0, LF_BUF);
      this.bol = true;
    }

    // Positions of the next CR / LF at or after i; -2 = not searched yet, -1 = none left.
    let nextCR = -2;
    let nextLF = -2;
    for (;;) {
      if (this.bol) {
        if (i >= n) break; // the next chunk starts the line
        if (chunk[i] === DOT) this.insert(chunk, i, DOT_BUF);
        this.bol = false;
      }
      if (nextCR !== -1 && nextCR < i) nextCR = chunk.indexOf(CR, i);
      if (nextLF !== -1 && nextLF < i) nextLF = chunk.indexOf(LF, i);
      if (nextCR !== -1 && (nextLF === -1 || nextCR < nextLF)) {
        const c = nextCR;
        if (c + 1 === n) {
          // CR at the end of the chunk: CRLF or bare CR is known only with the next byte.
          this.cr = true;
          break;
        }
        if (chunk[c + 1] === LF) {
          i = c + 2;
        } else {
          this.insert(chunk, c + 1, LF_BUF); // bare CR -> CRLF
          i = c + 1;
        }
        this.bol = true;
      } else if (nextLF !== -1) {
        // An LF not preceded by CR (a CR right before it was consumed as CRLF above).
        this.insert(chunk, nextLF, CR_BUF); // bare LF -> CRLF
        i = nextLF + 1;
        this.bol = true;
      } else {
        break; // no line end left in this chunk
      }
    }

    if (this.piecesLength === 0) return chunk;
    const pieces = this.pieces;
    if (this.from < n) pieces.push(chunk.subarray(this.from));
    const out = Buffer.concat(pieces, this.piecesLength + n - this.from);
    pieces.length = 0;
    return out;
  }

  /**
   * The bytes that end DATA: a missing line end, then "." CRLF. Call once, after the last
   * push(). The returned buffer is shared: write it, never modify it.
   */
  end(): Buffer {
    if (this.cr) {
      this.cr = false;
      this.bol = true;
      return END_AFTER_CR;
    }
    // At a line start (including an empty body) the terminator line follows directly.
    return this.bol ? END_AT_LINE_START : END_MID_LINE;
  }

  /** Output so far: input[from, at), then `ins`; input continues at `at`. */
  private insert(chunk: Buffer, at: number, ins: Buffer): void {
    if (at > this.from) {
      this.pieces.push(chunk.subarray(this.from, at));
      this.piecesLength += at - this.from;
    }
    this.pieces.push(ins);
    this.piecesLength += ins.length;
    this.from = at;
  }
}

/** Whole-buffer convenience (tests, small bodies): the encoded body followed by the terminator. */
export function dotStuff(body: Buffer): Buffer {
  const s = new DotStuffer();
  const out = s.push(body);
  return Buffer.concat([out, s.end()]);
}
