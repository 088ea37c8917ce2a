import { describe, it, expect, afterEach, beforeEach } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SANDBOX_TLS_FILES } from '../../src/sandbox/submission-server.js';
import { buildConfig, expandEnv, hostHasAddress, loadConfig, loadConfigFile } from '../../src/config/load.js';
import { renderMaskedConfig, MASK } from '../../src/config/mask.js';
import { configSchema } from '../../src/config/schema.js';
import { ConfigError } from '../../src/config/errors.js';
import { configWarnings } from '../../src/config/warnings.js';

/** Real PEM files: the config check now parses TLS material. */
const FIXTURE = (name: 'server.crt' | 'server.key' | 'ca.crt') => ({ 'server.crt': SANDBOX_TLS_FILES.cert, 'server.key': SANDBOX_TLS_FILES.key, 'ca.crt': SANDBOX_TLS_FILES.ca })[name];

let dir: string;
beforeEach(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'relay-config-')));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(text: string, name = 'relay.yaml'): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Runs fn, expects a ConfigError, returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

const account = (over: Record<string, unknown> = {}) => ({
  email: 'sender@gmail.com',
  provider: 'google',
  client_id: 'cid',
  refresh_token: 'rt',
  ...over,
});

/** `fd00::2` -> `fd00:0:0:0:0:0:0:2`: the same address, not in the canonical short form. */

const build = (doc: unknown, env: NodeJS.ProcessEnv = {}) => buildConfig(doc, null, { env, checkHost: false });

// The SPEC's example, verbatim (comments included).
const SPEC_EXAMPLE = `
listen: { host: 127.0.0.1, port: 2525 }
inbound:
  trusted_networks: [127.0.0.0/8]   # may send without AUTH; routed by MAIL FROM (see Routing)
  tls: { cert_file: server.crt, key_file: server.key }   # optional: offer STARTTLS inbound
  max_message_bytes: 36700160       # advertised in EHLO SIZE and enforced
  max_recipients: 100
  max_connections: 1000
providers:                          # built-in defaults exist for google and microsoft; any field may be overridden
  google:
    token_url: https://oauth2.googleapis.com/token
    smtp: { host: smtp.gmail.com, port: 587, security: starttls }   # starttls | tls | none
    ca_file: null                   # extra CA certificate(s) to trust for this provider (PEM)
  microsoft:
    token_url: https://login.microsoftonline.com/common/oauth2/v2.0/token
    scope: https://outlook.office.com/SMTP.Send offline_access
    smtp: { host: smtp.office365.com, port: 587, security: starttls }
accounts:
  - email: sender@gmail.com         # the mailbox; the XOAUTH2 user= is always this address
    provider: google
    client_id: ...
    client_secret: ...
    refresh_token: \${SENDER_REFRESH_TOKEN}
    password: ...                   # inbound AUTH PLAIN/LOGIN password for username = email
    senders: ["*@example.com", "noreply@example.org"]   # MAIL FROM this account may send as
    source_ip: null                 # local address upstream connections are made from (must exist on the host)
    max_connections: 5              # upstream connections this account may hold
    min_idle: 1                     # authenticated connections opened at start-up and kept ready
    messages_per_connection: 100    # then the connection is retired
store: { path: ./data/relay.db }    # embedded default (tokens and state survive restarts); or { url: redis://host:6379 } to share state between instances
http: { host: 127.0.0.1, port: 9090 }   # /healthz, /readyz, /metrics
`;

