// A bare SMTP client for tests that must see every reply exactly as the relay sent it.
import { connect, type Socket } from 'node:net';
import { ReplyReader } from '../../src/upstream/reply-reader.js';
import type { Reply } from '../../src/upstream/reply.js';

export class RawSmtp {
  private readonly replies: Reply[] = [];
  private waiters: Array<(r: Reply) => void> = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    const reader = new ReplyReader((r) => {
      const w = this.waiters.shift();
      if (w) w(r);
      else this.replies.push(r);
    });
    socket.on('data', (chunk) => reader.push(chunk));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<{ client: RawSmtp; greeting: Reply }> {
    const socket = connect({ port, host });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawSmtp(socket);
    return { client, greeting: await client.read() };
  }

  read(timeoutMs = 10_000): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply within ' + timeoutMs + ' ms')), timeoutMs);
      this.waiters.push((reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
  }

  async cmd(line: string): Promise<Reply> {
    this.socket.write(line + '\r\n');
    return this.read();
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }
}

export const line = (r: Reply) => `${r.code} ${r.lines.join(' | ')}`;
