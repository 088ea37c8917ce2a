// UpstreamConnection against a real smtp-server (STARTTLS with the sandbox CA, XOAUTH2), and
// against a few scripted raw servers for the misbehaviour smtp-server never shows.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import nodemailer from 'nodemailer';
import { SMTPServer, type SMTPServerAuthenticationResponse, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors/registry.js';
import { UpstreamAuthError, UpstreamConnection, UnsafeArgumentError, type UpstreamOpenOptions } from '../../src/upstream/connection.js';
import { xoauth2String } from '../../src/upstream/xoauth2.js';
import { SANDBOX_TLS_FILES } from '../../src/sandbox/index.js';
import { rejection } from '../helpers/thrown.js';
import type { BodySink, MessageBody } from '../../src/smtp/body.js';

const fixture = (name: keyof typeof SANDBOX_TLS_FILES): Buffer => readFileSync(SANDBOX_TLS_FILES[name]);
const CA = fixture('ca');
const KEY = fixture('key');
const CERT = fixture('cert');

const USER = 'sender@example.com';
const TOKEN = 'ya29.a0-recognisable-access-token-Zq81';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Received {
  from: string;
  to: string[];
  body: Buffer;
  sessionId: string;
}

interface TestServer {
  port: number;
  received: Received[];
  authCalls: Array<{ method: string; username?: string; accessToken?: string }>;
  closed: Promise<void>[];
  /** Resolves when the n-th (1-based) client session has closed on the server. */
  sessionClosed(n: number): Promise<void>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startServer(overrides: Partial<SMTPServerOptions> = {}): Promise<TestServer> {
  const received: Received[] = [];
  const authCalls: TestServer['authCalls'] = [];
  const closeResolvers: Array<() => void> = [];
  const closed: Promise<void>[] = [];
  for (let i = 0; i < 8; i++) closed.push(new Promise<void>((r) => closeResolvers.push(r)));
  let closedCount = 0;
  const server = new SMTPServer({
    logger: false,
    key: KEY,
    cert: CERT,
    authMethods: ['XOAUTH2'],
    // On, as at Gmail: it prefixes enhanced codes itself, so the handlers below give bare texts.
    hideENHANCEDSTATUSCODES: false,
    size: 10 * 1024 * 1024,
    closeTimeout: 100,
    onAuth(auth, _session, cb) {
      authCalls.push({ method: auth.method, username: auth.username, accessToken: auth.accessToken });
      if (auth.username === USER && auth.accessToken === TOKEN) cb(null, { user: USER });
      else cb(null, { data: { status: '400', schemes: 'Bearer', scope: 'https://mail.google.com/' } });
    },
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', () => {});
      stream.on('end', () => {
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          body: Buffer.concat(chunks),
          sessionId: session.id,
        });
        cb(null, `OK queued as ${received.length}`); // smtp-server prefixes 2.6.0
      });
    },
    onClose() {
      closeResolvers[closedCount++]?.();
    },
    ...overrides,
  });
  // Handshakes the tests make fail are reported here; they must not crash the run.
  server.on('error', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.server.address() as net.AddressInfo).port;
  return { port, received, authCalls, closed, sessionClosed: (n) => closed[n - 1]! };
}

function options(port: number, over: Partial<UpstreamOpenOptions> = {}): UpstreamOpenOptions {
  return {
    host: '127.0.0.1',
    port,
    security: 'starttls',
    ca: CA,
    ehloName: 'relay.test',
    timeouts: { connectMs: 3000, commandMs: 3000, dataMs: 3000 },
    ...over,
  };
}

async function open(port: number, over: Partial<UpstreamOpenOptions> = {}): Promise<UpstreamConnection> {
  const conn = await UpstreamConnection.open(options(port, over));
  cleanups.push(() => conn.destroy());
  return conn;
}

