// The pieces of the API upstreams that decide something: which upstream an account may have and
// the scope it asks for, the recipients each API is given, how long a throttle pauses, and how
// an error answer becomes a reply.
import { describe, expect, it } from 'vitest';
import { buildConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/errors.js';
import { accountsFromConfig } from '../../src/routing/account.js';
import { RelayError, toReply } from '../../src/errors/registry.js';
import { withoutBcc } from '../../src/sandbox/gmail-api.js';
import { apiFailure, isThrottle, retryAfterMs } from '../../src/upstream/api/failures.js';
import { gmailBcc } from '../../src/upstream/api/gmail.js';
import { GraphSender, GRAPH_UPLOAD_RANGE_BYTES, graphRecipients } from '../../src/upstream/api/graph.js';
import type { ApiCalls } from '../../src/upstream/api/sender.js';
import { multipartMessage } from '../helpers/api-stack.js';
import { headerRecipients } from '../../src/upstream/api/headers.js';
import type { ApiResponse } from '../../src/upstream/api/http.js';
import { thrown } from '../helpers/thrown.js';

const account = (over: Record<string, unknown>) => ({ email: 'a@x.test', provider: 'microsoft', client_id: 'c', refresh_token: 'r', ...over });
const build = (accounts: unknown[]) => buildConfig({ accounts }, null, { env: {}, checkHost: false });
const res = (status: number, body: unknown = {}, headers: Record<string, string> = {}): ApiResponse => ({ status, headers, body: JSON.stringify(body) });

describe('config', () => {
  it('graph is for Microsoft accounts and gmail_api for Google ones: otherwise a config error naming upstream', () => {
    const e = thrown(() => build([account({ provider: 'google', upstream: 'graph' })]), ConfigError);
    expect(e.path).toBe('accounts[0].upstream');
    expect(thrown(() => build([account({ upstream: 'gmail_api' })]), ConfigError).path).toBe('accounts[0].upstream');
    expect(build([account({})]).accounts[0]!.upstream).toBe('smtp');
  });

  it('the scope follows the upstream', () => {
    const cfg = build([
      account({ email: 's@x.test' }),
      account({ email: 'g@x.test', upstream: 'graph' }),
      account({ email: 'app@x.test', upstream: 'graph', auth: 'client_credentials', refresh_token: undefined, client_secret: 's', tenant: 'x.test' }),
      account({ email: 'm@x.test', provider: 'google', upstream: 'gmail_api' }),
    ]);
    expect(accountsFromConfig(cfg).map((a) => [a.email, a.scope])).toEqual([
      ['s@x.test', 'https://outlook.office.com/SMTP.Send offline_access'],
      ['g@x.test', 'https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/Mail.Send offline_access'],
      ['app@x.test', 'https://graph.microsoft.com/.default'],
      ['m@x.test', null],
    ]);
  });
});

const mime = (header: string) => Buffer.from(header + '\r\n\r\nbody\r\n');

describe('recipients', () => {
  it('reads To/Cc/Bcc with names, groups and folded lines, lower-cased', () => {
    const h = headerRecipients(mime('From: x@y\r\nTo: "Doe, J" <J@Example.net>,\r\n\tteam: a@x.test, b@x.test;\r\nCc: c@x.test\r\nSubject: To: not@this.test'));
    expect(h.to.map((a) => a.address)).toEqual(['j@example.net', 'a@x.test', 'b@x.test']);
    expect(h.to[0]!.name).toBe('Doe, J');
    expect(h.cc.map((a) => a.address)).toEqual(['c@x.test']);
    expect(h.bcc).toEqual([]);
  });

  it('Graph: header addresses in the envelope keep To/Cc, envelope-only ones are Bcc, header-only ones are dropped', () => {
    const r = graphRecipients(mime('To: A <a@x.test>, h@x.test\r\nCc: c@x.test'), ['A@x.test', 'c@x.test', 'e@x.test']);
    expect(r).toEqual({
      toRecipients: [{ emailAddress: { address: 'a@x.test', name: 'A' } }],
      ccRecipients: [{ emailAddress: { address: 'c@x.test' } }],
      bccRecipients: [{ emailAddress: { address: 'e@x.test' } }],
    });
  });

  it('Gmail: a Bcc field for envelope-only recipients; a header-only recipient refuses the message', () => {
    expect(gmailBcc(mime('To: a@x.test'), ['a@x.test', 'e@x.test', 'f@x.test']).toString()).toBe('Bcc: e@x.test, f@x.test\r\n');
    expect(gmailBcc(mime('To: a@x.test'), ['a@x.test']).length).toBe(0);
    const e = thrown(() => gmailBcc(mime('To: a@x.test, h@x.test'), ['a@x.test']), RelayError);
    expect(toReply(e)).toEqual({ code: 554, lines: [expect.stringMatching(/^5\.3\.3 /)] });
  });

  it('the fake Gmail removes Bcc fields (folded too) and nothing else', () => {
    const m = Buffer.from('Bcc: e@x.test,\r\n f@x.test\r\nTo: a@x.test\r\nBCC: g@x.test\r\n\r\nBcc: in the body\r\n');
    expect(withoutBcc(m).toString()).toBe('To: a@x.test\r\n\r\nBcc: in the body\r\n');
  });
});

describe('error answers', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('the pause is the Retry-After (seconds or date), Gmail\'s "Retry after" time, else 1 min or 1 h for a daily limit', () => {
    expect(retryAfterMs(res(429, {}, { 'retry-after': '7' }), now)).toBe(7_000);
    expect(retryAfterMs(res(429, {}, { 'retry-after': 'Thu, 01 Jan 2026 00:00:30 GMT' }), now)).toBe(30_000);
    expect(retryAfterMs(res(429, { error: { message: 'User-rate limit exceeded.  Retry after 2026-01-01T00:02:00.000Z' } }), now)).toBe(120_000);
    expect(retryAfterMs(res(429), now)).toBe(60_000);
    expect(retryAfterMs(res(403, { error: { errors: [{ reason: 'dailyLimitExceeded' }] } }), now)).toBe(3_600_000);
  });

  it('a Gmail 403 with a rate-limit reason is throttling; one for a permission is not', () => {
    expect(isThrottle('gmail', res(403, { error: { errors: [{ reason: 'userRateLimitExceeded' }] } }))).toBe(true);
    expect(isThrottle('gmail', res(403, { error: { errors: [{ reason: 'insufficientPermissions' }] } }))).toBe(false);
    expect(isThrottle('graph', res(403, { error: { code: 'ErrorAccessDenied' } }))).toBe(false);
  });

  it('replies: 401 and 403 are 454 4.7.0, 413 is 552 5.3.4, 400 is 554 5.6.0, 5xx is 451 4.4.0; all but 504 certainly not sent', () => {
    const reply = (status: number, body: unknown = { error: { code: 'X', message: 'm' } }) => apiFailure('graph', res(status, body), 'send');
    expect(toReply(reply(401)).code).toBe(454);
    expect(toReply(reply(403))).toEqual({ code: 454, lines: [expect.stringMatching(/^4\.7\.0 Microsoft Graph refused \(X\): grant .*Mail\.Send/)] });
    expect(toReply(reply(413))).toMatchObject({ code: 552, lines: [expect.stringMatching(/^5\.3\.4 /)] });
    expect(toReply(reply(400, { error: { code: 'ErrorInvalidRecipients', message: 'bad\r\nsecond line' } }))).toEqual({ code: 554, lines: ['5.6.0 Microsoft Graph refused the message (ErrorInvalidRecipients: bad)'] });
    expect(toReply(reply(503))).toMatchObject({ code: 451, lines: [expect.stringMatching(/^4\.4\.0 .*HTTP 503/)] });
    expect([reply(503).notSent, reply(504).notSent, reply(400).notSent]).toEqual([true, false, true]);
  });
});

