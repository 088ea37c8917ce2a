import { loadConfig } from '../config/load.js';
import { renderMaskedConfig } from '../config/mask.js';
import { isDefaultTrustedNetworks } from '../config/networks.js';
import { configWarnings, describeWarning } from '../config/warnings.js';
import { processIo, type CliIo } from './auth-result.js';

/** Exit 0 with warnings too: they are configs that may be meant; errors exit 2 (thrown). */
export function checkConfigCommand(file: string | undefined, io: CliIo = processIo): number {
  const config = loadConfig(file);
  const warnings = configWarnings(config);
  const nets = config.inbound.trusted_networks;
  io.out(`# ${config.source ?? 'built-in defaults (no relay.yaml found)'}: OK, ${config.accounts.length} account(s), ${warnings.length} warning(s)\n`);
  io.out(`# sessions from ${nets.length ? nets.join(', ') : 'no network'} may send without AUTH${isDefaultTrustedNetworks(nets) ? ' (the default: loopback only; set inbound.trusted_networks)' : ''}\n`);
  io.out(renderMaskedConfig(config));
  for (const w of warnings) io.info(`warning: ${describeWarning(w)}`);
  return 0;
}
