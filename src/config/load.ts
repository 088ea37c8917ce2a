// Reading relay.yaml: YAML → ${ENV} expansion → schema validation → provider resolution and
// checks that need the host (files readable, source_ip present). Every failure is a ConfigError
// naming the key path, so `serve` and `check-config` can exit 2 with a message an operator can act on.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { BlockList, isIPv6 } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { networkInterfaces, userInfo } from 'node:os';
import { createSecureContext } from 'node:tls';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { isLoopbackHost } from './networks.js';
import { ConfigError, ConfigProblems, type ConfigProblem } from './errors.js';
import { knownKeys, suggestKey } from './key-hints.js';
import { readYamlSource } from './yaml-source.js';
import { API_UPSTREAM_KIND, MULTI_TENANT_NAMES, PROVIDER_DEFAULTS, isProviderKind, withTenant } from './providers.js';
import { GENERIC_MAX_CONNECTIONS, NO_LIMITS, PROVIDER_LIMITS, PROVIDER_MAX_CONNECTIONS } from './account-limits.js';
import { accountSchema, configSchema, type AccountConfig, type Config, type ProviderConfig, type RawConfig, type ResolvedAccountConfig } from './schema.js';
import { readServiceAccountKey, ServiceAccountKeyError } from './service-account-key.js';

export const DEFAULT_CONFIG_FILE = 'relay.yaml';

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Replaces `${NAME}` in every string value. Every variable that is not set is a config error,
 * all of them named at once; a missing one is left as written, so validation goes on.
 */
export function expandEnv(value: unknown, env: NodeJS.ProcessEnv, path: (string | number)[] = [], problems?: ConfigProblems): unknown {
  const own = problems ?? new ConfigProblems();
  const out = expandInto(value, env, path, own);
  if (!problems) own.throwIfAny();
  return out;
}

function expandInto(value: unknown, env: NodeJS.ProcessEnv, path: (string | number)[], problems: ConfigProblems): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (ref, name: string) => {
      const v = env[name];
      if (v !== undefined) return v;
      problems.add(`environment variable ${name} is not set`, formatPath(path));
      return ref;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandInto(v, env, [...path, i], problems));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandInto(v, env, [...path, k], problems)]));
  }
  return value;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

/**
 * Every issue zod found, each with its key path (an unknown key names the key itself, with the
 * known key it is probably a typo of).
 */
function issuesOf(error: z.ZodError, schema: z.ZodType, problems: ConfigProblems): void {
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeys(schema, issue.path);
      for (const key of issue.keys) {
        const near = suggestKey(key, known);
        problems.add(near ? `unknown key (did you mean ${near}?)` : 'unknown key', formatPath([...issue.path, key]));
      }
    } else problems.add(issue.message, formatPath(issue.path));
  }
}

function describeIssues(error: z.ZodError): ConfigError {
  const problems = new ConfigProblems();
  issuesOf(error, accountSchema, problems);
  return ConfigError.of(problems.list);
}

/**
 * An account that does not come from the file (the store, the HTTP API, `accounts import`):
 * the same schema and the same checks as an entry of `accounts:`, against the running config's
 * providers. Errors name the key within the account (`client_id`, `limits.messages_per_day`).
 * Values are taken literally: `${NAME}` is relay.yaml's syntax, not the store's.
 */