/** Yields `body` in chunks of the given sizes (cycled), counting what the consumer pulled. */
function chunked(body: Buffer, sizes: number[] = [65536]): AsyncIterable<Buffer> & { pulled: number; done: boolean } {
  const state = {
    pulled: 0,
    done: false,
    async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
      let i = 0;
      let k = 0;
      while (i < body.length) {
        const n = sizes[k++ % sizes.length]!;
        const c = body.subarray(i, i + n);
        i += n;
        state.pulled += c.length;
        yield c;
      }
      state.done = true;
    },
  };
  return state;
}


describe('UpstreamConnection against smtp-server', () => {
  it('opens with STARTTLS (verified against the CA), parses EHLO and authenticates with XOAUTH2', async () => {
    const srv = await startServer();
    const conn = await open(srv.port);
    expect(conn.secure).toBe(true);
    expect(conn.isUsable).toBe(true);
    expect(conn.supportsPipelining).toBe(true);
    expect(conn.maxMessageSize).toBe(10 * 1024 * 1024);
    expect(conn.authMechanisms.has('XOAUTH2')).toBe(true);
    expect(conn.extensions.has('STARTTLS')).toBe(false); // the post-TLS EHLO replaced the first
    expect(conn.openedAt).toBeGreaterThan(0);
    await conn.authenticate(USER, TOKEN);
    expect(srv.authCalls).toEqual([{ method: 'XOAUTH2', username: USER, accessToken: TOKEN }]);
    expect(conn.authenticatedUser).toBe(USER);
    await conn.quit();
    expect(conn.isUsable).toBe(false);
  });

  it('opens with implicit TLS', async () => {
    const srv = await startServer({ secure: true });
    const conn = await open(srv.port, { security: 'tls' });
    expect(conn.secure).toBe(true);
    await conn.authenticate(USER, TOKEN);
  });

  it("answers Google's 334 error challenge with an empty line and throws the 535, without the token", async () => {
    const srv = await startServer();
    const conn = await open(srv.port);
    const err = await rejection(conn.authenticate(USER, 'ya29.expired-recognisable-token'));
    expect(err).toBeInstanceOf(UpstreamAuthError);
    const auth = err as UpstreamAuthError;
    expect(auth.code).toBe('UPSTREAM_AUTH_REJECTED');
    expect(auth.upstreamReply.code).toBe(535);
    expect(auth.upstreamReply.lines[0]).toMatch(/^5\.7\.8 /);
    expect(auth.challenge).toEqual({ status: '400', schemes: 'Bearer', scope: 'https://mail.google.com/' });
    const everything = `${auth.message} ${auth.stack} ${JSON.stringify(auth)} ${JSON.stringify(conn)}`;
    expect(everything).not.toContain('ya29.expired-recognisable-token');
    expect(everything).not.toContain(xoauth2String(USER, 'ya29.expired-recognisable-token'));
    // The session is still fine: a retry with a good token works on the same connection.
    expect(conn.isUsable).toBe(true);
    await conn.authenticate(USER, TOKEN);
  });

  it('turns any other refusal into UpstreamAuthError with that reply', async () => {
    const srv = await startServer({
      onAuth(_auth, _session, cb: (err: Error | null, r?: SMTPServerAuthenticationResponse) => void) {
        cb(Object.assign(new Error('Try again later'), { responseCode: 454 }));
      },
    });
    const conn = await open(srv.port);
    const err = (await rejection(conn.authenticate(USER, TOKEN))) as UpstreamAuthError;
    expect(err).toBeInstanceOf(UpstreamAuthError);
    expect(err.upstreamReply.code).toBe(454);
    expect(err.upstreamReply.lines).toEqual([expect.stringMatching(/^4\.\d\.\d+ Try again later$/)]);
    expect(err.challenge).toBeUndefined();
    expect(err.message).not.toContain(TOKEN);
  });

  it('refuses a server that does not offer STARTTLS (no downgrade, no AUTH sent)', async () => {
    const srv = await startServer({ hideSTARTTLS: true });
    const err = await rejection(UpstreamConnection.open(options(srv.port)));
    expect(err.code).toBe('UPSTREAM_TLS');
    expect(srv.authCalls).toEqual([]);
  });

  it("refuses smtp-server's built-in certificate (not signed by the trusted CA)", async () => {
    // Without key/cert smtp-server uses its built-in self-signed certificate.
    const srv = await startServer({ key: undefined, cert: undefined });
    const err = await rejection(UpstreamConnection.open(options(srv.port)));
    expect(err.code).toBe('UPSTREAM_TLS');
    expect(srv.authCalls).toEqual([]);
  });

  it('refuses a certificate from a CA that is not trusted (the sandbox CA not given)', async () => {
    // The built-in certificate above may already fail the handshake itself under OpenSSL 3;
    // this one handshakes fine and fails verification only.
    const srv = await startServer();
    const err = await rejection(UpstreamConnection.open(options(srv.port, { ca: undefined })));
    expect(err.code).toBe('UPSTREAM_TLS');
    expect(err.message).toMatch(/certificate/i);
    expect(srv.authCalls).toEqual([]);
  });

  it('refuses the right certificate for the wrong name', async () => {
    const srv = await startServer();
    const err = await rejection(UpstreamConnection.open(options(srv.port, { servername: 'smtp.gmail.com' })));
    expect(err.code).toBe('UPSTREAM_TLS');
  });

  it('returns the reply to each RCPT individually', async () => {
    const srv = await startServer({
      onRcptTo(addr, _s, cb) {
        if (addr.address === 'nobody@example.org') cb(Object.assign(new Error('No such user'), { responseCode: 550 }));
        else cb();
      },
    });
    const conn = await open(srv.port);
    await conn.authenticate(USER, TOKEN);
    expect((await conn.mail(USER)).code).toBe(250);
    const replies = [
      await conn.rcpt('a@example.org'),
      await conn.rcpt('nobody@example.org'),
      await conn.rcpt('b@example.org'),
    ];
    expect(replies.map((r) => r.code)).toEqual([250, 550, 250]);
    expect(replies[1]!.lines).toEqual(['5.1.1 No such user']); // enhanced code kept in the text
    const res = await conn.data(chunked(Buffer.from('Subject: x\r\n\r\nhi\r\n')));
    expect(res).toMatchObject({ kind: 'reply', stage: 'final', reply: { code: 250 } });
    expect(srv.received[0]!.to).toEqual(['a@example.org', 'b@example.org']);
  });

  it('pipelines MAIL and RCPTs when the server offers PIPELINING, matching replies in order', async () => {
    const srv = await startServer({
      onRcptTo(addr, _s, cb) {
        // Answer out of time order: the later RCPT's check finishes first.
        const delay = addr.address.startsWith('slow') ? 30 : 0;
        setTimeout(() => (addr.address.startsWith('bad') ? cb(Object.assign(new Error('bad'), { responseCode: 550 })) : cb()), delay);
      },
    });
    const conn = await open(srv.port);
    await conn.authenticate(USER, TOKEN);
    const replies = await Promise.all([
      conn.mail(USER, 'SIZE=100'),
      conn.rcpt('slow@example.org'),
      conn.rcpt('bad@example.org'),
      conn.rcpt('fast@example.org'),
    ]);
    expect(replies.map((r) => r.code)).toEqual([250, 250, 550, 250]);
    expect(replies[2]!.lines[0]).toBe('5.1.1 bad');
  });

  it('delivers a nodemailer message byte-identical, streamed in odd chunks with backpressure', async () => {
    const srv = await startServer();
    const conn = await open(srv.port);
    await conn.authenticate(USER, TOKEN);
    const big = Buffer.alloc(600_000, 'x');
    const { message } = await nodemailer
      .createTransport({ streamTransport: true, buffer: true, newline: 'windows' })
      .sendMail({
        from: USER,
        to: 'rcpt@example.org',
        subject: 'dots and bytes',
        text: '.leading dot\r\n..two dots\r\n.\r\nmiddle\r\n. \r\nend',
        attachments: [{ filename: 'big.bin', content: big }],
      });
    const body = message as Buffer;
    expect(body.includes('\r\n.')).toBe(true);
    await conn.mail(USER);
    await conn.rcpt('rcpt@example.org');
    const src = chunked(body, [1, 2, 3, 1000, 4096, 70_000, 5]);
    const res = await conn.data(src);
    expect(res).toMatchObject({ kind: 'reply', stage: 'final', reply: { code: 250, lines: ['2.6.0 OK queued as 1'] }, bytes: body.length });
    expect(sha256(srv.received[0]!.body)).toBe(sha256(body));
    expect(src.done).toBe(true);
  });

  it('sends smuggling payloads as one message, normalised', async () => {
    const srv = await startServer();
    const conn = await open(srv.port);
    await conn.authenticate(USER, TOKEN);
    await conn.mail(USER);
    await conn.rcpt('rcpt@example.org');
    const evil = Buffer.from('Subject: a\r\n\r\nhello\n.\nMAIL FROM:<ceo@example.org>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nspoofed\r\n.\r\nQUIT\r\n');
    const res = await conn.data(chunked(evil, [1]));
    expect(res).toMatchObject({ kind: 'reply', stage: 'final', reply: { code: 250 } });
    expect(srv.received).toHaveLength(1);
    expect(srv.received[0]!.body.toString()).toBe(
      'Subject: a\r\n\r\nhello\r\n.\r\nMAIL FROM:<ceo@example.org>\r\nRCPT TO:<x@example.org>\r\nDATA\r\nspoofed\r\n.\r\nQUIT\r\n',
    );
    // The session is still in step: the next command gets its own reply.
    expect((await conn.noop()).code).toBe(250);
  });

  it('abandons a message over maxBytes: no terminator, connection destroyed, body drained', async () => {
    const srv = await startServer();
    const conn = await open(srv.port);
    let closeReason: RelayError | null | undefined;
    conn.onClose((r) => (closeReason = r));
    await conn.authenticate(USER, TOKEN);
    await conn.mail(USER);
    await conn.rcpt('rcpt@example.org');
    const body = Buffer.alloc(300_000, 'a\r\n');
    const src = chunked(body, [10_000]);
    const res = await conn.data(src, { maxBytes: 100_000 });
    expect(res).toEqual({ kind: 'too-big', bytes: body.length });
    expect(src.done).toBe(true);
    expect(conn.isUsable).toBe(false);
    expect(closeReason).toBeNull();
    await srv.sessionClosed(1);
    expect(srv.received).toEqual([]);
  });

  it('times out a stalled command, destroys the connection and never reuses it', async () => {
    const srv = await startServer({ onMailFrom() {} }); // never answers MAIL
    const conn = await open(srv.port, { timeouts: { connectMs: 3000, commandMs: 150, dataMs: 3000 } });
    await conn.authenticate(USER, TOKEN);
    const reasons: Array<RelayError | null> = [];
    conn.onClose((r) => reasons.push(r));
    const t0 = Date.now();
    const err = await rejection(conn.mail(USER));
    expect(err.code).toBe('UPSTREAM_TIMEOUT');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(conn.isUsable).toBe(false);
    expect(reasons.map((r) => r?.code)).toEqual(['UPSTREAM_TIMEOUT']);
    expect((await rejection(conn.rset())).code).toBe('UPSTREAM_CLOSED');
  });

  it('carries three transactions on one connection, with RSET after a failed one', async () => {
    const srv = await startServer({
      onRcptTo(addr, _s, cb) {
        if (addr.address.startsWith('reject')) cb(Object.assign(new Error('unknown'), { responseCode: 550 }));
        else cb();
      },
    });
    const conn = await open(srv.port);
    await conn.authenticate(USER, TOKEN);

    await conn.mail(USER);
    expect((await conn.rcpt('one@example.org')).code).toBe(250);
    expect(await conn.data(chunked(Buffer.from('Subject: 1\r\n\r\none\r\n')))).toMatchObject({ stage: 'final', reply: { code: 250 } });

    await conn.mail(USER);
    expect((await conn.rcpt('reject@example.org')).code).toBe(550);
    // DATA refused (no valid recipient): the body is not even pulled (the inbound side answers
    // the client's DATA with this refusal instead of 354, so the client never sends it).
    const src = chunked(Buffer.from('Subject: 2\r\n\r\ntwo\r\n'));
    const refused = await conn.data(src);
    expect(refused).toMatchObject({ kind: 'reply', stage: 'command', reply: { code: 503 } });
    expect(src.done).toBe(false);
    expect((await conn.rset()).code).toBe(250);

    await conn.mail(USER);
    expect((await conn.rcpt('three@example.org')).code).toBe(250);
    expect(await conn.data(chunked(Buffer.from('Subject: 3\r\n\r\nthree\r\n')))).toMatchObject({ stage: 'final', reply: { code: 250 } });

    expect(conn.transactions).toBe(3);
    expect(conn.isUsable).toBe(true);
    expect(srv.received.map((m) => m.body.toString())).toEqual(['Subject: 1\r\n\r\none\r\n', 'Subject: 3\r\n\r\nthree\r\n']);
    expect(new Set(srv.received.map((m) => m.sessionId)).size).toBe(1);
  });

  it('refuses CR, LF and NUL in addresses before sending anything', async () => {
    const srv = await startServer();
    const conn = await open(srv.port);
    await conn.authenticate(USER, TOKEN);
    expect(() => conn.mail('a@b>\r\nRCPT TO:<x@y')).toThrow(UnsafeArgumentError);
    expect(() => conn.rcpt('a@b\0')).toThrow(UnsafeArgumentError);
    expect(() => conn.rcpt('a@b', 'NOTIFY=NEVER\nDATA')).toThrow(UnsafeArgumentError);
    expect(conn.isUsable).toBe(true);
    expect((await conn.mail(USER)).code).toBe(250);
  });
});

