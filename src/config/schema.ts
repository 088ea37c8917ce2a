// The one source of truth for relay.yaml: every key, its type, its default. Types come from
// the schema (z.infer), so a key cannot exist in code without existing here.
import { z } from 'zod';
import type { AccountLimits } from './account-limits.js';

const port = z.number().int().min(0).max(65535);
const positiveInt = z.number().int().positive();
const millis = z.number().int().min(1);

const hostPort = (host: string, portNumber: number) =>
  z.strictObject({ host: z.string().min(1).default(host), port: port.default(portNumber) });

export const smtpSecurity = z.enum(['starttls', 'tls', 'none']);

const providerSmtp = z.strictObject({
  host: z.string().min(1),
  port,
  security: smtpSecurity,
});

/** A provider as written in the file: every field optional, defaults are merged in later. */
const providerOverride = z.strictObject({
  kind: z.enum(['google', 'microsoft']).optional(),
  token_url: z.url().optional(),
  scope: z.string().min(1).optional(),
  smtp: providerSmtp.partial().optional(),
  /** Microsoft Graph's base URL (upstream: graph), default https://graph.microsoft.com. */
  graph_url: z.url().optional(),
  /** The Gmail API's base URL (upstream: gmail_api), default https://gmail.googleapis.com. */
  gmail_api_url: z.url().optional(),
  ca_file: z.string().min(1).nullable().optional(),
});

const email = z
  .string()
  .trim()
  .toLowerCase()
  .check(z.email({ message: 'must be an email address' }));

const senderPattern = z
  .string()
  .trim()
  .toLowerCase()
  .refine((s) => /^(\*@[^@\s*]+|[^@\s*]+@[^@\s*]+)$/.test(s), {
    message: 'must be an address (user@domain) or a domain pattern (*@domain)',
  });

/** How an account gets its access tokens: a user's consent, Google domain-wide delegation, or a Microsoft app. */
export const accountAuth = z.enum(['refresh_token', 'service_account', 'client_credentials']);
export type AccountAuthKind = z.infer<typeof accountAuth>;

/** Where an account's mail goes: SMTP with XOAUTH2 (the default), Microsoft Graph, or the Gmail API. */
export const accountUpstream = z.enum(['smtp', 'graph', 'gmail_api']);
export type AccountUpstream = z.infer<typeof accountUpstream>;

type CredentialKey = 'client_id' | 'client_secret' | 'refresh_token' | 'service_account_file' | 'tenant';

// The credential keys each way of getting tokens needs and must not have, so a half-converted
// account fails at load time with the key to fix, not at its first token refresh.
const CREDENTIAL_KEYS: Record<AccountAuthKind, { required: CredentialKey[]; forbidden: CredentialKey[] }> = {
  refresh_token: { required: ['client_id', 'refresh_token'], forbidden: ['service_account_file'] },
  service_account: { required: ['service_account_file'], forbidden: ['client_id', 'client_secret', 'refresh_token', 'tenant'] },
  client_credentials: { required: ['client_id', 'client_secret', 'tenant'], forbidden: ['refresh_token', 'service_account_file'] },
};

const HINT: Partial<Record<CredentialKey, string>> = {
  service_account_file: '; for a Google service account set auth: service_account',
};

function checkCredentialKeys(a: { auth: AccountAuthKind } & Partial<Record<CredentialKey, string>>, ctx: z.RefinementCtx): void {
  const { required, forbidden } = CREDENTIAL_KEYS[a.auth];
  const which = `auth is ${a.auth}${a.auth === 'refresh_token' ? ' (the default)' : ''}`;
  // Forbidden first: an account that names a key file but forgot `auth:` should hear about `auth`.
  for (const key of forbidden) {
    if (a[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `not used when ${which}${HINT[key] ?? ''}` });
  }
  for (const key of required) {
    if (a[key] === undefined) ctx.addIssue({ code: 'custom', path: [key], message: `required when ${which}` });
  }
}

const limit = positiveInt.nullable();

/**
 * Sending limits of an account (docs/limits.md). A key left out takes the provider's published
 * limit (src/config/account-limits.ts); null means not counted.
 */
export const limitsSchema = z.strictObject({
  messages_per_minute: limit.optional(),
  messages_per_hour: limit.optional(),
  messages_per_day: limit.optional(),
  recipients_per_day: limit.optional(),
  recipients_per_message: limit.optional(),
});

