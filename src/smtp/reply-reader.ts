// Incremental parser of SMTP replies (RFC 5321 §4.2): "250-first\r\n250-more\r\n250 last\r\n"
// becomes one Reply { code: 250, lines: ['first', 'more', 'last'] }. Bytes arrive as the
// socket delivers them, so a reply (or a line, or the CRLF itself) may be split anywhere.
//
// Defensive limits, because the peer is on the other side of the Internet: a line longer
// than maxLineLength or a reply with more than maxLines lines is a protocol error instead of
// unbounded buffering; a line without a 3-digit code, a bad separator or a continuation
// whose code differs from the first line is a protocol error too (a reader that guessed
// would misalign every later reply with its command).
import { MAX_REPLY_LINE, MAX_REPLY_LINES } from './limits.js';
import type { Reply } from './reply.js';

const LF = 0x0a;
const CR = 0x0d;
const DASH = 0x2d;
const SPACE = 0x20;
const ZERO = 0x30;

export class ReplyParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplyParseError';
  }
}

export interface ReplyReaderOptions {
  /** Longest line accepted, without its CRLF. Default MAX_REPLY_LINE (./limits.ts). */
  maxLineLength?: number;
  /** Most lines in one multi-line reply. Default MAX_REPLY_LINES. */
  maxLines?: number;
}

export class ReplyReader {
  private readonly onReply: (r: Reply) => void;
  private readonly maxLineLength: number;
  private readonly maxLines: number;
  /** The start of a line whose LF has not arrived yet. */
  private partial: Buffer | null = null;
  /** Lines of a multi-line reply read so far, and their code. */
  private lines: string[] = [];
  private code = 0;
  private failure: ReplyParseError | null = null;

  constructor(onReply: (r: Reply) => void, options: ReplyReaderOptions = {}) {
    this.onReply = onReply;
    this.maxLineLength = options.maxLineLength ?? MAX_REPLY_LINE;
    this.maxLines = options.maxLines ?? MAX_REPLY_LINES;
  }

  /**
   * Feeds bytes; calls onReply for every reply completed by them, in order.
   * @throws ReplyParseError on a protocol violation; the reader stays failed afterwards.
   */
  push(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    const n = chunk.length;
    let start = 0;
    while (start < n) {
      const lf = chunk.indexOf(LF, start);
      if (lf === -1) {
        const have = this.partial ? this.partial.length : 0;
        // +1: the line may still end with a CR that is not part of its length.
        if (have + n - start > this.maxLineLength + 1) this.fail('reply line too long');
        const rest = chunk.subarray(start);
        this.partial = this.partial ? Buffer.concat([this.partial, rest]) : rest;
        return;
      }
      if (this.partial) {
        const line = Buffer.concat([this.partial, chunk.subarray(start, lf)]);
        this.partial = null;
        this.line(line, 0, line.length);
      } else {
        this.line(chunk, start, lf);
      }
      start = lf + 1;
    }
  }

  /** True when bytes of an unfinished reply are buffered (used to refuse STARTTLS response injection). */
  get hasPending(): boolean {
    return this.partial !== null || this.lines.length > 0;
  }

  /** Forgets any buffered partial reply (e.g. when the byte stream changes under TLS). */
  reset(): void {
    this.partial = null;
    this.lines = [];
    this.code = 0;
  }

  /** One line, buf[s, e) without its LF. */
  private line(buf: Buffer, s: number, e: number): void {
    if (e > s && buf[e - 1] === CR) e--;
    const len = e - s;
    if (len > this.maxLineLength) this.fail('reply line too long');
    if (len < 3) this.fail('reply line without a status code');
    const d0 = buf[s]! - ZERO;
    const d1 = buf[s + 1]! - ZERO;
    const d2 = buf[s + 2]! - ZERO;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) this.fail('reply line without a status code');
    const code = d0 * 100 + d1 * 10 + d2;
    let last = true;
    if (len > 3) {
      const sep = buf[s + 3];
      if (sep === DASH) last = false;
      else if (sep !== SPACE) this.fail('bad separator after the status code');
    }
    const text = len > 4 ? buf.toString('utf8', s + 4, e) : '';
    if (this.lines.length > 0 && code !== this.code) this.fail('status code changes within a multi-line reply');
    if (last) {
      const lines = this.lines;
      lines.push(text);
      this.lines = [];
      this.code = 0;
      this.onReply({ code, lines });
      return;
    }
    if (this.lines.length >= this.maxLines) this.fail('multi-line reply has too many lines');
    this.code = code;
    this.lines.push(text);
  }

  private fail(message: string): never {
    this.partial = null;
    this.lines = [];
    this.failure = new ReplyParseError(message);
    throw this.failure;
  }
}
