// The consent flows against the sandbox, in process: Google's authorization code with PKCE and
// a loopback redirect, Microsoft's device code with its polling rules. The test is the person at
// the browser: it follows the consent URL, or approves the device code.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { ConsentError } from '../../src/tokens/grant.js';
import { authorizeWithPkce, type PkceFlowOptions } from '../../src/tokens/grants/auth-code-pkce.js';
import { authorizeWithDeviceCode, type DeviceFlowOptions, type UserCode } from '../../src/tokens/grants/device-code.js';
import { postForm } from '../../src/tokens/grants/token-request.js';

let sandbox: SandboxProvider;
beforeAll(async () => {
  sandbox = await SandboxProvider.start();
});
afterAll(() => sandbox.stop());

/** The person's browser: GET the consent URL, then follow the redirect it answers with. */
async function browse(url: string): Promise<{ location: string; landed: Response }> {
  const consent = await fetch(url, { redirect: 'manual' });
  expect(consent.status).toBe(302);
  const location = consent.headers.get('location')!;
  return { location, landed: await fetch(location) };
}

describe('authorization code with PKCE and a loopback redirect (Google)', () => {
  const pkceOptions = (email: string, client: { clientId: string; clientSecret: string | null }, over: Partial<PkceFlowOptions> = {}): PkceFlowOptions => ({
    authUrl: sandbox.tokens.authorizeUrl(),
    tokenUrl: sandbox.tokenUrl('google'),
    clientId: client.clientId,
    clientSecret: client.clientSecret,
    scope: 'https://mail.google.com/',
    email,
    extraParams: { access_type: 'offline', prompt: 'consent' },
    timeoutMs: 10_000,
    requestTimeoutMs: 5_000,
    onConsentUrl: () => undefined,
    ...over,
  });

  it('prints a consent URL with an S256 challenge, takes the redirect on 127.0.0.1 and gets a refresh token that works', async () => {
    const before = sandbox.addAccount({ email: 'pat@gmail.test', kind: 'google' });
    let consentUrl = '';
    let browsed: Promise<{ location: string; landed: Response }> | null = null;
    const result = await authorizeWithPkce(
      pkceOptions('pat@gmail.test', before, {
        onConsentUrl: (url) => {
          consentUrl = url;
          browsed = browse(url);
        },
      }),
    );
    const q = new URL(consentUrl).searchParams;
    expect(Object.fromEntries(q)).toMatchObject({
      response_type: 'code',
      client_id: before.clientId,
      scope: 'https://mail.google.com/',
      code_challenge_method: 'S256',
      login_hint: 'pat@gmail.test',
      access_type: 'offline',
      prompt: 'consent',
    });
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get('state')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    const redirectUri = new URL(q.get('redirect_uri')!);
    expect(redirectUri.hostname).toBe('127.0.0.1');
    expect(Number(redirectUri.port)).toBeGreaterThan(0);
    const { location, landed } = await browsed!;
    expect(new URL(location).searchParams.get('state')).toBe(q.get('state'));
    expect(landed.status).toBe(200);

    // A new consent: a new refresh token, the one the provider now honours.
    expect(result.refreshToken).not.toBe(before.refreshToken);
    expect(result.refreshToken).toBe(sandbox.state.credentials('pat@gmail.test').refreshToken);
    const refreshed = await postForm(
      sandbox.tokenUrl('google'),
      new URLSearchParams({ grant_type: 'refresh_token', client_id: before.clientId, client_secret: before.clientSecret!, refresh_token: result.refreshToken }),
      5000,
    );
    expect(refreshed.access_token).toEqual(expect.any(String));
    // The code was used once; the listener is closed.
    await expect(fetch(location)).rejects.toThrow();
  });

  it('a request with another state is refused and does not end the flow', async () => {
    const client = sandbox.addAccount({ email: 'quinn@gmail.test', kind: 'google' });
    const warnings: string[] = [];
    const result = await authorizeWithPkce(
      pkceOptions('quinn@gmail.test', client, {
        onWarning: (w) => warnings.push(w),
        onConsentUrl: (url) => {
          const redirect = new URL(new URL(url).searchParams.get('redirect_uri')!);
          void (async () => {
            // A page in the same browser fires a forged redirect at the port first.
            const forged = await fetch(`${redirect.origin}/?code=attacker-code&state=guessed`);
            expect(forged.status).toBe(400);
            await browse(url);
          })();
        },
      }),
    );
    expect(result.refreshToken).toBe(sandbox.state.credentials('quinn@gmail.test').refreshToken);
    expect(warnings).toEqual(['ignored a request to the redirect address with a wrong state']);
  });

  it('a refused consent ends the flow with ConsentError', async () => {
    const client = sandbox.addAccount({ email: 'ray@gmail.test', kind: 'google' });
    sandbox.consent.refuseConsent();
    const flow = authorizeWithPkce(pkceOptions('ray@gmail.test', client, { onConsentUrl: (url) => void browse(url) }));
    await expect(flow).rejects.toThrow(new ConsentError('consent refused: access_denied'));
  });

  it('no consent within the timeout ends the flow and closes the listener', async () => {
    const client = sandbox.addAccount({ email: 'sam@gmail.test', kind: 'google' });
    let redirect = '';
    const flow = authorizeWithPkce(pkceOptions('sam@gmail.test', client, { timeoutMs: 150, onConsentUrl: (url) => (redirect = new URL(url).searchParams.get('redirect_uri')!) }));
    await expect(flow).rejects.toThrow(ConsentError);
    await expect(fetch(redirect)).rejects.toThrow();
  });

  it('the sandbox checks the verifier, the redirect_uri and single use of the code', async () => {
    const client = sandbox.addAccount({ email: 'tess@gmail.test', kind: 'google' });
    const verifier = 'v'.repeat(43);
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const redirectUri = 'http://127.0.0.1:9/';
    const authorize = new URL(sandbox.tokens.authorizeUrl());
    for (const [k, v] of Object.entries({ response_type: 'code', client_id: client.clientId, redirect_uri: redirectUri, scope: 'https://mail.google.com/', code_challenge: challenge, code_challenge_method: 'S256', login_hint: 'tess@gmail.test' })) {
      authorize.searchParams.set(k, v);
    }
    const code = new URL((await fetch(authorize, { redirect: 'manual' })).headers.get('location')!).searchParams.get('code')!;
    const redeem = (over: Record<string, string>) =>
      postForm(
        sandbox.tokenUrl('google'),
        new URLSearchParams({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirectUri, client_id: client.clientId, client_secret: client.clientSecret!, ...over }),
        5000,
      );
    await expect(redeem({ code_verifier: 'w'.repeat(43) })).rejects.toMatchObject({ oauthError: 'invalid_grant', description: 'Invalid code verifier.' });
    await expect(redeem({ redirect_uri: 'http://127.0.0.1:10/' })).rejects.toMatchObject({ oauthError: 'invalid_grant' });
    await expect(redeem({})).resolves.toMatchObject({ refresh_token: expect.any(String) });
    await expect(redeem({})).rejects.toMatchObject({ oauthError: 'invalid_grant' });

    // Plain PKCE or a non-loopback redirect never gets a code.
    authorize.searchParams.set('code_challenge_method', 'plain');
    const plain = new URL((await fetch(authorize, { redirect: 'manual' })).headers.get('location')!);
    expect(plain.searchParams.get('error')).toBe('invalid_request');
    authorize.searchParams.set('code_challenge_method', 'S256');
    authorize.searchParams.set('redirect_uri', 'https://attacker.example/');
    expect((await fetch(authorize, { redirect: 'manual' })).status).toBe(400);
  });
});

