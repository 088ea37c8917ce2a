// The sandbox provider driven by real clients over 127.0.0.1: the token endpoint with fetch, the
// submission server with nodemailer and with a raw socket where the exact bytes on the wire matter.
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import nodemailer from 'nodemailer';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MICROSOFT_SMTP_SCOPE, SandboxProvider, type SandboxAccount } from '../../src/sandbox/index.js';

// ---- helpers -----------------------------------------------------------------------------------

async function refresh(
  url: string,
  params: Record<string, string | null | undefined>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const form = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) form.set(k, v);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function grantParams(account: SandboxAccount, extra: Record<string, string> = {}): Record<string, string | null> {
  return {
    grant_type: 'refresh_token',
    client_id: account.clientId,
    client_secret: account.clientSecret,
    refresh_token: account.refreshToken,
    ...extra,
  };
}

/** The account with its current refresh token (Microsoft's rotates on every grant). */
function current(sandbox: SandboxProvider, account: SandboxAccount): SandboxAccount {
  return { ...account, ...sandbox.state.credentials(account.email) };
}

function xoauth2(user: string, token: string): string {
  return Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');
}

interface Reply {
  code: number;
  /** Lines as sent, e.g. "535-5.7.8 Username ...". */
  raw: string[];
}

/** A minimal SMTP client that shows replies exactly as they arrive. */
class RawSmtp {
  private socket: net.Socket | tls.TLSSocket;
  private buffer = '';
  private pending: string[] = [];
  private replies: Reply[] = [];
  private waiter: (() => void) | null = null;
  closed = false;

  private constructor(socket: net.Socket | tls.TLSSocket) {
    this.socket = socket;
    this.attach();
  }

  static async connect(port: number, options: { implicitTls?: string } = {}): Promise<{ client: RawSmtp; greeting: Reply }> {
    const socket = options.implicitTls
      ? tls.connect({ host: '127.0.0.1', port, ca: options.implicitTls, servername: 'localhost' })
      : net.connect(port, '127.0.0.1');
    const client = new RawSmtp(socket);
    return { client, greeting: await client.read() };
  }

