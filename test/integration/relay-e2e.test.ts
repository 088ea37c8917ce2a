// The relay end to end: real SMTP clients → relay → sandbox provider, all on 127.0.0.1.
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, relayClient, sha256, startStack, type Stack } from '../helpers/stack.js';

const PASSWORD = 'inbound-secret-pw-1';

describe('relay end to end', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [
        { email: 'alice@gmail.test', kind: 'google', password: PASSWORD, senders: ['alice@gmail.test', '*@alice-news.test'], extra: { max_connections: 3 } },
        { email: 'bob@outlook.test', kind: 'microsoft', senders: ['*@shared.test'] },
        { email: 'carol@outlook.test', kind: 'microsoft', senders: ['boss@shared.test'] },
      ],
    });
  });
  afterAll(() => stack.stop());
  afterEach(() => stack.sandbox.smtp.clearFaults());

  it('the first message after start-up costs no token request and no new upstream connection', async () => {
    const tokens = stack.sandbox.tokens.requests();
    const opened = stack.sandbox.smtp.stats().connectionsOpened;
    expect(tokens).toBe(3); // one per account, at start-up
    expect(opened).toBe(3); // min_idle 1 per account, at start-up
    const client = relayClient(stack.port, { user: 'alice@gmail.test', pass: PASSWORD });
    const raw = rawMessage('alice@gmail.test', ['x@example.net'], 'first');
    const info = await client.sendMail({ envelope: { from: 'alice@gmail.test', to: ['x@example.net'] }, raw });
    client.close();
    expect(info.response).toMatch(/^250 /);
    expect(stack.sandbox.tokens.requests()).toBe(tokens);
    // It went over a connection opened at start-up (the pool may open a spare behind it, off its path).
    const startup = new Set(stack.sandbox.smtp.connectionLog().slice(0, opened).map((c) => c.id));
    expect(startup.has(stack.sandbox.messages.find((m) => m.sha256 === sha256(raw))!.connectionId)).toBe(true);
  });

  it('a message from a real client library arrives byte-identical, with its envelope and AUTH user = the account', async () => {
    const client = relayClient(stack.port, { user: 'ALICE@gmail.test', pass: PASSWORD });
    const body = [
      'Line one',
      '.starts with a dot',
      '..two dots',
      '.',
      'trailing spaces   ',
      'ünïcödé 8-bit text',
      'x'.repeat(998),
    ];
    const raw = rawMessage('news@alice-news.test', ['r1@example.net', 'r2@example.org'], 'identical', body);
    const info = await client.sendMail({ envelope: { from: 'news@alice-news.test', to: ['r1@example.net', 'r2@example.org'] }, raw });
    client.close();
    expect(info.accepted).toEqual(['r1@example.net', 'r2@example.org']);
    const got = stack.sandbox.messages.find((m) => m.sha256 === sha256(raw));
    expect(got, 'message with identical bytes upstream').toBeDefined();
    expect(got!.body.equals(Buffer.from(raw))).toBe(true);
    expect(got!.mailFrom).toBe('news@alice-news.test');
    expect(got!.rcptTo).toEqual(['r1@example.net', 'r2@example.org']);
    expect(got!.authUser).toBe('alice@gmail.test');
    // The provider's own reply text reaches the client.
    expect(info.response).toMatch(/^250 2\.0\.0 OK .* - gsmtp$/);
  });

  it('per-recipient fidelity: the provider refuses one of three RCPTs; the client sees that reply and two 250s', async () => {
    stack.sandbox.smtp.addFault({ at: 'rcpt', recipient: 'gone@example.net', code: 550, enhanced: '5.1.1', text: 'The email account that you tried to reach does not exist' });
    const { client } = await RawSmtp.connect(stack.port);
    expect((await client.cmd('EHLO mta.test')).code).toBe(250);
    expect((await client.cmd('MAIL FROM:<boss@shared.test>')).code).toBe(250);
    const r1 = await client.cmd('RCPT TO:<a@example.net>');
    const r2 = await client.cmd('RCPT TO:<gone@example.net>');
    const r3 = await client.cmd('RCPT TO:<b@example.net>');
    expect(r1.code).toBe(250);
    expect(line(r2)).toBe('550 5.1.1 The email account that you tried to reach does not exist');
    expect(r3.code).toBe(250);
    expect((await client.cmd('DATA')).code).toBe(354);
    const raw = rawMessage('boss@shared.test', ['a@example.net', 'b@example.net'], 'fidelity');
    client.write(raw + '.\r\n');
    const final = await client.read();
    expect(final.code).toBe(250);
    await client.cmd('QUIT');
    client.close();
    const got = stack.sandbox.messages.find((m) => m.sha256 === sha256(raw));
    expect(got?.rcptTo).toEqual(['a@example.net', 'b@example.net']);
    // Routed by MAIL FROM: the exact sender boss@shared.test belongs to carol, not to bob's *@shared.test.
    expect(got?.authUser).toBe('carol@outlook.test');
  });

  it('a provider refusal without an enhanced code reaches the client with the generic one of its class', async () => {
    stack.sandbox.smtp.addFault({ at: 'rcpt', recipient: 'plain@example.net', code: 550, enhanced: null, text: 'No such user here' });
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    expect((await client.cmd('MAIL FROM:<boss@shared.test>')).code).toBe(250);
    expect(line(await client.cmd('RCPT TO:<plain@example.net>'))).toBe('550 5.0.0 No such user here');
    client.close();
  });

  it('routes a trusted client by MAIL FROM: exact address beats *@domain, unknown sender gets 550 5.7.1', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    expect((await client.cmd('MAIL FROM:<someone@shared.test>')).code).toBe(250);
    await client.cmd('RCPT TO:<a@example.net>');
    await client.cmd('DATA');
    const raw = rawMessage('someone@shared.test', ['a@example.net'], 'domain-route');
    client.write(raw + '.\r\n');
    expect((await client.read()).code).toBe(250);
    const unknown = await client.cmd('MAIL FROM:<stranger@elsewhere.test>');
    expect(line(unknown)).toMatch(/^550 5\.7\.1 /);
    client.close();
    expect(stack.sandbox.messages.find((m) => m.sha256 === sha256(raw))?.authUser).toBe('bob@outlook.test');
  });

  it('an authenticated account may only use its senders: others get 550 5.7.1 before anything goes upstream', async () => {
    // MAIL commands, not connections: the pool may be opening a spare in the background meanwhile.
    const mailCommands = () => stack.sandbox.smtp.connectionLog().reduce((n, c) => n + c.mailCommands, 0);
    const before = mailCommands();
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    const auth = await client.cmd('AUTH PLAIN ' + Buffer.from(`\0alice@gmail.test\0${PASSWORD}`).toString('base64'));
    expect(auth.code).toBe(235);
    expect(line(await client.cmd('MAIL FROM:<boss@shared.test>'))).toMatch(/^550 5\.7\.1 /);
    client.close();
    expect(mailCommands()).toBe(before);
  });

  it('a wrong password gets 535 5.7.8', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    const r = await client.cmd('AUTH PLAIN ' + Buffer.from('\0alice@gmail.test\0wrong').toString('base64'));
    expect(line(r)).toMatch(/^535 5\.7\.8 /);
    client.close();
  });

  it("EHLO advertises PIPELINING, the provider's SIZE, 8BITMIME, ENHANCEDSTATUSCODES and AUTH PLAIN LOGIN (no STARTTLS without inbound.tls)", async () => {
    const { client, greeting } = await RawSmtp.connect(stack.port);
    expect(greeting.code).toBe(220);
    const ehlo = await client.cmd('EHLO mta.test');
    client.close();
    const ext = ehlo.lines.slice(1);
    expect(ext).toContain('PIPELINING');
    expect(ext).toContain('8BITMIME');
    expect(ext).toContain('ENHANCEDSTATUSCODES');
    // Smaller than inbound.max_message_bytes (36700160): the sandbox's Gmail-like limit.
    expect(ext).toContain('SIZE 35882577');
    expect(ext).toContain('AUTH PLAIN LOGIN');
    expect(ext).not.toContain('STARTTLS');
  });

  it('200 messages over 10 inbound connections for one account use at most max_connections upstream and no token request', async () => {
    const tokens = stack.sandbox.tokens.requests();
    const before = stack.sandbox.smtp.connectionLog().filter((c) => c.authUser === 'alice@gmail.test').length;
    const clients = Array.from({ length: 10 }, () => relayClient(stack.port, { user: 'alice@gmail.test', pass: PASSWORD }));
    const sent: string[] = [];
    await Promise.all(
      clients.map(async (client, c) => {
        for (let i = 0; i < 20; i++) {
          const raw = rawMessage('alice@gmail.test', ['bulk@example.net'], `bulk-${c}-${i}`);
          sent.push(sha256(raw));
          const info = await client.sendMail({ envelope: { from: 'alice@gmail.test', to: ['bulk@example.net'] }, raw });
          expect(info.response).toMatch(/^250 /);
        }
        client.close();
      }),
    );
    const arrived = new Set(stack.sandbox.messages.map((m) => m.sha256));
    expect(sent.filter((h) => arrived.has(h))).toHaveLength(200);
    const log = stack.sandbox.smtp.connectionLog().filter((c) => c.authUser === 'alice@gmail.test');
    expect(log.length - before).toBeLessThanOrEqual(3); // opened during the burst
    expect(log.filter((c) => c.closedAt === null).length).toBeLessThanOrEqual(3); // open at once, max_connections
    expect(stack.sandbox.tokens.requests() - tokens).toBe(0);
  });
});

