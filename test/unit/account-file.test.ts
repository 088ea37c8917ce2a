// What `accounts import` makes of its file: a JSON array as it is; a CSV's header row naming
// relay.yaml keys, its cells turned into the few non-text values (numbers, senders, limits),
// quoting as RFC 4180 has it, and rows named the way errors name them.
import { describe, expect, it } from 'vitest';
import { parseAccountFile, parseCsv } from '../../src/cli/account-file.js';

describe('parseCsv', () => {
  it('reads quoted cells with commas, quotes and line breaks, CRLF or LF, and numbers lines', () => {
    const rows = parseCsv('a,b,c\r\n"x, y","say ""hi""","two\nlines"\nplain,,last\n');
    expect(rows).toEqual([
      { line: 1, cells: ['a', 'b', 'c'] },
      { line: 2, cells: ['x, y', 'say "hi"', 'two\nlines'] },
      { line: 4, cells: ['plain', '', 'last'] },
    ]);
    expect(parseCsv('a,b')).toEqual([{ line: 1, cells: ['a', 'b'] }]);
    expect(() => parseCsv('a\n"open,b\n')).toThrow('line 2: a quoted cell is not closed');
  });
});

describe('parseAccountFile', () => {
  it('turns CSV rows into accounts: empty cells left out, numbers, senders and limits.* columns', () => {
    const csv = [
      'email,provider,client_id,refresh_token,senders,max_connections,min_idle,limits.messages_per_day,limits.messages_per_minute',
      'a@x.test,google,cid,rt,"a@x.test; *@y.test",4,0,500,null',
      '',
      'b@x.test,microsoft,cid2,rt2,,,,,',
    ].join('\n');
    expect(parseAccountFile(csv)).toEqual([
      {
        where: 'row 1 (line 2)',
        input: { email: 'a@x.test', provider: 'google', client_id: 'cid', refresh_token: 'rt', senders: ['a@x.test', '*@y.test'], max_connections: 4, min_idle: 0, limits: { messages_per_day: 500, messages_per_minute: null } },
      },
      { where: 'row 2 (line 4)', input: { email: 'b@x.test', provider: 'microsoft', client_id: 'cid2', refresh_token: 'rt2' } },
    ]);
  });

  it('leaves what is not a whole number as text, for the schema to name', () => {
    const [row] = parseAccountFile('email,max_connections\na@x.test,three\n');
    expect(row!.input).toEqual({ email: 'a@x.test', max_connections: 'three' });
  });

  it('reads a JSON array as it is, rows numbered from 1', () => {
    expect(parseAccountFile('\uFEFF [{"email":"a@x.test"},{"email":"b@x.test","min_idle":2}]')).toEqual([
      { where: 'row 1', input: { email: 'a@x.test' } },
      { where: 'row 2', input: { email: 'b@x.test', min_idle: 2 } },
    ]);
  });

  it('refuses what is neither', () => {
    expect(() => parseAccountFile('[{"email":')).toThrow(/^not valid JSON/);
    expect(() => parseAccountFile('{"email":"a@x.test"}')).toThrow('a JSON file must hold an array of accounts');
    expect(() => parseAccountFile('address,provider\na@x.test,google\n')).toThrow('the CSV header row must name the columns, email among them');
    expect(() => parseAccountFile('')).toThrow('the file is empty');
    expect(() => parseAccountFile('email,provider\na@x.test,google,extra\n')).toThrow('row 1 (line 2): 3 cells, the header names 2 columns');
  });
});