describe('Graph upload sessions', () => {
  const MB = 1024 * 1024;
  const file = Buffer.alloc(7 * MB, 7);
  const mime = Buffer.from(multipartMessage('a@x.test', ['b@x.test'], 'up', [{ type: 'application/pdf', filename: 'f.pdf', bytes: file }]).raw, 'latin1');
  type Seen = { how: 'call' | 'upload'; method: string; url: string; headers?: Record<string, string>; size: number };
  const recording = (uploadUrl: string) => {
    const seen: Seen[] = [];
    let put = 0;
    const calls: ApiCalls = {
      call: async (req) => {
        seen.push({ how: 'call', method: req.method, url: req.url, size: req.body?.length ?? 0 });
        if (req.url.endsWith('/messages')) return res(201, { id: 'D1' });
        if (req.url.endsWith('/createUploadSession')) return res(201, { uploadUrl, nextExpectedRanges: ['0-'] });
        return res(req.url.endsWith('/send') ? 202 : 200, {});
      },
      upload: async (req) => {
        seen.push({ how: 'upload', method: req.method, url: req.url, ...(req.headers ? { headers: req.headers } : {}), size: req.body?.length ?? 0 });
        return res(++put === Math.ceil(file.length / GRAPH_UPLOAD_RANGE_BYTES) ? 201 : 200, {});
      },
      fail: (r, step) => new RelayError('API_REFUSED', `${step} ${r.status}`),
    };
    return { calls, seen };
  };

  it('creates the draft without the file, then PUTs the file in ranges under 4 MB to the upload URL, without the token, before sending', async () => {
    const { calls, seen } = recording('https://outlook.example/upload/s1?authtoken=t');
    await new GraphSender('https://graph.example').send(calls, 'a@x.test', mime, ['b@x.test']);
    expect(seen.map((s) => `${s.how} ${s.method} ${new URL(s.url).pathname.split('/').pop()}`)).toEqual([
      'call POST messages',
      'call PATCH D1',
      'call POST createUploadSession',
      'upload PUT s1',
      'upload PUT s1',
      'upload PUT s1',
      'call POST send',
    ]);
    expect(seen[0]!.size).toBeLessThan(4 * MB);
    expect(seen.filter((s) => s.how === 'upload').map((s) => s.headers?.['content-range'])).toEqual([
      `bytes 0-${3 * MB - 1}/${7 * MB}`,
      `bytes ${3 * MB}-${6 * MB - 1}/${7 * MB}`,
      `bytes ${6 * MB}-${7 * MB - 1}/${7 * MB}`,
    ]);
  });

  it('sends no bytes to an upload URL on a weaker scheme than Graph\'s, and deletes the draft', async () => {
    const { calls, seen } = recording('http://outlook.example/upload/s1?authtoken=t');
    const e = await new GraphSender('https://graph.example').send(calls, 'a@x.test', mime, ['b@x.test']).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RelayError);
    expect((e as RelayError).message).not.toContain('authtoken');
    expect(seen.some((s) => s.how === 'upload')).toBe(false);
    expect(seen.at(-1)!.method).toBe('DELETE');
  });
});