// ------------------------------------------------------------------ scripted raw servers

type Script = (line: string, sock: net.Socket) => void;

/** A plain-TCP server answering each command line with `script`; DATA bytes go to `onBody`. */
async function rawServer(script: Script, opts: { greeting?: string | null; onBody?: (chunk: Buffer, sock: net.Socket) => void } = {}) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => {});
    if (opts.greeting !== null) sock.write(opts.greeting ?? '220 fake ESMTP\r\n');
    let buf = '';
    let inData = false;
    sock.on('data', (chunk: Buffer) => {
      if (inData) return opts.onBody?.(chunk, sock);
      buf += chunk.toString('latin1');
      let i: number;
      while (!inData && (i = buf.indexOf('\r\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (line === 'DATA') inData = true;
        script(line, sock);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

const plainSmtp: Script = (line, sock) => {
  if (line.startsWith('EHLO')) sock.write('250-fake\r\n250 PIPELINING\r\n');
  else if (line === 'DATA') sock.write('354 go\r\n');
  else sock.write('250 ok\r\n');
};

describe('UpstreamConnection against scripted servers', () => {
  it('maps a refused TCP connection to UPSTREAM_CONNECT_FAILED', async () => {
    const port = await rawServer(plainSmtp);
    await cleanups.pop()!(); // closed again: the port now refuses
    const err = await rejection(UpstreamConnection.open(options(port, { security: 'none' })));
    expect(err.code).toBe('UPSTREAM_CONNECT_FAILED');
  });

  it('times out a server that never greets', async () => {
    const port = await rawServer(plainSmtp, { greeting: null });
    const err = await rejection(
      UpstreamConnection.open(options(port, { security: 'none', timeouts: { connectMs: 150, commandMs: 3000, dataMs: 3000 } })),
    );
    expect(err.code).toBe('UPSTREAM_TIMEOUT');
  });

  it('falls back to HELO only for security none', async () => {
    const script: Script = (line, sock) => sock.write(line.startsWith('EHLO') ? '502 5.5.1 no\r\n' : '250 ok\r\n');
    const port = await rawServer(script);
    const conn = await open(port, { security: 'none' });
    expect(conn.extensions.size).toBe(0);
    expect(conn.supportsPipelining).toBe(false);
    const err = await rejection(UpstreamConnection.open(options(port)));
    expect(err.code).toBe('UPSTREAM_PROTOCOL');
  });

  it.each(['250-inj', '250 injected\r\n'])('refuses replies injected in clear after the STARTTLS 220 (%j)', async (injected) => {
    const script: Script = (line, sock) => {
      if (line.startsWith('EHLO')) sock.write('250-fake\r\n250 STARTTLS\r\n');
      else if (line === 'STARTTLS') sock.write(`220 go ahead\r\n${injected}`);
    };
    const port = await rawServer(script);
    const err = await rejection(UpstreamConnection.open(options(port)));
    expect(err.code).toBe('UPSTREAM_TLS');
  });

  it('times out a TLS handshake the server never answers', async () => {
    const script: Script = (line, sock) => {
      if (line.startsWith('EHLO')) sock.write('250-fake\r\n250 STARTTLS\r\n');
      else if (line === 'STARTTLS') sock.write('220 go ahead\r\n'); // then ignores the ClientHello
    };
    const port = await rawServer(script);
    const err = await rejection(UpstreamConnection.open(options(port, { timeouts: { connectMs: 200, commandMs: 3000, dataMs: 3000 } })));
    expect(err.code).toBe('UPSTREAM_TIMEOUT');
  });

  it('drops a connection left inside the SASL exchange', async () => {
    const script: Script = (line, sock) => {
      if (line.startsWith('AUTH') || line === '') sock.write('334 eyJzdGF0dXMiOiI0MDAifQ==\r\n');
      else plainSmtp(line, sock);
    };
    const port = await rawServer(script);
    const conn = await open(port, { security: 'none' });
    const err = (await rejection(conn.authenticate(USER, TOKEN))) as UpstreamAuthError;
    expect(err.challenge).toEqual({ status: '400' });
    expect(conn.isUsable).toBe(false);
  });

  it('closes on an unsolicited 421 while idle and tells onClose', async () => {
    const script: Script = (line, sock) => {
      plainSmtp(line, sock);
      if (line.startsWith('EHLO')) setTimeout(() => sock.end('421 4.4.2 idle timeout\r\n'), 30);
    };
    const port = await rawServer(script);
    const conn = await open(port, { security: 'none' });
    const reason = await new Promise<RelayError | null>((resolve) => conn.onClose(resolve));
    expect(reason?.code).toBe('UPSTREAM_CLOSED');
    expect(reason?.message).toContain('421 4.4.2 idle timeout');
    expect(conn.isUsable).toBe(false);
  });

  it('returns a 421 reply to its command and stops using the connection', async () => {
    const script: Script = (line, sock) => (line.startsWith('MAIL') ? sock.end('421 4.7.0 too many\r\n') : plainSmtp(line, sock));
    const port = await rawServer(script);
    const conn = await open(port, { security: 'none' });
    expect((await conn.mail('a@b')).code).toBe(421);
    expect(conn.isUsable).toBe(false);
  });

  it('stops streaming on a reply sent during the body, drains it and returns the reply', async () => {
    const port = await rawServer(plainSmtp, {
      onBody(_chunk, sock) {
        if (sock.isPaused()) return;
        sock.pause(); // stop reading: the client's writes back up
        sock.write('552 5.3.4 Message too big for me\r\n');
      },
    });
    const conn = await open(port, { security: 'none' });
    await conn.mail('a@b');
    await conn.rcpt('c@d');
    const src = chunked(Buffer.alloc(8 * 1024 * 1024, 'z'), [65536]);
    const res = await conn.data(src);
    expect(res).toEqual({ kind: 'reply', stage: 'early', reply: { code: 552, lines: ['5.3.4 Message too big for me'] }, bytes: 8 * 1024 * 1024 });
    expect(src.done).toBe(true);
    expect(conn.isUsable).toBe(false);
  });

  it('writes a pushed body and its terminator to the socket in the producer\'s own turn, in one write', async () => {
    const port = await rawServer(plainSmtp, { onBody: (chunk, sock) => chunk.includes('\r\n.\r\n') && sock.write('250 2.0.0 queued\r\n') });
    const conn = await open(port, { security: 'none' });
    await conn.mail('a@b');
    await conn.rcpt('c@d');
    const socket = (conn as unknown as { socket: net.Socket }).socket;
    const writes: string[] = [];
    const write = socket.write.bind(socket);
    let inTurn: string[] | null = null;
    const body: MessageBody = {
      open(sink) {
        socket.write = ((chunk: string | Buffer, ...rest: unknown[]) => {
          writes.push(chunk.toString());
          return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
        }) as typeof socket.write;
        sink.write(Buffer.from('Subject: now\r\n\r\n.dot line\r\n'));
        sink.end();
        inTurn = [...writes]; // before any await: what the producer's turn wrote
      },
      drained() {},
    };
    const res = await conn.data(body);
    expect(res).toMatchObject({ stage: 'final', reply: { code: 250 } });
    expect(inTurn).toEqual(['Subject: now\r\n\r\n..dot line\r\n.\r\n']);
  });

  it('asks a pushed body\'s producer to wait while the provider does not read (past 256 KB queued, not before), and resumes it once drained', async () => {
    let bytes = 0;
    let tail = '';
    let paused = false;
    const port = await rawServer(plainSmtp, {
      onBody(chunk, sock) {
        bytes += chunk.length;
        tail = (tail + chunk.toString('latin1', Math.max(0, chunk.length - 5))).slice(-5);
        if (!paused) {
          paused = true;
          sock.pause(); // the kernel's buffers fill, then the connection's own
          setTimeout(() => sock.resume(), 300);
        }
        if (tail === '\r\n.\r\n') sock.write('250 2.0.0 all of it\r\n');
      },
    });
    const conn = await open(port, { security: 'none' });
    await conn.mail('a@b');
    await conn.rcpt('c@d');
    const piece = Buffer.alloc(64 * 1024, 'message line..\r\n'); // 16 bytes a line: the piece ends with CRLF
    const total = 256 * piece.length; // 16 MB: more than loopback's buffers hold
    let sink: BodySink | null = null;
    let pushed = 0;
    const queuedAtWait: number[] = [];
    let drains = 0;
    const push = (): void => {
      while (pushed < total) {
        pushed += piece.length;
        if (!sink!.write(piece)) {
          queuedAtWait.push((conn as unknown as { socket: net.Socket }).socket.writableLength);
          return;
        }
      }
      sink!.end();
    };
    const body: MessageBody = {
      open(s) {
        sink = s;
        push();
      },
      drained() {
        drains++;
        push();
      },
    };
    const res = await conn.data(body);
    expect(res).toMatchObject({ kind: 'reply', stage: 'final', reply: { code: 250 }, bytes: total });
    expect(queuedAtWait.length).toBeGreaterThan(0);
    expect(drains).toBe(queuedAtWait.length);
    for (const queued of queuedAtWait) expect(queued).toBeGreaterThanOrEqual(256 * 1024);
    expect(bytes).toBe(total + 3); // the terminator's ".\r\n" after the last line's CRLF
  });

  it('drains the body and throws UPSTREAM_CLOSED when the server drops during the body', async () => {
    const port = await rawServer(plainSmtp, { onBody: (_c, sock) => sock.destroy() });
    const conn = await open(port, { security: 'none' });
    await conn.mail('a@b');
    await conn.rcpt('c@d');
    const src = chunked(Buffer.alloc(4 * 1024 * 1024, 'z'), [65536]);
    const err = await rejection(conn.data(src));
    expect(err.code).toBe('UPSTREAM_CLOSED');
    expect(src.done).toBe(true);
  });

  it('times out the reply to the end of DATA with dataMs', async () => {
    const port = await rawServer(plainSmtp, { onBody: () => {} }); // reads the body, never replies
    const conn = await open(port, { security: 'none', timeouts: { connectMs: 3000, commandMs: 3000, dataMs: 150 } });
    await conn.mail('a@b');
    await conn.rcpt('c@d');
    const err = await rejection(conn.data(chunked(Buffer.from('hi\r\n'))));
    expect(err.code).toBe('UPSTREAM_TIMEOUT');
    expect(conn.isUsable).toBe(false);
  });

  it('bounds a QUIT queued behind the end of DATA while the body is still coming (that entry has no timer of its own)', async () => {
    const port = await rawServer(plainSmtp, { onBody: () => {} });
    const conn = await open(port, { security: 'none', timeouts: { connectMs: 3000, commandMs: 150, dataMs: 3000 } });
    await conn.mail('a@b');
    await conn.rcpt('c@d');
    let started!: () => void;
    const inBody = new Promise<void>((r) => (started = r));
    let release!: () => void;
    const stalled = new Promise<void>((r) => (release = r));
    const body = {
      async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
        yield Buffer.from('first line\r\n');
        started();
        await stalled; // the MTA went quiet mid-body
      },
    };
    const sending = conn.data(body);
    sending.catch(() => undefined);
    await inBody;
    const t0 = Date.now();
    const quit = await Promise.race([conn.quit().then(() => 'settled'), new Promise((r) => setTimeout(() => r('still waiting'), 1500))]);
    expect(quit).toBe('settled');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(conn.isClosed).toBe(true);
    release();
    expect((await rejection(sending)).code).toBe('UPSTREAM_CLOSED');
  });

  it('times out a reply whose deadline moved on with earlier replies (each from its own command)', async () => {
    // MAIL and RCPT answered at once, DATA never: DATA's timeout counts from RCPT's reply.
    const script: Script = (line, sock) => (line === 'DATA' ? undefined : plainSmtp(line, sock));
    const port = await rawServer(script);
    const conn = await open(port, { security: 'none', timeouts: { connectMs: 3000, commandMs: 200, dataMs: 3000 } });
    await new Promise((r) => setTimeout(r, 120)); // the timer set at EHLO is due in 80 ms
    expect((await conn.mail('a@b')).code).toBe(250);
    expect((await conn.rcpt('c@d')).code).toBe(250);
    const t0 = Date.now();
    const err = await rejection(conn.dataCommand().promise());
    const waited = Date.now() - t0;
    expect(err.code).toBe('UPSTREAM_TIMEOUT');
    expect(err.message).toContain('no reply to DATA');
    expect(waited).toBeGreaterThanOrEqual(190);
    expect(waited).toBeLessThan(1000);
    expect(conn.isUsable).toBe(false);
  });

  it('times out the unanswered DATA of a pipelined group, counting from the reply before it', async () => {
    // The group leaves in one write; MAIL is answered at once, RCPT 120 ms later, DATA never.
    const script: Script = (line, sock) => {
      if (line.startsWith('RCPT')) setTimeout(() => sock.write('250 ok\r\n'), 120);
      else if (line !== 'DATA') plainSmtp(line, sock);
    };
    const port = await rawServer(script);
    const conn = await open(port, { security: 'none', timeouts: { connectMs: 3000, commandMs: 200, dataMs: 3000 } });
    const t0 = Date.now();
    const mail = conn.mail('a@b');
    const rcpt = conn.rcpt('c@d');
    const data = conn.dataCommand().promise();
    expect((await mail).code).toBe(250);
    expect((await rcpt).code).toBe(250);
    const err = await rejection(data);
    const waited = Date.now() - t0;
    expect(err.message).toContain('no reply to DATA');
    expect(waited).toBeGreaterThanOrEqual(120 + 190);
    expect(waited).toBeLessThan(1200);
  });

  it('destroys the connection when the body stream fails, and rethrows its error', async () => {
    const port = await rawServer(plainSmtp, { onBody: () => {} });
    const conn = await open(port, { security: 'none' });
    await conn.mail('a@b');
    await conn.rcpt('c@d');
    const boom = new Error('client went away');
    const body = {
      async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
        yield Buffer.from('partial line\r\n');
        throw boom;
      },
    };
    await expect(conn.data(body)).rejects.toBe(boom);
    expect(conn.isUsable).toBe(false);
  });

  it('treats a malformed reply as a protocol error', async () => {
    const script: Script = (line, sock) => (line.startsWith('NOOP') ? sock.write('hello there\r\n') : plainSmtp(line, sock));
    const port = await rawServer(script);
    const conn = await open(port, { security: 'none' });
    expect((await rejection(conn.noop())).code).toBe('UPSTREAM_PROTOCOL');
    expect(conn.isUsable).toBe(false);
  });
});