describe('SPEC example config', () => {
  it('validates and resolves relative paths against the config file directory', () => {
    copyFileSync(FIXTURE('server.crt'), join(dir, 'server.crt'));
    copyFileSync(FIXTURE('server.key'), join(dir, 'server.key'));
    const file = writeConfig(SPEC_EXAMPLE);
    const cfg = loadConfigFile(file, { env: { SENDER_REFRESH_TOKEN: 'rt-from-env' } });

    expect(cfg.source).toBe(file);
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 2525 });
    expect(cfg.inbound.trusted_networks).toEqual(['127.0.0.0/8']);
    expect(cfg.inbound.tls).toEqual({ cert_file: join(dir, 'server.crt'), key_file: join(dir, 'server.key') });
    expect(cfg.inbound.max_message_bytes).toBe(36700160);
    expect(cfg.store).toEqual({ path: join(dir, 'data', 'relay.db') });
    expect(cfg.http).toMatchObject({ host: '127.0.0.1', port: 9090 });
    expect(cfg.accounts).toHaveLength(1);
    const a = cfg.accounts[0]!;
    expect(a.email).toBe('sender@gmail.com');
    expect(a.refresh_token).toBe('rt-from-env');
    expect(a.senders).toEqual(['*@example.com', 'noreply@example.org']);
    expect(a.source_ip).toBeNull();
    expect(cfg.providers.google!.caFile).toBeNull();
    expect(cfg.providers.microsoft!.scope).toBe('https://outlook.office.com/SMTP.Send offline_access');
  });

  it('names inbound.tls.cert_file when the certificate file is missing', () => {
    writeFileSync(join(dir, 'server.key'), 'dummy key');
    const file = writeConfig(SPEC_EXAMPLE);
    const err = configError(() => loadConfigFile(file, { env: { SENDER_REFRESH_TOKEN: 'x' } }));
    expect(err.path).toBe('inbound.tls.cert_file');
  });

  it('resolves a provider ca_file relative to the config file and requires it to be readable', () => {
    const file = writeConfig('providers:\n  google:\n    ca_file: ca.pem\n');
    expect(configError(() => loadConfigFile(file)).path).toBe('providers.google.ca_file');
    copyFileSync(FIXTURE('ca.crt'), join(dir, 'ca.pem'));
    expect(loadConfigFile(file).providers.google!.caFile).toBe(join(dir, 'ca.pem'));
  });

  it('TLS material that TLS cannot use is a config error naming the key', () => {
    const file = writeConfig(SPEC_EXAMPLE);
    const env = { env: { SENDER_REFRESH_TOKEN: 'x' } };
    writeFileSync(join(dir, 'server.crt'), 'not a certificate');
    copyFileSync(FIXTURE('server.key'), join(dir, 'server.key'));
    expect(configError(() => loadConfigFile(file, env)).path).toBe('inbound.tls.cert_file');
    // A certificate with a key that is not its own.
    copyFileSync(FIXTURE('ca.crt'), join(dir, 'server.crt'));
    expect(configError(() => loadConfigFile(file, env)).path).toBe('inbound.tls.key_file');
    const caFile = writeConfig('providers:\n  google:\n    ca_file: ca.pem\n');
    writeFileSync(join(dir, 'ca.pem'), 'not a certificate');
    expect(configError(() => loadConfigFile(caFile)).path).toBe('providers.google.ca_file');
  });
});

