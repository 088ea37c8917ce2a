// `xoauth2-relay accounts list|test|add|import|remove` and `xoauth2-relay reload`.
//
// The running relay is asked through its HTTP API when it answers (src/cli/relay-api.ts): it
// alone knows health, token expiry and recent sends, and `test` then goes through its token
// cache. Without it, `list` shows the accounts a start would load and `test` checks from here.
// add/import/remove write the store themselves and then ask a running relay to reload, so there
// is one way accounts reach the store from the command line, whether the relay runs or not.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';
import { loadConfig, resolveAccountInput } from '../config/load.js';
import type { AccountInput, Config } from '../config/schema.js';
import { mergeAccounts } from '../config/stored-accounts.js';
import { checkAccount, freshToken, type CheckResult } from '../admin/account-check.js';
import { ACCOUNT_STATES } from '../admin/health.js';
import type { AccountView, ReloadReport } from '../admin/accounts.js';
import { silentLogger } from '../obs/logger.js';
import { accountFromConfig } from '../routing/account.js';
import { openStore } from '../store/open.js';
import { isAccountStore, type AccountStore, type Store } from '../store/store.js';
import { connectorOptions } from '../upstream/connector.js';
import { parseAccountFile, type AccountRow } from './account-file.js';
import { processIo, type CliIo } from './auth-result.js';
import { callRelay, relayApi, type ApiReply } from './relay-api.js';

export interface ConfigOption {
  config?: string;
}

async function withStore<T>(config: Config, work: (store: Store & AccountStore) => Promise<T>): Promise<T> {
  const store = await openStore(config.store, process.env, silentLogger());
  try {
    if (!isAccountStore(store)) throw new Error('this store does not keep accounts');
    return await work(store);
  } finally {
    await store.close();
  }
}

const errorOf = (reply: ApiReply) => String(reply.body.error ?? `HTTP ${reply.status}`);

// ---- list --------------------------------------------------------------------------------

const when = (iso: unknown) => (typeof iso === 'string' ? iso.replace('T', ' ').slice(0, 19) + 'Z' : '-');

/** The state, with when it frees for the two that pass by themselves. */
const healthCell = (a: AccountView) => {
  const until = a.at_limit_until ?? a.paused?.until;
  return until && (a.health === 'at_limit_until' || a.health === 'paused_by_quota') ? `${a.health} ${when(until)}` : a.health;
};

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** Enough of the config to reach the running relay; the accounts' secrets are not needed for that. */
const relayConfig = (opts: ConfigOption) => loadConfig(opts.config, { withoutAccounts: true });

export interface ListFilters {
  /** Comma-separated health states (ok, cold, needs_consent, ...). */
  state?: string;
  provider?: string;
  /** A regular expression the email must match, case-insensitive. */
  grep?: string;
}

/**
 * The filters as one test, checked before anything is asked: a misspelt state or a broken
 * expression is an error naming what is accepted, not an empty list.
 */
function accountFilter(f: ListFilters): (a: { email: string; provider: string; health?: string }) => boolean {
  let states: Set<string> | null = null;
  if (f.state !== undefined) {
    states = new Set(f.state.split(',').map((s) => s.trim()).filter(Boolean));
    const unknown = [...states].filter((s) => !(ACCOUNT_STATES as readonly string[]).includes(s));
    if (unknown.length || !states.size) throw new ConfigError(`--state ${f.state}: not a state (${unknown.join(', ') || 'empty'}); one or more of ${ACCOUNT_STATES.join(', ')}, comma-separated`);
  }
  let grep: RegExp | null = null;
  if (f.grep !== undefined) {
    try {
      grep = new RegExp(f.grep, 'i');
    } catch (e) {
      throw new ConfigError(`--grep ${f.grep}: not a regular expression (${(e as Error).message})`);
    }
  }
  const provider = f.provider?.trim().toLowerCase();
  return (a) => (!states || states.has(a.health ?? '')) && (!provider || a.provider.toLowerCase() === provider) && (!grep || grep.test(a.email));
}

const filtered = (f: ListFilters) => f.state !== undefined || f.provider !== undefined || f.grep !== undefined;

