import { RelayApp } from '../app.js';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../obs/logger.js';

const HOW_TO_ADD_AN_ACCOUNT = `no accounts configured: the relay accepts connections but has nowhere to send.
Add one to relay.yaml, for instance:
  accounts:
    - email: sender@example.com
      provider: google            # or microsoft
      client_id: ...
      client_secret: ...
      refresh_token: \${SENDER_REFRESH_TOKEN}
      password: ...               # what your MTA sends in AUTH
then run: npx xoauth2-relay check-config && npx xoauth2-relay serve`;

export async function serveCommand(file: string | undefined): Promise<void> {
  const config = loadConfig(file);
  const logger = createLogger(config.log.level);
  if (!config.source) logger.info({ event: 'config' }, 'no relay.yaml found: running on built-in defaults');
  if (!config.accounts.length) logger.warn({ event: 'config' }, HOW_TO_ADD_AN_ACCOUNT);
  const app = await RelayApp.start(config, { logger });
  let signalled = false;
  const shutdown = (signal: string) => {
    if (signalled) return;
    signalled = true;
    logger.info({ event: 'signal', signal }, `${signal} received`);
    // A stop that hangs past its own bound plus a margin is cut short: the supervisor wants an exit.
    const guard = setTimeout(() => process.exit(1), config.shutdown_timeout_ms + 10_000);
    guard.unref();
    app.stop().then(
      () => logger.flush(() => process.exit(0)),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