describe('defaults', () => {
  it('an empty document gets listen 127.0.0.1:2525, no accounts and both built-in providers', () => {
    const cfg = build({});
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 2525 });
    expect(cfg.accounts).toEqual([]);
    expect(cfg.source).toBeNull();
    expect(cfg.providers.google).toEqual({
      name: 'google',
      kind: 'google',
      tokenUrl: 'https://oauth2.googleapis.com/token',
      scope: null,
      smtp: { host: 'smtp.gmail.com', port: 587, security: 'starttls' },
      graphUrl: 'https://graph.microsoft.com',
      gmailApiUrl: 'https://gmail.googleapis.com',
      caFile: null,
    });
    expect(cfg.providers.microsoft).toEqual({
      name: 'microsoft',
      kind: 'microsoft',
      tokenUrl: 'https://login.microsoftonline.com/common/oauth2/v2.0/token',
      scope: 'https://outlook.office.com/SMTP.Send offline_access',
      smtp: { host: 'smtp.office365.com', port: 587, security: 'starttls' },
      graphUrl: 'https://graph.microsoft.com',
      gmailApiUrl: 'https://gmail.googleapis.com',
      caFile: null,
    });
  });

  it('a null YAML document (empty file) is the same as the defaults', () => {
    const file = writeConfig('# nothing here\n');
    const cfg = loadConfigFile(file);
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 2525 });
    expect(cfg.source).toBe(file);
  });

  it('the default store path is ./data/relay.db relative to the config file directory', () => {
    const file = writeConfig('listen: { port: 2600 }\n');
    const cfg = loadConfigFile(file);
    expect(cfg.store).toEqual({ path: join(dir, 'data', 'relay.db') });
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 2600 });
  });

  it('an absolute store path is kept as is', () => {
    const abs = join(dir, 'elsewhere', 'x.db');
    const file = writeConfig(`store: { path: ${abs} }\n`);
    expect(loadConfigFile(file).store).toEqual({ path: abs });
  });

  it('account defaults: max_connections 5, min_idle 1, messages_per_connection 0 (no count), no senders, no source_ip', () => {
    const a = build({ accounts: [account()] }).accounts[0]!;
    expect(a.max_connections).toBe(5);
    expect(a.min_idle).toBe(1);
    expect(a.messages_per_connection).toBe(0);
    expect(a.senders).toEqual([]);
    expect(a.source_ip).toBeNull();
  });

  it('emails and sender patterns are normalised to lower case', () => {
    const a = build({ accounts: [account({ email: ' Sender@Gmail.COM ', senders: ['*@Example.COM', 'NoReply@Example.org'] })] })
      .accounts[0]!;
    expect(a.email).toBe('sender@gmail.com');
    expect(a.senders).toEqual(['*@example.com', 'noreply@example.org']);
  });

  it('the schema alone fills defaults for every section', () => {
    const raw = configSchema.parse({});
    expect(raw.store).toEqual({ path: './data/relay.db' });
    expect(raw.tokens.refresh_before_expiry_ms).toBeGreaterThanOrEqual(10 * 60_000);
    expect(raw.inbound.max_recipients).toBe(100);
  });
});

describe('${ENV} expansion', () => {
  it('replaces variables inside strings, several per string, and leaves non-strings alone', () => {
    const out = expandEnv({ a: 'pre-${A}-mid-${B}-post', n: 5, list: ['${A}', true, null] }, { A: 'x', B: 'y' });
    expect(out).toEqual({ a: 'pre-x-mid-y-post', n: 5, list: ['x', true, null] });
  });

  it('expands in a loaded config', () => {
    const cfg = build({ accounts: [account({ client_id: 'id-${TENANT}-1', refresh_token: '${RT}' })] }, { TENANT: 't42', RT: 'the-rt' });
    expect(cfg.accounts[0]!.client_id).toBe('id-t42-1');
    expect(cfg.accounts[0]!.refresh_token).toBe('the-rt');
  });

  it('a missing variable is a ConfigError naming the key, without leaking other environment values', () => {
    const env = { OTHER_SECRET: 'other-secret-value-4711', CS: 'client-secret-value-0815' };
    const err = configError(() =>
      build({ accounts: [account({ client_secret: '${CS}', refresh_token: 'rt-${MISSING_RT}' })] }, env),
    );
    expect(err.path).toBe('accounts[0].refresh_token');
    expect(err.message).toContain('accounts[0].refresh_token');
    expect(err.message).toContain('MISSING_RT');
    expect(err.message).not.toContain('other-secret-value-4711');
    expect(err.message).not.toContain('client-secret-value-0815');
  });

  it('a missing variable in a nested non-account key names that key', () => {
    expect(configError(() => build({ listen: { host: '${NOPE}' } })).path).toBe('listen.host');
  });
});

