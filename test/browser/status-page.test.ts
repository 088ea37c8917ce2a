// The status page in a real browser: Debian's Chromium, headless, driven by puppeteer-core. The
// page renders every account; when the token endpoint starts failing for one account and the
// provider refuses the other's login, the page shows both changes by itself (no reload); the
// provider's reply text, which carries markup here, stays text; and the browser logs no error.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawMessage, startStack, type Stack } from '../helpers/stack.js';
import { RawSmtp } from '../helpers/smtp-client.js';
import { formatReply } from '../../src/smtp/reply.js';

const A = 'a@gmail.test';
const B = 'b@outlook.test';
/** Allowed one message an hour: its second is deferred at the limit. */
const C = 'c@gmail.test';
/** A provider reply that would run script if the page ever wrote data as markup. */
const HOSTILE = 'Authentication unsuccessful <img src=x onerror="window.__pwned=1"> SmtpClientAuthentication is disabled for the Tenant.';
const WAIT_MS = 30_000;
const CHROMIUM = '/usr/bin/chromium';

// The page's globals, as the functions that run inside the browser use them (the test program
// is compiled without the DOM library).
interface PageNode {
  textContent: string | null;
}
declare const document: {
  querySelector(selector: string): PageNode | null;
  querySelectorAll(selector: string): Iterable<PageNode>;
  getElementById(id: string): PageNode | null;
};
declare const window: { __mark?: number; __pwned?: number };

let stack: Stack;
let browser: Browser;
let page: Page;
let profile: string;
/** Console errors, uncaught exceptions and failed requests seen by the page. */
const problems: string[] = [];

/** The text of one field (a `data-field` cell) of the account's row, as the page shows it now. */
const field = (email: string, name: string) =>
  page.$eval(`tr[data-account="${email}"] td[data-field="${name}"]`, (td) => td.textContent ?? '');

/** Waits, in the page, until the account's field contains `text` (the page refreshes itself). */
async function waitForField(email: string, name: string, text: string): Promise<void> {
  await page.waitForFunction(
    (sel: string, t: string) => document.querySelector(sel)?.textContent?.includes(t) ?? false,
    { timeout: WAIT_MS, polling: 100 },
    `tr[data-account="${email}"] td[data-field="${name}"]`,
    text,
  );
}

