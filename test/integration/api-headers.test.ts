// Header blocks real MTAs send, through both API upstreams, checked by what the fake APIs got and
// to whom they would deliver (the fakes read headers with their own strict reader and postal-mime,
// not the relay's mailsplit/addressparser): exactly the envelope recipients, each named once; no
// Bcc value in the copy To/Cc recipients get; UTF-8 addresses and display names intact; a header
// no reader can take without guessing refused 554 5.6.0 before any request. Each transaction is
// pipelined (RFC 2920) as Postfix sends it.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeApiServer } from '../../src/sandbox/index.js';
import { fakeAddresses, fakeFields } from '../../src/sandbox/header-reader.js';
import type { AcceptedMessage } from '../../src/sandbox/submission-server.js';
import { GMAIL, GRAPH, gmailAccount, graphAccount } from '../helpers/api-stack.js';
import { line, RawSmtp } from '../helpers/smtp-client.js';
import { startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ accounts: [graphAccount(), gmailAccount()], overrides: { upstream: { data_timeout_ms: 2_000, command_timeout_ms: 2_000 } } });
});
afterAll(() => stack?.stop());
beforeEach(() => stack.sandbox.reset());

/** MAIL, every RCPT and DATA in one write, then the message: the replies' lines, the last DATA's. */
async function pipelined(from: string, to: readonly string[], header: string): Promise<string> {
  const raw = `${header}\r\nFrom: <${from}>\r\nSubject: headers\r\n\r\nBody.\r\n`;
  const { client } = await RawSmtp.connect(stack.port);
  try {
    await client.cmd('EHLO mta.test');
    const utf8 = /[^\x00-\x7f]/.test(to.join('') + from) ? ' SMTPUTF8' : '';
    client.write([`MAIL FROM:<${from}>${utf8}`, ...to.map((t) => `RCPT TO:<${t}>`), 'DATA', ''].join('\r\n'));
    const replies = [];
    for (let i = 0; i < to.length + 2; i++) replies.push(await client.read());
    const refused = replies.find((r) => r.code >= 400);
    if (refused) return line(refused);
    client.write(Buffer.from(raw + '.\r\n', 'utf8'));
    return line(await client.read());
  } finally {
    client.close();
  }
}

interface Case {
  name: string;
  /** Header fields before From and Subject, CRLF-separated. */
  header: string;
  envelope: string[];
  /** Gmail's outcome: the reply's start, or 'sent'. */
  gmail: 'sent' | RegExp;
  graph: 'sent' | RegExp;
  /** Graph's lists as set: address → 'to' | 'cc' | 'bcc' (and its display name, when checked). */
  placed?: Record<string, ['to' | 'cc' | 'bcc', string?]>;
}

const UNREADABLE = /^554 5\.6\.0 Message header cannot be read unambiguously: /;

const CASES: Case[] = [
  { name: 'a folded first line (space)', header: ' To: victim@evil.example\r\nTo: ok@example.net', envelope: ['ok@example.net'], gmail: UNREADABLE, graph: UNREADABLE },
  { name: 'a folded first line (tab, Cc)', header: '\tCc: victim@evil.example\r\nTo: ok@example.net', envelope: ['ok@example.net'], gmail: UNREADABLE, graph: UNREADABLE },
  { name: 'a bare CR in a header line', header: 'To: ok@example.net\rCc: evil@evil.example', envelope: ['ok@example.net'], gmail: UNREADABLE, graph: UNREADABLE },
  { name: 'a NUL in the header', header: 'To: ok@example.net\0', envelope: ['ok@example.net'], gmail: UNREADABLE, graph: UNREADABLE },
  { name: 'a line that is no field', header: 'To: ok@example.net\r\nnot a field', envelope: ['ok@example.net'], gmail: UNREADABLE, graph: UNREADABLE },
  {
    name: 'UTF-8 addresses and names (RFC 6532) and RFC 2047 names',
    header: 'To: "Jürgen Müller" <jürgen@example.net>\r\nCc: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.net>',
    envelope: ['jürgen@example.net', 'jm@example.net', 'zoë@example.net'],
    gmail: 'sent', graph: 'sent',
    placed: { 'jürgen@example.net': ['to', 'Jürgen Müller'], 'jm@example.net': ['cc', 'Jürgen Müller'], 'zoë@example.net': ['bcc'] },
  },
  { name: 'obsolete "To :" naming an outsider', header: 'To : outsider@example.org', envelope: ['bob@example.net'], gmail: /^554 5\.3\.3 /, graph: 'sent', placed: { 'bob@example.net': ['bcc'] } },
  { name: 'obsolete "To :" naming the recipient', header: 'To : bob@example.net', envelope: ['bob@example.net'], gmail: 'sent', graph: 'sent', placed: { 'bob@example.net': ['to'] } },
  {
    name: 'an existing Bcc field (one envelope recipient, one not)',
    header: 'To: a@example.net\r\nBcc: b@example.net,\r\n stranger@example.org',
    envelope: ['a@example.net', 'b@example.net', 'c@example.net'],
    gmail: 'sent', graph: 'sent',
    placed: { 'a@example.net': ['to'], 'b@example.net': ['bcc'], 'c@example.net': ['bcc'] },
  },
  { name: 'an empty group', header: 'To: undisclosed-recipients:;', envelope: ['a@example.net', 'b@example.net'], gmail: 'sent', graph: 'sent', placed: { 'a@example.net': ['bcc'], 'b@example.net': ['bcc'] } },
  {
    name: 'a group with members',
    header: 'To: team: a@example.net, "B" <b@example.net>;',
    envelope: ['a@example.net', 'b@example.net'],
    gmail: 'sent', graph: 'sent',
    placed: { 'a@example.net': ['to'], 'b@example.net': ['to', 'B'] },
  },
  {
    name: 'comments and quoted strings holding "," and "@"',
    header: 'To: "Doe, John @ home" <john@example.net>, bob@example.net (Bob, @ work)\r\nCc: "x,y@z"@example.net',
    envelope: ['john@example.net', 'bob@example.net', '"x,y@z"@example.net'],
    gmail: 'sent', graph: 'sent',
    placed: { 'john@example.net': ['to', 'Doe, John @ home'], 'bob@example.net': ['to', 'Bob, @ work'], '"x,y@z"@example.net': ['cc'] },
  },
  {
    name: 'a list the MTA expanded into its members',
    header: 'To: team@example.com',
    envelope: ['m1@example.net', 'm2@example.net'],
    gmail: /^554 5\.3\.3 The Gmail API sends to every To\/Cc address and cannot send to the envelope alone: .*upstream: smtp/,
    graph: 'sent',
    placed: { 'm1@example.net': ['bcc'], 'm2@example.net': ['bcc'] },
  },
];

