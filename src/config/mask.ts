// The effective config as `check-config` prints it: every secret replaced, so the output can be
// pasted into a ticket. Secrets are named here once; anything added to the schema that holds a
// secret must be added to SECRET_KEYS.
import { stringify } from 'yaml';
import type { Config } from './schema.js';

const SECRET_KEYS = new Set(['client_secret', 'refresh_token', 'password', 'bearer_token', 'access_token']);
export const MASK = '********';

function maskValue(key: string, value: unknown): unknown {
  if (SECRET_KEYS.has(key) && typeof value === 'string') return MASK;
  if (key === 'url' && typeof value === 'string') return value.replace(/\/\/([^@/]*)@/, `//${MASK}@`);
  return maskTree(value);
}

export function maskTree(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => maskTree(v));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskValue(k, v)]));
  }
  return value;
}

/** YAML of the effective config in the file's own vocabulary, secrets masked. */
export function renderMaskedConfig(config: Config): string {
  const { source: _source, providers, ...rest } = config;
  const providersOut = Object.fromEntries(
    Object.values(providers).map((p) => [
      p.name,
      {
        kind: p.kind,
        token_url: p.tokenUrl,
        ...(p.scope ? { scope: p.scope } : {}),
        smtp: p.smtp,
        ...(p.kind === 'microsoft' ? { graph_url: p.graphUrl } : { gmail_api_url: p.gmailApiUrl }),
        ca_file: p.caFile,
      },
    ]),
  );
  return stringify(maskTree({ ...rest, providers: providersOut }));
}
