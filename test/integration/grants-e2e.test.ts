// Accounts without a refresh token, end to end against the sandbox: a Google service account with
// domain-wide delegation (JWT bearer, RFC 7523) and a Microsoft app (client credentials). Also the
// sandbox's own checks of the JWT, so that "the relay's assertion is accepted" means something.
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../../src/config/load.js';
import { readServiceAccountKey } from '../../src/config/service-account-key.js';
import { accountsFromConfig } from '../../src/routing/account.js';
import { SandboxProvider, type ServiceAccountKeyFile } from '../../src/sandbox/index.js';
import { serviceAccountGrant, signAssertion } from '../../src/tokens/grants/service-account.js';
import { postForm } from '../../src/tokens/grants/token-request.js';
import { captureLog } from '../helpers/log-capture.js';
import { sendOnce } from '../helpers/smtp-client.js';
import { rawMessage, sha256, startStack } from '../helpers/stack.js';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

let sandbox: SandboxProvider;
let dir: string;
beforeAll(async () => {
  sandbox = await SandboxProvider.start();
  dir = mkdtempSync(join(tmpdir(), 'relay-grants-'));
});
afterAll(async () => {
  await sandbox.stop();
  rmSync(dir, { recursive: true, force: true });
});

function writeKeyFile(name: string, key: ServiceAccountKeyFile): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(key), { mode: 0o600 });
  return file;
}

const otherPrivateKeyPem = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

const serviceAccountCredentials = (file: string) => ({ auth: 'service_account', service_account_file: file });

/** A relay with one mailbox sending through a new service account delegated for `domains`. */
async function serviceAccountStack(email: string, domains: string[]) {
  sandbox.addAccount({ email, kind: 'google' });
  const file = writeKeyFile(`sa-${email}.json`, sandbox.addServiceAccount({ domains }));
  return startStack({ provider: sandbox, accounts: [{ email, kind: 'google', senders: [email], credentials: serviceAccountCredentials(file) }] });
}

