#!/usr/bin/env node
// xoauth2-relay command line (SPEC "Command line"). Exit status: 0 clean stop, 2 config error, 1 otherwise.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { ConfigError } from '../config/errors.js';
import { GOOGLE_AUTH_URL, GOOGLE_TOKEN_URL, MICROSOFT_AUTHORITY } from '../config/providers.js';
import {
  accountsAddCommand,
  accountsImportCommand,
  accountsListCommand,
  accountsRemoveCommand,
  accountsTestCommand,
  reloadCommand,
  type AccountsAddOptions,
  type ConfigOption,
  type ListFilters,
} from './accounts.js';
import { authGoogleCommand, authMicrosoftCommand, type AuthGoogleOptions, type AuthMicrosoftOptions } from './auth.js';
import { checkConfigCommand } from './check-config.js';
import type { SandboxOptions } from './sandbox.js';
import { serveCommand } from './serve.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_CONFIG = 2;

function fail(e: unknown): never {
  if (e instanceof ConfigError) {
    process.stderr.write(`xoauth2-relay: ${e.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  process.stderr.write(`xoauth2-relay: ${(e as Error).message ?? String(e)}\n`);
  process.exit(EXIT_FAILURE);
}

// package.json sits two levels above both src/cli/ and dist/cli/, and ships in the npm package.
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command()
  .name('xoauth2-relay')
  .version(version, '-V, --version', 'print the version')
  .description('SMTP relay to Gmail / Google Workspace and Microsoft 365 with OAuth2 (XOAUTH2)')
  .showHelpAfterError()
  // Usage errors (unknown option, missing argument) are not config errors: exit 1.
  .exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT_OK : EXIT_FAILURE));

const configOption = (c: Command) => c.option('-c, --config <file>', 'config file (default: ./relay.yaml, else built-in defaults)');

configOption(program.command('serve').description('run the relay in the foreground (SIGHUP: reload the config)'))
  .action((opts: { config?: string }) => serveCommand(opts.config).catch(fail));

program
  .command('demo')
  .description('run a sandbox provider and a relay in one process, send a few messages, report timings')
  // Loaded on demand: the demo brings nodemailer and the sandbox (smtp-server), a tenth of a
  // second of start-up that `serve` has no use for.
  .action(() =>
    import('./demo.js')
      .then(({ demoCommand }) => demoCommand())
      .then((code) => process.exit(code), fail),
  );

program
  .command('sandbox')
  .description('run the sandbox provider in the foreground and write a relay.yaml pointed at it, to try serve, accounts and an MTA without real mailboxes')
  .option('--dir <folder>', 'where relay.yaml and the store go', 'xoauth2-relay-sandbox')
  .option('--listen-port <port>', "the relay's SMTP port in the written relay.yaml", '2525')
  .option('--http-port <port>', "the relay's HTTP port (status page, API) in the written relay.yaml", '9090')
  .option('--token-latency <ms>', 'delay every token request, as the real endpoints do (~300)', '0')
  .action((opts: SandboxOptions) =>
    import('./sandbox.js')
      .then(({ sandboxCommand }) => sandboxCommand(opts))
      .then((code) => process.exit(code), fail),
  );

configOption(program.command('check-config').description('validate the config and print it with secrets masked'))
  .action((opts: { config?: string }) => {
    try {
      process.exitCode = checkConfigCommand(opts.config);
    } catch (e) {
      fail(e);
    }
  });

// Credentials: a person consents once; the result is printed (and, with --store/--config, saved).
const auth = program.command('auth').description('obtain a refresh token for an account by interactive consent');
// On the command line a secret would show in `ps`; the variable keeps it out.
const clientSecret = () => new Option('--client-secret <secret>', 'OAuth client secret').env('XOAUTH2_RELAY_CLIENT_SECRET');
const storeOptions = (c: Command) =>
  c.option('--store <file>', 'also save the account, sealed, in this SQLite store').option('-c, --config <file>', "also save the account in the store this relay.yaml names");

storeOptions(
  auth
    .command('google')
    .description('authorization code with PKCE: prints the consent URL, receives the redirect on 127.0.0.1')
    .requiredOption('--email <address>', 'the mailbox that consents (sent as login_hint)')
    .requiredOption('--client-id <id>', 'OAuth client id of a Desktop app')
    .addOption(clientSecret())
    .option('--auth-url <url>', 'authorization endpoint', GOOGLE_AUTH_URL)
    .option('--token-url <url>', 'token endpoint', GOOGLE_TOKEN_URL)
    .option('--timeout <seconds>', 'how long to wait for the consent', '300')
    .option('--provider <name>', 'the providers: entry the account uses in relay.yaml', 'google')
    .option('--upstream <upstream>', 'smtp (scope https://mail.google.com/) or gmail_api (scope gmail.send)', 'smtp'),
).action((opts: AuthGoogleOptions) => authGoogleCommand(opts).then(() => process.exit(EXIT_OK), fail));

storeOptions(
  auth
    .command('microsoft')
    .description('device code flow: prints a code to enter at the verification URL, polls until the sign-in completes')
    .requiredOption('--email <address>', 'the mailbox that signs in')
    .requiredOption('--client-id <id>', 'application (client) id of the Entra app')
    .addOption(clientSecret())
    .option('--tenant <tenant>', 'tenant id or domain (common: any work or personal account)', 'common')
    .option('--authority <url>', 'Entra authority; endpoints are {authority}/{tenant}/oauth2/v2.0/devicecode and /token', MICROSOFT_AUTHORITY)
    .option('--provider <name>', 'the providers: entry the account uses in relay.yaml', 'microsoft')
    .option('--upstream <upstream>', 'smtp (scope SMTP.Send) or graph (scopes Mail.Send and Mail.ReadWrite of Microsoft Graph)', 'smtp')
    // Tests only: multiplies the poll interval and the code's lifetime (docs/operations.md).
    .addOption(new Option('--poll-scale <factor>').hideHelp().env('XOAUTH2_RELAY_POLL_SCALE')),
).action((opts: AuthMicrosoftOptions) => authMicrosoftCommand(opts).then(() => process.exit(EXIT_OK), fail));

const exitWith = (work: Promise<number>) => work.then((code) => process.exit(code), fail);

configOption(
  program.command('reload').description("make the running relay re-read its config and the stored accounts (POST /api/reload; or send it SIGHUP)"),
).action((opts: ConfigOption) => exitWith(reloadCommand(opts)));

// Accounts in the store; relay.yaml's are changed by editing the file and reloading.
const accounts = program.command('accounts').description('list, test, add, import and remove accounts');

configOption(accounts.command('list').description('every account with provider, health, token expiry, last error and messages sent in the last hour and day'))
  .option('--json', 'print JSON')
  .option('--state <states>', 'only accounts in these health states, comma-separated (needs the running relay)')
  .option('--provider <name>', 'only accounts of this provider')
  .option('--grep <regexp>', 'only accounts whose email matches (case-insensitive)')
  .action((opts: ConfigOption & ListFilters & { json?: boolean }) => exitWith(accountsListCommand(opts)));

configOption(accounts.command('test').description('fetch a token and authenticate to the provider (nothing is sent); on failure, say what to do').argument('<email>'))
  .action((email: string, opts: ConfigOption) => exitWith(accountsTestCommand(email, opts)));

configOption(
  accounts
    .command('add')
    .description('add an account to the store (verified first: a token and an authenticated connection)')
    .requiredOption('--email <address>', 'the mailbox; the XOAUTH2 user=')
    .requiredOption('--provider <name>', 'a providers: entry (google, microsoft, ...)')
    .option('--auth <kind>', 'refresh_token (default), service_account or client_credentials')
    .option('--client-id <id>', 'OAuth client id')
    .addOption(clientSecret())
    // Secrets from the environment keep them out of `ps` and the shell history.
    .addOption(new Option('--refresh-token <token>', 'refresh token').env('XOAUTH2_RELAY_REFRESH_TOKEN'))
    .addOption(new Option('--password <password>', 'the password the MTA sends in AUTH PLAIN/LOGIN').env('XOAUTH2_RELAY_PASSWORD'))
    .option('--tenant <tenant>', 'Microsoft tenant id or domain')
    .option('--service-account-file <file>', 'Google service account key (auth: service_account)')
    .option('--sender <pattern...>', 'MAIL FROM address or *@domain the account may send as (repeatable)')
    .option('--source-ip <address>', 'local address for upstream connections')
    .option('--max-connections <n>', 'upstream connections the account may hold')
    .option('--min-idle <n>', 'authenticated connections kept ready')
    .option('--messages-per-connection <n>', 'then a connection is retired')
    .option('--no-verify', 'save without checking the credentials with the provider'),
).action((opts: AccountsAddOptions) => exitWith(accountsAddCommand(opts)));

configOption(
  accounts
    .command('import')
    .description('add or replace many accounts from a CSV (header row of relay.yaml keys) or a JSON array; all or nothing')
    .argument('<file>')
    .option('--verify', 'check every account with the provider before writing any'),
).action((file: string, opts: ConfigOption & { verify?: boolean }) => exitWith(accountsImportCommand(file, opts)));

configOption(accounts.command('remove').description('remove an account from the store').argument('<email>'))
  .action((email: string, opts: ConfigOption) => exitWith(accountsRemoveCommand(email, opts)));

program.parseAsync(process.argv).catch(fail);