/** The delivered copy's header: no Bcc field, and no envelope-only recipient named in it. */
function expectNoBccVisible(delivered: Buffer, envelope: string[], header: string): void {
  expect(fakeFields(delivered).fields.map((f) => f.name)).not.toContain('bcc');
  const head = delivered.subarray(0, delivered.indexOf('\r\n\r\n')).toString('utf8').toLowerCase();
  const visible = header.split('\r\n').filter((l) => !/^bcc/i.test(l) && !/^ /.test(l)).join('\n').toLowerCase();
  for (const r of envelope) if (!visible.includes(r)) expect(head).not.toContain(r);
}

/** The case sent from `from`; the one message delivered, or null when refused as expected. */
async function outcome(from: string, fake: FakeApiServer, expected: 'sent' | RegExp, c: Case): Promise<AcceptedMessage | null> {
  const answer = await pipelined(from, c.envelope, c.header);
  if (expected !== 'sent') {
    expect(answer).toMatch(expected);
    expect(fake.requests.size).toBe(0);
    return null;
  }
  expect(answer).toMatch(/^250 /);
  expect(fake.messages).toHaveLength(1);
  const [m] = fake.messages;
  expect([...m!.rcptTo].sort()).toEqual([...c.envelope].sort());
  expectNoBccVisible(m!.body, c.envelope, c.header);
  return m!;
}

describe.each(CASES)('$name', (c) => {
  it('Gmail API', async () => {
    const g = stack.sandbox.gmail;
    const m = await outcome(GMAIL, g, c.gmail, c);
    if (!m) return;
    // What Gmail was given names each envelope recipient exactly once, in at most one Bcc field.
    const [got] = g.received;
    const named = (['to', 'cc', 'bcc'] as const).flatMap((f) => fakeAddresses(got!, f).map((a) => a.address));
    const inEnvelope = named.filter((a) => c.envelope.includes(a));
    expect([...inEnvelope].sort()).toEqual([...c.envelope].sort());
    expect(fakeFields(got!).fields.filter((f) => f.name === 'bcc').length).toBeLessThanOrEqual(1);
    // The MTA's UTF-8 survives byte for byte.
    if (/[^\x00-\x7f]/.test(c.header)) expect(m.body.includes(Buffer.from(c.header.split('\r\n')[0]!, 'utf8'))).toBe(true);
  });

  it('Microsoft Graph', async () => {
    const g = stack.sandbox.graph;
    const m = await outcome(GRAPH, g, c.graph, c);
    if (!m) return;
    const lists = g.sentLists.get(m.id)!;
    const all = [...lists.to, ...lists.cc, ...lists.bcc].map((a) => a.address);
    expect([...all].sort()).toEqual([...c.envelope].sort()); // each once, nobody else
    for (const [address, [list, name]] of Object.entries(c.placed ?? {})) {
      const found = lists[list].find((a) => a.address === address);
      expect(found, `${address} in ${list}`).toBeDefined();
      if (name !== undefined) expect(found!.name).toBe(name);
    }
  });
});