describe('Google service account (domain-wide delegation)', () => {
  it('the relay signs an assertion for the mailbox, gets its token and sends as it', async () => {
    const stack = await serviceAccountStack('alice@example.com', ['example.com']);
    try {
      const raw = rawMessage('alice@example.com', ['to@example.net'], 'sa-1');
      expect(await sendOnce(stack.port, 'alice@example.com', ['to@example.net'], raw)).toMatch(/^250 /);
      const arrived = sandbox.messages.filter((m) => m.sha256 === sha256(raw));
      expect(arrived).toHaveLength(1);
      expect(arrived[0]!.authUser).toBe('alice@example.com');
      const log = sandbox.tokens.log('alice@example.com');
      expect(log.map((r) => [r.grantType, r.status])).toEqual([[JWT_BEARER, 200]]);
      expect(stack.app.relay.tokens.statusOf('alice@example.com')?.health).toBe('healthy');
    } finally {
      await stack.stopRelay();
    }
  });

  it('without the delegation for the mailbox\'s domain the account needs consent and mail gets 454', async () => {
    const stack = await serviceAccountStack('dave@elsewhere.test', ['example.com']);
    try {
      const status = stack.app.relay.tokens.statusOf('dave@elsewhere.test')!;
      expect(status.health).toBe('needs_consent');
      expect(status.lastError).toBe('token endpoint answered HTTP 400 unauthorized_client');
      const raw = rawMessage('dave@elsewhere.test', ['to@example.net'], 'sa-2');
      expect(await sendOnce(stack.port, 'dave@elsewhere.test', ['to@example.net'], raw)).toMatch(/^454 4\.7\.0 /);
    } finally {
      await stack.stopRelay();
    }
  });

  it('reads the key file at every grant, so a key replaced on disk is used at the next refresh', async () => {
    const file = writeKeyFile('sa-rotating.json', sandbox.addServiceAccount());
    const config = buildConfig(
      { providers: { google: { token_url: sandbox.tokenUrl('google') } }, accounts: [{ email: 'alice@example.com', provider: 'google', ...serviceAccountCredentials(file) }] },
      null,
      { env: {} },
    );
    const [account] = accountsFromConfig(config);
    await expect(serviceAccountGrant(account!, null, 5000)).resolves.toMatchObject({ refreshToken: null });
    // The key is replaced by one the provider does not know (deleted in the console, say).
    const replaced = { ...(JSON.parse(readFileSync(file, 'utf8')) as object), private_key: otherPrivateKeyPem() };
    writeFileSync(file, JSON.stringify(replaced));
    await expect(serviceAccountGrant(account!, null, 5000)).rejects.toMatchObject({ kind: 'invalid_grant', needsConsent: true });
  });

  it('the assertion carries the claims Google requires (RS256, kid, iss, sub, aud, scope, one hour)', async () => {
    const key = readServiceAccountKey(writeKeyFile('sa-claims.json', sandbox.addServiceAccount()), 'unused');
    const now = Date.UTC(2030, 0, 1, 12, 0, 0);
    const jwt = await signAssertion(key, 'someone@example.com', 'https://mail.google.com/', now);
    expect(decodeProtectedHeader(jwt)).toEqual({ alg: 'RS256', typ: 'JWT', kid: key.privateKeyId });
    expect(decodeJwt(jwt)).toEqual({
      iss: key.clientEmail,
      sub: 'someone@example.com',
      aud: sandbox.tokenUrl('google'),
      scope: 'https://mail.google.com/',
      iat: now / 1000,
      exp: now / 1000 + 3600,
    });
  });

  describe('the sandbox checks the assertion as Google does', () => {
    let key: ServiceAccountKeyFile;
    const claims = () => ({ scope: 'https://mail.google.com/' });
    const base = (privateKey = key.private_key) => ({ privateKey, iss: key.client_email, sub: 'alice@example.com', aud: sandbox.tokenUrl('google'), lifetime: 3600 });
    async function grant(opts: ReturnType<typeof base>, payload: Record<string, unknown> = claims(), kid = key.private_key_id) {
      const now = Math.floor(Date.now() / 1000);
      let jwt = new SignJWT(payload).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid }).setIssuer(opts.iss).setAudience(opts.aud).setIssuedAt(now).setExpirationTime(now + opts.lifetime);
      if (opts.sub) jwt = jwt.setSubject(opts.sub);
      const assertion = await jwt.sign(createPrivateKey(opts.privateKey));
      return postForm(sandbox.tokenUrl('google'), new URLSearchParams({ grant_type: JWT_BEARER, assertion }), 5000);
    }
    beforeAll(() => {
      key = sandbox.addServiceAccount({ domains: ['example.com'] });
    });

    it('a correct one gets a token and nothing else (no refresh token, no scope)', async () => {
      const body = await grant(base());
      expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'token_type']);
    });

    it('refuses a foreign signature, a wrong kid, a wrong audience, a long life, no sub, no mail scope', async () => {
      const otherKey = otherPrivateKeyPem();
      const cases: Array<[() => Promise<unknown>, string, unknown]> = [
        [() => grant(base(otherKey)), 'invalid_grant', 'Invalid JWT Signature.'],
        [() => grant(base(), claims(), 'not-the-kid'), 'invalid_grant', 'Invalid JWT Signature.'],
        [() => grant({ ...base(), aud: 'https://oauth2.googleapis.com/token' }), 'invalid_grant', 'Invalid JWT: aud claim does not match the token endpoint.'],
        [() => grant({ ...base(), lifetime: 7200 }), 'invalid_grant', expect.stringContaining('short-lived token (60 minutes)')],
        [() => grant({ ...base(), sub: '' }), 'invalid_grant', 'Invalid email or User ID'],
        // gmail.send is delegated for the Gmail API upstream; a scope that cannot send mail is not.
        [() => grant(base(), { scope: 'https://www.googleapis.com/auth/drive' }), 'invalid_scope', 'Invalid scope'],
      ];
      for (const [answer, oauthError, description] of cases) {
        await expect(answer()).rejects.toMatchObject({ status: 400, oauthError, description });
      }
    });
  });
});

describe('Microsoft app (client credentials)', () => {
  it('the relay gets an app token in the app\'s tenant and sends as a mailbox the app was given', async () => {
    sandbox.addAccount({ email: 'bob@contoso.test', kind: 'microsoft' });
    const app = sandbox.addApp({ tenant: 'contoso.test', mailboxes: ['bob@contoso.test'] });
    const stack = await startStack({
      provider: sandbox,
      accounts: [
        {
          email: 'bob@contoso.test',
          kind: 'microsoft',
          senders: ['bob@contoso.test'],
          credentials: { auth: 'client_credentials', client_id: app.clientId, client_secret: app.clientSecret, tenant: 'contoso.test' },
        },
      ],
    });
    try {
      const raw = rawMessage('bob@contoso.test', ['to@example.net'], 'cc-1');
      expect(await sendOnce(stack.port, 'bob@contoso.test', ['to@example.net'], raw)).toMatch(/^250 /);
      const arrived = sandbox.messages.filter((m) => m.sha256 === sha256(raw));
      expect(arrived.map((m) => m.authUser)).toEqual(['bob@contoso.test']);
      const grants = sandbox.tokens.log().filter((r) => r.clientId === app.clientId);
      expect(grants.map((r) => [r.path, r.grantType, r.scope, r.status])).toEqual([
        ['/microsoft/contoso.test/oauth2/v2.0/token', 'client_credentials', 'https://outlook.office365.com/.default', 200],
      ]);
    } finally {
      await stack.stopRelay();
    }
  });

  it('the sandbox refuses another tenant, a wrong secret and a delegated scope; an app token speaks only for its mailboxes', async () => {
    sandbox.addAccount({ email: 'carol@contoso.test', kind: 'microsoft' });
    const app = sandbox.addApp({ tenant: 'contoso.test', mailboxes: ['erin@contoso.test'] });
    const tokenUrl = (tenant: string) => sandbox.tokenUrl('microsoft').replace('/common/', `/${tenant}/`);
    const ask = (tenant: string, over: Record<string, string> = {}) =>
      postForm(
        tokenUrl(tenant),
        new URLSearchParams({ grant_type: 'client_credentials', client_id: app.clientId, client_secret: app.clientSecret, scope: 'https://outlook.office365.com/.default', ...over }),
        5000,
      );
    await expect(ask('fabrikam.test')).rejects.toMatchObject({ status: 401, oauthError: 'invalid_client', description: expect.stringContaining('AADSTS700016') });
    await expect(ask('contoso.test', { client_secret: 'wrong' })).rejects.toMatchObject({ status: 401, oauthError: 'invalid_client', description: expect.stringContaining('AADSTS7000215') });
    await expect(ask('contoso.test', { scope: 'https://outlook.office.com/SMTP.Send' })).rejects.toMatchObject({ status: 400, oauthError: 'invalid_scope', description: expect.stringContaining('AADSTS1002012') });
    const ok = await ask('contoso.test');
    expect(ok).not.toHaveProperty('refresh_token');
    const token = String(ok.access_token);
    sandbox.addAccount({ email: 'erin@contoso.test', kind: 'microsoft' });
    expect(sandbox.state.checkAccessToken(token, 'erin@contoso.test')?.email).toBe('erin@contoso.test');
    expect(sandbox.state.checkAccessToken(token, 'carol@contoso.test')?.email).toBe(`app:${app.clientId}`);
  });
});

