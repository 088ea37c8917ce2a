// Issue 21, item 6: a listener with TLS from the first byte (RFC 8314, port 465) beside the
// plain/STARTTLS one, with inbound.tls's certificate: a client completes a message on it, no
// STARTTLS is offered there, AUTH is allowed as on any TLS session. Without a certificate the
// config does not load.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { buildConfig } from '../../src/config/load.js';
import { SANDBOX_TLS_FILES } from '../../src/sandbox/index.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack, type Stack } from '../helpers/stack.js';
import { thrown } from '../helpers/thrown.js';

const A = 'a@gmail.test';
const PASSWORD = 'pw-a-0123456789';
const CA = readFileSync(SANDBOX_TLS_FILES.ca);

describe('implicit TLS listener', () => {
  let stack: Stack;
  let tlsPort: number;

  beforeAll(async () => {
    stack = await startStack({
      accounts: [{ email: A, kind: 'google', password: PASSWORD, senders: [A] }],
      overrides: {
        // Nobody is trusted: every client must authenticate.
        inbound: { trusted_networks: [], tls: { cert_file: SANDBOX_TLS_FILES.cert, key_file: SANDBOX_TLS_FILES.key } },
        listeners: [{ host: '127.0.0.1', port: 0, implicit_tls: true }],
      },
    });
    tlsPort = stack.app.listenerPorts[0]!;
  });
  afterAll(() => stack.stop());

  it('a client completes a message over TLS from the first byte; EHLO offers AUTH, not STARTTLS', async () => {
    const { client, greeting, socket } = await RawSmtp.connectTls(tlsPort, CA);
    expect(socket.encrypted).toBe(true);
    expect(greeting.code).toBe(220);
    const ehlo = await client.cmd('EHLO app.test');
    expect(ehlo.lines).toContain('AUTH PLAIN LOGIN');
    expect(ehlo.lines).not.toContain('STARTTLS');
    expect((await client.cmd('STARTTLS')).code).toBe(503);
    expect((await client.authPlain(A, PASSWORD)).code).toBe(235);
    const raw = rawMessage(A, ['x@example.net'], 'over-465');
    expect((await client.send(A, ['x@example.net'], raw)).code).toBe(250);
    expect(stack.sandbox.messages.some((m) => m.sha256 === sha256(raw))).toBe(true);
    client.close();
  });

  it('the plain listener beside it still offers STARTTLS', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    expect((await client.cmd('EHLO mta.test')).lines).toContain('STARTTLS');
    client.close();
  });

  it('a client speaking plain SMTP to it gets no greeting in clear and is closed', async () => {
    const socket = connect({ port: tlsPort, host: '127.0.0.1' });
    const got: Buffer[] = [];
    socket.on('data', (c: Buffer) => got.push(c));
    socket.on('error', () => undefined);
    socket.write('EHLO plain.test\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    expect(Buffer.concat(got).toString('latin1')).not.toMatch(/^220/);
  });

  it('without inbound.tls the config is refused, naming the listener', () => {
    const err = thrown(() => buildConfig({ listeners: [{ port: 465, implicit_tls: true }] }, null, { env: {} }), ConfigError);
    expect(String(err)).toMatch(/listeners\[0\]\.implicit_tls: needs inbound\.tls/);
  });
});
