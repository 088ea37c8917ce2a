// SMTP smuggling (CVE-2023-51764/51765/51766 and kin): a bare LF or bare CR around a dot, which
// some servers take for the end of DATA, followed by a second, spoofed transaction. Whatever the
// client sends, the provider must record one message per DATA, from the real sender, with the
// bytes the client meant (its lines, every line end as CRLF) — and the inbound side must not
// split the DATA either.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { startStack, type Stack } from '../helpers/stack.js';
import { sleep } from '../helpers/wait.js';

const SENDER = 'real@gmail.test';
const SPOOF = 'ceo@gmail.test';

const PAYLOADS: Record<string, string> = {
  '<LF>.<LF>': '\n.\n',
  '<LF>.<CR><LF>': '\n.\r\n',
  '<CR><LF>.<LF>': '\r\n.\n',
  '<CR>.<CR>': '\r.\r',
  '<CR><LF>.<CR>': '\r\n.\r',
  '<CR>.<CR><LF>': '\r.\r\n',
  '<LF>.<CR>': '\n.\r',
  '<CR>.<LF>': '\r.\n',
  '<CR><LF>.<CR><CR><LF>': '\r\n.\r\r\n',
  '<LF><LF>.<LF><LF>': '\n\n.\n\n',
};

/** A message whose body hides, behind `payload`, a whole second transaction from a spoofed sender. */
function smuggling(payload: string, tag: string): string {
  return [
    `From: <${SENDER}>\r\nTo: <victim@example.net>\r\nSubject: ${tag}\r\n\r\nbefore the payload`,
    payload,
    `MAIL FROM:<${SPOOF}>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: <${SPOOF}>\r\nSubject: smuggled ${tag}\r\n\r\nwire the money\r\n`,
  ].join('');
}

/** What the client meant: its lines, with every line end as CRLF (SPEC "On the wire"). */
const normalised = (body: string) => Buffer.from(body.replace(/\r\n|\r|\n/g, '\r\n'), 'latin1');

describe('SMTP smuggling', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ accounts: [{ email: 'real@gmail.test', kind: 'google', senders: [SENDER, SPOOF] }] });
  });
  afterAll(() => stack.stop());

  /** Sends `body` in one DATA (written in `pieces`) and checks everything the test file promises. */
  async function sendAndCheck(body: string, pieces: string[]): Promise<void> {
    const before = stack.sandbox.messages.length;
    const { client } = await RawSmtp.connect(stack.port);
    client.socket.setNoDelay(true);
    try {
      await client.cmd('EHLO mta.test');
      expect((await client.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
      expect((await client.cmd('RCPT TO:<victim@example.net>')).code).toBe(250);
      expect((await client.cmd('DATA')).code).toBe(354);
      for (const piece of pieces) {
        client.write(piece);
        if (pieces.length > 1) await sleep(2); // separate TCP segments
      }
      client.write('.\r\n');
      expect(line(await client.read())).toMatch(/^250 2\.0\.0 OK/);
      // Exactly one reply for the DATA: the next command gets its own, not a smuggled one's.
      expect(line(await client.cmd('NOOP'))).toBe('250 2.0.0 OK');
    } finally {
      client.close();
    }
    const arrived = stack.sandbox.messages.slice(before);
    expect(arrived).toHaveLength(1);
    expect(arrived[0]!.mailFrom).toBe(SENDER);
    expect(arrived[0]!.rcptTo).toEqual(['victim@example.net']);
    expect(arrived[0]!.body.equals(normalised(body))).toBe(true);
    // No bare CR or LF left for a lenient server downstream to misread.
    expect(arrived[0]!.body.toString('latin1')).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
  }

  for (const [name, payload] of Object.entries(PAYLOADS)) {
    it(`${name} inside DATA: one message upstream, from the real sender, with the client's lines`, () =>
      sendAndCheck(smuggling(payload, name), [smuggling(payload, name)]));
  }

  it('the same payloads split across TCP segments around the dot change nothing', async () => {
    for (const [name, payload] of Object.entries(PAYLOADS)) {
      const body = smuggling(payload, `split ${name}`);
      const at = body.indexOf(payload);
      // Segment boundaries before, inside and after the payload.
      const cuts = [at, ...Array.from(payload, (_, i) => at + i + 1)];
      const pieces = cuts.map((cut, i) => body.slice(i === 0 ? 0 : cuts[i - 1], cut)).concat(body.slice(cuts.at(-1)));
      await sendAndCheck(body, pieces);
    }
    expect(stack.sandbox.messages.filter((m) => m.mailFrom === SPOOF)).toHaveLength(0);
  });

  it('BDAT is not offered (no CHUNKING): the command is refused and its "chunk" is read as commands, none of which sends anything', async () => {
    const before = stack.sandbox.messages.length;
    const { client } = await RawSmtp.connect(stack.port);
    try {
      const ehlo = await client.cmd('EHLO mta.test');
      expect(ehlo.lines.slice(1)).not.toContain('CHUNKING');
      expect((await client.cmd(`MAIL FROM:<${SENDER}>`)).code).toBe(250);
      expect((await client.cmd('RCPT TO:<victim@example.net>')).code).toBe(250);
      const chunk = `From: <${SPOOF}>\r\n\r\nsmuggled\r\n`;
      client.write(`BDAT ${chunk.length} LAST\r\n${chunk}`);
      expect(line(await client.read())).toMatch(/^500 5\.5\.2 /);
      for (let i = 0; i < 3; i++) expect((await client.read()).code).toBeGreaterThanOrEqual(500); // the chunk's three lines
      expect((await client.cmd('RSET')).code).toBe(250);
    } finally {
      client.close();
    }
    expect(stack.sandbox.messages.length).toBe(before);
  });
});