export const accountSchema = z.strictObject({
  email,
  provider: z.string().min(1),
  auth: accountAuth.default('refresh_token'),
  upstream: accountUpstream.default('smtp'),
  client_id: z.string().min(1).optional(),
  client_secret: z.string().min(1).optional(),
  refresh_token: z.string().min(1).optional(),
  /** Google service account key (JSON, as downloaded); relative to the config file. */
  service_account_file: z.string().min(1).optional(),
  /** Microsoft Entra tenant (id or domain) whose token endpoint issues this account's tokens. */
  tenant: z.string().regex(/^[A-Za-z0-9.-]+$/, 'must be a tenant id or domain').optional(),
  password: z.string().min(1).optional(),
  senders: z.array(senderPattern).default([]),
  source_ip: z.ipv4().or(z.ipv6()).nullable().default(null),
  /**
   * Upstream connections of the mailbox for the whole fleet (counted in the shared store).
   * Default per provider kind: 3 for microsoft (Exchange's SMTP AUTH limit), 5 for google.
   */
  max_connections: positiveInt.optional(),
  min_idle: z.number().int().min(0).default(1),
  /**
   * Messages after which a connection is retired; 0: no such count. No provider publishes a
   * per-connection cap (docs/configuration.md cites their limits): connections are retired by
   * their token's expiry and idle time, and a provider that closes one (421) is answered by the
   * pool without the MTA noticing.
   */
  messages_per_connection: z.number().int().min(0).default(0),
  limits: limitsSchema.optional(),
}).superRefine(checkCredentialKeys);

const cidr = z.string().refine(
  (s) => {
    const [addr, bits, extra] = s.split('/');
    if (extra !== undefined || !addr) return false;
    const v4 = z.ipv4().safeParse(addr).success;
    const v6 = z.ipv6().safeParse(addr).success;
    if (!v4 && !v6) return false;
    if (bits === undefined) return true;
    const n = Number(bits);
    return Number.isInteger(n) && n >= 0 && n <= (v4 ? 32 : 128);
  },
  { message: 'must be an IP address or CIDR block such as 10.0.0.0/8' },
);

/** Sessions from these may send without AUTH unless the config says otherwise: this host only. */
export const DEFAULT_TRUSTED_NETWORKS: readonly string[] = ['127.0.0.0/8', '::1/128'];

