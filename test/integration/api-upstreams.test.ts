// Accounts with upstream: graph and upstream: gmail_api against the sandbox's fake APIs: the
// message arrives byte-identical, from the account's mailbox, to exactly the envelope; the
// size limits; a token refresh on 401; the replies for throttling, permission and server errors.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checkAccount } from '../../src/admin/account-check.js';
import { buildConfig } from '../../src/config/load.js';
import { accountsFromConfig } from '../../src/routing/account.js';
import { sandboxRelayConfig } from '../../src/sandbox/relay-config.js';
import { connectorOptions } from '../../src/upstream/connector.js';
import { randomBytes } from 'node:crypto';
import { GRAPH_MAX_MESSAGE_BYTES, GRAPH_MAX_MIME_BYTES } from '../../src/upstream/api/graph.js';
import { GMAIL_MAX_MESSAGE_BYTES, GMAIL_SIMPLE_MAX_BYTES } from '../../src/upstream/api/gmail.js';
import { GMAIL, GRAPH, gmailAccount, graphAccount, multipartMessage, sizedMessage } from '../helpers/api-stack.js';
import { line, RawSmtp, sendOnce } from '../helpers/smtp-client.js';
import { sha256, startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    accounts: [graphAccount(), gmailAccount()],
    overrides: { inbound: { max_message_bytes: 160 * 1024 * 1024 }, upstream: { data_timeout_ms: 2_000, command_timeout_ms: 2_000 } },
  });
});
afterAll(() => stack?.stop());
beforeEach(() => {
  stack.sandbox.reset();
});

const headerTo = (from: string, to: string[], cc: string[], tag: string) =>
  [`From: Sender <${from}>`, `To: ${to.map((t) => `"Name ${t}" <${t}>`).join(', ')}`, ...(cc.length ? [`Cc: ${cc.join(', ')}`] : []), `Subject: ${tag}`, `Message-ID: <${tag}@test.example>`, '', 'Body line.', '.a line that begins with a dot', ''].join('\r\n');

/** One transaction, the message dot-stuffed on the wire as SMTP wants. */
const send = (from: string, to: string[], message: string) => sendOnce(stack.port, from, to, message.replace(/\r\n\./g, '\r\n..'));

describe('connections', () => {
  it('keep-alive connections to each API are open before the first message, and messages open no new one', async () => {
    const opened = [stack.sandbox.graph.connectionsOpened, stack.sandbox.gmail.connectionsOpened];
    expect(opened.every((n) => n >= 1)).toBe(true);
    for (let i = 0; i < 5; i++) {
      expect(await send(GRAPH, ['r@example.net'], headerTo(GRAPH, ['r@example.net'], [], `keep-${i}`))).toMatch(/^250 /);
      expect(await send(GMAIL, ['r@example.net'], headerTo(GMAIL, ['r@example.net'], [], `keep-${i}`))).toMatch(/^250 /);
    }
    expect([stack.sandbox.graph.connectionsOpened, stack.sandbox.gmail.connectionsOpened]).toEqual(opened);
  });
});

