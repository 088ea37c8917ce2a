#!/usr/bin/env node
// xoauth2-relay command line (SPEC "Command line"). Exit status: 0 clean stop, 2 config error, 1 otherwise.
import { Command } from 'commander';
import { ConfigError } from '../config/errors.js';
import { checkConfigCommand } from './check-config.js';
import { demoCommand } from './demo.js';
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

const program = new Command()
  .name('xoauth2-relay')
  .description('SMTP relay to Gmail / Google Workspace and Microsoft 365 with OAuth2 (XOAUTH2)')
  .showHelpAfterError()
  // Usage errors (unknown option, missing argument) are not config errors: exit 1.
  .exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT_OK : EXIT_FAILURE));

program
  .command('serve')
  .description('run the relay in the foreground')
  .option('-c, --config <file>', 'config file (default: ./relay.yaml, else built-in defaults)')
  .action((opts: { config?: string }) => serveCommand(opts.config).catch(fail));

program
  .command('demo')
  .description('run a sandbox provider and a relay in one process, send a few messages, report timings')
  .action(() => demoCommand().then((code) => process.exit(code), fail));

program
  .command('check-config')
  .description('validate the config and print it with secrets masked')
  .option('-c, --config <file>', 'config file (default: ./relay.yaml, else built-in defaults)')
  .action((opts: { config?: string }) => {
    try {
      checkConfigCommand(opts.config);
    } catch (e) {
      fail(e);
    }
  });

program.parseAsync(process.argv).catch(fail);
