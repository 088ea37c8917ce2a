// A second reference beside the byte pipe (byte-pipe.ts): the least a relay that behaves like
// this one on the wire could cost. Like the pipe it holds one authenticated upstream connection
// per client; unlike the pipe it parses the client's commands, sends a pipelined MAIL/RCPT/DATA
// group upstream in one write, gives the client the provider's replies, forwards the body once
// the provider said 354 while watching for the terminator, and writes one JSON line per
// transaction. It has none of the relay's routing, limits, timeouts, pooling, metrics or
// checks: the relay's CPU over this one's is what those, and the relay's structure, cost.
// Callbacks only, no promises: the shape the relay's hot path would need to get this close.
//
// Given `reopen`, it also retires its upstream connection every `retireEvery` messages as the
// contract's `messages_per_connection` of 100 would (the relay's default is 0 now): QUIT, then a new
// connection with STARTTLS and AUTH before the next message. That one is the least a relay that
// keeps the contract could cost; the other shows what retiring costs.
import { openSync, unlinkSync, write } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type tls from 'node:tls';
import { ReplyReader } from '../../src/smtp/reply-reader.js';
import { wireReply, type Reply } from '../../src/smtp/reply.js';

const EHLO_REPLY = '250-minimal.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n';
const TERMINATOR = Buffer.from('\r\n.\r\n');
const LOG_BATCH = 4096;

// Written like the relay's log: batched, handed to libuv's thread pool, into a file (unlinked
// at once: only the cost of writing matters).
const logPath = join(tmpdir(), `minimal-relay-${process.pid}.log`);
const logFd = openSync(logPath, 'a');
unlinkSync(logPath);
let log = '';
const flushLog = (): void => {
  if (log) write(logFd, log, () => undefined);
  log = '';
};
setInterval(flushLog, 1000).unref();

export class MinimalRelaySession {
  private input: Buffer | null = null;
  /** Replies the provider owes for commands sent. */
  private owed = 0;
  private body = false;
  /** The last bytes of the body so far (a terminator may span two chunks). */
  private tail: Buffer = Buffer.alloc(0);
  private readonly replies = new ReplyReader((r) => this.onReply(r));
  /** Replies read but not yet written to the client. */
  private out = '';
  private mailFrom = '';
  private rcpts = 0;
  private started = 0;
  /** Messages on the current upstream connection. */
  private carried = 0;
  /** A new upstream connection is being opened: the client's commands wait for it. */
  private swapping = false;
  private readonly onUpstreamData = (chunk: Buffer): void => this.fromUpstream(chunk);
  private readonly onUpstreamGone = (): void => void this.client.destroy();

  constructor(
    private readonly client: net.Socket,
    private upstream: tls.TLSSocket,
    private readonly reopen: (() => Promise<tls.TLSSocket>) | null = null,
    private readonly retireEvery = 100,
  ) {
    client.on('data', (chunk: Buffer) => this.fromClient(chunk));
    client.on('close', () => this.upstream.destroy());
    this.attach(upstream);
  }

  private attach(upstream: tls.TLSSocket): void {
    this.upstream = upstream;
    upstream.on('data', this.onUpstreamData);
    upstream.on('error', this.onUpstreamGone);
    upstream.on('close', this.onUpstreamGone);
  }

  /** QUIT on the old connection (its 221 is read and dropped), a new one for the next message. */
  private retire(reopen: () => Promise<tls.TLSSocket>): void {
    const old = this.upstream;
    old.off('data', this.onUpstreamData);
    old.off('close', this.onUpstreamGone);
    old.off('error', this.onUpstreamGone);
    old.on('error', () => undefined);
    old.on('data', () => undefined);
    old.end('QUIT\r\n');
    this.swapping = true;
    reopen().then(
      (fresh) => {
        this.attach(fresh);
        this.swapping = false;
        this.carried = 0;
        if (this.input) this.fromClient(Buffer.alloc(0));
      },
      () => this.client.destroy(),
    );
  }

  private fromClient(chunk: Buffer): void {
    if (this.body) return this.forwardBody(chunk);
    this.input = this.input ? Buffer.concat([this.input, chunk]) : chunk;
    if (this.swapping) return;
    let group = '';
    while (this.input) {
      const buf: Buffer = this.input;
      const lf: number = buf.indexOf(0x0a);
      if (lf === -1) break;
      const line = buf.toString('latin1', 0, lf > 0 && buf[lf - 1] === 0x0d ? lf - 1 : lf);
      this.input = lf + 1 < buf.length ? buf.subarray(lf + 1) : null;
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'MAIL' || verb === 'RCPT' || verb === 'DATA') {
        if (verb === 'MAIL') {
          this.mailFrom = line.slice(line.indexOf('<') + 1, line.indexOf('>'));
          this.rcpts = 0;
          this.started = performance.now();
        } else if (verb === 'RCPT') this.rcpts++;
        group += `${line}\r\n`;
        this.owed++;
        if (verb === 'DATA') break; // the body follows the provider's 354
      } else if (verb === 'EHLO') this.client.write(EHLO_REPLY);
      else if (verb === 'QUIT') return void this.client.end('221 2.0.0 Bye\r\n');
      else this.client.write('250 2.0.0 OK\r\n');
    }
    if (group) this.upstream.write(group);
  }

  private forwardBody(chunk: Buffer): void {
    const scan = this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk;
    this.upstream.write(chunk);
    if (scan.indexOf(TERMINATOR) !== -1) {
      this.body = false;
      this.owed++;
      this.tail = Buffer.alloc(0);
    } else this.tail = scan.subarray(Math.max(0, scan.length - TERMINATOR.length + 1));
  }

  /** The replies of one read go to the client in one write, as the relay writes them. */
  private fromUpstream(chunk: Buffer): void {
    this.replies.push(chunk);
    this.flushReplies();
  }

  private flushReplies(): void {
    if (this.out) this.client.write(this.out);
    this.out = '';
  }

  /** The provider's replies, parsed by the relay's own reader, passed on as they came. */
  private onReply(r: Reply): void {
    this.owed--;
    this.out += wireReply(r);
    if (r.code === 354) {
      this.body = true;
      const early = this.input;
      this.input = null;
      if (early) {
        this.flushReplies();
        this.forwardBody(early);
      }
    } else if (this.owed === 0 && !this.body && this.started) {
      this.logTransaction(r.code);
      if (this.reopen && ++this.carried >= this.retireEvery) this.retire(this.reopen);
    }
  }

  private logTransaction(code: number): void {
    const ms = Math.round((performance.now() - this.started) * 100) / 100;
    this.started = 0;
    log += `{"level":30,"time":"${new Date().toISOString()}","event":"transaction","mail_from":${JSON.stringify(this.mailFrom)},"rcpt_count":${this.rcpts},"reply":${code},"ms":${ms},"msg":"transaction"}\n`;
    if (log.length >= LOG_BATCH) flushLog();
  }
}
