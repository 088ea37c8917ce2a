// A sandbox provider and a relay pointed at it, both on 127.0.0.1 ephemeral ports, for
// integration tests. The relay is the same RelayApp `serve` runs, built from a config document
// with the keys an operator writes.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { stringify } from 'yaml';
import { adminTokenPath, readAdminToken } from '../../src/admin/admin-token.js';
import { RelayApp } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/obs/logger.js';
import { SandboxProvider, type SandboxAccount, type SandboxProviderOptions } from '../../src/sandbox/index.js';
import { sandboxRelayConfig, type SandboxRelayAccount } from '../../src/sandbox/relay-config.js';
import type { Logger } from 'pino';
import { sendOnce } from './smtp-client.js';

export const KEY_ENV = { XOAUTH2_RELAY_KEY: 'a'.repeat(64) };

export interface StackAccount {
  email: string;
  kind: 'google' | 'microsoft';
  password?: string;
  senders?: string[];
  /** Credential keys replacing the refresh-token ones (see SandboxRelayAccount.credentials). */
  credentials?: Record<string, unknown>;
  extra?: Record<string, unknown>;
}

export interface StackOptions {
  accounts: StackAccount[];
  sandbox?: SandboxProviderOptions;
  /** Top-level config keys merged over the generated ones. */
  overrides?: Record<string, unknown>;
  logger?: Logger;
  /** Reuse a data directory (restart tests). */
  dir?: string;
  /** Reuse a running sandbox (restart tests). */
  provider?: SandboxProvider;
  env?: NodeJS.ProcessEnv;
}

export interface Stack {
  sandbox: SandboxProvider;
  app: RelayApp;
  port: number;
  dir: string;
  accounts: Map<string, SandboxAccount>;
  /** Headers that the HTTP API accepts: the relay's credential (http.bearer_token or admin.token). */
  adminAuth(): Record<string, string>;
  /** Stops the relay (and the sandbox and data dir unless they were passed in). */
  stop(): Promise<void>;
  /** Stops only the relay, leaving sandbox and data for a restart. */
  stopRelay(): Promise<void>;
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const sandbox = opts.provider ?? (await SandboxProvider.start(opts.sandbox));
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'xoauth2-relay-test-'));
  const accounts = new Map<string, SandboxAccount>();
  const relayAccounts: SandboxRelayAccount[] = opts.accounts.map((a) => {
    const account = sandbox.state.hasAccount(a.email)
      ? { ...sandbox.state.credentials(a.email), tokenUrl: sandbox.tokenUrl(a.kind), smtpHost: sandbox.smtpHost, smtpPort: sandbox.smtpPort }
      : sandbox.addAccount({ email: a.email, kind: a.kind });
    accounts.set(a.email, account);
    return { account, password: a.password, senders: a.senders, credentials: a.credentials, extra: a.extra };
  });
  const doc = sandboxRelayConfig(sandbox, relayAccounts, { store: { path: join(dir, 'relay.db') }, ...opts.overrides });
  // The config as the file an operator writes, in the test's own folder: whatever the relay keeps
  // beside relay.yaml (admin.token with a Redis store) lands there, never in the checkout.
  const source = join(dir, 'relay.yaml');
  writeFileSync(source, stringify(doc));
  const config = buildConfig(doc, source, { env: {} });
  const app = await RelayApp.start(config, { logger: opts.logger ?? silentLogger(), env: opts.env ?? KEY_ENV });
  const stopRelay = () => app.stop();
  return {
    sandbox,
    app,
    port: app.smtpPort,
    dir,
    accounts,
    adminAuth: () => ({ authorization: `Bearer ${config.http.bearer_token ?? readAdminToken(adminTokenPath(config))}` }),
    stopRelay,
    async stop() {
      await app.stop();
      if (!opts.provider) await sandbox.stop();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export function rawMessage(from: string, to: string[], tag: string, bodyLines: string[] = ['Hello.']): string {
  return [`From: <${from}>`, `To: ${to.map((t) => `<${t}>`).join(', ')}`, `Subject: ${tag}`, `Message-ID: <${tag}@test.example>`, '', ...bodyLines, ''].join('\r\n');
}

/**
 * Whether a new message from a trusted client gets 250 and arrives upstream with identical bytes:
 * after an abuse test, that the relay still serves.
 */
export async function stillDelivers(stack: Stack, from: string, tag: string): Promise<boolean> {
  const raw = rawMessage(from, ['still@example.net'], tag);
  const reply = await sendOnce(stack.port, from, ['still@example.net'], raw);
  return reply.startsWith('250 ') && stack.sandbox.messages.some((m) => m.sha256 === sha256(raw));
}

/** A nodemailer transport to the relay: a real SMTP client library, one connection per pool slot. */
export function relayClient(port: number, auth?: { user: string; pass: string }, maxConnections = 1) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ignoreTLS: true,
    pool: true,
    maxConnections,
    maxMessages: Infinity,
    ...(auth ? { auth } : {}),
  });
}