describe('validation errors name the offending key', () => {
  it('unknown top-level key', () => {
    const err = configError(() => build({ bogus_top: 1 }));
    expect(err.path).toBe('bogus_top');
  });

  it('unknown key inside an account', () => {
    const err = configError(() => build({ accounts: [account({ bogus: 1 })] }));
    expect(err.path).toBe('accounts[0].bogus');
    expect(err.message).toContain('accounts[0].bogus');
  });

  it('misspelt key inside listen', () => {
    expect(configError(() => build({ listen: { hots: '0.0.0.0' } })).path).toBe('listen.hots');
  });

  it('unknown key inside a provider override', () => {
    expect(configError(() => build({ providers: { google: { smtp: { prot: 1 } } } })).path).toBe('providers.google.smtp.prot');
  });

  it('invalid email', () => {
    expect(configError(() => build({ accounts: [account({ email: 'not-an-email' })] })).path).toBe('accounts[0].email');
  });

  it.each(['example.com', '*@', 'a@b@c', '*.example.com', 'foo@*'])('invalid sender pattern %s', (pattern) => {
    const err = configError(() => build({ accounts: [account({ senders: ['ok@example.com', pattern] })] }));
    expect(err.path).toBe('accounts[0].senders[1]');
  });

  it('duplicate account email, case-insensitively', () => {
    const err = configError(() =>
      build({ accounts: [account(), account({ email: 'other@gmail.com' }), account({ email: 'SENDER@gmail.com' })] }),
    );
    expect(err.path).toBe('accounts[2].email');
    expect(err.message).toContain('accounts[0]');
  });

  it('unknown provider', () => {
    const err = configError(() => build({ accounts: [account({ provider: 'yahoo' })] }));
    expect(err.path).toBe('accounts[0].provider');
  });

  it('min_idle greater than max_connections', () => {
    const err = configError(() => build({ accounts: [account({ max_connections: 2, min_idle: 3 })] }));
    expect(err.path).toBe('accounts[0].min_idle');
    // equal is fine
    expect(build({ accounts: [account({ max_connections: 2, min_idle: 2 })] }).accounts[0]!.min_idle).toBe(2);
  });

  it('source_ip that is not an address of this host is rejected; 127.0.0.1 is accepted', () => {
    const foreign = { accounts: [account({ source_ip: '203.0.113.7' })] };
    const err = configError(() => buildConfig(foreign, null, { env: {}, checkHost: true }));
    expect(err.path).toBe('accounts[0].source_ip');
    // checkHost: false skips the host check (configs of other hosts)
    expect(buildConfig(foreign, null, { env: {}, checkHost: false }).accounts[0]!.source_ip).toBe('203.0.113.7');
    const local = buildConfig({ accounts: [account({ source_ip: '127.0.0.1' })] }, null, { env: {}, checkHost: true });
    expect(local.accounts[0]!.source_ip).toBe('127.0.0.1');
  });

  it('source_ip that is not an IP address is rejected', () => {
    expect(configError(() => build({ accounts: [account({ source_ip: 'localhost' })] })).path).toBe('accounts[0].source_ip');
  });

  it('an IPv6 source_ip is matched against the host addresses whatever its spelling', () => {
    const interfaces = {
      eth0: [{ address: '2001:db8::7', family: 'IPv6' as const, netmask: 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', internal: false, cidr: null, scopeid: 0 }],
    };
    expect(hostHasAddress('2001:DB8:0:0:0:0:0:7', interfaces)).toBe(true);
    expect(hostHasAddress('2001:db8::8', interfaces)).toBe(false);
    expect(hostHasAddress('127.0.0.1', interfaces)).toBe(false);
  });

  it('invalid trusted network', () => {
    expect(configError(() => build({ inbound: { trusted_networks: ['10.0.0.0/33'] } })).path).toBe('inbound.trusted_networks[0]');
  });

  it('invalid smtp security', () => {
    expect(configError(() => build({ providers: { google: { smtp: { security: 'ssl' } } } })).path).toBe(
      'providers.google.smtp.security',
    );
  });
});

describe('providers', () => {
  it('overriding only the smtp port keeps every other default', () => {
    const cfg = build({ providers: { google: { smtp: { port: 2587 } } } });
    expect(cfg.providers.google).toEqual({
      name: 'google',
      kind: 'google',
      tokenUrl: 'https://oauth2.googleapis.com/token',
      scope: null,
      smtp: { host: 'smtp.gmail.com', port: 2587, security: 'starttls' },
      graphUrl: 'https://graph.microsoft.com',
      gmailApiUrl: 'https://gmail.googleapis.com',
      caFile: null,
    });
    // the other built-in provider is untouched
    expect(cfg.providers.microsoft!.smtp).toEqual({ host: 'smtp.office365.com', port: 587, security: 'starttls' });
  });

  it('a custom provider name without kind is rejected at providers.NAME.kind', () => {
    const err = configError(() => build({ providers: { sandbox: { token_url: 'http://127.0.0.1:1/token' } } }));
    expect(err.path).toBe('providers.sandbox.kind');
  });

  it('a custom provider with kind inherits that kind defaults and can be used by an account', () => {
    const cfg = build({
      providers: { sandbox: { kind: 'microsoft', token_url: 'http://127.0.0.1:1/token', smtp: { host: '127.0.0.1', security: 'none' } } },
      accounts: [account({ provider: 'sandbox' })],
    });
    expect(cfg.providers.sandbox).toEqual({
      name: 'sandbox',
      kind: 'microsoft',
      tokenUrl: 'http://127.0.0.1:1/token',
      scope: 'https://outlook.office.com/SMTP.Send offline_access',
      smtp: { host: '127.0.0.1', port: 587, security: 'none' },
      graphUrl: 'https://graph.microsoft.com',
      gmailApiUrl: 'https://gmail.googleapis.com',
      caFile: null,
    });
    expect(cfg.accounts[0]!.provider).toBe('sandbox');
  });
});

describe('renderMaskedConfig', () => {
  it('masks client_secret, refresh_token and password and keeps the emails', () => {
    const secrets = ['CS-recognisable-111', 'RT-recognisable-222', 'PW-recognisable-333', 'RT-recognisable-444', 'PW-recognisable-555'];
    const cfg = build(
      {
        accounts: [
          account({ email: 'one@gmail.com', client_secret: secrets[0], refresh_token: '${RT_ENV}', password: secrets[2] }),
          account({ email: 'two@contoso.com', provider: 'microsoft', refresh_token: secrets[3], password: secrets[4] }),
        ],
      },
      { RT_ENV: secrets[1] },
    );
    const out = renderMaskedConfig(cfg);
    for (const s of secrets) expect(out).not.toContain(s);
    expect(out).toContain('one@gmail.com');
    expect(out).toContain('two@contoso.com');
    expect(out).toContain(MASK);
    expect(out).toContain('client_id');
    expect(out).toContain('smtp.office365.com');
  });

  it('masks credentials in a store URL', () => {
    const cfg = build({ store: { url: 'redis://user:StorePw-recognisable-666@redis.internal:6379' } });
    const out = renderMaskedConfig(cfg);
    expect(out).not.toContain('StorePw-recognisable-666');
    expect(out).toContain('redis.internal');
  });
});

describe('YAML', () => {
  it('duplicate keys are rejected', () => {
    const file = writeConfig('listen: { port: 2525 }\nlisten: { port: 2526 }\n');
    expect(() => loadConfigFile(file)).toThrow(ConfigError);
  });

  it('the YAML error for a duplicate key does not quote the secret on the offending lines', () => {
    const file = writeConfig(
      [
        'accounts:',
        '  - email: a@gmail.com',
        '    provider: google',
        '    client_id: cid',
        '    refresh_token: DupSecret-recognisable-777',
        '    refresh_token: DupSecret-recognisable-888',
        '',
      ].join('\n'),
    );
    const err = configError(() => loadConfigFile(file));
    expect(err.message).not.toContain('DupSecret-recognisable-777');
    expect(err.message).not.toContain('DupSecret-recognisable-888');
  });

  it('a file that does not exist is a ConfigError', () => {
    expect(() => loadConfigFile(join(dir, 'nope.yaml'))).toThrow(ConfigError);
  });
});

describe('loadConfig', () => {
  const cwd = process.cwd();
  afterEach(() => process.chdir(cwd));

  it('without a file and without ./relay.yaml gives the built-in defaults with source null', () => {
    process.chdir(dir);
    const cfg = loadConfig(undefined, { env: {} });
    expect(cfg.source).toBeNull();
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 2525 });
    expect(cfg.accounts).toEqual([]);
    expect(cfg.store).toEqual({ path: join(dir, 'data', 'relay.db') });
  });

  it('without a file reads ./relay.yaml when present', () => {
    writeConfig('listen: { port: 2999 }\n');
    process.chdir(dir);
    const cfg = loadConfig(undefined, { env: {} });
    expect(cfg.source).toBe(join(dir, 'relay.yaml'));
    expect(cfg.listen.port).toBe(2999);
  });

  it('an explicit file that does not exist is an error even if ./relay.yaml exists', () => {
    writeConfig('listen: { port: 2999 }\n');
    process.chdir(dir);
    expect(() => loadConfig('other.yaml', { env: {} })).toThrow(ConfigError);
  });
});