export const configSchema = z
  .strictObject({
    listen: hostPort('127.0.0.1', 2525).default({ host: '127.0.0.1', port: 2525 }),
    inbound: z
      .strictObject({
        trusted_networks: z.array(cidr).default([...DEFAULT_TRUSTED_NETWORKS]),
        tls: z
          .strictObject({ cert_file: z.string().min(1), key_file: z.string().min(1) })
          .nullable()
          .default(null),
        max_message_bytes: positiveInt.default(36_700_160),
        max_recipients: positiveInt.default(100),
        max_connections: positiveInt.default(1000),
        /**
         * How long the client may take to send its next complete command after our last reply
         * before the session is closed with 421. A deadline, not an inactivity timer: a client
         * dripping one byte at a time is cut off too.
         */
        idle_timeout_ms: millis.default(300_000),
        /** How long the client may take to send a whole message, from 354 to the final dot. */
        data_timeout_ms: millis.default(600_000),
        /**
         * How long the greeting is held to catch clients that talk before it (they get 421). 0:
         * greet at once — the relay's clients are trusted or authenticated MTAs (src/inbound/server.ts).
         */
        greeting_delay_ms: z.number().int().min(0).max(30_000).default(0),
        /** Errors (5xx replies the relay decided) a session may collect before it is closed with 421. */
        max_errors_per_session: positiveInt.default(20),
        /** Failed AUTH attempts from one address, within auth_lockout_ms, before AUTH is refused. */
        auth_failures_before_lockout: positiveInt.default(10),
        /** How long an address stays locked out of AUTH (and the window its failures are counted in). */
        auth_lockout_ms: millis.default(15 * 60_000),
        /** Each failed AUTH reply is delayed by this much per failure so far from the same address. */
        auth_failure_delay_ms: z.number().int().min(0).default(1_000),
        hostname: z.string().min(1).optional(),
        /**
         * The account that carries MAIL FROM:<> (bounces, DSNs) from a trusted network without
         * AUTH; null: such a null sender gets 550 5.7.1 saying to set this.
         */
        null_sender_account: z.string().min(1).nullable().default(null),
        /**
         * Sessions one address outside trusted_networks may hold at once (IPv6: per /64). Trusted
         * addresses are not capped: they are the operator's MTAs.
         */
        max_connections_per_address: positiveInt.default(10),
        /**
         * Of max_connections, this many are kept for trusted and authenticated clients: sessions
         * from outside trusted_networks that have not authenticated never hold them.
         */
        reserved_connections: z.number().int().min(0).default(50),
        /**
         * A session from outside trusted_networks must have authenticated this long after it
         * connected, else 421. NOOP, RSET and HELP do not extend it.
         */
        auth_deadline_ms: millis.default(30_000),
        /**
         * The longest a MAIL FROM waits for its reply (an upstream connection being opened, a
         * provider slow to accept a login): then 451 4.4.5 and the transaction is abandoned.
         * Under common client timeouts (swaks 30 s).
         */
        mail_reply_timeout_ms: millis.default(25_000),
      })
      .default({
        trusted_networks: [...DEFAULT_TRUSTED_NETWORKS],
        tls: null,
        max_message_bytes: 36_700_160,
        max_recipients: 100,
        max_connections: 1000,
        idle_timeout_ms: 300_000,
        data_timeout_ms: 600_000,
        greeting_delay_ms: 0,
        max_errors_per_session: 20,
        auth_failures_before_lockout: 10,
        auth_lockout_ms: 15 * 60_000,
        auth_failure_delay_ms: 1_000,
        null_sender_account: null,
        max_connections_per_address: 10,
        reserved_connections: 50,
        auth_deadline_ms: 30_000,
        mail_reply_timeout_ms: 25_000,
      }),
    providers: z.record(z.string(), providerOverride).default({}),
    accounts: z.array(accountSchema).default([]),
    tokens: z
      .strictObject({
        /** A token is refreshed while at least this much of its life remains (SPEC: >= 10 minutes). */
        refresh_before_expiry_ms: millis.default(15 * 60_000),
        request_timeout_ms: millis.default(10_000),
        /** How long start-up waits for the first tokens before opening the listener anyway. */
        startup_wait_ms: millis.default(20_000),
        /**
         * Token requests in flight at start-up. Each takes ~300 ms at the real endpoints, so this
         * bounds start-up at ceil(accounts / this) rounds: 64 keeps a 50-account relay to one.
         */
        startup_concurrency: positiveInt.default(64),
        retry_min_ms: millis.default(1_000),
        retry_max_ms: millis.default(300_000),
      })
      .default({
        refresh_before_expiry_ms: 15 * 60_000,
        request_timeout_ms: 10_000,
        startup_wait_ms: 20_000,
        startup_concurrency: 64,
        retry_min_ms: 1_000,
        retry_max_ms: 300_000,
      }),
    upstream: z
      .strictObject({
        connect_timeout_ms: millis.default(15_000),
        command_timeout_ms: millis.default(60_000),
        /** For the reply to the end of DATA, which providers may take long to give. */
        data_timeout_ms: millis.default(180_000),
        idle_timeout_ms: millis.default(120_000),
        /** How long a message waits for a busy account's connection before 451 4.4.5. */
        acquire_timeout_ms: millis.default(30_000),
        /**
         * How long a mailbox's connection slot (max_connections, counted fleet-wide) outlives
         * the instance holding it if that instance dies; renewed every third of it while held.
         */
        slot_ttl_ms: z.number().int().min(1_000).max(300_000).default(20_000),
        ehlo_name: z.string().min(1).optional(),
      })
      .default({
        connect_timeout_ms: 15_000,
        command_timeout_ms: 60_000,
        data_timeout_ms: 180_000,
        idle_timeout_ms: 120_000,
        acquire_timeout_ms: 30_000,
        slot_ttl_ms: 20_000,
      }),
    store: z
      .union([
        z.strictObject({ path: z.string().min(1) }),
        z.strictObject({
          /**
           * One Redis (redis://, rediss://) or a Sentinel group:
           * redis+sentinel://[:password@]host:26379,host:26379/master-name (src/store/redis-target.ts).
           */
          url: z
            .string()
            .regex(
              /^(rediss?:\/\/|rediss?\+sentinel:\/\/([^@/]*@)?[^/]+\/[^/?#]+\/?$)/,
              'must be a redis:// or rediss:// URL, or redis+sentinel://host:port,host:port/master-name',
            ),
          /** Prepended to every key, so several fleets (or tests) can share one Redis. */
          key_prefix: z.string().min(1).default('xoauth2-relay:'),
        }),
      ])
      .default({ path: './data/relay.db' }),
    http: hostPort('127.0.0.1', 9090)
      .extend({
        enabled: z.boolean().default(true),
        /** Required when host is not a loopback address. */
        bearer_token: z.string().min(16).optional(),
      })
      .default({ host: '127.0.0.1', port: 9090, enabled: true }),
    log: z
      .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .default({ level: 'info' }),
    shutdown_timeout_ms: millis.default(30_000),
  });

export type RawConfig = z.infer<typeof configSchema>;
export type AccountConfig = z.infer<typeof accountSchema>;
/** An account as written (defaults not applied), e.g. what the store keeps. */
export type AccountInput = z.input<typeof accountSchema>;
export type SmtpSecurity = z.infer<typeof smtpSecurity>;
export type ProviderKind = 'google' | 'microsoft';

/** A provider with its defaults merged in: everything the token and upstream stages need. */
export interface ProviderConfig {
  name: string;
  kind: ProviderKind;
  tokenUrl: string;
  scope: string | null;
  smtp: { host: string; port: number; security: SmtpSecurity };
  /** Base URLs of the HTTP APIs (upstream: graph for microsoft, gmail_api for google). */
  graphUrl: string;
  gmailApiUrl: string;
  caFile: string | null;
}

/** An account with its provider's defaults filled in. */
export interface ResolvedAccountConfig extends Omit<AccountConfig, 'max_connections' | 'limits'> {
  max_connections: number;
  limits: AccountLimits;
}

/** The validated config with providers resolved; what the rest of the relay is built from. */
export interface Config extends Omit<RawConfig, 'providers' | 'accounts'> {
  providers: Record<string, ProviderConfig>;
  accounts: ResolvedAccountConfig[];
  /** The file it came from, or null for the built-in defaults. */
  source: string | null;
}