beforeAll(async () => {
  stack = await startStack({
    accounts: [
      { email: A, kind: 'google', senders: [A], extra: { limits: { messages_per_day: 2000 } } },
      { email: B, kind: 'microsoft', senders: [B] },
      { email: C, kind: 'google', senders: [C], extra: { limits: { messages_per_hour: 1 } } },
    ],
    overrides: { tokens: { request_timeout_ms: 1_000, retry_min_ms: 200, retry_max_ms: 1_000 } },
  });
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: this test drives Debian's Chromium. Install it with scripts/test-deps.sh (apt-get install chromium).`);
  }
  profile = mkdtempSync(join(tmpdir(), 'xoauth2-relay-chromium-'));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
  page = await browser.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${(e as Error).message}`));
  page.on('requestfailed', (r) => problems.push(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe('the status page in headless Chromium', () => {
  it('renders the accounts, follows their state changes without a reload, keeps data as text, logs no error', async () => {
    // One message through B, so its sends show; two through C, the second over its limit.
    const { client } = await RawSmtp.connect(stack.port);
    await client.cmd('EHLO mta.test');
    expect((await client.send(B, ['to@example.net'], rawMessage(B, ['to@example.net'], 'page-1'))).code).toBe(250);
    expect((await client.send(C, ['to@example.net'], rawMessage(C, ['to@example.net'], 'page-c1'))).code).toBe(250);
    const limited = await client.send(C, ['to@example.net'], rawMessage(C, ['to@example.net'], 'page-c2'));
    expect(`${limited.code} ${limited.lines[0]}`).toMatch(/^451 4\.7\.1 Sending limit reached/);

    const res = await page.goto(`http://127.0.0.1:${stack.app.adminPort}/`, { waitUntil: 'load' });
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-security-policy']).toMatch(/default-src 'none'/);
    await page.waitForSelector(`tr[data-account="${A}"]`, { timeout: WAIT_MS });
    await page.waitForSelector(`tr[data-account="${B}"]`, { timeout: WAIT_MS });
    await page.waitForFunction(() => document.getElementById('banner')?.textContent?.startsWith('Ready'), { timeout: WAIT_MS });
    expect(await page.$eval('#banner', (b) => b.textContent)).toContain(`Cannot send now: ${C} (at_limit_until).`);

    expect(await field(A, 'health')).toContain('Sending');
    expect(await field(B, 'health')).toContain('Sending');
    expect(await field(A, 'token')).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(in \d+ min\)$/);
    expect(await field(A, 'connections')).toMatch(/^\d+ in use, \d+ idle/);
    await waitForField(B, 'sent', 'last hour: 1 (no limit counted)');
    expect(await field(B, 'sent')).toContain('last day: 1 (no limit counted)');
    expect(await field(A, 'sent')).toContain('last day: 0 of 2000');
    expect(await field(C, 'health')).toContain('At its sending limit');
    expect(await field(C, 'sent')).toMatch(/last hour: 1 of 1.*at limit until \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(in \d+ (s|min)\)/);
    // A mark in the page's own memory: it is still there at the end only if the page never reloaded.
    await page.evaluate(() => (window.__mark = 42));

    // The token endpoint fails for A, and the provider forgets A's token and drops its connections:
    // A's pool needs a new token that the endpoint will not give.
    stack.sandbox.tokens.injectFault({ status: 500 }, { email: A });
    stack.sandbox.state.revokeAccessTokens(A);
    stack.sandbox.smtp.dropAllConnections();
    await waitForField(A, 'health', 'Token endpoint failing');
    expect(await field(A, 'health')).toContain('token_endpoint_failing, cannot send now');
    expect(await field(A, 'error')).toContain('HTTP 500');

    // A message for A now is deferred (454 at MAIL); the page lists it with the reply the MTA got.
    const refused = await client.send(A, ['to@example.net'], rawMessage(A, ['to@example.net'], 'page-2'));
    client.close();
    expect(refused.code).toBe(454);
    // The inbound engine recorded it (src/obs/refusals.ts), once, as the reply the MTA got: the
    // page can only show what the engine records, so nothing here records it for the engine.
    expect(stack.app.refusals.recent().filter((r) => r.account === A)).toEqual([
      expect.objectContaining({ stage: 'mail', code: 454, reason: 'no_token', reply: formatReply(refused) }),
    ]);
    await page.waitForFunction(
      (t: string) => [...document.querySelectorAll('#refusals td[data-field="reply"]')].some((td) => td.textContent?.includes(t)),
      { timeout: WAIT_MS, polling: 100 },
      '454 4.7.0 Temporary authentication failure',
    );
    const row = await page.$eval('#refusals tr', (tr) => tr.textContent ?? '');
    expect(row).toContain(A);
    expect(row).toContain('no_token');
    // What the page reads holds no secret of any account.
    const json = await (await fetch(`http://127.0.0.1:${stack.app.adminPort}/status.json`)).text();
    for (const a of stack.accounts.values()) for (const secret of [a.refreshToken, a.clientSecret]) if (secret) expect(json).not.toContain(secret);

    // B's provider refuses every login, in a reply that carries markup: shown, as text.
    stack.sandbox.smtp.addFault({ at: 'auth', user: B, code: 535, enhanced: '5.7.139', text: HOSTILE });
    stack.sandbox.smtp.dropAllConnections();
    await waitForField(B, 'health', 'Provider refuses login with a fresh token');
    expect(await field(B, 'error')).toContain(`535 5.7.139 ${HOSTILE}`);
    expect(await field(B, 'health')).toMatch(/SMTP AUTH is disabled for the whole tenant/);
    expect(await page.$$eval('img', (imgs) => imgs.length)).toBe(0);
    await page.waitForFunction(() => document.getElementById('banner')?.textContent?.startsWith('Not ready: no account can send'), { timeout: WAIT_MS });

    // Healed: the page shows it, again without a reload.
    stack.sandbox.tokens.clearFaults();
    stack.sandbox.smtp.clearFaults();
    await waitForField(A, 'health', 'Sending');
    await waitForField(B, 'health', 'Sending');
    expect(await page.evaluate(() => window.__mark)).toBe(42);
    expect(await page.evaluate(() => window.__pwned)).toBeUndefined();
    expect(problems).toEqual([]);
  }, 180_000);
});
