// The session's unhandled input, read as command lines, with bounds that hold whatever the
// client sends and whether or not a reply is pending (issue 18 item 2).
//
// Cost is linear in the bytes received: a chunk is referenced, not copied, when nothing is
// waiting before it (the common case: a command or a pipelined group per chunk); otherwise it
// is appended to one growing buffer read from an offset, which is compacted only when its free
// room is gone (each compaction is paid for by at least as many new bytes). Each byte is
// searched for LF once. Concatenating the whole input at every chunk, as the session once did,
// made a stream without line ends cost the square of its length while a reply was pending.
//
// Bounds: the line not yet ended may not exceed MAX_LINE (checked as each chunk arrives); past
// HIGH_WATER unhandled bytes (one line plus a pipelined group) the session stops reading its
// socket (`full`), and the client's own TCP window holds the rest.
import { MAX_COMMAND_LINE } from '../smtp/limits.js';

/** Longest command line (without CRLF). Long enough for many ESMTP parameters; beyond it the session ends. */
export const MAX_LINE = MAX_COMMAND_LINE;
/**
 * Unhandled input the session holds before it stops reading: one line and a pipelined group
 * behind it (a MAIL, 100 RCPTs of 300 bytes and DATA fit with room to spare).
 */
export const HIGH_WATER = MAX_LINE + 64 * 1024;
const LF = 0x0a;
const CR = 0x0d;

export class LineReader {
  private buf: Buffer | null = null;
  /** `buf` was allocated here, so bytes may be written into its free room. */
  private owned = false;
  private start = 0;
  private end = 0;
  /** Absolute index in `buf` of the first LF at or after `start`, or -1 when none up to `scanned`. */
  private lf = -1;
  private scanned = 0;
  /** Bytes after the last LF received (the line still being sent). */
  private tail = 0;
  /** The client shut its sending side: nothing more will come. */
  ended = false;

  /** Unhandled bytes. */
  get size(): number {
    return this.end - this.start;
  }

  /** The session should stop reading until it has handled some of what it holds. */
  get full(): boolean {
    return this.end - this.start >= HIGH_WATER;
  }

  /** The line still being received is over the limit (it can never be a command). */
  get overlong(): boolean {
    return this.tail > MAX_LINE + 1;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const k = chunk.lastIndexOf(LF);
    this.tail = k === -1 ? this.tail + chunk.length : chunk.length - k - 1;
    if (this.start === this.end) {
      this.buf = chunk;
      this.owned = false;
      this.start = 0;
      this.end = chunk.length;
      this.lf = -1;
      this.scanned = 0;
      return;
    }
    this.room(chunk.length);
    chunk.copy(this.buf!, this.end);
    this.end += chunk.length;
  }

  /** Makes `n` bytes of room after `end`, keeping the unhandled bytes (and the scan state) in place relative to `start`. */
  private room(n: number): void {
    const buf = this.buf!;
    const size = this.end - this.start;
    if (this.owned && this.end + n <= buf.length) return;
    const shift = this.start;
    if (this.owned && size + n <= buf.length && size <= buf.length >> 1) {
      buf.copyWithin(0, this.start, this.end);
    } else {
      const next = Buffer.allocUnsafe(Math.max(2 * (size + n), 4096));
      buf.copy(next, 0, this.start, this.end);
      this.buf = next;
      this.owned = true;
    }
    this.start = 0;
    this.end = size;
    if (this.lf !== -1) this.lf -= shift;
    this.scanned -= shift;
  }

  /** Index of the first LF of the unhandled input, or -1; every byte is searched once. */
  private firstLf(): number {
    if (this.lf !== -1) return this.lf;
    if (this.start === this.end) return -1;
    const from = Math.max(this.scanned, this.start);
    const at = this.buf!.indexOf(LF, from);
    if (at === -1 || at >= this.end) {
      this.scanned = this.end;
      return -1;
    }
    this.lf = at;
    return at;
  }

  /**
   * The next complete line without its line end (UTF-8, so that an address written in it goes
   * upstream as the same bytes); null when none is complete; `false` when it is over the limit.
   */
  take(): string | null | false {
    const lf = this.firstLf();
    if (lf === -1) return null;
    if (lf - this.start > MAX_LINE + 1) return false;
    const buf = this.buf!;
    const end = lf > this.start && buf[lf - 1] === CR ? lf - 1 : lf;
    const line = buf.toString('utf8', this.start, end);
    this.consume(lf + 1);
    return line;
  }

  /** The complete lines after `start`, without consuming them (MAIL's look-ahead). */
  *peek(): Generator<string> {
    const buf = this.buf;
    if (!buf) return;
    let from = this.start;
    for (;;) {
      const lf = buf.indexOf(LF, from);
      if (lf === -1 || lf >= this.end || lf - from > MAX_LINE) return;
      const end = lf > from && buf[lf - 1] === CR ? lf - 1 : lf;
      yield buf.toString('utf8', from, end);
      from = lf + 1;
    }
  }

  /**
   * All unhandled bytes, handed over (message data). The view is never written into again:
   * the body stream may still hold pieces of it.
   */
  takeAll(): Buffer | null {
    if (this.start === this.end) return null;
    const all = this.buf!.subarray(this.start, this.end);
    this.clear();
    return all;
  }

  /** Bytes handed back (what followed the end of a message): they are the next input. */
  unshift(rest: Buffer | null): void {
    this.clear();
    if (!rest) return;
    this.push(rest);
  }

  clear(): void {
    this.buf = null;
    this.owned = false;
    this.start = this.end = 0;
    this.lf = -1;
    this.scanned = 0;
    this.tail = 0;
  }

  private consume(to: number): void {
    this.start = to;
    this.lf = -1;
    this.scanned = to;
    if (to === this.end) this.clear();
  }
}
