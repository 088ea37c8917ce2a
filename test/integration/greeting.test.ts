// inbound.greeting_delay_ms: by default the relay greets at once (its clients are trusted or
// authenticated MTAs); with a delay, a client that talks before the greeting is refused, as
// smtp-server does on a public port.
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ReplyReader } from '../../src/smtp/reply-reader.js';
import type { Reply } from '../../src/smtp/reply.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

/**
 * Connects and sends EHLO 60 ms later without waiting for the greeting: long for a relay that
 * greets at once, short next to smtp-server's own 100 ms or a configured 1 s. The first two replies.
 */
async function talksAfter60ms(port: number): Promise<Reply[]> {
  const replies: Reply[] = [];
  const reader = new ReplyReader((r) => replies.push(r));
  const socket = connect({ port, host: '127.0.0.1' });
  socket.on('data', (d) => reader.push(d));
  socket.on('error', () => undefined);
  socket.once('connect', () => setTimeout(() => socket.write('EHLO early.test\r\n'), 60));
  try {
    await until(() => replies.length >= 2 || socket.destroyed, 5_000);
    return replies.slice(0, 2);
  } finally {
    socket.destroy();
  }
}

describe('greeting delay', () => {
  let stack: Stack | null = null;
  afterEach(async () => {
    await stack?.stop();
    stack = null;
  });

  it('by default the greeting comes at once: a client that does not wait for it is served', async () => {
    stack = await startStack({ accounts: [{ email: 'g@gmail.test', kind: 'google' }] });
    const [greeting, ehlo] = await talksAfter60ms(stack.port);
    expect(greeting?.code).toBe(220);
    expect(ehlo?.code).toBe(250);
  });

  it('with greeting_delay_ms a client that talks before the greeting is refused with 421', async () => {
    stack = await startStack({ accounts: [{ email: 'g@gmail.test', kind: 'google' }], overrides: { inbound: { greeting_delay_ms: 1_000 } } });
    const [first] = await talksAfter60ms(stack.port);
    expect(first?.code).toBe(421);
    expect(first?.lines.join(' ')).toMatch(/talk too soon/);
  });
});