describe('every problem in one run', () => {
  it('every missing environment variable is named, each at its key', () => {
    const err = configError(() =>
      build({
        listen: { host: '${LISTEN_HOST}' },
        accounts: [account({ client_secret: '${CS_A}', refresh_token: '${RT_A}' }), account({ email: 'b@gmail.com', refresh_token: '${RT_B}' })],
      }),
    );
    expect(err.problems.map((p) => p.path).sort()).toEqual(['accounts[0].client_secret', 'accounts[0].refresh_token', 'accounts[1].refresh_token', 'listen.host']);
    for (const name of ['LISTEN_HOST', 'CS_A', 'RT_A', 'RT_B']) expect(err.message).toContain(`environment variable ${name} is not set`);
    expect(err.message).not.toMatch(/more problem/);
  });

  it('schema problems, missing variables and unknown keys come together, none left unnamed', () => {
    const err = configError(() => build({ bogus: 1, listen: { port: 'x' }, accounts: [account({ email: 'nope', refresh_token: '${RT}', extra1: 1, extra2: 2 })] }));
    expect(err.problems.map((p) => p.path).sort()).toEqual(
      ['accounts[0].email', 'accounts[0].extra1', 'accounts[0].extra2', 'accounts[0].refresh_token', 'bogus', 'listen.port'].sort(),
    );
    expect(err.message.split('\n')).toHaveLength(1 + 6);
  });

  it('checks against the host are gathered too: two unknown providers and a missing TLS file', () => {
    const err = configError(() =>
      build({ inbound: { tls: { cert_file: join(dir, 'no.crt'), key_file: join(dir, 'no.key') } }, accounts: [account({ provider: 'x1' }), account({ email: 'b@gmail.com', provider: 'x2' })] }),
    );
    expect(err.problems.map((p) => p.path)).toEqual(['accounts[0].provider', 'accounts[1].provider', 'inbound.tls.cert_file']);
  });
});

