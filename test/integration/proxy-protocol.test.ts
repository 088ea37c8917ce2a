// Issue 21, item 5: behind a TCP balancer the relay sees each client's real address. Debian's
// HAProxy runs in front (mode tcp, `send-proxy` and `send-proxy-v2`, its own temporary config on
// 127.0.0.1 ports); clients connect to it from other loopback addresses. A trusted client behind
// it is trusted, a stranger is not, the per-address caps and the AUTH lockout count the real
// addresses; the PROXY listener takes connections from the balancer only, and the plain listener
// does not believe a PROXY header.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SANDBOX_TLS_FILES } from '../../src/sandbox/index.js';
import { captureLog } from '../helpers/log-capture.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, startStack, type Stack } from '../helpers/stack.js';
import { sleep, until } from '../helpers/wait.js';

const HAPROXY = '/usr/sbin/haproxy';
const A = 'a@gmail.test';
const PASSWORD = 'pw-a-0123456789';
const TRUSTED = '127.0.0.2';
const STRANGER = '127.0.0.3';
const OTHER = '127.0.0.4';
const CA = readFileSync(SANDBOX_TLS_FILES.ca);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A connection that the relay closed without a word (the balancer check), or its first bytes. */
function firstBytes(port: number, localAddress: string, send?: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    const got: Buffer[] = [];
    socket.on('data', (c: Buffer) => got.push(c));
    socket.on('error', () => undefined);
    if (send) socket.write(send);
    socket.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    setTimeout(() => socket.destroy(), 3000).unref();
  });
}

