// The benchmark's references (bench/lib/byte-pipe.ts, bench/lib/minimal-relay.ts) are only
// worth comparing the relay against if they do what they claim: the minimal relay hands every
// message to the provider once and gives the client the provider's replies, and its retiring
// variant really opens a new authenticated upstream connection every 100 messages (the contract's
// default messages_per_connection), without losing a message across the swap.
import { readFileSync } from 'node:fs';
import type { AddressInfo, Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBytePipe, type PipeKind } from '../../bench/lib/byte-pipe.js';
import { prepareMessage } from '../../bench/lib/load-client.js';
import { openConnections } from '../../bench/lib/load.js';
import { SandboxProvider } from '../../src/sandbox/provider.js';

const FROM = 'bench@gmail.test';

describe('the benchmark\'s minimal relays', () => {
  let sandbox: SandboxProvider;
  let token: string;

  beforeAll(async () => {
    sandbox = await SandboxProvider.start();
    sandbox.addAccount({ email: FROM, kind: 'google' });
    token = sandbox.state.issueAccessToken(FROM);
  });
  afterAll(() => sandbox.stop());

  async function send(kind: PipeKind, messages: number): Promise<{ opened: number; accepted: number }> {
    const up = { host: sandbox.smtpHost, port: sandbox.smtpPort, ca: readFileSync(sandbox.caFile, 'utf8'), user: FROM, token };
    const server: Server = await startBytePipe(up, kind);
    const before = sandbox.smtp.stats();
    try {
      const [conn] = await openConnections({ host: '127.0.0.1', port: (server.address() as AddressInfo).port }, 1);
      const message = prepareMessage(FROM, 'rcpt@example.net', 2048, kind);
      // send() checks every reply (250, 250, 354, 250) and throws on any other.
      for (let i = 0; i < messages; i++) await conn!.send(message);
      conn!.close();
      const after = sandbox.smtp.stats();
      return { opened: after.connectionsOpened - before.connectionsOpened, accepted: after.messagesAccepted - before.messagesAccepted };
    } finally {
      server.close();
    }
  }

  it('the minimal relay holds one upstream connection and delivers every message once', async () => {
    const r = await send('minimal', 150);
    expect(r).toMatchObject({ opened: 1, accepted: 150 });
  });

  it('the retiring one opens a new connection every 100 messages and loses none across the swap', async () => {
    const r = await send('minimal-retiring', 250);
    // One at the start, one after the 100th message, one after the 200th.
    expect(r).toMatchObject({ opened: 3, accepted: 250 });
  });
});