describe('secrets of both grants', () => {
  it('the key, the signed assertions, the app secret and the tokens show in no log line, metric, status or store file', async () => {
    const log = captureLog('debug');
    sandbox.addAccount({ email: 'sec-sa@example.com', kind: 'google' });
    sandbox.addAccount({ email: 'sec-app@contoso.test', kind: 'microsoft' });
    const key = sandbox.addServiceAccount({ domains: ['example.com'] });
    const app = sandbox.addApp({ tenant: 'contoso.test', mailboxes: ['sec-app@contoso.test'] });
    const stack = await startStack({
      provider: sandbox,
      logger: log.logger,
      overrides: { tokens: { retry_min_ms: 100, retry_max_ms: 300 } },
      accounts: [
        { email: 'sec-sa@example.com', kind: 'google', senders: ['sec-sa@example.com'], credentials: serviceAccountCredentials(writeKeyFile('sa-sec.json', key)) },
        {
          email: 'sec-app@contoso.test',
          kind: 'microsoft',
          senders: ['sec-app@contoso.test'],
          credentials: { auth: 'client_credentials', client_id: app.clientId, client_secret: app.clientSecret, tenant: 'contoso.test' },
        },
      ],
    });
    try {
      for (const from of ['sec-sa@example.com', 'sec-app@contoso.test']) {
        expect(await sendOnce(stack.port, from, ['to@example.net'], rawMessage(from, ['to@example.net'], `sec-${from}`))).toMatch(/^250 /);
      }
      // A refresh that fails on each side, so the failure paths log too.
      sandbox.tokens.apps.setDelegatedDomains(key.client_email, []);
      sandbox.tokens.injectFault({ error: 'invalid_client' }, { times: 2 });
      for (const email of ['sec-sa@example.com', 'sec-app@contoso.test']) sandbox.state.expireAccessTokens(email);
      sandbox.smtp.dropAllConnections();
      for (const from of ['sec-sa@example.com', 'sec-app@contoso.test']) await sendOnce(stack.port, from, ['to@example.net'], rawMessage(from, ['to@example.net'], `sec2-${from}`));
      expect(log.lines.filter((l) => l.includes('"event":"token_refresh"') && l.includes('"ok":false')).length).toBeGreaterThanOrEqual(2);

      const admin = `http://127.0.0.1:${stack.app.adminPort}`;
      const places = {
        logs: log.lines.join('\n'),
        metrics: await (await fetch(`${admin}/metrics`)).text(),
        status: await (await fetch(`${admin}/api/status`, { headers: stack.adminAuth() })).text(),
        store: readdirSync(stack.dir)
          .filter((f) => f.startsWith('relay.db'))
          .map((f) => readFileSync(join(stack.dir, f)).toString('latin1'))
          .join('\n'),
      };
      // A line from the middle of the PEM body: any leak of the key contains it.
      const keyLine = key.private_key.split('\n')[5]!;
      for (const [where, text] of Object.entries(places)) {
        expect(text.includes(keyLine), `private key in ${where}`).toBe(false);
        expect(text.includes(app.clientSecret), `app secret in ${where}`).toBe(false);
        // A signed JWT starts with the base64url of '{"alg"'.
        expect(text, `assertion in ${where}`).not.toMatch(/eyJhbGciOi/);
        expect(text, `access token in ${where}`).not.toMatch(/sbx-at-/);
      }
    } finally {
      await stack.stopRelay();
    }
  });
});