describe('PROXY protocol behind HAProxy', () => {
  const log = captureLog('info');
  let stack: Stack;
  let haproxy: ChildProcess;
  let dir: string;
  const front = { v1: 0, v2: 0, tls: 0 };
  let proxyPort: number;

  beforeAll(async () => {
    stack = await startStack({
      logger: log.logger,
      accounts: [{ email: A, kind: 'google', password: PASSWORD, senders: [A] }],
      overrides: {
        inbound: {
          // The balancer (127.0.0.1) is not trusted: only a client it names can be.
          trusted_networks: [`${TRUSTED}/32`],
          max_connections_per_address: 2,
          auth_failures_before_lockout: 1,
          auth_failure_delay_ms: 0,
          tls: { cert_file: SANDBOX_TLS_FILES.cert, key_file: SANDBOX_TLS_FILES.key },
        },
        listeners: [
          { host: '127.0.0.1', port: 0, proxy_protocol: { from: ['127.0.0.1/32'], timeout_ms: 1000 } },
          { host: '127.0.0.1', port: 0, implicit_tls: true, proxy_protocol: { from: ['127.0.0.1/32'] } },
        ],
      },
    });
    [proxyPort] = stack.app.listenerPorts as [number];
    const tlsPort = stack.app.listenerPorts[1]!;
    front.v1 = await freePort();
    front.v2 = await freePort();
    front.tls = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-haproxy-'));
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      [
        'global',
        '  maxconn 100',
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 30s',
        '  timeout server 30s',
        `frontend v1`,
        `  bind 127.0.0.1:${front.v1}`,
        `  default_backend relay_v1`,
        `frontend v2`,
        `  bind 127.0.0.1:${front.v2}`,
        `  default_backend relay_v2`,
        `frontend tls`,
        `  bind 127.0.0.1:${front.tls}`,
        `  default_backend relay_tls`,
        'backend relay_v1',
        `  server relay 127.0.0.1:${proxyPort} send-proxy`,
        'backend relay_v2',
        `  server relay 127.0.0.1:${proxyPort} send-proxy-v2`,
        'backend relay_tls',
        `  server relay 127.0.0.1:${tlsPort} send-proxy-v2`,
        '',
      ].join('\n'),
    );
    haproxy = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    haproxy.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    // Ready when a client through it gets the relay's greeting.
    const deadline = Date.now() + 10_000;
    for (;;) {
      if ((await firstBytes(front.v1, TRUSTED, 'QUIT\r\n')).startsWith('220')) break;
      if (Date.now() > deadline || haproxy.exitCode !== null) throw new Error(`haproxy did not come up: ${stderr}`);
      await sleep(100);
    }
  });

  afterAll(async () => {
    haproxy?.kill();
    await stack?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const transactions = () => log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'transaction');

  it('a trusted client behind it (v1 and v2) is trusted, and logged under its own address', async () => {
    for (const port of [front.v1, front.v2]) {
      const { client } = await RawSmtp.connect(port, '127.0.0.1', { localAddress: TRUSTED });
      await client.cmd('EHLO mta.test');
      expect((await client.send(A, ['x@example.net'], rawMessage(A, ['x@example.net'], `behind-${port}`))).code).toBe(250);
      client.close();
    }
    await until(() => transactions().length === 2, 3000, 'two transaction lines');
    expect(transactions().map((t) => t.client)).toEqual([TRUSTED, TRUSTED]);
  });

  it('a stranger behind it is not trusted: 530 at MAIL, the refusal logged with its address', async () => {
    for (const port of [front.v1, front.v2]) {
      const { client } = await RawSmtp.connect(port, '127.0.0.1', { localAddress: STRANGER });
      await client.cmd('EHLO mta.test');
      expect((await client.cmd(`MAIL FROM:<${A}>`)).code).toBe(530);
      client.close();
    }
    await until(() => log.lines.filter((l) => l.includes('"auth_required"')).length === 2, 3000, 'the refused lines');
    const refused = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.reason === 'auth_required');
    expect(refused.map((l) => l.client)).toEqual([STRANGER, STRANGER]);
  });

  it('per-address caps count the real addresses, not the balancer\'s', async () => {
    // The stranger's earlier sessions are gone (their close travels through HAProxy).
    await until(() => stack.app.inbound.sessionCount === 0, 3000, 'the earlier sessions closed');
    const held: RawSmtp[] = [];
    for (let i = 0; i < 2; i++) {
      const { client, greeting } = await RawSmtp.connect(front.v2, '127.0.0.1', { localAddress: STRANGER });
      expect(greeting.code).toBe(220);
      held.push(client);
    }
    // A third from the same client: over max_connections_per_address (2).
    const third = await RawSmtp.connect(front.v1, '127.0.0.1', { localAddress: STRANGER });
    expect(third.greeting.code).toBe(421);
    expect(third.greeting.lines.join(' ')).toMatch(/per.address|too many/i);
    third.client.close();
    // Another client behind the same balancer still gets in.
    const other = await RawSmtp.connect(front.v2, '127.0.0.1', { localAddress: OTHER });
    expect(other.greeting.code).toBe(220);
    other.client.close();
    for (const c of held) c.close();
  });

  it('the AUTH lockout locks out the real address only', async () => {
    await until(() => stack.app.inbound.sessionCount === 0, 3000, 'the earlier sessions closed');
    const { client: guesser } = await RawSmtp.connect(front.v2, '127.0.0.1', { localAddress: STRANGER });
    await guesser.cmd('EHLO mta.test');
    expect((await guesser.authPlain(A, 'wrong-password')).code).toBe(535);
    expect((await guesser.authPlain(A, PASSWORD)).code).toBe(421); // locked out after one failure
    guesser.close();
    const { client } = await RawSmtp.connect(front.v2, '127.0.0.1', { localAddress: OTHER });
    await client.cmd('EHLO mta.test');
    expect((await client.authPlain(A, PASSWORD)).code).toBe(235);
    client.close();
  });

  it('PROXY v2 in front of the implicit-TLS listener: the handshake follows the header', async () => {
    const { client, socket } = await RawSmtp.connectTls(front.tls, CA, { localAddress: TRUSTED });
    expect(socket.encrypted).toBe(true);
    expect((await client.cmd('EHLO mta.test')).lines).not.toContain('STARTTLS');
    expect((await client.send(A, ['y@example.net'], rawMessage(A, ['y@example.net'], 'tls-behind-proxy'))).code).toBe(250);
    client.close();
    await until(() => transactions().some((t) => t.message_id === '<tls-behind-proxy@test.example>'), 3000, 'its transaction line');
    expect(transactions().find((t) => t.message_id === '<tls-behind-proxy@test.example>')!.client).toBe(TRUSTED);
  });

  it('the PROXY listener closes connections from anyone but the balancer, and a balancer without a header, with a log line', async () => {
    expect(await firstBytes(proxyPort, TRUSTED)).toBe('');
    // From the balancer's address, but no header: closed after proxy_protocol.timeout_ms.
    const started = Date.now();
    expect(await firstBytes(proxyPort, '127.0.0.1')).toBe('');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    // From the balancer's address, and not a header.
    expect(await firstBytes(proxyPort, '127.0.0.1', 'EHLO mta.test\r\n')).toBe('');
    await until(() => log.lines.filter((l) => l.includes('"proxy_refused"')).length === 3, 3000, 'three proxy_refused lines');
    const lines = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'proxy_refused');
    expect(lines.map((l) => [l.balancer, l.error])).toEqual([
      [TRUSTED, 'not a balancer named in proxy_protocol.from'],
      ['127.0.0.1', 'no PROXY header within 1000 ms'],
      ['127.0.0.1', 'no PROXY protocol header'],
    ]);
  });

  it('the plain listener does not believe a PROXY header: the stranger stays a stranger', async () => {
    const { client } = await RawSmtp.connect(stack.port, '127.0.0.1', { localAddress: STRANGER });
    expect((await client.cmd(`PROXY TCP4 ${TRUSTED} 127.0.0.1 40000 25`)).code).toBe(500);
    await client.cmd('EHLO mta.test');
    expect((await client.cmd(`MAIL FROM:<${A}>`)).code).toBe(530);
    client.close();
  });
});
