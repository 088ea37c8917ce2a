// MAIL/RCPT path parsing (src/smtp/path.ts): where the path ends (a '>' or a quote inside a
// quoted local part, a quote in a parameter after it) and which mailboxes are one mailbox, ASCII
// and Unicode alike. Written to pin the behaviour down before trying faster paths for it.
import { describe, expect, it } from 'vitest';
import { parsePath } from '../../src/smtp/path.js';
import { ProtocolError } from '../../src/smtp/protocol-error.js';

const detail = (arg: string, keyword: 'FROM' | 'TO'): string => {
  try {
    return `accepted ${parsePath(arg, keyword, 1_000_000).address}`;
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
    return `refused: ${e.message}`;
  }
};

describe('parsePath', () => {
  it.each([
    ['FROM:<a@b.example> SIZE=10', 'FROM', 'accepted a@b.example'],
    ['FROM:<"a>b"@x.example>', 'FROM', 'accepted "a>b"@x.example'],
    ['FROM:<"a\\"> b"@x.example> SIZE=10', 'FROM', 'accepted "a\\"> b"@x.example'],
    ['FROM:<a@b.example> X-NOTE=y"z>w', 'FROM', 'accepted a@b.example'],
    ['FROM:<>', 'FROM', 'accepted '],
    ['TO:<jörg@münchen.example>', 'TO', 'accepted jörg@münchen.example'],
    ['TO:<a..b@x.example>', 'TO', 'accepted a..b@x.example'],
    ['TO:<a@[192.0.2.1]>', 'TO', 'accepted a@[192.0.2.1]'],
    ['TO:<Postmaster>', 'TO', 'accepted Postmaster'],
    ['TO:<@relay.example:a@b.example>', 'TO', 'accepted a@b.example'],
    ['TO:<a@-x.example>', 'TO', 'refused: SYNTAX: not one mailbox (RFC 5321 4.1.2)'],
    ['TO:<a@x-.example>', 'TO', 'refused: SYNTAX: not one mailbox (RFC 5321 4.1.2)'],
    ['TO:<a@münchen-.example>', 'TO', 'refused: SYNTAX: not one mailbox (RFC 5321 4.1.2)'],
    ['TO:<a b@x.example>', 'TO', 'refused: SYNTAX: not one mailbox (RFC 5321 4.1.2)'],
    ['TO:<a@b.example,c@d.example>', 'TO', 'refused: SYNTAX: not one mailbox (RFC 5321 4.1.2)'],
    ['TO:<"unterminated@x.example>', 'TO', 'refused: SYNTAX: unterminated address'],
    ['TO:<a@b.example', 'TO', 'refused: SYNTAX: unterminated address'],
    ['TO:<a@b.example>x', 'TO', 'refused: SYNTAX: text after the address'],
  ] as const)('%s', (arg, keyword, expected) => {
    expect(detail(arg, keyword)).toBe(expected);
  });
});
