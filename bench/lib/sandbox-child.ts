// The sandbox provider in a process of its own, driven over IPC by the bench. Keeping it out of
// the generator's process gives the direct baseline both cores (generator in one process,
// provider in another), as the relay run has them; in one process the baseline would have had
// one event loop for both sides, and the relay would have looked better than it is.
import type { Server } from 'node:net';
import { SandboxProvider, type ProviderKind } from '../../src/sandbox/index.js';
import { sandboxRelayConfig, type SandboxRelayAccount } from '../../src/sandbox/relay-config.js';
import type { SandboxAccount } from '../../src/sandbox/index.js';
import { startLatencyProxy } from './latency-proxy.js';
import { startSink } from './sink-server.js';
import type { SandboxMethods } from './sandbox-process.js';

let provider: SandboxProvider | null = null;
let sink: Server | null = null;
const proxies: Server[] = [];
const accounts = new Map<string, SandboxAccount>();
/** Counts from before the submission server's last reset (see trim()). */
const carried = { accepted: 0, connectionsOpened: 0 };

const sandbox = (): SandboxProvider => {
  if (!provider) throw new Error('sandbox not started');
  return provider;
};

// The submission server keeps every accepted message with its body (for the tests' asserts);
// over a benchmark that is gigabytes. Forgetting them often keeps its memory, and so its GC
// work, the same for the direct and the relay runs. The counters the bench reads are carried
// over each reset.
function trim(): void {
  const p = provider;
  if (!p) return;
  const stats = p.smtp.stats();
  carried.accepted += stats.messagesAccepted;
  carried.connectionsOpened += stats.connectionsOpened;
  p.smtp.reset();
}
const trimmer = setInterval(() => {
  if (provider && provider.smtp.messages.length >= 200) trim();
}, 50);

const methods: SandboxMethods = {
  async start({ size }) {
    provider = await SandboxProvider.start({ submission: { size } });
    return { host: provider.smtpHost, port: provider.smtpPort, caFile: provider.caFile };
  },
  async addAccounts({ emails, kind, clientId }) {
    // One OAuth app for many mailboxes when clientId is given: the token endpoint's rate limit is the app's.
    const client = clientId ? { clientId, clientSecret: `${clientId}-secret` } : {};
    for (const email of emails) accounts.set(email, sandbox().addAccount({ email, kind: kind as ProviderKind, ...client }));
  },
  async relayConfig({ emails, extra, overrides, smtpPort }) {
    const list: SandboxRelayAccount[] = emails.map((email) => {
      const account = accounts.get(email);
      if (!account) throw new Error(`no sandbox account ${email}`);
      // Current credentials: a rotated refresh token must not be configured stale.
      return { account: { ...account, ...sandbox().state.credentials(email) }, senders: [email], extra };
    });
    const config = sandboxRelayConfig(sandbox(), list, overrides);
    if (smtpPort === undefined) return config;
    // The same providers, reached through another port (a latency proxy in front of the server).
    const providers = config.providers as Record<string, { smtp: Record<string, unknown> }>;
    for (const p of Object.values(providers)) p.smtp = { ...p.smtp, port: smtpPort };
    return config;
  },
  async startLatencyProxy({ rttMs }) {
    const proxy = await startLatencyProxy({ host: sandbox().smtpHost, port: sandbox().smtpPort }, rttMs);
    proxies.push(proxy);
    const addr = proxy.address();
    if (!addr || typeof addr !== 'object') throw new Error('latency proxy not listening');
    return { port: addr.port };
  },
  async issueAccessToken({ email }) {
    return sandbox().state.issueAccessToken(email);
  },
  async tokenRequests() {
    return sandbox().tokens.requests();
  },
  async setTokenLatency({ ms }) {
    sandbox().tokens.setLatency(ms);
  },
  async setTokenRateLimit({ perSecond }) {
    sandbox().tokens.setRateLimit(perSecond);
  },
  async counters() {
    const stats = sandbox().smtp.stats();
    return { accepted: carried.accepted + stats.messagesAccepted, connectionsOpened: carried.connectionsOpened + stats.connectionsOpened };
  },
  async trim() {
    trim();
  },
  async lastAccepted() {
    const p = sandbox();
    const last = p.smtp.messages.at(-1);
    const conn = last && p.smtp.connectionLog().find((c) => c.id === last.connectionId);
    return { connectionOpenedAt: conn ? conn.openedAt.getTime() : null };
  },
  async startSink() {
    sink ??= await startSink();
    const addr = sink.address();
    if (!addr || typeof addr !== 'object') throw new Error('sink not listening');
    return { port: addr.port };
  },
  async stop() {
    clearInterval(trimmer);
    sink?.close();
    for (const p of proxies) p.close();
    await provider?.stop();
  },
};

process.on('message', (msg: { id: number; method: keyof SandboxMethods; params: never }) => {
  const call = methods[msg.method] as (p: unknown) => Promise<unknown>;
  call(msg.params).then(
    (result) => process.send?.({ id: msg.id, result }),
    (e: Error) => process.send?.({ id: msg.id, error: e.message }),
  );
});
process.on('disconnect', () => {
  void methods.stop({}).finally(() => process.exit(0));
});
process.send?.({ ready: true });