describe('Microsoft Graph', () => {
  it('delivers the MTA\'s bytes from the mailbox to exactly the envelope: envelope-only in, header-only out', async () => {
    const raw = headerTo(GRAPH, ['to@example.net'], ['header-only@example.net'], 'graph-exact');
    const envelope = ['to@example.net', 'bcc-only@example.net'];
    expect(await send(GRAPH, envelope, raw)).toMatch(/^250 2\.0\.0 /);
    const [sent, ...more] = stack.sandbox.graph.messages;
    expect(more).toEqual([]);
    expect(sent!.sha256).toBe(sha256(raw));
    expect(sent!.mailFrom).toBe(GRAPH);
    expect([...sent!.rcptTo].sort()).toEqual([...envelope].sort());
    expect(stack.sandbox.graph.draftCount).toBe(0);
    expect(stack.sandbox.messages).toEqual([]); // nothing went by SMTP
  });

  it('takes a message of 3 MB as one draft, and refuses one byte more with no attachment to upload apart with 552 before sending anything', async () => {
    const under = sizedMessage(GRAPH, ['big@example.net'], 'graph-max', GRAPH_MAX_MIME_BYTES);
    expect(await send(GRAPH, ['big@example.net'], under)).toMatch(/^250 /);
    expect(stack.sandbox.graph.messages.map((m) => m.sha256)).toEqual([sha256(under)]);
    stack.sandbox.reset();
    const over = sizedMessage(GRAPH, ['big@example.net'], 'graph-over', GRAPH_MAX_MIME_BYTES + 1);
    expect(await send(GRAPH, ['big@example.net'], over)).toMatch(/^552 5\.3\.4 /);
    expect(stack.sandbox.graph.requests.size).toBe(0);
  });

  it('sends a message over 3 MB as a draft without its large attachments, then uploads them by upload session', async () => {
    const MB = 1024 * 1024;
    const parts = [
      { type: 'application/pdf', filename: 'report.pdf', bytes: randomBytes(8 * MB) },
      { type: 'text/csv', filename: 'small.csv', bytes: randomBytes(100 * 1024) },
      { type: 'image/png', filename: 'logo.png', contentId: 'logo@test.example', bytes: randomBytes(3 * MB + 5) },
    ];
    const msg = multipartMessage(GRAPH, ['to@example.net'], 'graph-uploads', parts);
    const envelope = ['to@example.net', 'bcc-only@example.net'];
    expect(await send(GRAPH, envelope, msg.raw)).toMatch(/^250 2\.0\.0 /);
    const [sent, ...more] = stack.sandbox.graph.messages;
    expect(more).toEqual([]);
    // The draft's MIME is the MTA's bytes with the two parts of 3 MB and more cut out, nothing else.
    expect(sent!.sha256).toBe(sha256(msg.without(0, 2)));
    expect([...sent!.rcptTo].sort()).toEqual([...envelope].sort());
    const files = stack.sandbox.graph.attachmentsOf(sent!);
    expect(files.map((f) => [f.name, f.contentType, f.isInline, f.contentId])).toEqual([
      ['report.pdf', 'application/pdf', false, undefined],
      ['logo.png', 'image/png', true, 'logo@test.example'],
    ]);
    expect(files[0]!.bytes.equals(parts[0]!.bytes)).toBe(true);
    expect(files[1]!.bytes.equals(parts[2]!.bytes)).toBe(true);
    // 8 MB in three ranges of at most 3 MB, 3 MB + 5 in two.
    expect([stack.sandbox.graph.requests.get('session'), stack.sandbox.graph.requests.get('upload')]).toEqual([2, 5]);
    expect(stack.sandbox.graph.draftCount).toBe(0);
  });

  it('takes a message of exactly 150 MB through an upload session and refuses one byte more with 552 before sending anything', async () => {
    const file = randomBytes(Math.floor(((GRAPH_MAX_MESSAGE_BYTES - 4096) / 78) * 57));
    const under = multipartMessage(GRAPH, ['big@example.net'], 'graph-150', [{ type: 'application/zip', filename: 'big.zip', bytes: file }], GRAPH_MAX_MESSAGE_BYTES);
    expect(await send(GRAPH, ['big@example.net'], under.raw)).toMatch(/^250 /);
    const [sent] = stack.sandbox.graph.messages;
    expect(sent!.sha256).toBe(sha256(under.without(0)));
    expect(stack.sandbox.graph.attachmentsOf(sent!)[0]!.bytes.equals(file)).toBe(true);
    stack.sandbox.reset();
    const over = multipartMessage(GRAPH, ['big@example.net'], 'graph-150', [{ type: 'application/zip', filename: 'big.zip', bytes: file }], GRAPH_MAX_MESSAGE_BYTES + 1);
    expect(await send(GRAPH, ['big@example.net'], over.raw)).toMatch(/^552 5\.3\.4 /);
    expect(stack.sandbox.graph.requests.size).toBe(0);
  }, 120_000);

  it('gives 552 when the mailbox\'s size limit refuses the upload, and 451 when an upload fails, deleting the draft', async () => {
    const MB = 1024 * 1024;
    const msg = multipartMessage(GRAPH, ['r@example.net'], 'graph-limit', [{ type: 'application/pdf', filename: 'a.pdf', bytes: randomBytes(5 * MB) }]);
    stack.sandbox.graph.maxMessageBytes = 4 * MB;
    try {
      expect(await send(GRAPH, ['r@example.net'], msg.raw)).toMatch(/^552 5\.3\.4 /);
      expect(stack.sandbox.graph.draftCount).toBe(0);
    } finally {
      stack.sandbox.graph.maxMessageBytes = 150 * MB;
    }
    stack.sandbox.graph.fault({ kind: 'server_error', step: 'upload', times: 1 });
    expect(await send(GRAPH, ['r@example.net'], msg.raw)).toMatch(/^451 4\.4\.0 /);
    expect(stack.sandbox.graph.messages).toEqual([]);
    expect(stack.sandbox.graph.draftCount).toBe(0);
    expect(await send(GRAPH, ['r@example.net'], msg.raw)).toMatch(/^250 /);
    expect(stack.sandbox.graph.attachmentsOf(stack.sandbox.graph.messages[0]!)[0]!.bytes.length).toBe(5 * MB);
  });

  it('refuses a declared SIZE over its maximum at MAIL FROM', async () => {
    const { client } = await RawSmtp.connect(stack.port);
    try {
      await client.cmd('EHLO mta.test');
      expect(line(await client.cmd(`MAIL FROM:<${GRAPH}> SIZE=${GRAPH_MAX_MESSAGE_BYTES + 1}`))).toMatch(/^552 5\.3\.4 /);
      expect(line(await client.cmd(`MAIL FROM:<${GRAPH}> SIZE=${GRAPH_MAX_MESSAGE_BYTES}`))).toMatch(/^250 /);
    } finally {
      client.close();
    }
  });

  it('refreshes the token once on 401 and sends', async () => {
    const before = stack.sandbox.state.tokenRequests(GRAPH);
    stack.sandbox.state.expireAccessTokens(GRAPH);
    const raw = headerTo(GRAPH, ['r@example.net'], [], 'graph-401');
    expect(await send(GRAPH, ['r@example.net'], raw)).toMatch(/^250 /);
    expect(stack.sandbox.state.tokenRequests(GRAPH)).toBe(before + 1);
    expect(stack.sandbox.graph.messages.map((m) => m.sha256)).toEqual([sha256(raw)]);
  });

  it('answers a 401 that survives the refresh with 454, a 403 with 454 and what to grant, a 503 with 451', async () => {
    const g = stack.sandbox.graph;
    g.fault({ kind: 'unauthorized', step: 'create', times: 2 });
    expect(await send(GRAPH, ['r@example.net'], headerTo(GRAPH, ['r@example.net'], [], 'g401'))).toMatch(/^454 4\.7\.0 /);
    g.fault({ kind: 'forbidden', step: 'create', times: 1 });
    expect(await send(GRAPH, ['r@example.net'], headerTo(GRAPH, ['r@example.net'], [], 'g403'))).toMatch(/^454 4\.7\.0 .*Mail\.Send/);
    g.fault({ kind: 'server_error', step: 'patch', times: 1 });
    expect(await send(GRAPH, ['r@example.net'], headerTo(GRAPH, ['r@example.net'], [], 'g503'))).toMatch(/^451 4\.4\.0 /);
    expect(g.messages).toEqual([]);
    expect(g.draftCount).toBe(0); // the draft of the failed PATCH was deleted
  });

  it('a send whose answer never came is checked against the draft: not sent, 451, and no draft left', async () => {
    stack.sandbox.graph.fault({ kind: 'timeout', step: 'send', times: 1 });
    const raw = headerTo(GRAPH, ['r@example.net'], [], 'g-timeout');
    expect(await send(GRAPH, ['r@example.net'], raw)).toMatch(/^451 4\.4\.0 Microsoft Graph did not send/);
    expect(stack.sandbox.graph.messages).toEqual([]);
    expect(stack.sandbox.graph.draftCount).toBe(0);
    expect(await send(GRAPH, ['r@example.net'], raw)).toMatch(/^250 /);
    expect(stack.sandbox.graph.messages.map((m) => m.sha256)).toEqual([sha256(raw)]);
  });

  it('a Graph that keeps the MIME\'s recipients despite the PATCH: nothing is sent, 451, the draft deleted', async () => {
    const g = stack.sandbox.graph;
    g.mimeRecipientsFixed = true;
    const raw = headerTo(GRAPH, ['outsider@example.org'], [], 'g-fixed');
    expect(await send(GRAPH, ['r@example.net'], raw)).toMatch(/^451 4\.5\.0 Microsoft Graph did not keep the recipients/);
    expect(g.requests.get('send')).toBeUndefined();
    expect(g.messages).toEqual([]);
    expect(g.draftCount).toBe(0);
  });

  it('a lost send whose draft cannot be read is answered 451 and left alone: a resend may duplicate, never lose', async () => {
    const g = stack.sandbox.graph;
    g.fault({ kind: 'lost_answer', step: 'send', times: 1 });
    g.fault({ kind: 'server_error', step: 'get' });
    const raw = headerTo(GRAPH, ['r@example.net'], [], 'g-unknown');
    expect(await send(GRAPH, ['r@example.net'], raw)).toMatch(/^451 4\.4\.2 /);
    expect(g.messages.map((m) => m.sha256)).toEqual([sha256(raw)]);
    expect(g.requests.get('get')).toBeGreaterThan(1);
    expect(g.requests.get('delete')).toBeUndefined();
  });

  it('a send whose answer was lost while Exchange was still sending: the draft is watched until sent, 250, delivered once', async () => {
    const g = stack.sandbox.graph;
    // Still a draft when the relay stops waiting for the answer (2 s) and for a second after.
    g.sendingMs = 3_000;
    g.fault({ kind: 'lost_answer', step: 'send', times: 1 });
    const raw = headerTo(GRAPH, ['r@example.net'], [], 'g-sending');
    expect(await send(GRAPH, ['r@example.net'], raw)).toMatch(/^250 2\.0\.0 /);
    expect(g.messages.map((m) => m.sha256)).toEqual([sha256(raw)]);
    expect(g.requests.get('get')).toBeGreaterThan(1); // it was seen as a draft at least once
    expect(g.requests.get('delete')).toBeUndefined();
    expect(g.draftCount).toBe(0);
  });
});

