// docs/configuration.md's key tables, rendered from the schema so that a key, its default and
// its meaning are written once (src/config/schema.ts). The page keeps its prose; each table sits
// between `<!-- config-table: ROOT... -->` and `<!-- /config-table -->` and is replaced by
// `npm run docs:config`; test/unit/config-doc.test.ts fails when the committed page differs.
// The schema is read through zod's JSON Schema export (its public view of keys, defaults and
// `.meta()`), not through zod's internals.
import { z } from 'zod';
import { PROVIDER_DEFAULTS } from './providers.js';
import { configSchema } from './schema.js';

interface Node {
  type?: string;
  properties?: Record<string, Node>;
  required?: string[];
  items?: Node;
  anyOf?: Node[];
  additionalProperties?: Node | boolean;
  default?: unknown;
  description?: string;
  /** What applies when a key without a default is left out, in words (schema.ts `.meta({ unset })`). */
  unset?: string;
}

export interface KeyRow {
  /** The key's full path: `inbound.tls`, `accounts.email`, `providers.smtp.host`. */
  path: string;
  node: Node;
  /** The default it gets from its section's default when it has none of its own (`store.path`). */
  inherited: unknown;
  required: boolean;
}

const ROOT = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Node;

/** The objects a value at `node` is: itself, a union's options, a list's or a map's entries. */
function objects(node: Node): Node[] {
  if (node.properties) return [node];
  if (node.anyOf) return node.anyOf.flatMap(objects);
  if (node.type === 'array' && node.items) return objects(node.items);
  if (typeof node.additionalProperties === 'object') return objects(node.additionalProperties);
  return [];
}

function at(path: string): Node {
  let node = ROOT;
  for (const step of path.split('.')) {
    const next = objects(node).find((o) => o.properties![step])?.properties![step];
    if (!next) throw new Error(`config-table: no key ${path} in the schema`);
    node = next;
  }
  return node;
}

/**
 * One row per key under `root`: a key with a description is a row (an object described as a
 * whole, such as `inbound.tls`, too); a section without one is opened into its keys.
 */
export function keyRows(root: string): KeyRow[] {
  const out: KeyRow[] = [];
  const walk = (node: Node, path: string, inherited: unknown, required: boolean, open: boolean): void => {
    const inner = objects(node);
    if (!open && (node.description !== undefined || inner.length === 0)) {
      out.push({ path, node, inherited, required });
      return;
    }
    const defaults = (node.default ?? inherited ?? {}) as Record<string, unknown>;
    for (const o of inner) {
      for (const [key, child] of Object.entries(o.properties!)) {
        walk(child, `${path}.${key}`, defaults[key], o.required?.includes(key) ?? false, false);
      }
    }
  };
  const node = at(root);
  walk(node, root, undefined, ROOT.required?.includes(root) ?? false, root.includes('.') || objects(node).length > 0);
  return out;
}

const DURATIONS: [number, string][] = [[3_600_000, 'h'], [60_000, 'min']];

function value(v: unknown, path: string): string {
  const shown = `\`${Array.isArray(v) ? `[${v.join(', ')}]` : v === null ? 'null' : String(v)}\``;
  if (typeof v !== 'number' || !path.endsWith('_ms') || v < 60_000) return shown;
  const [unit, name] = DURATIONS.find(([u]) => v % u === 0) ?? [0, ''];
  return unit ? `${shown} (${v / unit} ${name})` : shown;
}

function defaultCell(row: KeyRow): string {
  const v = row.node.default !== undefined ? row.node.default : row.inherited;
  if (v !== undefined) return value(v, row.path);
  return row.node.unset ?? (row.required ? 'required' : 'none');
}

function meaning(row: KeyRow): string {
  if (!row.node.description) throw new Error(`config-table: ${row.path} has no description in src/config/schema.ts (.describe())`);
  return row.node.description;
}

const cell = (s: string): string => s.replace(/\|/g, '\\|');
const line = (cells: string[]): string => `| ${cells.map(cell).join(' | ')} |`;
const camel = (k: string): string => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** The built-in providers' values of a `providers` key (`smtp.host` is `PROVIDER_DEFAULTS.google.smtp.host`). */
function providerCells(path: string): string[] {
  const steps = path.split('.').slice(1).map(camel);
  return Object.values(PROVIDER_DEFAULTS).map((p) => value(steps.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], p), path));
}

/** The table of the keys under `roots`: named from their root when there is one, else in full. */
export function renderTable(roots: string[]): string {
  const rows = roots.flatMap(keyRows);
  const name = (path: string): string => `\`${roots.length === 1 ? path.slice(roots[0]!.length + 1) || path : path}\``;
  if (roots.length === 1 && roots[0] === 'providers') {
    const kinds = Object.keys(PROVIDER_DEFAULTS).map((k) => `${k} default`);
    return [line(['key', ...kinds, 'meaning']), line(['---', ...kinds.map(() => '---'), '---']), ...rows.map((r) => line([name(r.path), ...providerCells(r.path), meaning(r)]))].join('\n');
  }
  return [line(['key', 'default', 'meaning']), line(['---', '---', '---']), ...rows.map((r) => line([name(r.path), defaultCell(r), meaning(r)]))].join('\n');
}

const BLOCK = /(<!-- config-table: ([^>]*?) -->\n)[\s\S]*?(<!-- \/config-table -->)/g;

/** The page with every table between its markers rendered afresh. */
export function renderConfigDoc(page: string): string {
  return page.replace(BLOCK, (_, open: string, roots: string, close: string) => `${open}${renderTable(roots.trim().split(/\s+/))}\n\n${close}`);
}

/** The roots each table of the page renders, in page order. */
export const tableRoots = (page: string): string[][] => [...page.matchAll(BLOCK)].map((m) => m[2]!.trim().split(/\s+/));

/** The sections of relay.yaml: every key of the schema is under one of these. */
export const topLevelKeys = (): string[] => Object.keys(ROOT.properties!);