export async function accountsListCommand(opts: ConfigOption & ListFilters & { json?: boolean }, io: CliIo = processIo): Promise<number> {
  const keep = accountFilter(opts);
  const api = relayApi(relayConfig(opts));
  const reply = await callRelay(api, 'GET', '/api/accounts');
  if (reply && reply.status !== 200) throw new Error(`the relay answered ${reply.status}: ${errorOf(reply)}`);
  if (reply) {
    const every = reply.body.accounts as AccountView[];
    const accounts = every.filter(keep);
    if (opts.json) io.out(JSON.stringify(accounts, null, 2) + '\n');
    else {
      const head = ['EMAIL', 'PROVIDER', 'SOURCE', 'HEALTH', 'TOKEN EXPIRES', 'SENT 1H', 'SENT 24H', 'LAST ERROR'];
      const rows = accounts.map((a) => [a.email, a.provider, a.source, healthCell(a), when(a.token_expires_at), String(a.sent_last_hour), String(a.sent_last_day), a.last_error ?? '-']);
      io.out(table([head, ...rows]));
    }
    io.info(`${accounts.length} account(s)${filtered(opts) ? ` of ${every.length}` : ''}, from the running relay at ${api!.base}`);
    return 0;
  }
  // Not running: what a start would load. Health and counts exist only in a running relay.
  if (opts.state !== undefined) throw new ConfigError('--state needs the running relay (health is known only to it); --provider and --grep work without it');
  const config = loadConfig(opts.config);
  const merged = await withStore(config, async (store) => mergeAccounts(config, await store.listAccounts()));
  const accounts = merged.accounts.map((a) => ({ email: a.config.email, provider: a.config.provider, auth: a.config.auth, source: a.source })).filter(keep);
  if (opts.json) io.out(JSON.stringify(accounts, null, 2) + '\n');
  else io.out(table([['EMAIL', 'PROVIDER', 'AUTH', 'SOURCE'], ...accounts.map((a) => [a.email, a.provider, a.auth, a.source])]));
  const where = api ? `nothing answers at ${api.base}` : 'http.enabled is false';
  io.info(
    `The relay is not running (${where}): these are the ${accounts.length} account(s) it would load. ` +
      'Health, token expiry, last error and messages sent are known only to the running relay.',
  );
  for (const email of merged.shadowed) io.info(`note: ${email} is in relay.yaml and in the store; relay.yaml's is used`);
  for (const { email, error } of merged.invalid) io.info(`note: stored account ${email} does not load and would be left out: ${error}`);
  return 0;
}

// ---- test --------------------------------------------------------------------------------

export async function accountsTestCommand(email: string, opts: ConfigOption, io: CliIo = processIo): Promise<number> {
  const wanted = email.trim().toLowerCase();
  const reply = await callRelay(relayApi(relayConfig(opts)), 'POST', `/api/accounts/${encodeURIComponent(wanted)}/test`);
  let result: CheckResult;
  if (reply) {
    if (reply.status !== 200) throw new Error(errorOf(reply));
    result = reply.body as unknown as CheckResult;
    io.info(`checked by the running relay, through its token cache`);
  } else {
    const config = loadConfig(opts.config);
    result = await withStore(config, async (store) => {
      const found = mergeAccounts(config, await store.listAccounts()).accounts.find((a) => a.config.email === wanted);
      if (!found) throw new Error(`no account ${wanted} in relay.yaml or the store`);
      const account = accountFromConfig(found.config, config.providers);
      return checkAccount(account, { token: (a) => freshToken(a, store, config.tokens.request_timeout_ms), upstream: connectorOptions(config.upstream) });
    });
    io.info('the relay is not running: checked from here');
  }
  if (result.ok) {
    io.out(`${result.email}: OK: a fresh token (valid ${result.token_expires_in_s} s) authenticated to ${result.upstream} in ${result.ms} ms; nothing was sent\n`);
    return 0;
  }
  io.out(`${result.email}: FAILED at ${result.stage}: ${result.error}\n`);
  if (result.detail) io.out(`  the provider said: ${result.detail}\n`);
  io.out(`  what to do: ${result.advice}\n`);
  return 1;
}

// ---- add, import, remove ----------------------------------------------------------------

export interface AccountsAddOptions extends ConfigOption {
  email: string;
  provider: string;
  auth?: string;
  clientId?: string;
  clientSecret?: string;
  refreshToken?: string;
  tenant?: string;
  serviceAccountFile?: string;
  password?: string;
  sender?: string[];
  sourceIp?: string;
  maxConnections?: string;
  minIdle?: string;
  messagesPerConnection?: string;
  /** false with --no-verify. */
  verify: boolean;
}

export function accountsAddCommand(opts: AccountsAddOptions, io: CliIo = processIo): Promise<number> {
  const int = (v: string | undefined) => (v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : v);
  const input = Object.fromEntries(
    Object.entries({
      email: opts.email,
      provider: opts.provider,
      auth: opts.auth,
      client_id: opts.clientId,
      client_secret: opts.clientSecret,
      refresh_token: opts.refreshToken,
      tenant: opts.tenant,
      service_account_file: opts.serviceAccountFile,
      password: opts.password,
      senders: opts.sender,
      source_ip: opts.sourceIp,
      max_connections: int(opts.maxConnections),
      min_idle: int(opts.minIdle),
      messages_per_connection: int(opts.messagesPerConnection),
    }).filter(([, v]) => v !== undefined),
  );
  return storeAccounts(loadConfig(opts.config), [{ where: opts.email, input }], opts.verify, io);
}

export function accountsImportCommand(file: string, opts: ConfigOption & { verify?: boolean }, io: CliIo = processIo): Promise<number> {
  const config = loadConfig(opts.config);
  let rows: AccountRow[];
  try {
    rows = parseAccountFile(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`${file}: ${(e as Error).message}`);
  }
  if (!rows.length) throw new ConfigError(`${file} holds no account`);
  return storeAccounts(config, rows, opts.verify ?? false, io);
}

/**
 * All or nothing: every row is checked against the schema (and, with `verify`, against the
 * provider) before the first is written, and they are written in one transaction.
 */
