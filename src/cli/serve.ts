import { RelayApp } from '../app.js';
import { loadConfigOffThread } from '../config/load-off-thread.js';
import { isDefaultTrustedNetworks } from '../config/networks.js';
import type { Config } from '../config/schema.js';
import { configWarnings, describeWarning } from '../config/warnings.js';
import { createLogger, type Logger } from '../obs/logger.js';

const HOW_TO_ADD_AN_ACCOUNT = `no accounts configured: the relay accepts connections but has nowhere to send.
Get a refresh token with: xoauth2-relay auth google|microsoft --email ADDRESS --client-id ID
(it prints the account to paste; docs/operations.md). Add it with xoauth2-relay accounts add
(the store; the running relay picks it up), or to relay.yaml, for instance:
  accounts:
    - email: sender@example.com
      provider: google            # or microsoft
      client_id: ...
      client_secret: ...
      refresh_token: \${SENDER_REFRESH_TOKEN}
      password: ...               # what your MTA sends in AUTH
then run: xoauth2-relay check-config && xoauth2-relay serve`;

export async function serveCommand(file: string | undefined): Promise<void> {
  const config = await loadConfigOffThread(file);
  const logger = createLogger(config.log.level);
  if (!config.source) logger.info({ event: 'config' }, 'no relay.yaml found: running on built-in defaults');
  // "No accounts" is said after start-up, knowing the store's accounts too (HOW_TO_ADD_AN_ACCOUNT).
  for (const w of configWarnings(config).filter((w) => w.path !== 'accounts')) logger.warn({ event: 'config_warning', key: w.path }, describeWarning(w));
  // Re-read relay.yaml and the stored accounts; a config that does not load is logged and
  // refused. Handled from the first moment (SIGHUP's default would end the process); one that
  // comes during start-up is done once the relay runs.
  let app: RelayApp | null = null;
  let reloadWhenStarted = false;
  let signalled = false;
  const reload = (running: RelayApp) =>
    running.reload().then(
      () => logger.flush(),
      () => logger.flush(),
    );
  process.on('SIGHUP', () => {
    if (signalled) return;
    logger.info({ event: 'signal', signal: 'SIGHUP' }, 'SIGHUP received: reloading the config');
    if (app) void reload(app);
    else reloadWhenStarted = true;
  });
  const started = await RelayApp.start(config, { logger });
  app = started;
  if (reloadWhenStarted) void reload(started);
  const shutdown = (signal: string) => {
    if (signalled) return;
    signalled = true;
    logger.info({ event: 'signal', signal }, `${signal} received`);
    // A stop that hangs past its own bound plus a margin is cut short: the supervisor wants an exit.
    const guard = setTimeout(() => process.exit(1), config.shutdown_timeout_ms + 10_000);
    guard.unref();
    started.stop().then(
      () => logger.flush(() => process.exit(0)),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  logStarted(logger, config, started);
  if (!started.relay.accounts.length) logger.warn({ event: 'config' }, HOW_TO_ADD_AN_ACCOUNT);
  // The log is written in batches (src/obs/logger.ts); the start-up lines, "listening" among
  // them, are what an operator or a supervisor waits for, so they go out now — after the signal
  // handlers are in place, or a supervisor that stops the relay as soon as it reads "listening"
  // kills it outright (exit by signal, no graceful stop).
  logger.flush();
}

const address = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/** What an operator checks first: where it listens, what it sends through, whom it trusts. */
function logStarted(logger: Logger, config: Config, app: RelayApp): void {
  const smtp = address(config.listen.host, app.smtpPort);
  const http = app.adminPort === null ? null : address(config.http.host, app.adminPort);
  const accounts = app.relay.accounts.map((a) => a.email);
  const trusted = config.inbound.trusted_networks;
  const byDefault = isDefaultTrustedNetworks(trusted) ? ' (default: loopback only)' : '';
  logger.info(
    { event: 'started', smtp, http, accounts, trusted_networks: trusted },
    `relay started: SMTP on ${smtp}, HTTP on ${http ?? 'none'}; ${accounts.length} account(s)${accounts.length ? `: ${accounts.join(', ')}` : ''}; ` +
      `sessions from ${trusted.length ? trusted.join(', ') : 'no network'}${byDefault} may send without AUTH`,
  );
}
