// The Message-ID header of a message, picked out of its body as it streams through, for the
// `transaction` log line (operators grep for it, as they do in Postfix's logs).
//
// Why a hand-written sniffer and not a header parser (mailparser, the header splitter of
// nodemailer): those buffer the whole header block and parse every field into objects, for one
// field we only log. This looks at the header block only, line by line as the chunks pass, keeps
// at most one line (the one being read, when it spans chunks), gives up after MAX_HEADER_BYTES,
// and stops for good at the blank line that ends the headers: the body is never scanned. It
// handles what RFC 5322 allows a Message-ID field to be written as: any case of the name,
// folded over several lines, with comments or junk around the <id> (the <id> is kept).

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HT = 0x09;
/** Header blocks larger than this (DKIM and Received lines included) are not searched further. */
const MAX_HEADER_BYTES = 64 * 1024;
/** Of one header line, only this much is looked at (RFC 5322: 998 octets). */
const MAX_LINE = 1000;
/** The logged value is cut here: a Message-ID is an address-like token, not a paragraph. */
const MAX_VALUE = 256;
const NAME = 'message-id:';

export class MessageIdSniffer {
  private seen = 0;
  private done = false;
  /** The start of a line that continues in the next chunk (at most MAX_LINE bytes). */
  private partial: Buffer | null = null;
  /** The field's text so far, while reading a Message-ID field (it may be folded). */
  private field: string | null = null;
  private value: string | undefined;

  /** Feeds a piece of the (dot-unstuffed) message; cheap once the headers are past. */
  push(chunk: Buffer): void {
    if (this.done) return;
    let from = 0;
    while (from < chunk.length) {
      const lf = chunk.indexOf(LF, from);
      const end = lf === -1 ? chunk.length : lf + 1;
      this.seen += end - from;
      if (this.seen > MAX_HEADER_BYTES) return this.finish();
      if (this.partial === null && lf !== -1) {
        // The common case, a whole line inside the chunk: read where it is, no view made of it.
        this.line(chunk, from, end);
      } else {
        let line = chunk.subarray(from, end);
        if (this.partial) {
          line = this.partial.length >= MAX_LINE ? this.partial : Buffer.concat([this.partial, line.subarray(0, MAX_LINE - this.partial.length)]);
          this.partial = null;
        }
        if (lf === -1) {
          // Copied: the chunk's memory belongs to the stream and is reused.
          this.partial = Buffer.from(line.subarray(0, MAX_LINE));
          return;
        }
        this.line(line, 0, line.length);
      }
      if (this.done) return;
      from = end;
    }
  }

  /** The Message-ID of the message fed since the last take() (undefined if none), and a fresh start. */
  take(): string | undefined {
    if (!this.done) this.finish();
    const v = this.value;
    this.seen = 0;
    this.done = false;
    this.partial = null;
    this.field = null;
    this.value = undefined;
    return v;
  }

  /** One header line, buf[start, end), with its line end. */
  private line(buf: Buffer, start: number, end: number): void {
    if (end > start && buf[end - 1] === LF) end--;
    if (end > start && buf[end - 1] === CR) end--;
    const len = end - start;
    if (len === 0) return this.finish(); // the blank line: the body follows
    const first = buf[start];
    const stop = start + Math.min(len, MAX_LINE);
    if (first === SP || first === HT) {
      if (this.field !== null) this.field += buf.toString('utf8', start, stop);
      return;
    }
    if (this.field !== null) return this.finish(); // the next field: ours is complete
    if ((first === 0x4d || first === 0x6d) && len >= NAME.length && buf.toString('latin1', start, start + NAME.length).toLowerCase() === NAME) {
      this.field = buf.toString('utf8', start + NAME.length, stop);
    }
  }

  private finish(): void {
    this.done = true;
    this.partial = null;
    if (this.field === null) return;
    const text = this.field.replace(/\s+/g, ' ').trim();
    this.field = null;
    const id = /<[^<>\s]*>/.exec(text);
    const v = (id ? id[0] : text).slice(0, MAX_VALUE);
    if (v) this.value = v;
  }
}