describe('relay without trust', () => {
  it('an unauthenticated client outside trusted_networks gets 530 at MAIL FROM and nothing goes upstream', async () => {
    const stack = await startStack({
      accounts: [{ email: 'dave@gmail.test', kind: 'google', senders: ['dave@gmail.test'] }],
      overrides: { inbound: { trusted_networks: ['10.0.0.0/8'] } },
    });
    try {
      const { client } = await RawSmtp.connect(stack.port);
      await client.cmd('EHLO mta.test');
      expect(line(await client.cmd('MAIL FROM:<dave@gmail.test>'))).toBe('530 5.7.0 Authentication required');
      client.close();
      expect(stack.sandbox.messages).toHaveLength(0);
      expect(stack.sandbox.smtp.stats().connectionsOpened).toBe(1); // only the min_idle one
    } finally {
      await stack.stop();
    }
  });
});

describe('relay whose HTTP port is taken', () => {
  it('still relays mail, without the admin endpoints', async () => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const taken = (squatter.address() as AddressInfo).port;
    const stack = await startStack({
      accounts: [{ email: 'http@gmail.test', kind: 'google', senders: ['http@gmail.test'] }],
      overrides: { http: { host: '127.0.0.1', port: taken } },
    });
    try {
      expect(stack.app.adminPort).toBeNull();
      const client = relayClient(stack.port);
      const raw = rawMessage('http@gmail.test', ['x@example.net'], 'http-taken');
      const info = await client.sendMail({ envelope: { from: 'http@gmail.test', to: ['x@example.net'] }, raw });
      client.close();
      expect(info.response).toMatch(/^250 /);
      expect(stack.sandbox.messages.some((m) => m.sha256 === sha256(raw))).toBe(true);
    } finally {
      await stack.stop();
      squatter.close();
    }
  });
});
