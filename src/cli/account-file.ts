// The file `accounts import` reads: a JSON array of accounts (relay.yaml's keys), or a CSV with
// a header row naming those keys. CSV cells are text, so the few keys that are numbers or lists
// are converted here: `senders` is split on spaces, commas or semicolons, `limits.messages_per_day`
// style columns become the `limits` object, an empty cell leaves the key out. Validation is the
// schema's, row by row (src/cli/accounts.ts).

export interface AccountRow {
  /** How errors name it: `row 2` (the second account), and its line in a CSV. */
  where: string;
  input: unknown;
}

const NUMBER_KEYS = new Set(['max_connections', 'min_idle', 'messages_per_connection']);

export function parseAccountFile(text: string): AccountRow[] {
  const body = text.replace(/^\uFEFF/, '');
  if (/^\s*[[{]/.test(body)) {
    let doc: unknown;
    try {
      doc = JSON.parse(body);
    } catch (e) {
      throw new Error(`not valid JSON: ${(e as Error).message}`);
    }
    if (!Array.isArray(doc)) throw new Error('a JSON file must hold an array of accounts');
    return doc.map((input, i) => ({ where: `row ${i + 1}`, input }));
  }
  return csvAccounts(body);
}

function csvAccounts(text: string): AccountRow[] {
  const records = parseCsv(text).filter((r) => r.cells.some((c) => c.trim() !== ''));
  const [header, ...rows] = records;
  if (!header) throw new Error('the file is empty');
  const keys = header.cells.map((k) => k.trim());
  if (!keys.includes('email')) throw new Error('the CSV header row must name the columns, email among them');
  return rows.map((r, i) => {
    const where = `row ${i + 1} (line ${r.line})`;
    if (r.cells.length > keys.length) throw new Error(`${where}: ${r.cells.length} cells, the header names ${keys.length} columns`);
    const input: Record<string, unknown> = {};
    keys.forEach((key, k) => {
      const cell = (r.cells[k] ?? '').trim();
      if (cell !== '') set(input, key, cell);
    });
    return { where, input };
  });
}

function set(input: Record<string, unknown>, key: string, cell: string): void {
  if (key === 'senders') {
    input.senders = cell.split(/[\s,;]+/).filter(Boolean);
  } else if (key.startsWith('limits.')) {
    const limits = (input.limits ??= {}) as Record<string, unknown>;
    limits[key.slice('limits.'.length)] = cell === 'null' ? null : number(cell);
  } else {
    input[key] = NUMBER_KEYS.has(key) ? number(cell) : cell;
  }
}

/** A whole number as a number; anything else stays text, for the schema to name. */
const number = (cell: string): number | string => (/^\d+$/.test(cell) ? Number(cell) : cell);

/** RFC 4180: comma-separated, "quoted" cells with "" for a quote, CRLF or LF between records. */
export function parseCsv(text: string): Array<{ line: number; cells: string[] }> {
  const out: Array<{ line: number; cells: string[] }> = [];
  let cells: string[] = [];
  let cell = '';
  let quoted = false;
  let line = 1;
  let start = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else {
        if (c === '\n') line++;
        cell += c;
      }
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === ',') {
      cells.push(cell);
      cell = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      cells.push(cell);
      out.push({ line: start, cells });
      cells = [];
      cell = '';
      start = ++line;
    } else cell += c;
  }
  if (quoted) throw new Error(`line ${start}: a quoted cell is not closed`);
  if (cell !== '' || cells.length) out.push({ line: start, cells: [...cells, cell] });
  return out;
}
