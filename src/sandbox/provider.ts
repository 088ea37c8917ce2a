// One sandbox mail provider: a token endpoint and a submission server sharing one SandboxState,
// so a token issued by the first is what the second accepts. Used by `xoauth2-relay demo` and by
// the integration tests; everything listens on 127.0.0.1 and ephemeral ports, needs no network,
// and stops completely with stop().
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AppInput, SandboxApp } from './app-grants.js';
import type { SandboxConsent } from './consent.js';
import { SandboxState, type ProviderKind, type SandboxAccountInput, type SandboxCredentials } from './provider-state.js';
import {
  SANDBOX_TLS_FILES,
  SandboxSubmissionServer,
  type AcceptedMessage,
  type SubmissionServerOptions,
} from './submission-server.js';
import { SandboxTokenEndpoint } from './token-endpoint.js';
import { FakeGmailApi } from './gmail-api.js';
import { FakeGraphApi } from './graph-api.js';

export interface SandboxProviderOptions {
  /** Listen address of both servers; default 127.0.0.1. */
  host?: string;
  /** Latency added to every token request, ms (benchmarks use ~300 to resemble the real endpoints). */
  tokenLatencyMs?: number;
  /** Token requests a second per client before 429 + Retry-After; default no limit. */
  tokenRatePerClient?: number;
  /** Lifetime of issued access tokens, s; default 3600. */
  tokenLifetimeSec?: number;
  /** Refresh-token rotation per kind; default Microsoft rotates, Google does not. */
  rotateRefreshTokens?: Partial<Record<ProviderKind, boolean>>;
  /** Clock for token expiry, epoch ms; injectable for tests. */
  now?: () => number;
  /** Options of the submission server (its host defaults to `host`). */
  submission?: SubmissionServerOptions;
}

/** A Google service account key file (the fields Google's JSON has that a client reads). */
export interface ServiceAccountKeyFile {
  type: 'service_account';
  project_id: string;
  private_key_id: string;
  private_key: string;
  client_email: string;
  client_id: string;
  auth_uri: string;
  token_uri: string;
}

/** Credentials of a sandbox account plus where to use them. Holds secrets: never log it. */
export interface SandboxAccount extends SandboxCredentials {
  tokenUrl: string;
  smtpHost: string;
  smtpPort: number;
}

export class SandboxProvider {
  readonly state: SandboxState;
  readonly tokens: SandboxTokenEndpoint;
  readonly smtp: SandboxSubmissionServer;
  /** Microsoft Graph's mail API (upstream: graph) and the Gmail API (upstream: gmail_api), on their own ports. */
  readonly graph: FakeGraphApi;
  readonly gmail: FakeGmailApi;
  /** Absolute path of the CA certificate that signed the submission server's certificate. */
  readonly caFile: string = SANDBOX_TLS_FILES.ca;
  readonly host: string;

  private constructor(options: SandboxProviderOptions) {
    this.host = options.host ?? '127.0.0.1';
    this.state = new SandboxState({
      ...(options.tokenLifetimeSec !== undefined ? { tokenLifetimeSec: options.tokenLifetimeSec } : {}),
      ...(options.rotateRefreshTokens !== undefined ? { rotateRefreshTokens: options.rotateRefreshTokens } : {}),
      ...(options.now !== undefined ? { now: options.now } : {}),
    });
    this.tokens = new SandboxTokenEndpoint(this.state, { host: this.host, latencyMs: options.tokenLatencyMs ?? 0, ratePerClient: options.tokenRatePerClient ?? null });
    this.smtp = new SandboxSubmissionServer(this.state, { host: this.host, ...options.submission });
    this.graph = new FakeGraphApi(this.state, this.host);
    this.gmail = new FakeGmailApi(this.state, this.host);
  }

  /** Starts both servers; if the second fails to start, the first is stopped again. */
  static async start(options: SandboxProviderOptions = {}): Promise<SandboxProvider> {
    const provider = new SandboxProvider(options);
    try {
      await provider.tokens.start();
      await provider.smtp.start();
      await provider.graph.start();
      await provider.gmail.start();
    } catch (err) {
      await provider.stop();
      throw err;
    }
    return provider;
  }

  get smtpPort(): number {
    return this.smtp.port;
  }

  get smtpHost(): string {
    return this.smtp.hostname;
  }

  /** PEM text of `caFile`, for clients that take the CA inline (nodemailer's `tls.ca`). */
  caPem(): string {
    return readFileSync(this.caFile, 'utf8');
  }

  tokenUrl(kind: ProviderKind): string {
    return this.tokens.url(kind);
  }

  /** Registers a mailbox; missing client id/secret/refresh token are generated. */
  addAccount(input: SandboxAccountInput): SandboxAccount {
    const credentials = this.state.addAccount(input);
    return { ...credentials, tokenUrl: this.tokenUrl(credentials.kind), smtpHost: this.smtpHost, smtpPort: this.smtpPort };
  }

  /** An Exchange shared mailbox, with the users granted Send As on it (SandboxState.addSharedMailbox). */
  addSharedMailbox(input: { address: string; sendAs?: readonly string[] }): void {
    this.state.addSharedMailbox(input.address, input.sendAs);
  }

  /** Users' consent (authorization page, device codes) and its test controls. */
  get consent(): SandboxConsent {
    return this.tokens.consent;
  }

  /**
   * Registers a Google service account with a new RSA key pair, delegated the mail scope for
   * `domains` (every domain when omitted), and returns its key file as the Cloud console
   * downloads it, token_uri pointing here. Holds a private key: write it only to a temp dir.
   */
  addServiceAccount(opts: { domains?: string[]; clientEmail?: string } = {}): ServiceAccountKeyFile {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const sa = this.tokens.apps.addServiceAccount({ publicKey, ...opts });
    return {
      type: 'service_account',
      project_id: 'sandbox-project',
      private_key_id: sa.privateKeyId,
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: sa.clientEmail,
      client_id: sa.clientId,
      auth_uri: this.tokens.authorizeUrl(),
      token_uri: this.tokenUrl('google'),
    };
  }

  /** Registers a Microsoft 365 app allowed to send as `mailboxes` with client credentials in `tenant`. */
  addApp(input: AppInput): SandboxApp {
    return this.tokens.apps.addApp(input);
  }

  /** Messages the submission server accepted, oldest first. */
  get messages(): readonly AcceptedMessage[] {
    return this.smtp.messages;
  }

  /**
   * Forgets counters, logs, accepted messages and faults on both sides, and restores the token
   * latency and closeAfterMessages given at start. Accounts, grants and issued tokens stay, so
   * a running relay is not disturbed.
   */
  reset(): void {
    this.state.resetCounters();
    this.tokens.reset();
    this.smtp.reset();
    this.graph.reset();
    this.gmail.reset();
  }

  async stop(): Promise<void> {
    await Promise.all([this.tokens.stop(), this.smtp.stop(), this.graph.stop(), this.gmail.stop()]);
  }
}