describe('Gmail API', () => {
  it('delivers the MTA\'s bytes from the mailbox to exactly the envelope, an envelope-only recipient by Bcc', async () => {
    const raw = headerTo(GMAIL, ['to@example.net'], ['cc@example.net'], 'gmail-exact');
    const envelope = ['to@example.net', 'cc@example.net', 'bcc-only@example.net'];
    expect(await send(GMAIL, envelope, raw)).toMatch(/^250 2\.0\.0 /);
    const [sent, ...more] = stack.sandbox.gmail.messages;
    expect(more).toEqual([]);
    expect(sent!.sha256).toBe(sha256(raw));
    expect(sent!.mailFrom).toBe(GMAIL);
    expect([...sent!.rcptTo].sort()).toEqual([...envelope].sort());
  });

  it('refuses a message whose header names a recipient outside the envelope (Gmail would send to it) with 554 5.3.3', async () => {
    const raw = headerTo(GMAIL, ['to@example.net'], ['header-only@example.net'], 'gmail-header-only');
    expect(await send(GMAIL, ['to@example.net'], raw)).toMatch(/^554 5\.3\.3 /);
    expect(stack.sandbox.gmail.messages).toEqual([]);
    expect(stack.sandbox.gmail.requests.size).toBe(0);
  });

  it('sends up to the simple request size as JSON, above it by media upload, up to 35 MB; one byte more is 552', async () => {
    const g = stack.sandbox.gmail;
    const sizes = [GMAIL_SIMPLE_MAX_BYTES, GMAIL_SIMPLE_MAX_BYTES + 1, GMAIL_MAX_MESSAGE_BYTES];
    const raws = sizes.map((n, i) => sizedMessage(GMAIL, ['big@example.net'], `gmail-size-${i}`, n));
    for (const raw of raws) expect(await send(GMAIL, ['big@example.net'], raw)).toMatch(/^250 /);
    expect(g.messages.map((m) => m.sha256)).toEqual(raws.map(sha256));
    g.reset();
    const over = sizedMessage(GMAIL, ['big@example.net'], 'gmail-over', GMAIL_MAX_MESSAGE_BYTES + 1);
    expect(await send(GMAIL, ['big@example.net'], over)).toMatch(/^552 5\.3\.4 /);
    expect(g.requests.size).toBe(0);
  }, 60_000);

  it('refreshes the token once on 401; a 403 for the scope is 454 naming gmail.send', async () => {
    const before = stack.sandbox.state.tokenRequests(GMAIL);
    stack.sandbox.state.expireAccessTokens(GMAIL);
    const raw = headerTo(GMAIL, ['r@example.net'], [], 'gmail-401');
    expect(await send(GMAIL, ['r@example.net'], raw)).toMatch(/^250 /);
    expect(stack.sandbox.state.tokenRequests(GMAIL)).toBe(before + 1);
    stack.sandbox.gmail.fault({ kind: 'forbidden', times: 1 });
    expect(await send(GMAIL, ['r@example.net'], headerTo(GMAIL, ['r@example.net'], [], 'gmail-403'))).toMatch(/^454 4\.7\.0 .*gmail\.send/);
  });

  it('a 429 pauses the account for its Retry-After: 451 4.7.1 until then, then it sends', async () => {
    stack.sandbox.gmail.fault({ kind: 'throttle', times: 1, retryAfterS: 2 });
    const raw = headerTo(GMAIL, ['r@example.net'], [], 'gmail-429');
    expect(await send(GMAIL, ['r@example.net'], raw)).toMatch(/^451 4\.7\.1 .*throttling.*try again in [12] s/);
    expect(stack.app.relay.pauses.get(GMAIL)).not.toBeNull();
    // Paused: refused at MAIL, nothing reaches the API.
    expect(await send(GMAIL, ['r@example.net'], raw)).toMatch(/^451 4\.7\.1 /);
    expect(stack.sandbox.gmail.requests.get('send')).toBe(1);
    const until = stack.app.relay.pauses.get(GMAIL)!.until;
    await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now()) + 50));
    expect(await send(GMAIL, ['r@example.net'], raw)).toMatch(/^250 /);
    expect(stack.sandbox.gmail.messages.map((m) => m.sha256)).toEqual([sha256(raw)]);
  });
});

