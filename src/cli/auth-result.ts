// What `xoauth2-relay auth ...` does with the credentials it obtained: prints a relay.yaml
// account that references the secrets as ${ENV} variables, prints the refresh token once as the
// variable's value, and — with --store or --config — saves the account, sealed, in the store.
// stdout carries only that (so it can be redirected to a file); instructions go to stderr.
import { resolve } from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../config/load.js';
import { accountSchema, type AccountInput, type AccountUpstream, type Config } from '../config/schema.js';
import { silentLogger } from '../obs/logger.js';
import { openStore } from '../store/open.js';
import { isAccountStore } from '../store/store.js';

export interface CliIo {
  /** The result: YAML and the variable's value. */
  out(text: string): void;
  /** Instructions and progress, for the person at the terminal. */
  info(line: string): void;
}

export const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  info: (line) => process.stderr.write(line + '\n'),
};

export interface StoreTarget {
  /** A SQLite store file. */
  store?: string;
  /** A relay.yaml whose `store:` to use. */
  config?: string;
}

/** `sender@example.com` -> `SENDER_EXAMPLE_COM`, the stem of the account's variables. */
export const envStem = (email: string) => email.toUpperCase().replace(/[^A-Z0-9]+/g, '_');

/** The account as relay.yaml writes it, secrets included. */
export function obtainedAccount(a: { email: string; provider: string; clientId: string; clientSecret: string | null; refreshToken: string; tenant?: string; upstream?: AccountUpstream }): AccountInput {
  const input: AccountInput = {
    email: a.email.trim().toLowerCase(),
    provider: a.provider,
    client_id: a.clientId,
    ...(a.clientSecret ? { client_secret: a.clientSecret } : {}),
    refresh_token: a.refreshToken,
    ...(a.tenant && a.tenant.toLowerCase() !== 'common' ? { tenant: a.tenant } : {}),
    // The token's scope is the upstream's: the account must say which.
    ...(a.upstream && a.upstream !== 'smtp' ? { upstream: a.upstream } : {}),
  };
  // Kept as written (no defaults filled in), but it must load as relay.yaml would.
  const checked = accountSchema.safeParse(input);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    throw new Error(`the account would not load: ${issue.path.join('.')}: ${issue.message}`);
  }
  return input;
}

/**
 * The store --store or --config names, or null. Resolved before the consent, so a config that
 * does not load fails before a person has clicked through anything.
 */
export function storeOf(target: StoreTarget): Config['store'] | null {
  if (target.config) return loadConfig(target.config).store;
  return target.store ? { path: resolve(target.store) } : null;
}

export async function deliverAccount(account: AccountInput, where: Config['store'] | null, io: CliIo): Promise<void> {
  const stem = envStem(account.email);
  const shown: Record<string, unknown> = {
    email: account.email,
    provider: account.provider,
    client_id: account.client_id,
    ...(account.client_secret ? { client_secret: `\${${envStem(account.provider)}_CLIENT_SECRET}` } : {}),
    refresh_token: `\${${stem}_REFRESH_TOKEN}`,
    ...(account.tenant ? { tenant: account.tenant } : {}),
    ...(account.upstream ? { upstream: account.upstream } : {}),
    password: `\${${stem}_RELAY_PASSWORD}`,
  };
  io.out('# relay.yaml: add under accounts:, and set the variables in the relay\'s environment\n');
  io.out(stringify({ accounts: [shown] }));
  io.out(`# the refresh token (a secret: keep it out of relay.yaml and out of logs)\n${stem}_REFRESH_TOKEN=${account.refresh_token}\n`);
  if (!where) return;
  const store = await openStore(where, process.env, silentLogger());
  try {
    if (!isAccountStore(store)) throw new Error('this store does not keep accounts');
    await store.saveAccount(account);
  } finally {
    await store.close();
  }
  io.info(`saved ${account.email} in the store at ${'path' in where ? where.path : where.url.replace(/\/\/[^@/]*@/, '//***@')} (sealed); a running relay uses it after a reload (xoauth2-relay reload)`);
}
