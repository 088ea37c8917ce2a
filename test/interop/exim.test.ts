// Exim 4 (Debian's default MTA) in front of the relay, on the smtp transport's default settings
// (test/helpers/exim.ts). Exim pipelines, and at the end of a connection sends `.` and `QUIT`
// together and then shuts down its sending side: a relay that takes the half-close for a
// disconnect never answers the dot, Exim logs "Remote host closed connection in response to end
// of data" and retries a message the provider already has. Each message here is its own
// connection (`-odi`), so each of the 50 ends that way.
import { describe, expect, it } from 'vitest';
import { EximInstance } from '../helpers/exim.js';
import { sha256, startStack } from '../helpers/stack.js';

const ACCOUNT = 'sender@example.com';
const PASSWORD = 'relay-pw-exim-1';
const COUNT = 50;
const PARALLEL = 5;

/** A message as a local program writes it: LF line ends, sizes from a few hundred bytes to ~40 KB. */
function message(i: number): string {
  const lines = Array.from({ length: 1 + ((i * 37) % 500) }, (_, n) => (n % 7 === 3 ? `.dot line ${n} of message ${i}` : `line ${n} of message ${i} ${'x'.repeat(n % 70)}`));
  return [
    `From: Sender <${ACCOUNT}>`,
    'To: <to@example.net>',
    `Subject: exim ${i}`,
    `Message-ID: <exim-${i}@exim.test>`,
    'Date: Thu, 01 Jan 2026 00:00:00 +0000',
    '',
    ...lines,
    '',
  ].join('\n');
}

const crlf = (s: string) => s.replace(/\n/g, '\r\n');
const messageIdOf = (body: Buffer) => /^Message-ID: <(exim-\d+)@exim\.test>/m.exec(body.toString())?.[1] ?? '';

describe('Exim in front of the relay', () => {
  it('50 messages, each on a connection Exim half-closes after `.` + QUIT, all answered and delivered once', { timeout: 240_000 }, async () => {
    const stack = await startStack({
      accounts: [{ email: ACCOUNT, kind: 'google', password: PASSWORD, senders: [ACCOUNT] }],
      overrides: { inbound: { trusted_networks: [] } },
    });
    const exim = EximInstance.create(stack.port, ACCOUNT, PASSWORD);
    try {
      const sent = Array.from({ length: COUNT }, (_, i) => message(i));
      for (let i = 0; i < COUNT; i += PARALLEL) {
        const runs = await Promise.all(sent.slice(i, i + PARALLEL).map((m) => exim.deliver(ACCOUNT, ['to@example.net'], m)));
        for (const r of runs) expect(r.status, r.stderr).toBe(0);
      }
      const firstPass = exim.mainlog();
      // What Exim would do next with whatever it deferred: retry it (bounded: two forced runs).
      for (let run = 0; run < 2 && exim.queued() > 0; run++) await exim.runQueue();

      // Soft assertions: each says something of its own about how the relay failed Exim, if it did.
      // Exim got the relay's 250 for every message on the first try: no deferral, nothing left.
      const deferrals = firstPass.split('\n').filter((l) => / == /.test(l));
      expect.soft(deferrals.length, `deferrals in the Exim log, the first: ${deferrals[0]}`).toBe(0);
      expect.soft(firstPass.match(/ => to@example\.net .*H=127\.0\.0\.1 \[127\.0\.0\.1\].* C="250 /g) ?? [], 'deliveries Exim logged with the relay\'s 250').toHaveLength(COUNT);
      expect.soft(exim.queued(), 'messages left in the Exim spool after two retries').toBe(0);
      expect.soft(exim.panics()).toEqual([]);

      // The provider has each message exactly once, as Exim sent it (Exim prepends one Received).
      const ids = stack.sandbox.messages.map((m) => messageIdOf(m.body));
      expect.soft(ids.filter((id, k) => ids.indexOf(id) !== k).length, 'messages delivered twice').toBe(0);
      expect(new Set(ids).size, 'distinct messages at the provider').toBe(COUNT);
      for (let i = 0; i < COUNT; i++) {
        const arrived = stack.sandbox.messages.find((m) => messageIdOf(m.body) === `exim-${i}`)!;
        const expected = crlf(sent[i]!);
        const text = arrived.body.toString();
        expect(arrived.authUser).toBe(ACCOUNT);
        expect(arrived.mailFrom).toBe(ACCOUNT);
        expect(sha256(text.slice(text.length - expected.length)), `message ${i}`).toBe(sha256(expected));
        expect(text.slice(0, text.length - expected.length)).toMatch(/^Received: from root by mta\.exim\.test with local \(Exim 4\.\d+\)\r\n(?:\t.*\r\n)+$/);
      }
    } finally {
      exim.remove();
      await stack.stop();
    }
  });
});
