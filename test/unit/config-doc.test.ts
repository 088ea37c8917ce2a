// docs/configuration.md's key tables are generated from src/config/schema.ts (npm run
// docs:config). This test keeps the committed page equal to what the schema generates, every key
// of the schema in some table, and the defaults the tables show equal to what the relay applies
// (the tables read zod's JSON Schema export; the relay runs zod's parse).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildConfig } from '../../src/config/load.js';
import { keyRows, renderConfigDoc, tableRoots, topLevelKeys, type KeyRow } from '../../src/config/doc-tables.js';
import { configSchema } from '../../src/config/schema.js';

const DOC = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

function get(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

// What the relay runs with when a key is left out: the schema's defaults (the SQLite store's and
// the Redis store's), a listener and a Google account with only their required keys.
const raw = configSchema.parse({});
const redis = configSchema.parse({ store: { url: 'redis://127.0.0.1' } });
const listener = configSchema.parse({ listeners: [{ port: 465 }] }).listeners[0];
const ACCOUNT = { email: 'a@example.com', provider: 'google', client_id: 'c', refresh_token: 'r' };
const account = buildConfig({ accounts: [ACCOUNT] }, null, { checkHost: false, env: {} }).accounts[0];

function applied(path: string): unknown {
  const [top, ...rest] = path.split('.');
  if (top === 'accounts') return get(account, rest.join('.'));
  if (top === 'listeners') return get(listener, rest.join('.'));
  return get(raw, path) ?? get(redis, path);
}

const allRows = (): KeyRow[] => topLevelKeys().flatMap(keyRows);

describe('docs/configuration.md against src/config/schema.ts', () => {
  it('has the key tables the schema generates (run `npm run docs:config` after changing the schema)', () => {
    expect(tableRoots(DOC).length).toBeGreaterThan(10);
    expect(DOC).toBe(renderConfigDoc(DOC));
  });

  it('puts every key of the schema in a table', () => {
    const documented = new Set(tableRoots(DOC).flat().flatMap(keyRows).map((r) => r.path));
    expect(allRows().map((r) => r.path).filter((p) => !documented.has(p))).toEqual([]);
  });

  it('describes every key in the schema', () => {
    expect(allRows().filter((r) => !r.node.description).map((r) => r.path)).toEqual([]);
  });

  // Sections are .prefault({}): the section's keys' own defaults are the only ones.
  it('applies the same defaults to a section left out and a section written empty', () => {
    expect(configSchema.parse({ listen: {}, inbound: {}, tokens: {}, warm: {}, metrics: {}, upstream: {}, http: {}, log: {} })).toEqual(raw);
  });

  // Keys whose default is a value, or "none"; "required" and defaults in words (`unset`) are left out.
  const shown = allRows()
    .map((r) => ({ path: r.path, value: r.node.default !== undefined ? r.node.default : r.inherited, words: r.required || r.node.unset !== undefined }))
    .filter((r) => !r.path.startsWith('providers.') && (r.value !== undefined || !r.words))
    .filter((r) => !Object.keys(ACCOUNT).some((k) => r.path === `accounts.${k}`));

  it.each(shown)('$path: the default the table shows is the one the relay applies', ({ path, value }) => {
    if (value === undefined) expect(applied(path), `${path} gets a value the table does not show`).toBeUndefined();
    else expect(applied(path)).toEqual(value);
  });
});
