// How an account gets its tokens (`auth:`), as relay.yaml says it: which keys each way needs,
// what load.ts checks beyond the schema, how the Account is built, and what check-config shows.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { buildConfig } from '../../src/config/load.js';
import { MASK, renderMaskedConfig } from '../../src/config/mask.js';
import { withTenant } from '../../src/config/providers.js';
import { accountsFromConfig } from '../../src/routing/account.js';
import { thrown } from '../helpers/thrown.js';

let dir: string;
let keyFile: string;
let privateKeyPem: string;

beforeAll(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'relay-auth-config-')));
  privateKeyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  keyFile = writeKey('sa.json', {
    type: 'service_account',
    private_key_id: 'kid-1',
    private_key: privateKeyPem,
    client_email: 'relay@project.iam.gserviceaccount.com',
    client_id: '1234567890',
    token_uri: 'https://oauth2.googleapis.com/token',
  });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeKey(name: string, content: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

const build = (accounts: unknown[], extra: Record<string, unknown> = {}) =>
  buildConfig({ accounts, ...extra }, join(dir, 'relay.yaml'), { env: {}, checkHost: false });

const configError = (fn: () => unknown) => thrown(fn, ConfigError);

const serviceAccount = (over: Record<string, unknown> = {}) => ({ email: 'a@example.com', provider: 'google', auth: 'service_account', service_account_file: 'sa.json', ...over });
const app = (over: Record<string, unknown> = {}) => ({
  email: 'b@contoso.test',
  provider: 'microsoft',
  auth: 'client_credentials',
  client_id: 'app-id',
  client_secret: 'app-secret-recognisable',
  tenant: 'contoso.test',
  ...over,
});

describe('auth: refresh_token (the default)', () => {
  it('needs client_id and refresh_token, and names the missing one', () => {
    expect(build([{ email: 'a@gmail.com', provider: 'google', client_id: 'c', refresh_token: 'r' }]).accounts[0]!.auth).toBe('refresh_token');
    const err = configError(() => build([{ email: 'a@gmail.com', provider: 'google', client_id: 'c' }]));
    expect(err.path).toBe('accounts[0].refresh_token');
    expect(err.message).toContain('required when auth is refresh_token (the default)');
  });

  it('a key file without auth: service_account is pointed at the auth key first', () => {
    const err = configError(() => build([{ email: 'a@example.com', provider: 'google', service_account_file: 'sa.json' }]));
    expect(err.path).toBe('accounts[0].service_account_file');
    expect(err.message).toMatch(/not used when auth is refresh_token \(the default\); for a Google service account set auth: service_account/);
  });

  it('a Microsoft account may name its tenant; the token URL is then the tenant\'s', () => {
    const cfg = build([{ email: 'm@contoso.test', provider: 'microsoft', client_id: 'c', refresh_token: 'r', tenant: 'contoso.test' }]);
    expect(accountsFromConfig(cfg)[0]!.tokenUrl).toBe('https://login.microsoftonline.com/contoso.test/oauth2/v2.0/token');
    const plain = build([{ email: 'm@contoso.test', provider: 'microsoft', client_id: 'c', refresh_token: 'r' }]);
    expect(accountsFromConfig(plain)[0]!.tokenUrl).toBe('https://login.microsoftonline.com/common/oauth2/v2.0/token');
  });

  it('tenant on a Google account, or with a token_url that has no tenant segment, is an error at tenant', () => {
    const google = configError(() => build([{ email: 'a@gmail.com', provider: 'google', client_id: 'c', refresh_token: 'r', tenant: 'x' }]));
    expect(google.path).toBe('accounts[0].tenant');
    const noSegment = configError(() =>
      build([{ email: 'm@contoso.test', provider: 'microsoft', client_id: 'c', refresh_token: 'r', tenant: 'contoso.test' }], {
        providers: { microsoft: { token_url: 'https://proxy.example/token' } },
      }),
    );
    expect(noSegment.path).toBe('accounts[0].tenant');
    expect(noSegment.message).toContain('providers.microsoft.token_url (https://proxy.example/token) has no /common/oauth2/ segment');
  });
});

describe('auth: service_account', () => {
  it('resolves the key file against the config directory; the Account carries the path, not the key', () => {
    const cfg = build([serviceAccount()]);
    expect(cfg.accounts[0]!.service_account_file).toBe(keyFile);
    const account = accountsFromConfig(cfg)[0]!;
    expect(account).toMatchObject({ auth: 'service_account', serviceAccountFile: keyFile, refreshToken: null, clientSecret: null });
    expect(JSON.stringify(account)).not.toContain('PRIVATE KEY');
  });

  it('must not carry refresh-token keys, and is for Google only', () => {
    expect(configError(() => build([serviceAccount({ refresh_token: 'r' })])).path).toBe('accounts[0].refresh_token');
    expect(configError(() => build([serviceAccount({ client_id: 'c' })])).path).toBe('accounts[0].client_id');
    const ms = configError(() => build([serviceAccount({ provider: 'microsoft' })]));
    expect(ms.path).toBe('accounts[0].auth');
    expect(ms.message).toContain("Google's domain-wide delegation");
  });

  it('a key file that is missing, not JSON, not a service account or without an RSA key is an error at service_account_file', () => {
    const cases: Array<[string, RegExp]> = [
      ['missing.json', /cannot read .*missing\.json: ENOENT/],
      [writeKey('bad.json', 'not json {'), /is not JSON/],
      [writeKey('user.json', { type: 'authorized_user', client_id: 'x' }), /is not a service account key/],
      [writeKey('nokey.json', { type: 'service_account', client_email: 'x@p.iam.gserviceaccount.com', private_key: 'garbage' }), /"private_key" is not a PEM private key/],
      [writeKey('noemail.json', { type: 'service_account', private_key: privateKeyPem }), /lacks "client_email"/],
    ];
    for (const [file, message] of cases) {
      const err = configError(() => build([serviceAccount({ service_account_file: file })]));
      expect(err.path).toBe('accounts[0].service_account_file');
      expect(err.message).toMatch(message);
      // The key's content never reaches the message.
      expect(err.message).not.toContain('BEGIN PRIVATE KEY');
    }
  });

  it('check-config shows the key file path and nothing of its content', () => {
    const out = renderMaskedConfig(build([serviceAccount()]));
    expect(out).toContain(`service_account_file: ${keyFile}`);
    expect(out).toContain('auth: service_account');
    expect(out).not.toContain('PRIVATE KEY');
  });
});

describe('auth: client_credentials', () => {
  it('needs client_id, client_secret and the tenant; the token URL is the tenant\'s', () => {
    const account = accountsFromConfig(build([app()]))[0]!;
    expect(account).toMatchObject({ auth: 'client_credentials', clientId: 'app-id', refreshToken: null, tenant: 'contoso.test' });
    expect(account.tokenUrl).toBe('https://login.microsoftonline.com/contoso.test/oauth2/v2.0/token');
    for (const key of ['client_id', 'client_secret', 'tenant']) {
      const err = configError(() => build([app({ [key]: undefined })]));
      expect(err.path).toBe(`accounts[0].${key}`);
      expect(err.message).toContain('required when auth is client_credentials');
    }
  });

  it('refuses the multi-tenant names, refresh tokens, and Google providers', () => {
    const common = configError(() => build([app({ tenant: 'common' })]));
    expect(common.path).toBe('accounts[0].tenant');
    expect(common.message).toContain('cannot issue app-only tokens');
    expect(configError(() => build([app({ refresh_token: 'r' })])).path).toBe('accounts[0].refresh_token');
    expect(configError(() => build([app({ provider: 'google' })])).path).toBe('accounts[0].auth');
  });

  it('check-config masks the client secret', () => {
    const out = renderMaskedConfig(build([app()]));
    expect(out).toContain(`client_secret: "${MASK}"`);
    expect(out).not.toContain('app-secret-recognisable');
    expect(out).toContain('tenant: contoso.test');
  });
});

describe('withTenant', () => {
  it('replaces the multi-tenant segment before /oauth2/ and nothing else', () => {
    expect(withTenant('https://login.microsoftonline.com/organizations/oauth2/v2.0/token', 't-1')).toBe('https://login.microsoftonline.com/t-1/oauth2/v2.0/token');
    expect(withTenant('http://127.0.0.1:1/microsoft/common/oauth2/v2.0/token', 'x.test')).toBe('http://127.0.0.1:1/microsoft/x.test/oauth2/v2.0/token');
    expect(withTenant('https://common.example/oauth2/token', 't')).toBeNull();
  });
});