export function resolveAccountInput(input: unknown, config: Pick<Config, 'providers' | 'source'>, opts: { checkHost?: boolean } = {}): ResolvedAccountConfig {
  const parsed = accountSchema.safeParse(input);
  if (!parsed.success) throw describeIssues(parsed.error);
  const base = config.source ? dirname(config.source) : process.cwd();
  return resolveAccount(parsed.data, config.providers, (k) => k, (p) => (isAbsolute(p) ? p : resolve(base, p)), opts.checkHost ?? true);
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Check that source_ip addresses exist on this host (off in unit tests of other hosts' configs). */
  checkHost?: boolean;
  /**
   * Leave `accounts:` out: what a command needs to reach the running relay (its http and store
   * sections), without the accounts' secrets, whose variables live in the service's environment.
   */
  withoutAccounts?: boolean;
}

/**
 * Validates an already-parsed document; `file` anchors relative paths (null: the current
 * directory). `earlier`: what reading the file found (syntax errors), reported with the rest.
 */
export function buildConfig(doc: unknown, file: string | null, opts: LoadOptions = {}, earlier: readonly ConfigProblem[] = []): Config {
  const env = opts.env ?? process.env;
  const problems = new ConfigProblems();
  problems.list.push(...earlier);
  const source = opts.withoutAccounts && doc && typeof doc === 'object' ? { ...doc, accounts: [] } : doc;
  const expanded = expandEnv(source ?? {}, env, [], problems);
  const parsed = configSchema.safeParse(expanded);
  if (!parsed.success) issuesOf(parsed.error, configSchema, problems);
  // Checks against the host need a valid document; what is wrong so far is all reported now.
  problems.throwIfAny();
  return resolveConfig(parsed.data!, file, opts.checkHost ?? true);
}

/**
 * Syntax errors do not hide the rest: the parser's best-effort document is still checked against
 * the schema, and every problem with a key path gets the line it is written on.
 */
export function loadConfigFile(file: string, opts: LoadOptions = {}): Config {
  const abs = resolve(file);
  const yaml = readYamlSource(readConfigFile(abs).toString('utf8'), abs);
  try {
    return buildConfig(yaml.data, abs, opts, yaml.problems);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw ConfigError.of(e.problems.map((p) => (p.path && p.line === undefined ? { ...p, line: yaml.lineOf(p.path) } : p)));
  }
}

/** Who this process runs as, for "permission denied as user X" (a uid without a passwd entry has no name). */
function runningAs(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

/**
 * A folder the service user may not enter makes the file look absent to a plain existence test;
 * under systemd that reads "does not exist" about a file that is there. The two are told apart.
 */
function readConfigFile(abs: string): Buffer {
  try {
    statSync(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new ConfigError(`file ${abs} does not exist`);
    if (code === 'EACCES') throw permissionDenied(abs);
  }
  return readable(abs, abs);
}

const permissionDenied = (path: string) =>
  new ConfigError(`cannot read ${path} (permission denied) as user ${runningAs()}: check the owner and mode of the file and of each folder above it`);

/**
 * `--config FILE` if given (it must exist); else ./relay.yaml if present; else the built-in
 * defaults, which the caller announces.
 */
export function loadConfig(file: string | undefined, opts: LoadOptions = {}): Config {
  if (file) return loadConfigFile(file, opts);
  if (existsSync(DEFAULT_CONFIG_FILE)) return loadConfigFile(DEFAULT_CONFIG_FILE, opts);
  return buildConfig({}, null, opts);
}

function resolveProviders(raw: RawConfig): Record<string, ProviderConfig> {
  const out: Record<string, ProviderConfig> = {};
  const names = new Set([...Object.keys(PROVIDER_DEFAULTS), ...Object.keys(raw.providers)]);
  for (const name of names) {
    const o = raw.providers[name] ?? {};
    const kind = o.kind ?? (isProviderKind(name) ? name : undefined);
    if (!kind) throw new ConfigError('a provider not named google or microsoft must set kind: google | microsoft', `providers.${name}.kind`);
    const base = PROVIDER_DEFAULTS[kind];
    out[name] = {
      name,
      kind,
      tokenUrl: o.token_url ?? base.tokenUrl,
      scope: o.scope ?? base.scope,
      smtp: { ...base.smtp, ...o.smtp },
      graphUrl: (o.graph_url ?? base.graphUrl).replace(/\/+$/, ''),
      gmailApiUrl: (o.gmail_api_url ?? base.gmailApiUrl).replace(/\/+$/, ''),
      caFile: o.ca_file ?? base.caFile,
    };
  }
  return out;
}

/** Whether `ip` is an address of this host, whatever its spelling (BlockList compares parsed addresses). */
export function hostHasAddress(ip: string, interfaces: ReturnType<typeof networkInterfaces> = networkInterfaces()): boolean {
  const list = new BlockList();
  for (const addrs of Object.values(interfaces)) {
    for (const a of addrs ?? []) list.addAddress(a.address, a.family === 'IPv6' ? 'ipv6' : 'ipv4');
  }
  return list.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
}

function readable(path: string, at: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES') throw new ConfigError(permissionDenied(path).reason, at === path ? null : at);
    throw new ConfigError(`cannot read ${path}: ${code ?? 'error'}`, at);
  }
}

/**
 * PEM that TLS cannot use (not PEM, a key that does not match its certificate) is a config
 * error at load, naming the key, not a crash when the listener or the first connection needs it.
 */
function usableTls(material: { cert: Buffer; key?: Buffer }, at: string): void {
  try {
    createSecureContext(material);
  } catch (e) {
    throw new ConfigError(`not usable for TLS: ${(e as Error).message}`, at);
  }
}

/** TLS silently ignores a CA file without a certificate in it; the operator would only see every handshake fail. */
function usableCa(pem: Buffer, at: string): void {
  try {
    new X509Certificate(pem);
  } catch {
    throw new ConfigError('holds no PEM certificate', at);
  }
}

function resolveConfig(raw: RawConfig, file: string | null, checkHost: boolean): Config {
  const base = file ? dirname(file) : process.cwd();
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const problems = new ConfigProblems();
  const providers = problems.attempt(() => resolveProviders(raw)) ?? {};
  for (const p of Object.values(providers)) {
    if (p.caFile) {
      p.caFile = abs(p.caFile);
      const at = `providers.${p.name}.ca_file`;
      problems.attempt(() => usableCa(readable(p.caFile!, at), at));
    }
  }

  const seen = new Map<string, number>();
  raw.accounts.forEach((a, i) => {
    const dup = seen.get(a.email);
    if (dup !== undefined) problems.add(`${a.email} is already configured at accounts[${dup}]`, `accounts[${i}].email`);
    seen.set(a.email, i);
  });
  const accounts = raw.accounts.map((a, i) => problems.attempt(() => resolveAccount(a, providers, (k) => `accounts[${i}].${k}`, abs, checkHost))!);

  const inbound = { ...raw.inbound };
  if (inbound.tls) {
    const tls = { cert_file: abs(inbound.tls.cert_file), key_file: abs(inbound.tls.key_file) };
    inbound.tls = tls;
    problems.attempt(() => {
      const cert = readable(tls.cert_file, 'inbound.tls.cert_file');
      const key = readable(tls.key_file, 'inbound.tls.key_file');
      usableTls({ cert }, 'inbound.tls.cert_file');
      usableTls({ cert, key }, 'inbound.tls.key_file');
    });
  }
  // As an address, not as text: `127.attacker.example` is a name anyone can point anywhere.
  if (raw.http.enabled && !isLoopbackHost(raw.http.host) && !raw.http.bearer_token) {
    problems.add('http.host is not a loopback address: set http.bearer_token (16+ characters) to protect the API', 'http.bearer_token');
  }
  problems.throwIfAny();
  const store = 'path' in raw.store ? { path: abs(raw.store.path) } : raw.store;
  return { ...raw, accounts, inbound, store, providers, source: file };
}

/** Everything about one account that the schema cannot check alone, and its provider's defaults. */
function resolveAccount(
  a: AccountConfig,
  providers: Record<string, ProviderConfig>,
  at: (key: string) => string,
  abs: (p: string) => string,
  checkHost: boolean,
): ResolvedAccountConfig {
  const provider = providers[a.provider];
  if (!provider) throw new ConfigError(`unknown provider "${a.provider}" (known: ${Object.keys(providers).join(', ')})`, at('provider'));
  if (a.source_ip && checkHost && !hostHasAddress(a.source_ip)) {
    throw new ConfigError(`${a.source_ip} is not an address of this host`, at('source_ip'));
  }
  const resolved = withProviderDefaults(resolveCredentials(a, provider, at, abs), provider);
  if (a.min_idle > resolved.max_connections) throw new ConfigError(`must not exceed max_connections (${resolved.max_connections})`, at('min_idle'));
  return resolved;
}

/**
 * max_connections and sending limits the account leaves out take the published defaults of the
 * service it sends through — only when it does send through that service (the built-in SMTP
 * host of its kind). Exchange Online's 30 messages a minute say nothing about another server
 * (a test double, an on-premises gateway), which gets SPEC's generic default and no counters.
 */
function withProviderDefaults(a: AccountConfig, provider: ProviderConfig): ResolvedAccountConfig {
  const base = PROVIDER_DEFAULTS[provider.kind];
  // Graph and the Gmail API send from the same mailbox under the same published limits as SMTP.
  const realService =
    a.upstream === 'graph' ? provider.graphUrl === base.graphUrl
    : a.upstream === 'gmail_api' ? provider.gmailApiUrl === base.gmailApiUrl
    : provider.smtp.host.toLowerCase() === base.smtp.host;
  return {
    ...a,
    max_connections: a.max_connections ?? (realService ? PROVIDER_MAX_CONNECTIONS[provider.kind] : GENERIC_MAX_CONNECTIONS),
    limits: { ...(realService ? PROVIDER_LIMITS[provider.kind] : NO_LIMITS), ...a.limits },
  };
}

/**
 * Checks what the schema cannot see — which provider kind an `auth:` needs, that a tenant can
 * be put into the provider's token URL, that the key file is a usable key — and makes the key
 * file's path absolute.
 */
function resolveCredentials(a: AccountConfig, provider: ProviderConfig, at: (key: string) => string, abs: (p: string) => string): AccountConfig {
  if (a.upstream !== 'smtp' && API_UPSTREAM_KIND[a.upstream] !== provider.kind) {
    throw new ConfigError(`upstream: ${a.upstream} is for ${API_UPSTREAM_KIND[a.upstream]} accounts; provider ${provider.name} is ${provider.kind}`, at('upstream'));
  }
  if (a.auth === 'service_account' && provider.kind !== 'google') {
    throw new ConfigError(`auth: service_account is Google's domain-wide delegation; provider ${provider.name} is ${provider.kind}`, at('auth'));
  }
  if (a.auth === 'client_credentials' && provider.kind !== 'microsoft') {
    throw new ConfigError(`auth: client_credentials is for Microsoft 365 apps; provider ${provider.name} is ${provider.kind}`, at('auth'));
  }
  if (a.tenant !== undefined) {
    if (provider.kind !== 'microsoft') throw new ConfigError(`tenant is for Microsoft accounts; provider ${provider.name} is ${provider.kind}`, at('tenant'));
    if (a.auth === 'client_credentials' && MULTI_TENANT_NAMES.has(a.tenant.toLowerCase())) {
      throw new ConfigError(`client_credentials needs the tenant id or domain the app is registered in; "${a.tenant}" cannot issue app-only tokens`, at('tenant'));
    }
    if (!withTenant(provider.tokenUrl, a.tenant)) {
      throw new ConfigError(`providers.${provider.name}.token_url (${provider.tokenUrl}) has no /common/oauth2/ segment for the tenant to replace`, at('tenant'));
    }
  }
  if (a.service_account_file === undefined) return a;
  const file = abs(a.service_account_file);
  try {
    readServiceAccountKey(file, provider.tokenUrl);
  } catch (e) {
    if (e instanceof ServiceAccountKeyError) throw new ConfigError(e.message, at('service_account_file'));
    throw e;
  }
  return { ...a, service_account_file: file };
}
