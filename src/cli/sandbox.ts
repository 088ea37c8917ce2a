// `xoauth2-relay sandbox`: the sandbox provider (token endpoint, submission server with STARTTLS
// and XOAUTH2, the Graph and Gmail API fakes) in the foreground, and a relay.yaml pointed at it,
// so `serve`, `accounts list/test`, the status page and the operator's own MTA can be tried
// without a real mailbox. Runs until SIGINT/SIGTERM; prints each message the sandbox receives.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { SandboxProvider } from '../sandbox/provider.js';
import { sandboxRelayConfig } from '../sandbox/relay-config.js';
import type { AcceptedMessage } from '../sandbox/submission-server.js';

export interface SandboxOptions {
  /** Folder for relay.yaml and the relay's store; default ./xoauth2-relay-sandbox. */
  dir?: string;
  listenPort?: string;
  httpPort?: string;
  /** Latency of every token request, ms (the real endpoints take ~300). */
  tokenLatency?: string;
}

/** The first line of the written file: a relay.yaml without it is the operator's, never overwritten. */
const HEADER = '# Written by `xoauth2-relay sandbox`: a relay pointed at the local sandbox provider. Not for real mail.';
/**
 * The AUTH password of the sandbox's accounts. Public on purpose, like the sandbox's TLS key:
 * the relay listens on loopback and the provider behind it is a fake that delivers nowhere.
 */
export const SANDBOX_PASSWORD = 'sandbox-password';

const PLAN = [
  { email: 'alice@gmail.example', kind: 'google', senders: ['alice@gmail.example', '*@newsletter.example'], password: true },
  // Exchange's model for shared mailboxes: the licensed delegate logs in, with Send As on the shared one.
  { email: 'bob@contoso.example', kind: 'microsoft', senders: ['bob@contoso.example', 'info@contoso.example'], password: true },
  { email: 'dan@fabrikam.example', kind: 'microsoft', senders: ['dan@fabrikam.example'], upstream: 'graph' },
  { email: 'eve@gmail.example', kind: 'google', senders: ['eve@gmail.example'], upstream: 'gmail_api' },
] as const;

export async function sandboxCommand(opts: SandboxOptions): Promise<number> {
  const out = (s = '') => process.stdout.write(s + '\n');
  const dir = resolve(opts.dir ?? 'xoauth2-relay-sandbox');
  const file = join(dir, 'relay.yaml');
  if (existsSync(file) && !readFileSync(file, 'utf8').startsWith(HEADER)) {
    process.stderr.write(`xoauth2-relay: ${file} exists and was not written by \`sandbox\`: give another --dir\n`);
    return 1;
  }
  const sandbox = await SandboxProvider.start({ tokenLatencyMs: Number(opts.tokenLatency ?? 0) });
  const accounts = PLAN.map((p) => ({
    account: sandbox.addAccount({ email: p.email, kind: p.kind }),
    senders: [...p.senders],
    ...('password' in p ? { password: SANDBOX_PASSWORD } : {}),
    ...('upstream' in p ? { extra: { upstream: p.upstream } } : {}),
  }));
  sandbox.addSharedMailbox({ address: 'info@contoso.example', sendAs: ['bob@contoso.example'] });
  const doc = sandboxRelayConfig(sandbox, accounts, {
    listen: { host: '127.0.0.1', port: Number(opts.listenPort ?? 2525) },
    http: { host: '127.0.0.1', port: Number(opts.httpPort ?? 9090) },
    inbound: { trusted_networks: ['127.0.0.0/8', '::1/128'] },
    store: { path: 'relay.db' },
  });
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, `${HEADER}\n# The sandbox's ports change at each start: run \`sandbox\` again, then restart \`serve\`.\n${stringify(doc)}`, { mode: 0o600 });

  out(`sandbox provider running (127.0.0.1 only); relay config written to ${file}`);
  out(`  token endpoint  ${sandbox.tokenUrl('google').replace(/\/google\/token$/, '')}`);
  out(`  submission      127.0.0.1:${sandbox.smtpPort} (STARTTLS with the test CA ${sandbox.caFile}, AUTH XOAUTH2)`);
  out(`  Microsoft Graph ${sandbox.graph.url}   Gmail API ${sandbox.gmail.url}`);
  out(`  accounts: ${PLAN.map((p) => `${p.email}${'upstream' in p ? ` (${p.upstream})` : ''}`).join(', ')}`);
  out(`  info@contoso.example is a shared mailbox: bob@contoso.example logs in and sends as it (Send As granted)`);
  out(`  AUTH PLAIN/LOGIN to the relay: alice@gmail.example or bob@contoso.example, password ${SANDBOX_PASSWORD}; 127.0.0.1 may send without AUTH`);
  out();
  out('in another terminal:');
  out(`  xoauth2-relay serve --config ${file}`);
  out(`  xoauth2-relay accounts list --config ${file}`);
  out(`  open http://127.0.0.1:${(doc.http as { port: number }).port}/ (the status page), point your MTA at 127.0.0.1:${(doc.listen as { port: number }).port}`);
  out();
  out('messages the sandbox receives are printed here; Ctrl-C stops it');

  const seen = { smtp: 0, graph: 0, gmail: 0 };
  const show = (via: string, m: AcceptedMessage) => out(`received via ${via}: as ${m.authUser || '-'} from <${m.mailFrom}> to ${m.rcptTo.map((r) => `<${r}>`).join(', ')}, ${m.size} bytes`);
  // Polling the sandbox's three records needs no hook into it. Once printed, they are forgotten
  // (reset() keeps accounts and issued tokens), so a sandbox left running does not grow.
  const timer = setInterval(() => {
    let printed = false;
    for (const [key, via, list] of [['smtp', 'SMTP', sandbox.messages], ['graph', 'Graph', sandbox.graph.messages], ['gmail', 'Gmail API', sandbox.gmail.messages]] as const) {
      for (; seen[key] < list.length; seen[key]++) show(via, list[seen[key]]!);
      printed ||= list.length > 0;
    }
    if (printed) {
      sandbox.reset();
      seen.smtp = seen.graph = seen.gmail = 0;
    }
  }, 200);

  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  clearInterval(timer);
  await sandbox.stop();
  out('sandbox stopped');
  return 0;
}
