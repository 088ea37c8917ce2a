// The inbound DATA phase (RFC 5321 §4.5.2): finds the end of the message and removes the
// client's transparency dots, chunk by chunk, without copying the common chunk.
//
// Only CRLF "." CRLF ends the message (or "." CRLF as its very first line): a bare LF or bare CR
// around a dot is message data (SMTP smuggling, CVE-2023-51764 and kin), passed on for the
// upstream DotStuffer to turn into CRLF lines with the dot doubled, so it can never end DATA
// upstream either. A dot doubled after any LF loses one dot, as smtp-server did.
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const LF_DOT = Buffer.from('\n.');

export interface Decoded {
  /** Message bytes, transparency removed, in order (views into the input when possible). */
  body: Buffer[];
  /** The terminator was found: `rest` is what the client sent after it (pipelined commands). */
  done: boolean;
  rest: Buffer | null;
}

export class DataDecoder {
  /** Bytes of the message so far (after transparency). */
  bytes = 0;
  private atStart = true;
  /** The byte before the next input (CR matters for the terminator). */
  private prev = LF;
  /** Input held back because it may be the start of a terminator or a doubled dot. */
  private carry: Buffer | null = null;

  push(chunk: Buffer): Decoded {
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = null;
    const body: Buffer[] = [];
    const n = buf.length;
    let from = 0;
    if (n === 0) return { body, done: false, rest: null };
    if (this.atStart) {
      if (n < 3 && (buf[0] === DOT)) {
        // ".", ".\r" or ".." : not decidable yet
        if (n === 1 || buf[1] === CR || buf[1] === DOT) return this.hold(buf, 0, body);
      }
      if (buf[0] === DOT && buf[1] === CR && buf[2] === LF) return this.finish(body, buf, 0, 3);
      if (buf[0] === DOT && buf[1] === DOT) from = 1;
      this.atStart = false;
    }
    let scan = from;
    for (;;) {
      // Only lines that start with a dot matter: one search finds the next, past all the others.
      const lf = buf.indexOf(LF_DOT, scan);
      if (lf === -1) break;
      scan = lf + 1;
      // A line that starts with a dot: the terminator, a doubled dot, or undecided yet.
      if (lf + 2 >= n) return this.hold(buf, from, body, lf);
      const next = buf[lf + 2];
      if (next === DOT) {
        this.emit(body, buf, from, lf + 1);
        from = lf + 2;
        scan = lf + 3;
        continue;
      }
      if (next === CR) {
        if (lf + 3 >= n) return this.hold(buf, from, body, lf);
        const crBefore = lf > 0 ? buf[lf - 1] === CR : this.prev === CR;
        if (buf[lf + 3] === LF && crBefore) {
          this.emit(body, buf, from, lf + 1);
          return this.finish(body, buf, 0, lf + 4);
        }
      }
    }
    // A trailing LF may start a dot line in the next chunk: keep it back.
    if (n > from && buf[n - 1] === LF) return this.hold(buf, from, body, n - 1);
    this.emit(body, buf, from, n);
    return { body, done: false, rest: null };
  }

  private emit(body: Buffer[], buf: Buffer, from: number, to: number): void {
    if (to <= from) return;
    body.push(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
    this.bytes += to - from;
    this.prev = buf[to - 1]!;
  }

  /** Emits [from, keepFrom) and carries the rest into the next push. */
  private hold(buf: Buffer, from: number, body: Buffer[], keepFrom = from): Decoded {
    this.emit(body, buf, from, keepFrom);
    this.carry = Buffer.from(buf.subarray(keepFrom));
    return { body, done: false, rest: null };
  }

  private finish(body: Buffer[], buf: Buffer, _from: number, end: number): Decoded {
    return { body, done: true, rest: end < buf.length ? buf.subarray(end) : null };
  }
}