describe('YAML errors are config errors with line and column', () => {
  it('an unquoted *@domain sender is an unresolved alias: line, column and the hint to quote', () => {
    const file = writeConfig(['accounts:', '  - email: a@gmail.com', '    provider: google', '    senders:', '      - *@newsletter.example', ''].join('\n'));
    const err = configError(() => loadConfigFile(file));
    expect(err.path).toBe(`${file}, line 5, column 9`);
    expect(err.reason).toContain('must be quoted: "*@newsletter.example"');
  });

  it('a file that cannot be read (a folder) is a config error, not a crash', () => {
    const folder = join(dir, 'folder.yaml');
    mkdirSync(folder);
    expect(configError(() => loadConfigFile(folder)).reason).toContain('EISDIR');
  });

  it('every syntax error is reported with its position', () => {
    const file = writeConfig('listen: { port: 2525\nhttp:\n\tport: 1\n');
    const err = configError(() => loadConfigFile(file));
    const syntax = err.problems.filter((p) => /, line \d+, column \d+$/.test(p.path ?? ''));
    expect(syntax.length).toBeGreaterThanOrEqual(2);
    // What the parser still made of the rest is checked too; each such problem has its line.
    for (const p of err.problems.filter((q) => !syntax.includes(q))) expect(p.line).toBeGreaterThan(0);
  });

  it('a syntax error does not hide the schema errors elsewhere in the file; each has its line', () => {
    const file = writeConfig(
      [
        'listen: { host: 127.0.0.1, port: 2525 }',
        'inbound:',
        '  max_conections: 5',
        'accounts:',
        '  - email: a@gmail.com',
        '    provider: google',
        '    client_id: x',
        '    refresh_token: y',
        '    limits:',
        '      messages_per_dya: 3',
        'http:',
        '  port: "abc"',
        'log: { level: [ }',
        '',
      ].join('\n'),
    );
    const err = configError(() => loadConfigFile(file));
    const byPath = new Map(err.problems.map((p) => [p.path, p]));
    expect([...byPath.keys()].some((p) => p?.startsWith(`${file}, line 13, column `))).toBe(true);
    expect(byPath.get('inbound.max_conections')).toEqual({ path: 'inbound.max_conections', line: 3, reason: 'unknown key (did you mean max_connections?)' });
    expect(byPath.get('accounts[0].limits.messages_per_dya')).toMatchObject({ line: 10, reason: 'unknown key (did you mean messages_per_day?)' });
    expect(byPath.get('http.port')).toMatchObject({ line: 12 });
    expect(err.message).toContain('at inbound.max_conections (line 3): unknown key (did you mean max_connections?)');
  });

  it('an unknown key far from any known one gets no suggestion', () => {
    const err = configError(() => buildConfig({ listen: { colour: 'blue' } }, null, { env: {} }));
    expect(err.problems).toEqual([{ path: 'listen.colour', reason: 'unknown key' }]);
  });
});

