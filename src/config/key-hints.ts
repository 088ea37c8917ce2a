// "did you mean max_connections?" for a misspelt key: the keys the schema knows at the place
// of the unknown one, and the nearest by edit distance. Keys come from the schema itself, so a
// key added there is suggested without a list to keep in step.
import type { z } from 'zod';

interface SchemaDef {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  element?: z.ZodType;
  valueType?: z.ZodType;
  options?: z.ZodType[];
  left?: z.ZodType;
  right?: z.ZodType;
  getter?: () => z.ZodType;
}

const defOf = (s: z.ZodType): SchemaDef => (s as unknown as { _zod: { def: SchemaDef } })._zod.def;

/** The schemas a value at one step below `s` may be checked against (`step`: a key or an index). */
function children(s: z.ZodType, step: PropertyKey | null): z.ZodType[] {
  const d = defOf(s);
  switch (d.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
    case 'nonoptional':
      return children(d.innerType!, step);
    case 'pipe':
      return children(d.in!, step);
    case 'lazy':
      return children(d.getter!(), step);
    case 'union':
      return d.options!.flatMap((o) => children(o, step));
    case 'intersection':
      return [...children(d.left!, step), ...children(d.right!, step)];
    case 'object':
      return step === null ? [s] : typeof step === 'string' && d.shape![step] ? [d.shape![step]] : [];
    case 'array':
      return step === null ? [] : typeof step === 'number' ? [d.element!] : [];
    case 'record':
      return step === null ? [] : [d.valueType!];
    default:
      return [];
  }
}

/** Keys the schema allows in the object at `path`. */
export function knownKeys(root: z.ZodType, path: readonly PropertyKey[]): string[] {
  let at = [root];
  for (const step of path) at = at.flatMap((s) => children(s, step));
  const keys = new Set<string>();
  for (const obj of at.flatMap((s) => children(s, null))) for (const k of Object.keys(defOf(obj).shape ?? {})) keys.add(k);
  return [...keys];
}

/** Levenshtein distance with adjacent transpositions counted as one edit (`prot` → `port`). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The known key closest to `key`, if close enough to be a typo: at most a third of its letters
 * wrong (`max_conections`, `prot`), not an unrelated word that happens to be short.
 */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase().replace(/-/g, '_');
  let best: { key: string; d: number } | undefined;
  for (const k of known) {
    const d = editDistance(lower, k);
    if (!best || d < best.d) best = { key: k, d };
  }
  return best && best.d <= Math.max(1, Math.floor(key.length / 3)) ? best.key : undefined;
}
