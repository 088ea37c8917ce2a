// A bare SMTP client for tests that must see every reply exactly as the relay sent it.
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { ReplyReader } from '../../src/smtp/reply-reader.js';
import type { Reply } from '../../src/smtp/reply.js';

export class RawSmtp {
  private readonly replies: Reply[] = [];
  private waiters: Array<{ resolve: (r: Reply) => void; reject: (e: Error) => void }> = [];
  private reader = this.newReader();
  closed = false;

  private constructor(public socket: Socket) {
    this.attach(socket);
  }

  /** `localAddress`: another loopback address (127.0.0.2, ...) to appear as a different client. */
  static async connect(port: number, host = '127.0.0.1', opts: { localAddress?: string } = {}): Promise<{ client: RawSmtp; greeting: Reply }> {
    const socket = connect({ port, host, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawSmtp(socket);
    return { client, greeting: await client.read() };
  }

  /** The next reply; rejects after `timeoutMs`, or as soon as the connection is closed without one. */
  read(timeoutMs = 10_000): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (reply: Reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error('no reply within ' + timeoutMs + ' ms'));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** STARTTLS already answered 220: the TLS handshake over the same socket, trusting `ca`. */
  async upgrade(ca: string | Buffer, servername = 'localhost'): Promise<TLSSocket> {
    this.socket.removeAllListeners('data');
    this.reader = this.newReader();
    const secure = tlsConnect({ socket: this.socket, ca, servername });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.attach(secure);
    return secure;
  }

  private newReader(): ReplyReader {
    return new ReplyReader((r) => {
      const w = this.waiters.shift();
      if (w) w.resolve(r);
      else this.replies.push(r);
    });
  }

  private attach(socket: Socket): void {
    socket.on('data', (chunk) => this.reader.push(chunk));
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error('connection closed'));
    });
    socket.on('error', () => undefined);
  }

  async cmd(line: string, timeoutMs?: number): Promise<Reply> {
    this.socket.write(line + '\r\n');
    return this.read(timeoutMs);
  }

  /**
   * One transaction: the final reply, or the first refusal (after which the envelope is reset
   * with RSET, so the session can go on).
   */
  async send(from: string, to: readonly string[], raw: string): Promise<Reply> {
    const mail = await this.cmd(`MAIL FROM:<${from}>`);
    if (mail.code !== 250) return mail;
    for (const rcpt of to) {
      const reply = await this.cmd(`RCPT TO:<${rcpt}>`);
      if (reply.code !== 250) return this.reset(reply);
    }
    const data = await this.cmd('DATA');
    if (data.code !== 354) return this.reset(data);
    this.write(raw + '.\r\n');
    return this.read();
  }

  private async reset(refusal: Reply): Promise<Reply> {
    if (refusal.code !== 421) await this.cmd('RSET').catch(() => undefined);
    return refusal;
  }

  /** AUTH PLAIN with the initial response. */
  authPlain(user: string, pass: string): Promise<Reply> {
    return this.cmd('AUTH PLAIN ' + Buffer.from(`\0${user}\0${pass}`).toString('base64'));
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }
}

export const line = (r: Reply) => `${r.code} ${r.lines.join(' | ')}`;

/** One transaction without AUTH (from a trusted address): the final reply, or the first refusal. */
export async function sendOnce(port: number, from: string, to: readonly string[], raw: string): Promise<string> {
  const { client } = await RawSmtp.connect(port);
  try {
    await client.cmd('EHLO mta.test');
    return line(await client.send(from, to, raw));
  } finally {
    client.close();
  }
}
