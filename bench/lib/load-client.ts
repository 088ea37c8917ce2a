// The load generator's SMTP client: one raw socket, the same code for the relay and for the
// direct baseline, kept lean so that it is never what limits a run. Per message it makes two
// writes of pre-encoded bytes — MAIL, RCPT and DATA pipelined (RFC 2920), then the dot-stuffed
// body with its terminator — and reads four replies with the project's ReplyReader.
//
// Direct (the baseline) authenticates the way the relay does upstream: STARTTLS, then
// AUTH XOAUTH2 with a token the sandbox issued. Through the relay it sends in clear from
// 127.0.0.1, which the relay trusts and routes by MAIL FROM, as an MTA on the same host would.
import net from 'node:net';
import tls from 'node:tls';
import { dotStuff } from '../../src/smtp/dot-stuffer.js';
import { ReplyReader } from '../../src/smtp/reply-reader.js';
import { formatReply, type Reply } from '../../src/smtp/reply.js';
import { xoauth2String } from '../../src/upstream/xoauth2.js';

export interface Target {
  host: string;
  port: number;
  /** STARTTLS (verified against `ca`) and AUTH XOAUTH2 before the first message. */
  xoauth2?: { user: string; token: string; ca: Buffer };
}

/** A message encoded once and sent many times. */
export interface PreparedMessage {
  /** MAIL FROM, RCPT TO and DATA in one buffer. */
  envelope: Buffer;
  /** The body, dot-stuffed, with the terminating CRLF.CRLF. */
  body: Buffer;
  /** Body size as the MTA would count it (before stuffing). */
  size: number;
}

/**
 * A text message of `size` bytes: headers, then 76-character lines (the shape of a base64
 * attachment, the bulk of most large mail). `tag` makes its Message-ID distinct.
 */
export function prepareMessage(from: string, to: string, size: number, tag = 'bench'): PreparedMessage {
  const head = `From: <${from}>\r\nTo: <${to}>\r\nSubject: ${tag} ${size}\r\nMessage-ID: <${tag}.${size}@bench.example>\r\nMIME-Version: 1.0\r\n\r\n`;
  const line = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJKL\r\n';
  const room = Math.max(0, size - head.length);
  const full = Math.floor(room / line.length);
  const rest = room - full * line.length;
  // The last line is shortened, never cut: every size is a well-formed message (to within a byte).
  const text = Buffer.from(head + line.repeat(full) + (rest >= 2 ? `${'x'.repeat(rest - 2)}\r\n` : ''));
  return {
    envelope: Buffer.from(`MAIL FROM:<${from}> SIZE=${text.length}\r\nRCPT TO:<${to}>\r\nDATA\r\n`),
    body: dotStuff(text),
    size: text.length,
  };
}

export class LoadConnection {
  private socket: net.Socket;
  private readonly reader: ReplyReader;
  private readonly replies: Reply[] = [];
  private want = 0;
  private wake: (() => void) | null = null;
  private failure: Error | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.reader = new ReplyReader((r) => this.onReply(r));
    this.listen(socket);
  }

  /**
   * Connects and gets the session ready for messages: greeting, EHLO, and for a direct target
   * STARTTLS, EHLO, AUTH XOAUTH2. Connect time (including smtp-server's 100 ms early-talker
   * pause before the greeting) is spent here, never inside send().
   */
  static async open(target: Target): Promise<LoadConnection> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: target.host, port: target.port, noDelay: true });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    const conn = new LoadConnection(socket);
    try {
      await conn.expect([220]);
      await conn.command('EHLO bench.example', [250]);
      if (target.xoauth2) {
        const { user, token, ca } = target.xoauth2;
        await conn.command('STARTTLS', [220]);
        await conn.upgrade(target.host, ca);
        await conn.command('EHLO bench.example', [250]);
        await conn.command(`AUTH XOAUTH2 ${xoauth2String(user, token)}`, [235]);
      }
    } catch (e) {
      conn.close();
      throw e;
    }
    return conn;
  }

  /** Sends one message on the open session; resolves with its latency in ms, first write to final reply. */
  async send(message: PreparedMessage): Promise<number> {
    const started = performance.now();
    this.socket.write(message.envelope);
    await this.expect([250, 250, 354]);
    this.socket.write(message.body);
    await this.expect([250]);
    return performance.now() - started;
  }

  /**
   * The same message from a client that does not pipeline: MAIL, RCPT and DATA each wait for
   * their reply (three more round trips than send()).
   */
  async sendStepwise(message: PreparedMessage): Promise<number> {
    const started = performance.now();
    const lines = stepwiseLines(message);
    for (let i = 0; i < lines.length; i++) {
      this.socket.write(lines[i]!);
      await this.expect([i === lines.length - 1 ? 354 : 250]);
    }
    this.socket.write(message.body);
    await this.expect([250]);
    return performance.now() - started;
  }

  /** Sends QUIT without waiting, then closes. */
  close(): void {
    if (!this.socket.destroyed) this.socket.end('QUIT\r\n');
    this.socket.destroy();
  }

  private async command(line: string, codes: number[]): Promise<void> {
    this.socket.write(`${line}\r\n`);
    await this.expect(codes);
  }

  /** Waits for one reply per entry of `codes`, each with that code. */
  private async expect(codes: number[]): Promise<void> {
    if (this.replies.length < codes.length && !this.failure) {
      this.want = codes.length;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    if (this.failure) throw this.failure;
    const got = this.replies.splice(0, codes.length);
    for (let i = 0; i < codes.length; i++) {
      if (got[i]!.code !== codes[i]) throw new Error(`expected ${codes[i]}, got ${formatReply(got[i]!)}`);
    }
  }

  private onReply(r: Reply): void {
    this.replies.push(r);
    if (this.wake && this.replies.length >= this.want) this.resolveWait();
  }

  private resolveWait(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private listen(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.resolveWait();
  }

  private async upgrade(host: string, ca: Buffer): Promise<void> {
    const raw = this.socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    const secure = tls.connect({ socket: raw, host, ca, ...(net.isIP(host) ? {} : { servername: host }) });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => {
        secure.off('error', reject);
        resolve();
      });
      secure.once('error', reject);
    });
    this.socket = secure;
    this.listen(secure);
  }
}

const stepwise = new WeakMap<PreparedMessage, Buffer[]>();

/** The envelope's command lines, split once per message (the generator must stay cheap). */
function stepwiseLines(message: PreparedMessage): Buffer[] {
  let lines = stepwise.get(message);
  if (!lines) {
    lines = [];
    let from = 0;
    for (let lf = message.envelope.indexOf(0x0a); lf !== -1; lf = message.envelope.indexOf(0x0a, from)) {
      lines.push(message.envelope.subarray(from, lf + 1));
      from = lf + 1;
    }
    stepwise.set(message, lines);
  }
  return lines;
}
