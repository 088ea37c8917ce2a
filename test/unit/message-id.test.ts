// The Message-ID sniffer (src/inbound/message-id.ts): the header as the message streams, folded
// or not, split anywhere, from the header block only and within its bound.
import { describe, expect, it } from 'vitest';
import { MessageIdSniffer } from '../../src/inbound/message-id.js';

function sniff(message: string, chunk = Infinity): string | undefined {
  const s = new MessageIdSniffer();
  const b = Buffer.from(message);
  for (let i = 0; i < b.length; i += chunk === Infinity ? b.length : chunk) s.push(b.subarray(i, i + (chunk === Infinity ? b.length : chunk)));
  return s.take();
}

const msg = (headers: string[], body = 'Hello.\r\n') => [...headers, '', body].join('\r\n');

describe('MessageIdSniffer', () => {
  it('finds the header in any case, whole or fed a byte (or 7) at a time', () => {
    const m = msg(['From: <a@x.test>', 'message-ID: <abc.123@x.test>', 'Subject: hi']);
    for (const chunk of [Infinity, 1, 7]) expect(sniff(m, chunk)).toBe('<abc.123@x.test>');
  });

  it('joins a folded header and keeps the <id> from around comments', () => {
    expect(sniff(msg(['Message-ID:', '  <folded.1@x.test>', ' (a comment)', 'To: b@y.test']), 3)).toBe('<folded.1@x.test>');
    expect(sniff(msg(['Message-Id: no-brackets@x.test']))).toBe('no-brackets@x.test');
  });

  it('reads the header block only: a Message-ID line in the body is not the message\'s', () => {
    expect(sniff(msg(['From: <a@x.test>'], 'Message-ID: <in-body@x.test>\r\n'))).toBeUndefined();
    // Nor is a field named like it.
    expect(sniff(msg(['X-Original-Message-ID: <other@x.test>']))).toBeUndefined();
  });

  it('gives up after 64 KiB of headers', () => {
    const big = Array.from({ length: 700 }, (_, i) => `X-Filler-${i}: ${'y'.repeat(90)}`);
    expect(sniff(msg([...big, 'Message-ID: <late@x.test>']), 4096)).toBeUndefined();
    expect(sniff(msg([...big.slice(0, 500), 'Message-ID: <in-time@x.test>']), 4096)).toBe('<in-time@x.test>');
  });

  it('take() starts afresh for the next message of the session', () => {
    const s = new MessageIdSniffer();
    s.push(Buffer.from(msg(['Message-ID: <one@x.test>'])));
    expect(s.take()).toBe('<one@x.test>');
    s.push(Buffer.from(msg(['Subject: none'])));
    expect(s.take()).toBeUndefined();
    // A message that ended inside its headers (abandoned): what was read still counts.
    s.push(Buffer.from('Message-ID: <cut@x.test>\r\n'));
    expect(s.take()).toBe('<cut@x.test>');
  });

  it('cuts an absurdly long value', () => {
    expect(sniff(msg([`Message-ID: <${'z'.repeat(900)}@x.test>`]))!.length).toBe(256);
  });
});
