// One relay with an SMTP, a Graph and a Gmail API account sending at once: each message goes
// through its account's upstream only, byte-identical, exactly once.
import { expect, it } from 'vitest';
import { GMAIL, GRAPH, SMTP, gmailAccount, graphAccount } from '../helpers/api-stack.js';
import { drive, Ledger } from '../helpers/ledger.js';
import { startStack } from '../helpers/stack.js';

it('SMTP, Graph and Gmail API accounts send at once, each through its own upstream', async () => {
  const stack = await startStack({ accounts: [{ email: SMTP, kind: 'google', senders: [SMTP] }, graphAccount(), gmailAccount()] });
  try {
    const ledger = new Ledger('mixed', 150, [SMTP, GRAPH, GMAIL]);
    await drive(stack.port, ledger.entries, { connections: 9, timeLimitMs: 60_000 });
    const { sandbox } = stack;
    const all = [...sandbox.messages, ...sandbox.graph.messages, ...sandbox.gmail.messages];
    expect(ledger.report('mixed', all)).toMatchObject({ sent: 150, accepted: 150, lost: 0, duplicated: 0 });
    expect(ledger.problems(all)).toEqual([]);
    const via = (list: readonly { sha256: string }[]) => new Set(list.map((m) => m.sha256));
    const [smtp, graph, gmail] = [via(sandbox.messages), via(sandbox.graph.messages), via(sandbox.gmail.messages)];
    for (const e of ledger.entries) {
      expect([smtp.has(e.sha), graph.has(e.sha), gmail.has(e.sha)]).toEqual([e.from === SMTP, e.from === GRAPH, e.from === GMAIL]);
    }
    expect([smtp.size, graph.size, gmail.size]).toEqual([50, 50, 50]);
  } finally {
    await stack.stop();
  }
}, 90_000);