  private attach(): void {
    const onData = (chunk: Buffer): void => {
      this.buffer += chunk.toString('utf8');
      let i: number;
      while ((i = this.buffer.indexOf('\r\n')) >= 0) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        this.pending.push(line);
        if (line.length === 3 || line[3] === ' ') {
          this.replies.push({ code: Number(line.slice(0, 3)), raw: this.pending });
          this.pending = [];
        }
      }
      this.waiter?.();
    };
    this.socket.on('data', onData);
    this.socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    this.socket.on('error', () => undefined);
  }

  /** The next reply, or null if none arrives within `ms` (or the connection closed first). */
  async readWithin(ms: number): Promise<Reply | null> {
    const deadline = Date.now() + ms;
    while (this.replies.length === 0 && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
    return this.replies.shift() ?? null;
  }

  async read(ms = 2000): Promise<Reply> {
    const reply = await this.readWithin(ms);
    if (!reply) throw new Error(this.closed ? 'connection closed without a reply' : 'no reply in time');
    return reply;
  }

  send(line: string): void {
    this.socket.write(line + '\r\n');
  }

  async command(line: string): Promise<Reply> {
    this.send(line);
    return this.read();
  }

  async startTls(ca: string): Promise<void> {
    const reply = await this.command('STARTTLS');
    expect(reply.code).toBe(220);
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = tls.connect({ socket: plain as net.Socket, ca, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.attach();
  }

  /** Resolves once the server has closed the connection (or after `ms`). */
  async waitClosed(ms = 2000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A raw client that is through STARTTLS, EHLO and (with a token) AUTH. */
async function sessionFor(
  sandbox: SandboxProvider,
  ca: string,
  auth?: { user: string; token: string },
): Promise<RawSmtp> {
  const { client } = await RawSmtp.connect(sandbox.smtpPort);
  await client.command('EHLO relay.test');
  await client.startTls(ca);
  await client.command('EHLO relay.test');
  if (auth) expect((await client.command(`AUTH XOAUTH2 ${xoauth2(auth.user, auth.token)}`)).code).toBe(235);
  return client;
}

const DOUBLED_ENHANCED = /^\d{3}[ -][245]\.\d+\.\d+ [245]\.\d+\.\d+/;

// ---- token endpoint ------------------------------------------------------------------------------

describe('sandbox token endpoint', () => {
  let sandbox: SandboxProvider;
  let google: SandboxAccount;
  let microsoft: SandboxAccount;

  beforeAll(async () => {
    sandbox = await SandboxProvider.start();
    google = sandbox.addAccount({ email: 'Sender@Gmail.test', kind: 'google' });
    microsoft = sandbox.addAccount({ email: 'sender@outlook.test', kind: 'microsoft' });
  });
  afterEach(() => sandbox.reset());
  afterAll(async () => {
    await sandbox.stop();
  });

  it('grants an access token for a Google refresh token, shaped like Google answers', async () => {
    const { status, body } = await refresh(google.tokenUrl, grantParams(google));
    expect(status).toBe(200);
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'scope', 'token_type']);
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 3600, scope: 'https://mail.google.com/' });
    expect(String(body.access_token)).toMatch(/^sbx-at-/);
    expect(sandbox.state.checkAccessToken(String(body.access_token))).toEqual({ email: 'sender@gmail.test', expired: false, scope: 'https://mail.google.com/', app: false });
    // Google does not rotate: the same refresh token keeps working.
    expect((await refresh(google.tokenUrl, grantParams(google))).status).toBe(200);
  });

  it('accepts client credentials in HTTP Basic as well as in the body', async () => {
    const res = await fetch(google.tokenUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: 'Basic ' + Buffer.from(`${google.clientId}:${google.clientSecret}`).toString('base64'),
      },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: google.refreshToken }),
    });
    expect(res.status).toBe(200);
  });

  it('answers invalid_client (401) to a wrong secret and invalid_grant (400) to an unknown refresh token', async () => {
    const wrongSecret = await refresh(google.tokenUrl, grantParams(google, { client_secret: 'nope' }));
    expect(wrongSecret.status).toBe(401);
    expect(wrongSecret.body.error).toBe('invalid_client');
    const unknown = await refresh(google.tokenUrl, grantParams(google, { refresh_token: 'sbx-rt-unknown' }));
    expect(unknown).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    const badGrant = await refresh(google.tokenUrl, grantParams(google, { grant_type: 'password' }));
    expect(badGrant).toMatchObject({ status: 400, body: { error: 'unsupported_grant_type' } });
  });

  it('requires the SMTP.Send scope from Microsoft clients and records the scope it received', async () => {
    const missing = await refresh(microsoft.tokenUrl, grantParams(microsoft));
    expect(missing.status).toBe(400);
    expect(missing.body.error).toBe('invalid_scope');
    expect(missing.body.error_codes).toEqual([70011]);

    // Graph's Mail.Send is accepted (upstream: graph); a scope that sends no mail is not.
    const wrong = await refresh(microsoft.tokenUrl, grantParams(microsoft, { scope: 'https://graph.microsoft.com/User.Read' }));
    expect(wrong.body.error).toBe('invalid_scope');

    const scope = `${MICROSOFT_SMTP_SCOPE} offline_access`;
    const ok = await refresh(microsoft.tokenUrl, grantParams(microsoft, { scope }));
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ token_type: 'Bearer', scope: MICROSOFT_SMTP_SCOPE, expires_in: 3600 });

    const log = sandbox.tokens.log(microsoft.email);
    expect(log.map((r) => r.scope)).toEqual([null, 'https://graph.microsoft.com/User.Read', scope]);
    expect(log.map((r) => r.status)).toEqual([400, 400, 200]);
  });

  it('rotates Microsoft refresh tokens: the new one works, the old one is then invalid_grant', async () => {
    const account = sandbox.addAccount({ email: 'rotating@outlook.test', kind: 'microsoft' });
    const scope = `${MICROSOFT_SMTP_SCOPE} offline_access`;
    const first = await refresh(account.tokenUrl, grantParams(account, { scope }));
    expect(first.status).toBe(200);
    const rotated = String(first.body.refresh_token);
    expect(rotated).toMatch(/^sbx-rt-/);
    expect(rotated).not.toBe(account.refreshToken);
    expect(sandbox.state.credentials(account.email).refreshToken).toBe(rotated);

    const old = await refresh(account.tokenUrl, grantParams(account, { scope }));
    expect(old).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    // The old token is still attributed to its account, so it is counted there.
    expect(sandbox.tokens.requests(account.email)).toBe(2);

    const next = await refresh(account.tokenUrl, grantParams(account, { scope, refresh_token: rotated }));
    expect(next.status).toBe(200);
  });

  it('answers invalid_grant after revokeGrant', async () => {
    const account = sandbox.addAccount({ email: 'revoked@gmail.test', kind: 'google' });
    expect((await refresh(account.tokenUrl, grantParams(account))).status).toBe(200);
    sandbox.tokens.revokeGrant(account.email);
    const res = await refresh(account.tokenUrl, grantParams(account));
    expect(res).toMatchObject({ status: 400, body: { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' } });
  });

  it('injects a 500 a limited number of times, then answers normally', async () => {
    sandbox.tokens.injectFault({ status: 500 }, { times: 2 });
    expect((await refresh(google.tokenUrl, grantParams(google))).status).toBe(500);
    expect((await refresh(google.tokenUrl, grantParams(google))).status).toBe(500);
    expect((await refresh(google.tokenUrl, grantParams(google))).status).toBe(200);
    expect(sandbox.tokens.log().map((r) => r.fault)).toEqual(['status 500', 'status 500', null]);
  });

  it('injects invalid_grant for one account only', async () => {
    sandbox.tokens.injectFault({ error: 'invalid_grant' }, { email: google.email });
    expect(await refresh(google.tokenUrl, grantParams(google))).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    const other = await refresh(microsoft.tokenUrl, grantParams(current(sandbox, microsoft), { scope: MICROSOFT_SMTP_SCOPE }));
    expect(other.status).toBe(200);
    sandbox.tokens.clearFaults(google.email);
    expect((await refresh(google.tokenUrl, grantParams(google))).status).toBe(200);
  });

  it('stalls requests with delay faults and a fixed latency', async () => {
    sandbox.tokens.injectFault({ delayMs: 250 }, { times: 1 });
    let started = Date.now();
    expect((await refresh(google.tokenUrl, grantParams(google))).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(240);

    sandbox.tokens.setLatency(150);
    started = Date.now();
    expect((await refresh(google.tokenUrl, grantParams(google))).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('counts a stalled request on arrival, and a client can give up on it', async () => {
    sandbox.tokens.injectFault({ delayMs: Infinity }, { times: 1 });
    const before = sandbox.tokens.requests(google.email);
    await expect(
      fetch(google.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(grantParams(google) as Record<string, string>),
        signal: AbortSignal.timeout(200),
      }),
    ).rejects.toThrow();
    expect(sandbox.tokens.requests(google.email)).toBe(before + 1);
  });

  it('drops the connection without an answer on a drop fault', async () => {
    sandbox.tokens.injectFault({ drop: true }, { times: 1 });
    await expect(refresh(google.tokenUrl, grantParams(google))).rejects.toThrow();
  });

  it('counts requests per account and in total, and logs no secret', async () => {
    await refresh(google.tokenUrl, grantParams(google));
    await refresh(google.tokenUrl, grantParams(google));
    const ms = await refresh(microsoft.tokenUrl, grantParams(current(sandbox, microsoft), { scope: MICROSOFT_SMTP_SCOPE }));
    expect(ms.status).toBe(200);
    expect(sandbox.tokens.requests(google.email)).toBe(2);
    expect(sandbox.tokens.requests(microsoft.email)).toBe(1);
    expect(sandbox.tokens.requests()).toBe(3);

    const logged = JSON.stringify(sandbox.tokens.log());
    const secrets = [google.clientSecret, google.refreshToken, microsoft.clientSecret, microsoft.refreshToken];
    secrets.push(sandbox.state.credentials(microsoft.email).refreshToken);
    secrets.push(String(ms.body.access_token), String(ms.body.refresh_token));
    for (const secret of secrets) expect(logged).not.toContain(String(secret));
  });
});

// ---- submission server ---------------------------------------------------------------------------

describe('sandbox submission server (Google style)', () => {
  let sandbox: SandboxProvider;
  let ca: string;
  let account: SandboxAccount;

  beforeAll(async () => {
    sandbox = await SandboxProvider.start();
    ca = sandbox.caPem();
    account = sandbox.addAccount({ email: 'sender@gmail.test', kind: 'google' });
  });
  afterEach(() => sandbox.reset());
  afterAll(async () => {
    await sandbox.stop();
  });

  const transport = (user: string, accessToken: string) =>
    nodemailer.createTransport({
      host: '127.0.0.1',
      port: sandbox.smtpPort,
      secure: false,
      requireTLS: true,
      // No servername: the certificate's IP SAN must cover 127.0.0.1, as the relay connects by address.
      tls: { ca },
      auth: { type: 'OAuth2', user, accessToken },
    });

  it('accepts a message from nodemailer with a token from the token endpoint, keeping its exact bytes', async () => {
    const grant = await refresh(account.tokenUrl, grantParams(account));
    const raw = Buffer.from(
      'From: sender@gmail.test\r\nTo: rcpt@example.org\r\nSubject: bytes\r\n\r\n.leading dot\r\n8bit: h\u00e9\r\nlast line\r\n',
      'utf8',
    );
    const info = await transport(account.email, String(grant.body.access_token)).sendMail({
      envelope: { from: 'sender@gmail.test', to: ['rcpt@example.org'] },
      raw,
    });
    expect(info.response).toMatch(/^250 2\.0\.0 OK {2}\d+ sbx\w+ - gsmtp$/);

    expect(sandbox.messages).toHaveLength(1);
    const message = sandbox.messages[0]!;
    expect(message).toMatchObject({
      authUser: 'sender@gmail.test',
      mailFrom: 'sender@gmail.test',
      rcptTo: ['rcpt@example.org'],
      size: raw.length,
      secure: true,
    });
    expect(message.body.equals(raw)).toBe(true);
    expect(message.sha256).toBe(createHash('sha256').update(raw).digest('hex'));
    expect(sandbox.smtp.stats()).toMatchObject({ authSuccess: 1, authFailure: 0, messagesAccepted: 1 });
  });

  it('refuses a token presented with another user= (535)', async () => {
    const token = sandbox.state.issueAccessToken(account.email);
    const err = await transport('someone-else@gmail.test', token)
      .sendMail({ envelope: { from: 'a@example.org', to: ['b@example.org'] }, raw: 'Subject: x\r\n\r\nx\r\n' })
      .then(
        () => null,
        (e: unknown) => e as { responseCode?: number },
      );
    expect(err?.responseCode).toBe(535);
    expect(sandbox.messages).toHaveLength(0);
    // nodemailer answers the 334 challenge, reads the 535, then retries once with the same token.
    const outcomes = sandbox.smtp.authAttempts().map((a) => a.outcome);
    expect(outcomes.length).toBeGreaterThanOrEqual(1);
    expect(new Set(outcomes)).toEqual(new Set(['user-mismatch']));
  });

  it("speaks Gmail's EHLO and its 334 error challenge on the wire", async () => {
    const { client, greeting } = await RawSmtp.connect(sandbox.smtpPort);
    expect(greeting.code).toBe(220);
    const plainEhlo = await client.command('EHLO relay.test');
    expect(plainEhlo.raw).toContain('250-STARTTLS');
    // Like Gmail, no AUTH before TLS, and AUTH/MAIL are refused there.
    expect(plainEhlo.raw.some((l) => l.includes('AUTH'))).toBe(false);
    expect((await client.command(`AUTH XOAUTH2 ${xoauth2(account.email, 'x')}`)).raw).toEqual([
      '530 5.7.0 Must issue a STARTTLS command first.',
    ]);

    await client.startTls(ca);
    const ehlo = await client.command('EHLO relay.test');
    expect(ehlo.raw.slice(1).map((l) => l.slice(4))).toEqual(
      expect.arrayContaining(['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES', 'AUTH XOAUTH2', 'SIZE 35882577']),
    );
    expect(ehlo.raw.some((l) => l.includes('STARTTLS'))).toBe(false);

    expect((await client.command('MAIL FROM:<sender@gmail.test>')).raw).toEqual(['530 5.7.0 Authentication Required.']);

    const challenge = await client.command(`AUTH XOAUTH2 ${xoauth2(account.email, 'sbx-at-not-issued')}`);
    expect(challenge.code).toBe(334);
    const json = JSON.parse(Buffer.from(challenge.raw[0]!.slice(4), 'base64').toString('utf8')) as unknown;
    expect(json).toEqual({ status: '400', schemes: 'Bearer', scope: 'https://mail.google.com/' });
    const final = await client.command('');
    expect(final.code).toBe(535);
    expect(final.raw[0]).toBe('535-5.7.8 Username and Password not accepted. For more information, go to');
    expect(final.raw[1]).toMatch(/^535 5\.7\.8 {2}https:\/\/support\.google\.com\/mail\/\?p=BadCredentials /);

    // An expired token goes the same way; a good one then authenticates on the same connection.
    const expired = sandbox.state.issueAccessToken(account.email);
    sandbox.state.expireAccessTokens(account.email);
    expect((await client.command(`AUTH XOAUTH2 ${xoauth2(account.email, expired)}`)).code).toBe(334);
    expect((await client.command('')).code).toBe(535);
    const good = sandbox.state.issueAccessToken(account.email);
    expect((await client.command(`AUTH XOAUTH2 ${xoauth2(account.email, good)}`)).raw).toEqual([
      '235 2.7.0 Authentication successful',
    ]);
    expect(sandbox.smtp.authAttempts().map((a) => a.outcome)).toEqual(['unknown-token', 'expired', 'ok']);
    await client.command('QUIT');
    client.destroy();
  });

  it('fails one recipient at RCPT with the provider reply, and delivers to the others', async () => {
    sandbox.smtp.addFault({ at: 'rcpt', recipient: 'missing@example.org', code: 550 });
    const token = sandbox.state.issueAccessToken(account.email);
    const info = await transport(account.email, token).sendMail({
      envelope: { from: 'sender@gmail.test', to: ['missing@example.org', 'present@example.org'] },
      raw: 'Subject: partial\r\n\r\nbody\r\n',
    });
    expect(info.rejected).toEqual(['missing@example.org']);
    expect(info.accepted).toEqual(['present@example.org']);
    const rejected = (info as unknown as { rejectedErrors?: Array<{ response?: string }> }).rejectedErrors;
    expect(rejected?.[0]?.response).toBe('550 5.1.1 The email account that you tried to reach does not exist.');
    expect(sandbox.messages.map((m) => m.rcptTo)).toEqual([['present@example.org']]);
  });

  it('fails a deterministic fraction of RCPTs, never doubling enhanced codes', async () => {
    sandbox.smtp.addFault({ at: 'rcpt', fraction: 0.5, code: 451 });
    const client = await sessionFor(sandbox, ca, { user: account.email, token: sandbox.state.issueAccessToken(account.email) });
    expect((await client.command('MAIL FROM:<sender@gmail.test>')).code).toBe(250);
    const replies: Reply[] = [];
    for (let i = 1; i <= 4; i++) replies.push(await client.command(`RCPT TO:<r${i}@example.org>`));
    expect(replies.map((r) => r.code)).toEqual([250, 451, 250, 451]);
    expect(replies[1]!.raw).toEqual(['451 4.3.0 Mail server temporarily rejected message.']);
    for (const reply of replies) for (const line of reply.raw) expect(line).not.toMatch(DOUBLED_ENHANCED);
    expect(sandbox.smtp.listFaults()[0]).toMatchObject({ matched: 4, fired: 2 });
    client.destroy();
  });

  it('does not record a message dropped after its last byte (dataDrop)', async () => {
    sandbox.smtp.addFault({ at: 'data', action: 'drop', times: 1 });
    const token = sandbox.state.issueAccessToken(account.email);
    await expect(
      transport(account.email, token).sendMail({
        envelope: { from: 'sender@gmail.test', to: ['rcpt@example.org'] },
        raw: 'Subject: lost\r\n\r\nbody\r\n',
      }),
    ).rejects.toThrow();
    expect(sandbox.messages).toHaveLength(0);
    expect(sandbox.smtp.stats().messagesDropped).toBe(1);
  });

  it('answers the end of DATA with an injected code', async () => {
    sandbox.smtp.addFault({ at: 'data', code: 554, text: 'Message rejected for policy reasons.', enhanced: '5.7.1' });
    const token = sandbox.state.issueAccessToken(account.email);
    const err = (await transport(account.email, token)
      .sendMail({ envelope: { from: 'sender@gmail.test', to: ['rcpt@example.org'] }, raw: 'Subject: x\r\n\r\nx\r\n' })
      .catch((e: unknown) => e)) as { response?: string };
    expect(err.response).toBe('554 5.7.1 Message rejected for policy reasons.');
    expect(sandbox.messages).toHaveLength(0);
  });

  it('closes the connection with 421 4.7.0 at the MAIL after closeAfterMessages', async () => {
    sandbox.smtp.setCloseAfterMessages(1);
    const client = await sessionFor(sandbox, ca, { user: account.email, token: sandbox.state.issueAccessToken(account.email) });
    await client.command('MAIL FROM:<sender@gmail.test>');
    await client.command('RCPT TO:<rcpt@example.org>');
    expect((await client.command('DATA')).code).toBe(354);
    expect((await client.command('Subject: one\r\n\r\nbody\r\n.')).code).toBe(250);
    const reply = await client.command('MAIL FROM:<sender@gmail.test>');
    expect(reply.code).toBe(421);
    expect(reply.raw[0]).toMatch(/^421 4\.7\.0 Try again later, closing connection\./);
    expect(await client.waitClosed()).toBe(true);
    const info = sandbox.smtp.connectionLog().at(-1);
    expect(info).toMatchObject({ messages: 1, mailCommands: 1, authUser: account.email });
  });

  it('stalls at a command without closing, until dropAllConnections()', async () => {
    sandbox.smtp.addFault({ at: 'mail', action: 'stall' });
    const client = await sessionFor(sandbox, ca, { user: account.email, token: sandbox.state.issueAccessToken(account.email) });
    client.send('MAIL FROM:<sender@gmail.test>');
    expect(await client.readWithin(300)).toBeNull();
    expect(client.closed).toBe(false);
    expect(sandbox.smtp.dropAllConnections()).toBe(1);
    expect(await client.waitClosed()).toBe(true);
  });

  it('injects an AUTH failure for one user, after letting the first attempts through', async () => {
    sandbox.smtp.addFault({ at: 'auth', user: account.email, skip: 1, times: 1 });
    const token = sandbox.state.issueAccessToken(account.email);
    const first = await sessionFor(sandbox, ca, { user: account.email, token });
    first.destroy();
    const second = await sessionFor(sandbox, ca);
    expect((await second.command(`AUTH XOAUTH2 ${xoauth2(account.email, token)}`)).raw).toEqual([
      '454 4.7.0 Cannot authenticate due to a temporary system problem. Try again later.',
    ]);
    expect((await second.command(`AUTH XOAUTH2 ${xoauth2(account.email, token)}`)).code).toBe(235);
    expect(sandbox.smtp.authAttempts().map((a) => a.outcome)).toEqual(['ok', 'fault', 'ok']);
    second.destroy();
  });

  it('refuses the session at connect with an injected greeting', async () => {
    sandbox.smtp.addFault({ at: 'connect', times: 1 });
    const { client, greeting } = await RawSmtp.connect(sandbox.smtpPort);
    expect(greeting.raw).toEqual(['421 4.7.0 Try again later, closing connection.']);
    expect(await client.waitClosed()).toBe(true);
  });
});

describe('sandbox submission server (Microsoft style, other security modes)', () => {
  let sandbox: SandboxProvider;
  let stripped: SandboxProvider;
  let implicit: SandboxProvider;
  let ca: string;

  beforeAll(async () => {
    [sandbox, stripped, implicit] = await Promise.all([
      SandboxProvider.start({ submission: { style: 'microsoft' } }),
      SandboxProvider.start({ submission: { offerStartTls: false } }),
      SandboxProvider.start({ submission: { security: 'tls' } }),
    ]);
    ca = sandbox.caPem();
  });
  afterAll(async () => {
    await Promise.all([sandbox.stop(), stripped.stop(), implicit.stop()]);
  });

  it('answers a bad token with 535 5.7.3 and no challenge', async () => {
    const account = sandbox.addAccount({ email: 'sender@outlook.test', kind: 'microsoft' });
    const client = await sessionFor(sandbox, ca);
    const reply = await client.command(`AUTH XOAUTH2 ${xoauth2(account.email, 'sbx-at-bogus')}`);
    expect(reply.raw).toHaveLength(1);
    expect(reply.raw[0]).toMatch(/^535 5\.7\.3 Authentication unsuccessful \[/);
    expect((await client.command('MAIL FROM:<sender@outlook.test>')).raw[0]).toBe(
      '530 5.7.57 Client not authenticated to send mail.',
    );
    client.destroy();
  });

  it('can stop offering STARTTLS (downgrade) and then accepts AUTH in clear', async () => {
    const account = stripped.addAccount({ email: 'plain@gmail.test', kind: 'google' });
    const { client } = await RawSmtp.connect(stripped.smtpPort);
    const ehlo = await client.command('EHLO relay.test');
    expect(ehlo.raw.some((l) => l.includes('STARTTLS'))).toBe(false);
    expect((await client.command('STARTTLS')).code).toBe(500);
    const token = stripped.state.issueAccessToken(account.email);
    expect((await client.command(`AUTH XOAUTH2 ${xoauth2(account.email, token)}`)).code).toBe(235);
    expect(stripped.smtp.authAttempts()).toMatchObject([{ ok: true, secure: false }]);
    client.destroy();
  });

  it('speaks implicit TLS when security is tls', async () => {
    const { client, greeting } = await RawSmtp.connect(implicit.smtpPort, { implicitTls: ca });
    expect(greeting.code).toBe(220);
    const ehlo = await client.command('EHLO relay.test');
    expect(ehlo.raw.some((l) => l.includes('AUTH XOAUTH2'))).toBe(true);
    expect(ehlo.raw.some((l) => l.includes('STARTTLS'))).toBe(false);
    client.destroy();
  });
});
