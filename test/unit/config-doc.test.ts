// docs/configuration.md is written for operators, by hand; src/config/schema.ts is what the relay
// validates with. This test keeps the two saying the same: every key of the schema is in a
// table of the page, every key of a table is in the schema, and a default the page writes as a
// value (`36700160`) is the one the relay applies. A default the page writes in words ("the
// host's name", "required") must be one the schema leaves unset.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';

const DOC = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

interface Node {
  def: { type: string; innerType?: Node; in?: Node; shape?: Record<string, Node>; options?: Node[]; element?: Node; valueType?: Node };
}

const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch']);

/** Every key path of the schema ("inbound.tls.cert_file"), and whether a default is declared on it. */
function schemaPaths(): Map<string, { leaf: boolean; hasDefault: boolean }> {
  const out = new Map<string, { leaf: boolean; hasDefault: boolean }>();
  const walk = (node: Node, path: string, hasDefault: boolean): void => {
    const { def } = node;
    if (WRAPPERS.has(def.type)) return walk(def.innerType!, path, hasDefault || def.type === 'default');
    if (def.type === 'pipe') return walk(def.in!, path, hasDefault);
    const nested = def.type === 'object' || def.type === 'union' || def.type === 'array' || def.type === 'record';
    if (path) out.set(path, { leaf: !nested || (def.type === 'array' && def.element!.def.type !== 'object'), hasDefault: hasDefault || (out.get(path)?.hasDefault ?? false) });
    const prefix = path ? `${path}.` : '';
    if (def.type === 'object') for (const [k, v] of Object.entries(def.shape!)) walk(v, prefix + k, false);
    else if (def.type === 'union') for (const o of def.options!) walk(o, path, hasDefault);
    else if (def.type === 'array' && def.element!.def.type === 'object') walk(def.element!, path, false);
    else if (def.type === 'record') walk(def.valueType!, path, false);
  };
  walk(configSchema as unknown as Node, '', false);
  return out;
}

interface Row {
  section: string;
  keys: string[];
  cells: string[];
  header: string[];
}

/** The rows of every "| key | ..." table, with the section (the heading's first `name`) they are under. */
function docRows(): Row[] {
  const rows: Row[] = [];
  let section = '';
  let header: string[] | null = null;
  for (const line of DOC.split('\n')) {
    if (line.startsWith('#')) section = /`([^`]+)`/.exec(line)?.[1] ?? '';
    if (!line.startsWith('|')) {
      header = null;
      continue;
    }
    const cells = line.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim());
    if (!header) {
      header = cells;
      continue;
    }
    if (header[0] !== 'key' || cells[0]!.startsWith('---')) continue;
    rows.push({ section, keys: [...cells[0]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!), cells: cells.slice(1), header: header.slice(1) });
  }
  return rows;
}

const paths = schemaPaths();
const fullPath = (section: string, key: string): string => (paths.has(`${section}.${key}`) ? `${section}.${key}` : key);

/** A cell's value for the i-th of its row's keys: the first `value` of its i-th comma-separated part, or null for words. */
function cellValue(cell: string, i: number, n: number): string | null {
  const parts = n === 1 ? [cell] : cell.split(/,(?=(?:[^`]*`[^`]*`)*[^`]*$)/).map((p) => p.trim());
  const part = parts[i] ?? '';
  return part.startsWith('`') ? /^`([^`]*)`/.exec(part)![1]! : null;
}

const show = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? `[${v.join(', ')}]` : String(v));

function get(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

// What the relay runs with when a key is left out: the schema's defaults (paths as written, before
// they are resolved against the file's folder), the Redis store's, and a Google SMTP account and
// the built-in providers as resolved (an account's max_connections is its provider kind's).
const raw = configSchema.parse({});
const redis = configSchema.parse({ store: { url: 'redis://127.0.0.1' } });
const resolved = buildConfig(
  { accounts: [{ email: 'a@example.com', provider: 'google', client_id: 'c', refresh_token: 'r' }] },
  null,
  { checkHost: false, env: {} },
);
const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function actual(path: string, column: string): unknown {
  const [top, ...rest] = path.split('.');
  if (top === 'accounts') return get(resolved.accounts[0], rest.join('.'));
  if (top === 'providers') return get(resolved.providers[column.split(' ')[0]!], rest.map(camel).join('.'));
  return get(raw, path) ?? get(redis, path);
}

describe('docs/configuration.md against src/config/schema.ts', () => {
  const rows = docRows();
  const documented = rows.flatMap((r) => r.keys.map((k) => fullPath(r.section, k)));

  // Each section declares its defaults twice, on its keys and in the section's .default({...})
  // (what zod 4 returns, unparsed, when the section is left out): the two must agree.
  it('applies the same defaults to a section left out and a section written empty', () => {
    expect(configSchema.parse({ listen: {}, inbound: {}, tokens: {}, upstream: {}, http: {}, log: {} })).toEqual(raw);
  });

  it('finds the tables', () => {
    expect(rows.length).toBeGreaterThan(50);
  });

  it('documents no key the schema does not have', () => {
    expect(documented.filter((p) => !paths.has(p))).toEqual([]);
  });

  it('documents every key of the schema (a documented key covers the keys under it)', () => {
    const leaves = [...paths].filter(([, v]) => v.leaf).map(([p]) => p);
    expect(leaves.filter((p) => !documented.some((d) => p === d || p.startsWith(`${d}.`)))).toEqual([]);
  });

  const cases = rows.flatMap((r) =>
    r.keys.flatMap((k, i) =>
      r.header.map((column, c) => ({ path: fullPath(r.section, k), column, value: cellValue(r.cells[c] ?? '', i, r.keys.length) })),
    ),
  ).filter((c) => c.column.endsWith('default'));

  it.each(cases)('$path ($column): $value', ({ path, column, value }) => {
    if (value === null) {
      // Written in words: the schema must not declare a value the page does not show.
      if (!path.startsWith('providers.')) expect(paths.get(path)?.hasDefault, `${path} has a default in the schema`).toBe(false);
    } else {
      expect(show(actual(path, column))).toBe(value);
    }
  });
});

