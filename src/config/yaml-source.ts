// relay.yaml as text → data, keeping what the parser knows about where things are: every syntax
// error with its line and column, the best-effort document the parser still builds past them
// (so the schema can report what else is wrong in the same run), and the line of any key path
// a later check complains about.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import type { ConfigProblem } from './errors.js';

export interface YamlSource {
  /** The document as plain data; undefined when the parser could build none. */
  data: unknown;
  /** Syntax errors and unresolved aliases, each at `file, line L, column C`. */
  problems: ConfigProblem[];
  /** The 1-based line of a key path such as `accounts[0].limits.messages_per_day`, or of its nearest parent present in the file. */
  lineOf(path: string): number | undefined;
}

/** `accounts[0].limits` → ['accounts', 0, 'limits']; null for what is not a key path (a file position). */
export function splitKeyPath(path: string): PropertyKey[] | null {
  // A syntax error's path is a position (`file, line 5, column 9`); `(root)` is the whole file.
  if (/\s/.test(path) || path.startsWith('(')) return null;
  const steps: PropertyKey[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) steps.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return steps;
}

export function readYamlSource(text: string, name: string): YamlSource {
  const lines = new LineCounter();
  // Only the parser's first line of each error is kept: the rest quotes the file, secrets included.
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, lineCounter: lines });
  const at = (offset: number) => {
    const { line, col } = lines.linePos(offset);
    return `${name}, line ${line}, column ${col}`;
  };
  const problems: ConfigProblem[] = doc.errors.map((e) => ({ reason: e.message.split('\n')[0]!, path: at(e.pos[0]) }));
  const unresolved = unresolvedAliases(doc, at);
  problems.push(...unresolved);
  let data: unknown;
  // An unresolved alias makes toJS throw; anything else the parser recovered from still gives data.
  if (!unresolved.length) {
    try {
      data = doc.toJS();
    } catch {
      data = undefined;
    }
  }
  return { data, problems, lineOf: (path) => lineOfPath(doc, lines, path) };
}

function lineOfPath(doc: Document, lines: LineCounter, path: string): number | undefined {
  const steps = splitKeyPath(path);
  if (!steps) return undefined;
  let node: unknown = doc.contents;
  let offset: number | undefined;
  for (const step of steps) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && (isScalar(p.key) ? p.key.value : p.key) === step);
      if (!pair) break;
      offset = (pair.key as Node | null)?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof step === 'number' && node.items[step]) {
      node = node.items[step];
      offset = (node as Node).range?.[0] ?? offset;
    } else break;
  }
  return offset === undefined ? undefined : lines.linePos(offset).line;
}

/**
 * `- *@example.com` is YAML for "the node anchored &@example.com", not a sender pattern: the
 * parser accepts it and fails only when building the data, without a position. Found here
 * first, with the fix.
 */
function unresolvedAliases(doc: Document, at: (offset: number) => string): ConfigProblem[] {
  const found: ConfigProblem[] = [];
  visit(doc, {
    Alias(_, node) {
      if (node.resolve(doc)) return;
      found.push({
        reason: `*${node.source} is read as a YAML alias to an anchor that does not exist; a value that starts with * must be quoted: "*${node.source}"`,
        path: at(node.range?.[0] ?? 0),
      });
    },
  });
  return found;
}