describe('warnings: configs that load but cannot work or are dangerous', () => {
  const reasons = (doc: unknown) => configWarnings(build(doc)).map((w) => `${w.path}: ${w.reason}`);

  it('the SPEC-like config with a password and senders on loopback has none', () => {
    expect(reasons({ accounts: [account({ password: 'pw', senders: ['*@example.com'] })] })).toEqual([]);
  });

  it('no accounts', () => {
    expect(reasons({})).toEqual([expect.stringMatching(/^accounts: no accounts/)]);
  });

  it('an account without a password that no trusted network can reach', () => {
    const doc = { inbound: { trusted_networks: ['10.0.0.0/8'] }, accounts: [account({ senders: ['*@example.com'] })] };
    expect(reasons(doc)).toEqual([expect.stringMatching(/^accounts\[0\]\.password: sender@gmail.com has no password and no trusted network can reach/)]);
    expect(reasons({ ...doc, inbound: { trusted_networks: [] } })).toHaveLength(1);
    // Reachable: loopback is trusted by default.
    expect(reasons({ accounts: [account({ senders: ['*@example.com'] })] })).toEqual([]);
  });

  it('an account without a password and without senders cannot be used at all', () => {
    expect(reasons({ accounts: [account()] })).toEqual([expect.stringMatching(/no password and no senders/)]);
  });

  it('listening beyond loopback with trusted_networks covering everything', () => {
    const doc = { listen: { host: '0.0.0.0' }, inbound: { trusted_networks: ['10.0.0.0/8', '0.0.0.0/0', '::/0'] }, accounts: [account({ senders: ['*@example.com'] })] };
    expect(reasons(doc)).toEqual([expect.stringMatching(/^inbound\.trusted_networks: 0\.0\.0\.0\/0, ::\/0 trusts every address/)]);
    // The same list on a loopback listener reaches nobody but this host.
    expect(reasons({ ...doc, listen: { host: '127.0.0.1' } })).toEqual([]);
  });

  it('trusting internet addresses short of /0, and passwords in clear off loopback', () => {
    const doc = { listen: { host: '192.0.2.1' }, inbound: { trusted_networks: ['0.0.0.0/1', '128.0.0.0/1'] }, accounts: [account({ password: 'pw' })] };
    const out = reasons(doc);
    expect(out).toEqual([expect.stringMatching(/^inbound\.trusted_networks: trusts internet addresses/), expect.stringMatching(/^inbound\.tls: .*in clear/)]);
  });

  it('a token refresh margin under 10 minutes', () => {
    expect(reasons({ tokens: { refresh_before_expiry_ms: 60_000 }, accounts: [account({ password: 'pw' })] })).toEqual([
      expect.stringMatching(/^tokens\.refresh_before_expiry_ms: 60000 ms is under 10 minutes/),
    ]);
  });
});