describe('accounts test on API accounts', () => {
  const check = (email: string) => {
    const account = stack.app.relay.accounts.find((a) => a.email === email)!;
    return checkAccount(account, { token: (a) => stack.app.relay.tokens.get(a), upstream: connectorOptions(stack.app.config.upstream) });
  };

  it('passes without sending anything, and on a 403 says what to grant', async () => {
    for (const email of [GRAPH, GMAIL]) expect(await check(email)).toMatchObject({ email, ok: true });
    expect(stack.sandbox.graph.messages.length + stack.sandbox.gmail.messages.length).toBe(0);
    stack.sandbox.graph.fault({ kind: 'forbidden', times: 1 });
    expect(await check(GRAPH)).toMatchObject({ ok: false, stage: 'auth', upstream: stack.sandbox.graph.url, advice: expect.stringMatching(/Mail\.Send and Mail\.ReadWrite.*Test-ApplicationAccessPolicy/) });
    stack.sandbox.gmail.fault({ kind: 'forbidden', times: 1 });
    expect(await check(GMAIL)).toMatchObject({ ok: false, stage: 'auth', advice: expect.stringMatching(/gmail\.send/) });
  });
});

describe('changing the upstream at run time', () => {
  it('an account switched from SMTP to Graph gets a Graph token and sends through Graph from then on', async () => {
    const email = 'switch@contoso.test';
    const s = await startStack({ accounts: [{ email, kind: 'microsoft', senders: [email] }] });
    try {
      const raw1 = headerTo(email, ['r@example.net'], [], 'switch-smtp');
      expect(await sendOnce(s.port, email, ['r@example.net'], raw1.replace(/\r\n\./g, '\r\n..'))).toMatch(/^250 /);
      expect(s.sandbox.messages.map((m) => m.sha256)).toEqual([sha256(raw1)]);

      const doc = sandboxRelayConfig(s.sandbox, [{ account: s.accounts.get(email)!, senders: [email], extra: { upstream: 'graph' } }]);
      const changes = await s.app.relay.applyAccounts(accountsFromConfig(buildConfig(doc, null, { env: {} })));
      expect(changes.changed).toEqual([email]);
      const scopes = s.sandbox.tokens.log(email).map((r) => r.scope);
      expect(scopes.at(-1)).toBe('https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/Mail.Send offline_access');

      const raw2 = headerTo(email, ['r@example.net'], [], 'switch-graph');
      expect(await sendOnce(s.port, email, ['r@example.net'], raw2.replace(/\r\n\./g, '\r\n..'))).toMatch(/^250 2\.0\.0 OK, accepted by Microsoft Graph/);
      expect(s.sandbox.graph.messages.map((m) => m.sha256)).toEqual([sha256(raw2)]);
      expect(s.sandbox.messages).toHaveLength(1);
    } finally {
      await s.stop();
    }
  });
});