describe('device code (Microsoft)', () => {
  const deviceOptions = (client: { clientId: string }, over: Partial<DeviceFlowOptions> = {}): DeviceFlowOptions => ({
    deviceCodeUrl: `${sandbox.tokens.authority()}/common/oauth2/v2.0/devicecode`,
    tokenUrl: `${sandbox.tokens.authority()}/common/oauth2/v2.0/token`,
    clientId: client.clientId,
    clientSecret: null,
    scope: 'https://outlook.office.com/SMTP.Send offline_access',
    requestTimeoutMs: 5000,
    onUserCode: () => undefined,
    ...over,
  });

  it('polls at the interval, adds 5 s after slow_down, waits through authorization_pending, then gets a refresh token', async () => {
    const client = sandbox.addAccount({ email: 'uma@outlook.test', kind: 'microsoft', clientSecret: null });
    sandbox.consent.setDeviceTiming({ intervalSec: 1, expiresInSec: 900 });
    const sleeps: number[] = [];
    let shown: UserCode | null = null;
    const result = await authorizeWithDeviceCode(
      deviceOptions(client, {
        sleep: async (ms) => void sleeps.push(ms),
        onUserCode: (code) => {
          shown = code;
          sandbox.consent.queueDeviceAnswers(code.userCode, ['slow_down', 'authorization_pending', 'authorization_pending']);
          sandbox.consent.approveDevice(code.userCode, 'uma@outlook.test');
        },
      }),
    );
    expect(shown).toMatchObject({ verificationUri: 'https://microsoft.com/devicelogin', expiresInSec: 900, userCode: expect.stringMatching(/^[A-Z2-9]{9}$/) });
    expect(sleeps).toEqual([1000, 6000, 6000, 6000]);
    expect(sandbox.consent.devicePolls(shown!.userCode)).toHaveLength(4);
    expect(result.refreshToken).toBe(sandbox.state.credentials('uma@outlook.test').refreshToken);
    expect(result.scope).toBe('https://outlook.office.com/SMTP.Send');
  });

  it('gives up at expires_in without another poll', async () => {
    const client = sandbox.addAccount({ email: 'vic@outlook.test', kind: 'microsoft', clientSecret: null });
    sandbox.consent.setDeviceTiming({ intervalSec: 5, expiresInSec: 12 });
    let clock = 0;
    let userCode = '';
    const flow = authorizeWithDeviceCode(
      deviceOptions(client, {
        now: () => clock,
        sleep: async (ms) => void (clock += ms),
        onUserCode: (code) => (userCode = code.userCode),
      }),
    );
    await expect(flow).rejects.toThrow(/expired before the sign-in was completed/);
    // Polls at 5 s and 10 s; at 15 s the code is past its 12 s.
    expect(sandbox.consent.devicePolls(userCode)).toHaveLength(2);
  });

  it('ends on the endpoint\'s expired_token and on a declined sign-in', async () => {
    const client = sandbox.addAccount({ email: 'wes@outlook.test', kind: 'microsoft', clientSecret: null });
    sandbox.consent.setDeviceTiming({ intervalSec: 1, expiresInSec: 900 });
    const declined = authorizeWithDeviceCode(deviceOptions(client, { sleep: async () => undefined, onUserCode: (c) => sandbox.consent.denyDevice(c.userCode) }));
    await expect(declined).rejects.toThrow(new ConsentError('the sign-in was declined'));

    // The provider's clock is the one that counts: it says expired_token while the client's deadline is far.
    let providerClock = Date.now();
    const provider = await SandboxProvider.start({ now: () => providerClock });
    try {
      const c = provider.addAccount({ email: 'wes@outlook.test', kind: 'microsoft', clientSecret: null });
      provider.consent.setDeviceTiming({ intervalSec: 1, expiresInSec: 900 });
      const expired = authorizeWithDeviceCode({
        ...deviceOptions(c),
        deviceCodeUrl: `${provider.tokens.authority()}/common/oauth2/v2.0/devicecode`,
        tokenUrl: `${provider.tokens.authority()}/common/oauth2/v2.0/token`,
        sleep: async () => void (providerClock += 901_000),
      });
      await expect(expired).rejects.toThrow(/expired before the sign-in was completed/);
      expect(provider.tokens.log().map((r) => r.error)).toEqual([null, 'expired_token']);
    } finally {
      await provider.stop();
    }
  });
});