async function storeAccounts(config: Config, rows: readonly AccountRow[], verify: boolean, io: CliIo): Promise<number> {
  const errors: string[] = [];
  const valid: Array<{ where: string; input: AccountInput; email: string }> = [];
  const seen = new Map<string, string>();
  const inFile = new Set(config.accounts.map((a) => a.email));
  for (const { where, input } of rows) {
    try {
      const { email } = resolveAccountInput(input, config);
      if (inFile.has(email)) errors.push(`${where}: email: ${email} is defined in relay.yaml`);
      else if (seen.has(email)) errors.push(`${where}: email: ${email} is also at ${seen.get(email)}`);
      else valid.push({ where, input: input as AccountInput, email });
      seen.set(email, where);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      errors.push(`${where}: ${e.path ? `${e.path}: ` : ''}${e.reason}`);
    }
  }
  if (errors.length) throw new ConfigError(`nothing was written, ${errors.length} account(s) refused:\n  ${errors.join('\n  ')}`);

  await withStore(config, async (store) => {
    if (verify) {
      const failed: string[] = [];
      for (const { where, input } of valid) {
        const account = accountFromConfig(resolveAccountInput(input, config), config.providers);
        const r = await checkAccount(account, { token: (a) => freshToken(a, store, config.tokens.request_timeout_ms), upstream: connectorOptions(config.upstream) });
        if (!r.ok) failed.push(`${where}: ${r.email}: failed at ${r.stage}: ${r.error}\n    what to do: ${r.advice}`);
      }
      if (failed.length) throw new Error(`nothing was written, ${failed.length} account(s) failed verification (--no-verify to skip it):\n  ${failed.join('\n  ')}`);
    }
    await store.saveAccounts(valid.map((v) => v.input));
  });
  io.info(`saved ${valid.length} account(s) in the store: ${valid.map((v) => v.email).join(', ')}`);
  return tellRelay(config, io);
}

export async function accountsRemoveCommand(email: string, opts: ConfigOption, io: CliIo = processIo): Promise<number> {
  const config = loadConfig(opts.config);
  const wanted = email.trim().toLowerCase();
  if (config.accounts.some((a) => a.email === wanted)) throw new Error(`${wanted} is defined in relay.yaml: remove it there, then reload`);
  const removed = await withStore(config, (store) => store.deleteAccount(wanted));
  if (!removed) throw new Error(`no account ${wanted} in the store`);
  io.info(`removed ${wanted} from the store`);
  return tellRelay(config, io);
}

/** A running relay reloads, so what was written runs now; otherwise it is loaded at the next start. */
async function tellRelay(config: Config, io: CliIo): Promise<number> {
  const reply = await callRelay(relayApi(config), 'POST', '/api/reload');
  if (!reply) {
    io.info('the relay is not running: serve loads the stored accounts at start');
    return 0;
  }
  if (reply.status !== 200) {
    io.info(`saved, but the running relay refused to reload: ${errorOf(reply)}`);
    return 1;
  }
  io.info(`the running relay reloaded: ${describeReload(reply.body as unknown as ReloadReport)}`);
  return 0;
}

// ---- reload ------------------------------------------------------------------------------

function describeReload(r: ReloadReport): string {
  const { added, changed, removed, unchanged } = r.accounts;
  const parts = [
    added.length ? `added ${added.join(', ')}` : '',
    changed.length ? `changed ${changed.join(', ')}` : '',
    removed.length ? `removed ${removed.join(', ')}` : '',
    `${unchanged} unchanged`,
  ].filter(Boolean);
  const restart = r.restart_needed.length ? `; needs a restart to take effect: ${r.restart_needed.join(', ')}` : '';
  return parts.join('; ') + restart;
}

/** POST /api/reload; exit 2 when the relay refuses the new config (it keeps the running one). */
export async function reloadCommand(opts: ConfigOption, io: CliIo = processIo): Promise<number> {
  // The relay re-reads the file itself, with its own environment. This command reads it only to
  // find the relay's HTTP port; when it cannot, the relay was not asked and keeps running as it is.
  let config: Config;
  try {
    config = relayConfig(opts);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    io.info(`xoauth2-relay: ${e.message}`);
    io.info('xoauth2-relay: the running relay was not asked to reload (this command could not read the file to find it); it keeps its current config. Fix the file and run reload again.');
    return 2;
  }
  const api = relayApi(config);
  const reply = await callRelay(api, 'POST', '/api/reload');
  if (!reply) {
    throw new Error(
      `no relay answers at ${api?.base ?? '(http.enabled is false)'}: is it running with this config? Without its HTTP port, send it SIGHUP (kill -HUP PID; systemctl reload xoauth2-relay)`,
    );
  }
  if (reply.status === 422) {
    io.info(`xoauth2-relay: the relay refused the new config and keeps running the old one: ${errorOf(reply)}`);
    return 2;
  }
  if (reply.status !== 200) throw new Error(`the relay answered ${reply.status}: ${errorOf(reply)}`);
  io.out(`reloaded: ${describeReload(reply.body as unknown as ReloadReport)}\n`);
  return 0;
}
