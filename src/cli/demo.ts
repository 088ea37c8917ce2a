// `xoauth2-relay demo`: a sandbox provider (token endpoint answering in 300 ms like the real
// ones, submission server with STARTTLS and XOAUTH2) and a relay pointed at it, in one process.
// Sends a few messages through with a real SMTP client and reports what happened and how long
// it took — the point being that no message waits for a token or a handshake.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { RelayApp } from '../app.js';
import { buildConfig } from '../config/load.js';
import { createLogger } from '../obs/logger.js';
import { SandboxProvider } from '../sandbox/provider.js';
import { sandboxRelayConfig } from '../sandbox/relay-config.js';

const TOKEN_LATENCY_MS = 300;

interface Sent {
  via: string;
  from: string;
  to: string[];
  ms: number;
  reply: string;
  sha256: string;
  rejected: string[];
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const ms = (n: number) => `${n.toFixed(1)} ms`;

function rawMessage(from: string, to: string[], n: number): string {
  return [
    `From: <${from}>`,
    `To: ${to.map((t) => `<${t}>`).join(', ')}`,
    `Subject: xoauth2-relay demo message ${n}`,
    `Message-ID: <demo-${n}-${Date.now()}@example.com>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `Hello from the xoauth2-relay demo, message ${n}.`,
    '.A line starting with a dot survives dot-stuffing.',
    '',
  ].join('\r\n');
}

export async function demoCommand(): Promise<number> {
  const out = (s = '') => process.stdout.write(s + '\n');
  const dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-demo-'));
  const sandbox = await SandboxProvider.start({ tokenLatencyMs: TOKEN_LATENCY_MS });
  let app: RelayApp | null = null;
  try {
    const google = sandbox.addAccount({ email: 'alice@gmail.example', kind: 'google' });
    const microsoft = sandbox.addAccount({ email: 'bob@contoso.example', kind: 'microsoft' });
    // One account of each HTTP API upstream, beside the two SMTP ones.
    const graph = sandbox.addAccount({ email: 'dan@fabrikam.example', kind: 'microsoft' });
    const gmailApi = sandbox.addAccount({ email: 'eve@gmail.example', kind: 'google' });
    const password = 'demo-relay-password';
    const doc = sandboxRelayConfig(
      sandbox,
      [
        { account: google, password, senders: ['alice@gmail.example', '*@newsletter.example'] },
        { account: microsoft, senders: ['bob@contoso.example'] },
        { account: graph, senders: ['dan@fabrikam.example'], extra: { upstream: 'graph' } },
        { account: gmailApi, senders: ['eve@gmail.example'], extra: { upstream: 'gmail_api' } },
      ],
      { store: { path: join(dir, 'relay.db') }, http: { enabled: false } },
    );
    const config = buildConfig(doc, null, { env: {} });

    out('xoauth2-relay demo: a sandbox provider and a relay in one process (127.0.0.1 only)');
    out(`  sandbox token endpoint ${sandbox.tokenUrl('google').replace(/\/google\/token$/, '')} answers in ${TOKEN_LATENCY_MS} ms, like the real ones`);
    out(`  sandbox submission server 127.0.0.1:${sandbox.smtpPort} (STARTTLS, AUTH XOAUTH2)`);
    out(`  sandbox Microsoft Graph ${sandbox.graph.url} (dan@, upstream: graph) and Gmail API ${sandbox.gmail.url} (eve@, upstream: gmail_api)`);
    out();

    const t0 = performance.now();
    app = await RelayApp.start(config, { logger: createLogger('warn'), env: { XOAUTH2_RELAY_KEY: sha256('demo').slice(0, 64) } });
    const startupMs = performance.now() - t0;
    const tokensAtStart = sandbox.tokens.requests();
    const connectionsAtStart = sandbox.smtp.stats().connectionsOpened;
    out(`relay ready in ${ms(startupMs)}: ${tokensAtStart} tokens fetched in parallel, ${connectionsAtStart} authenticated connections opened`);
    out();

    // One recipient the provider refuses, to show that its reply reaches the client as it is.
    sandbox.smtp.addFault({ at: 'rcpt', recipient: 'nobody@example.net', code: 550, enhanced: '5.1.1', text: 'The email account that you tried to reach does not exist' });

    const viaAuth = nodemailer.createTransport({ host: '127.0.0.1', port: app.smtpPort, secure: false, ignoreTLS: true, auth: { user: google.email, pass: password }, pool: true, maxConnections: 1 });
    const viaTrusted = nodemailer.createTransport({ host: '127.0.0.1', port: app.smtpPort, secure: false, ignoreTLS: true, pool: true, maxConnections: 1 });
    const plan: Array<{ via: string; t: typeof viaAuth; from: string; to: string[] }> = [
      { via: 'AUTH alice', t: viaAuth, from: 'alice@gmail.example', to: ['carol@example.net'] },
      { via: 'AUTH alice', t: viaAuth, from: 'news@newsletter.example', to: ['dave@example.net', 'erin@example.net'] },
      { via: 'AUTH alice', t: viaAuth, from: 'alice@gmail.example', to: ['frank@example.net', 'nobody@example.net'] },
      { via: 'trusted net', t: viaTrusted, from: 'bob@contoso.example', to: ['grace@example.net'] },
      { via: 'trusted net', t: viaTrusted, from: 'bob@contoso.example', to: ['heidi@example.net'] },
      { via: 'AUTH alice', t: viaAuth, from: 'alice@gmail.example', to: ['ivan@example.net'] },
      { via: 'trusted net', t: viaTrusted, from: 'dan@fabrikam.example', to: ['judy@example.net', 'ken@example.net'] },
      { via: 'trusted net', t: viaTrusted, from: 'eve@gmail.example', to: ['leo@example.net', 'mia@example.net'] },
    ];
    const sent: Sent[] = [];
    for (const [i, p] of plan.entries()) {
      const raw = rawMessage(p.from, p.to, i + 1);
      const t = performance.now();
      const info = await p.t.sendMail({ envelope: { from: p.from, to: p.to }, raw });
      sent.push({ via: p.via, from: p.from, to: p.to, ms: performance.now() - t, reply: info.response, sha256: sha256(raw), rejected: info.rejected.map(String) });
    }
    // What a client outside trusted_networks without AUTH would get is shown by a refused sender instead:
    let refused = '';
    try {
      await viaTrusted.sendMail({ envelope: { from: 'mallory@unknown.example', to: ['x@example.net'] }, raw: rawMessage('mallory@unknown.example', ['x@example.net'], 0) });
    } catch (e) {
      refused = (e as { response?: string }).response ?? (e as Error).message;
    }
    viaAuth.close();
    viaTrusted.close();

    const arrived = [
      ...sandbox.messages.map((m) => ({ ...m, upstream: 'SMTP' })),
      ...sandbox.graph.messages.map((m) => ({ ...m, upstream: 'Graph' })),
      ...sandbox.gmail.messages.map((m) => ({ ...m, upstream: 'Gmail API' })),
    ];
    out('| # | via | MAIL FROM | RCPT accepted/sent (refused) | ms | relay reply | upstream | sent as | bytes identical |');
    out('| - | --- | --------- | ---------------------------- | -- | ----------- | -------- | ------- | --------------- |');
    let ok = true;
    sent.forEach((s, i) => {
      const got = arrived.find((m) => m.sha256 === s.sha256);
      const identical = Boolean(got);
      ok &&= identical && s.reply.startsWith('250');
      const rcpt = `${s.to.length - s.rejected.length}/${s.to.length}${s.rejected.length ? ` (${s.rejected.join(', ')})` : ''}`;
      out(`| ${i + 1} | ${s.via} | ${s.from} | ${rcpt} | ${s.ms.toFixed(1)} | ${s.reply.slice(0, 48)} | ${got?.upstream ?? '-'} | ${got?.authUser ?? '-'} | ${identical ? 'yes' : 'NO'} |`);
    });
    out();
    const lat = sent.map((s) => s.ms).sort((a, b) => a - b);
    const tokensDuring = sandbox.tokens.requests() - tokensAtStart;
    const connectionsDuring = sandbox.smtp.stats().connectionsOpened - connectionsAtStart;
    out(`first message: ${ms(sent[0]!.ms)} (with the client's connect, EHLO and AUTH); median ${ms(lat[Math.floor(lat.length / 2)]!)}`);
    out(`token requests while sending: ${tokensDuring} (start-up fetched them; a real fetch costs ~${TOKEN_LATENCY_MS} ms)`);
    out(`new upstream connections while sending: ${connectionsDuring} (spares the pool opens in the background when a ready one is taken; no message waits for them)`);
    out(`unknown sender from a trusted network: ${refused || 'accepted?!'}`);
    ok &&= tokensDuring === 0 && refused.startsWith('550');
    out();
    out(ok ? 'demo OK' : 'demo FAILED: see the table above');
    return ok ? 0 : 1;
  } finally {
    await app?.stop();
    await sandbox.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
