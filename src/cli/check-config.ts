import { loadConfig } from '../config/load.js';
import { renderMaskedConfig } from '../config/mask.js';

export function checkConfigCommand(file: string | undefined): void {
  const config = loadConfig(file);
  process.stdout.write(`# ${config.source ?? 'built-in defaults (no relay.yaml found)'}: OK, ${config.accounts.length} account(s)\n`);
  process.stdout.write(renderMaskedConfig(config));
}
