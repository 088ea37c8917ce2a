// The one source of truth for relay.yaml: every key, its type, its default and what it means.
// Types come from the schema (z.infer), so a key cannot exist in code without existing here;
// docs/configuration.md's key tables are rendered from it (`npm run docs:config`,
// src/config/doc-tables.ts): a key's `.describe()` is its meaning column, `unset` (in `.meta()`)
// says in words what applies when a key without a default is left out. Each default is written
// once, on its key: a section is `.prefault({})`, so a section left out gets its keys' defaults.
import { z } from 'zod';
import type { AccountLimits } from './account-limits.js';

const port = z.number().int().min(0).max(65535);
const positiveInt = z.number().int().positive();
const millis = z.number().int().min(1);

const hostPort = (host: string, portNumber: number, what: string) =>
  z.strictObject({
    host: z.string().min(1).default(host).describe(`address ${what} binds`),
    port: port.default(portNumber).describe('its port (0: any free port, logged at start-up)'),
  });

/** The embedded store when relay.yaml names none (SPEC's built-in default). */
export const DEFAULT_STORE_PATH = './data/relay.db';

export const smtpSecurity = z.enum(['starttls', 'tls', 'none']);

const providerSmtp = z.strictObject({
  host: z.string().min(1).describe('the provider\'s SMTP submission server'),
  port: port.describe('its port'),
  security: smtpSecurity.describe('`starttls`, `tls` (from the first byte) or `none`'),
});

/** A provider as written in the file: every field optional, defaults are merged in later. */
export const providerOverride = z.strictObject({
  kind: z.enum(['google', 'microsoft']).optional().describe('which grants and endpoints it speaks; required for a provider of another name'),
  token_url: z.url().optional().describe('the OAuth2 token endpoint (for microsoft, an account\'s `tenant` replaces `common`)'),
  scope: z.string().min(1).optional().describe('the scope asked for on refresh (none: Google keeps the consented scope)'),
  smtp: providerSmtp.partial().optional(),
  graph_url: z.url().optional().describe('Microsoft Graph\'s base URL (accounts with `upstream: graph`)'),
  gmail_api_url: z.url().optional().describe('the Gmail API\'s base URL (accounts with `upstream: gmail_api`)'),
  ca_file: z.string().min(1).nullable().optional().describe('extra CA certificate(s) (PEM) to trust for this provider'),
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
  email: email.describe('the mailbox; the XOAUTH2 `user=` is always this address; the AUTH username'),
  provider: z.string().min(1).describe('a `providers` entry (`google`, `microsoft`, or one of your own)'),
  auth: accountAuth.default('refresh_token').describe(
    'how tokens are obtained: `refresh_token` (a user\'s consent), `service_account` (Google domain-wide delegation), `client_credentials` (a Microsoft 365 app)',
  ),
  upstream: accountUpstream.default('smtp').describe(
    'where its mail goes: `smtp` (XOAUTH2 submission), `graph` (Microsoft Graph, microsoft accounts only) or `gmail_api` (google accounts only); the token scope follows it. What differs from SMTP: `docs/operations.md`. **`gmail_api` refuses (`554 5.3.3`) a message whose To/Cc name addresses outside the envelope, such as a list the MTA expanded into its members**: the Gmail API sends to header addresses and cannot send to the envelope alone; what to do: `docs/operations.md`, "Lists the MTA expanded"',
  ),
  client_id: z.string().min(1).optional().describe('required for `refresh_token` and `client_credentials`'),
  client_secret: z.string().min(1).optional().describe('required for `client_credentials`'),
  refresh_token: z.string().min(1).optional().describe('required for `refresh_token`; rotated tokens are kept in the store'),
  service_account_file: z.string().min(1).optional().describe(
    'required for `service_account`: the Google service account key JSON as downloaded (relative to the config file)',
  ),
  tenant: z
    .string()
    .regex(/^[A-Za-z0-9.-]+$/, 'must be a tenant id or domain')
    .optional()
    .describe('Microsoft Entra tenant id or domain whose token endpoint issues this account\'s tokens; required for `client_credentials`'),
  password: z.string().min(1).optional().describe(
    'what the MTA sends in AUTH PLAIN/LOGIN with username = `email`. Without it the account is reached only by MAIL FROM from trusted networks',
  ),
  senders: z.array(senderPattern).default([]).describe('addresses and `*@domain` patterns this account sends as (see Routing)'),
  source_ip: z.ipv4().or(z.ipv6()).nullable().default(null).describe('local address upstream connections are made from (must exist on the host)'),
  max_connections: positiveInt.optional().meta({
    unset: '`5` for Google, `3` for Microsoft (`5` for other servers)',
    description:
      'upstream connections the mailbox may hold, **for the whole fleet** when instances share a Redis store (each connection takes a slot in the store first; `docs/scaling.md`). With `upstream: graph` or `gmail_api`: the mailbox\'s messages at the API at once, for the fleet likewise (each message holds a slot from its first request to its last). The default per provider kind follows the providers: 3 is Exchange Online\'s SMTP AUTH limit',
  }),
  min_idle: z.number().int().min(0).default(1).describe(
    'authenticated connections opened at start-up and kept ready (at most `max_connections`); taking one opens its replacement in the background. Raise it when a connection carries its `messages_per_connection` faster than a new one opens (about half a second at Google and Microsoft), or a message now and then waits for a handshake',
  ),
  // No provider publishes a per-connection cap (docs/configuration.md cites their limits):
  // connections are retired by their token's expiry and idle time, and a provider that closes
  // one (421) is answered by the pool without the MTA noticing.
  messages_per_connection: z.number().int().min(0).default(0).describe(
    'messages after which a connection is retired and a new one opened; `0`: no count, connections are retired only by their token\'s expiry (a minute before it) and by `upstream.idle_timeout_ms`. See below',
  ),
  limits: limitsSchema.optional().meta({
    unset: 'the provider\'s published limits',
    description:
      '`messages_per_minute`, `messages_per_hour`, `messages_per_day`, `recipients_per_day`, `recipients_per_message`; a key left out takes the provider\'s published limit, `null` turns one off (`docs/limits.md`)',
  }),
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

/**
 * The PROXY protocol (v1 or v2) on a listener: a TCP balancer in front (HAProxy `send-proxy`,
 * an AWS NLB) tells the relay each client's real address. Only the balancers' addresses in `from`
 * may connect to such a listener, and each must send the header first (Postfix:
 * smtpd_upstream_proxy_protocol); a listener without it treats a PROXY header as a bad command.
 */
const proxyProtocol = z
  .strictObject({
    from: z
      .array(cidr)
      .min(1, 'name the balancers\' addresses (a PROXY header from anyone else would let them choose their address)')
      .describe(
        'the balancers\' addresses or CIDR blocks, at least one. A connection from any other address is closed at once, and one from them that does not start with a valid header is closed too (`proxy_refused` log line)',
      ),
    timeout_ms: millis.default(5_000).describe('how long a connection may take to send its header before it is closed'),
  })
  .optional()
  .describe('`{ from, timeout_ms }`: the PROXY protocol on this listener (below)');

/** A listener beside `listen`: another address, implicit TLS (RFC 8314, port 465), the PROXY protocol. */
const listenerSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1').describe('address it binds'),
  port: port.describe('its port (0: any free port)'),
  implicit_tls: z.boolean().default(false).describe(
    'TLS from the first byte (RFC 8314 "implicit TLS", the submissions port 465), with `inbound.tls`\'s certificate — the config is refused without `inbound.tls`. No STARTTLS is offered on it; AUTH is accepted as on any TLS session. The handshake must be done within 10 s',
  ),
  proxy_protocol: proxyProtocol,
});
export type ListenerConfig = z.infer<typeof listenerSchema>;

/** Sessions from these may send without AUTH unless the config says otherwise: this host only. */
export const DEFAULT_TRUSTED_NETWORKS: readonly string[] = ['127.0.0.0/8', '::1/128'];

const theHostsName = { unset: 'the host\'s name' };

export const configSchema = z
  .strictObject({
    listen: hostPort('127.0.0.1', 2525, 'the SMTP listener').extend({ proxy_protocol: proxyProtocol }).prefault({}),
    /** More listeners beside `listen` (docs/operations.md: implicit TLS, the PROXY protocol). */
    listeners: z.array(listenerSchema).default([]),
    inbound: z
      .strictObject({
        trusted_networks: z.array(cidr).default([...DEFAULT_TRUSTED_NETWORKS]).describe(
          'addresses and CIDR blocks whose sessions may send without AUTH, routed by MAIL FROM; also allowed to AUTH without TLS. The default is this host only. The effective list is printed by `check-config` and logged at start-up (`started`)',
        ),
        tls: z
          .strictObject({ cert_file: z.string().min(1), key_file: z.string().min(1) })
          .nullable()
          .default(null)
          .describe(
            '`{ cert_file, key_file }` (PEM): offer STARTTLS with this certificate (and present it on `implicit_tls` listeners). Without it STARTTLS is not offered and AUTH is accepted only from trusted networks and loopback',
          ),
        max_message_bytes: positiveInt.default(36_700_160).describe('advertised in EHLO `SIZE` and enforced (`552 5.3.4`); the default is 35 MiB'),
        max_recipients: positiveInt.default(100).describe('per transaction (`452 4.5.3` beyond)'),
        max_connections: positiveInt.default(1000).describe('concurrent sessions (`421` beyond)'),
        // A deadline, not an inactivity timer: a client dripping one byte at a time is cut off too.
        idle_timeout_ms: millis.default(300_000).describe(
          'time allowed for the next complete command after the relay\'s last reply; then `421 4.4.2`',
        ),
        data_timeout_ms: millis.default(600_000).describe('time allowed for a whole message, from 354 to the final dot'),
        // 0 by default: the relay's clients are trusted or authenticated MTAs (src/inbound/server.ts).
        greeting_delay_ms: z.number().int().min(0).max(30_000).default(0).describe(
          'hold the greeting this long (at most 30000); clients that talk first get 421',
        ),
        max_errors_per_session: positiveInt.default(20).describe('5xx replies the relay decided before the session is closed with 421'),
        auth_failures_before_lockout: positiveInt.default(10).describe(
          'failed AUTH from one address within `auth_lockout_ms` before AUTH is refused',
        ),
        auth_lockout_ms: millis.default(15 * 60_000).describe('how long the lockout (and the window failures are counted in) lasts'),
        auth_failure_delay_ms: z.number().int().min(0).default(1_000).describe(
          'each failed AUTH reply waits this much per failure so far from that address',
        ),
        hostname: z.string().min(1).optional().meta({ ...theHostsName, description: 'the name in the greeting and EHLO reply' }),
        null_sender_account: z.string().min(1).nullable().default(null).describe(
          'the account (its `email`) that carries `MAIL FROM:<>` (bounces, DSNs) from a trusted network without AUTH; without it such a null sender gets `550 5.7.1` saying to set this. An authenticated session may always send `<>`',
        ),
        max_connections_per_address: positiveInt.default(10).describe(
          'sessions one address outside `trusted_networks` may hold at once (IPv6: per /64); `421` beyond. Trusted addresses are not capped',
        ),
        reserved_connections: z.number().int().min(0).default(50).describe(
          'of `max_connections`, kept for trusted and authenticated clients: strangers that have not authenticated never hold them',
        ),
        auth_deadline_ms: millis.default(30_000).describe(
          'a session from outside `trusted_networks` must have authenticated this long after connecting, else `421`; NOOP, RSET and HELP do not extend it',
        ),
        // Under common client timeouts (swaks 30 s).
        mail_reply_timeout_ms: millis.default(25_000).describe(
          'the longest a MAIL FROM waits for its reply (a connection being opened, a provider slow to accept a login): then `451 4.4.5` and the transaction is abandoned',
        ),
      })
      .prefault({}),
    providers: z.record(z.string(), providerOverride).default({}),
    accounts: z.array(accountSchema).default([]),
    tokens: z
      .strictObject({
        // SPEC: >= 10 minutes.
        refresh_before_expiry_ms: millis.default(15 * 60_000).describe(
          'refresh while at least this much of a token\'s life remains (keep ≥ 10 minutes)',
        ),
        request_timeout_ms: millis.default(10_000).describe('per token request'),
        startup_wait_ms: millis.default(20_000).describe(
          'how long start-up waits for the first tokens before listening anyway (with more than `warm.all_up_to` accounts it listens as soon as one account can send)',
        ),
        // Each request takes ~300 ms at the real endpoints, so this bounds start-up at
        // ceil(accounts / this) rounds: 64 keeps a 50-account relay to one.
        startup_concurrency: positiveInt.default(64).describe(
          'token requests in flight at start-up; a 429 from the endpoint pauses them all for its `Retry-After`',
        ),
        retry_min_ms: millis.default(1_000).describe('first backoff after a failed refresh'),
        retry_max_ms: millis.default(300_000).describe('longest backoff after failed refreshes'),
      })
      .prefault({}),
    /**
     * Which accounts are kept warm (a token refreshed ahead of expiry and min_idle connections
     * open): all of them while there are at most `all_up_to`, else those that sent within
     * `active_within_ms` and the `pinned` ones. A cold account's first message waits for one
     * token request and one login (src/relay/warmth.ts).
     */
    warm: z
      .strictObject({
        all_up_to: z.number().int().min(0).default(100).describe(
          'while the relay has at most this many accounts, every one is warm (token refreshed ahead of expiry, `min_idle` connections open)',
        ),
        active_within_ms: millis.default(24 * 3_600_000).describe(
          'beyond `all_up_to`, only accounts that sent within this window are warm; the others are cold and cost nothing while idle, and their first message waits for one token request and one login (about a second; `docs/operations.md`, "Many accounts")',
        ),
        pinned: z.array(email).default([]).describe('emails always kept warm'),
      })
      .prefault({}),
    metrics: z
      .strictObject({
        per_account: z.enum(['all', 'active', 'none']).default('active').describe(
          'per-account series on `/metrics`: `all`, `active` (warm accounts and those that need the operator; histograms without the account label) or `none` (no account label, totals kept). `docs/operations.md` lists which series remain',
        ),
      })
      .prefault({}),
    upstream: z
      .strictObject({
        connect_timeout_ms: millis.default(15_000).describe('opening a TCP connection to the provider'),
        command_timeout_ms: millis.default(60_000).describe('per command reply'),
        data_timeout_ms: millis.default(180_000).describe('for the reply to the end of DATA, which providers may take long to give'),
        idle_timeout_ms: millis.default(120_000).describe('an idle pooled connection is closed after this'),
        acquire_timeout_ms: millis.default(30_000).describe(
          'how long a message waits for a busy account\'s connection (or, in a fleet, for a slot another instance holds) before `451 4.4.5`',
        ),
        slot_ttl_ms: z.number().int().min(1_000).max(300_000).default(20_000).describe(
          'how long a mailbox\'s connection slot outlives an instance that died holding it (slots are renewed every third of this while held); the longest a crashed instance keeps a mailbox below its `max_connections` (`docs/scaling.md`). 1000 to 300000',
        ),
        ehlo_name: z.string().min(1).optional().meta({ ...theHostsName, description: 'the name sent in EHLO to the provider' }),
      })
      .prefault({}),
    store: z
      .union([
        z.strictObject({
          path: z.string().min(1).describe(
            'the SQLite store (one process): tokens, rotated refresh tokens, stored accounts, sending counters. Encrypted with `XOAUTH2_RELAY_KEY` (64 hex digits) or a `relay.key` generated beside it',
          ),
        }),
        z.strictObject({
          // Sentinel URLs are read by src/store/redis-target.ts.
          url: z
            .string()
            .regex(
              /^(rediss?:\/\/|rediss?\+sentinel:\/\/([^@/]*@)?[^/]+\/[^/?#]+\/?$)/,
              'must be a redis:// or rediss:// URL, or redis+sentinel://host:port,host:port/master-name',
            )
            .meta({
              unset: 'none (`path` is used)',
              description:
                'instead of `path`: a Redis shared by several instances (`docs/scaling.md`): `redis://[:password@]host:port`, `rediss://` for TLS, or a Sentinel group `redis+sentinel://[:password@]host:26379,host:26379,host:26379/master-name` (`rediss+sentinel://` for TLS to the Redis servers; the password is the Redis servers\', the sentinels are reached without one)',
            }),
          key_prefix: z.string().min(1).default('xoauth2-relay:').describe(
            'with `url`: prepended to every key, so several fleets (or tests) can share one Redis',
          ),
        }),
      ])
      .default({ path: DEFAULT_STORE_PATH }),
    http: hostPort('127.0.0.1', 9090, 'the HTTP listener (`/healthz`, `/readyz`, `/metrics` and the API: `docs/operations.md`, `docs/security.md`)')
      .extend({
        enabled: z.boolean().default(true).describe('`false`: no HTTP port'),
        bearer_token: z.string().min(16).optional().describe(
          'the API credential (16+ characters); required when `http.host` is not a loopback address',
        ),
      })
      .prefault({}),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe(
          '`fatal`, `error`, `warn`, `info`, `debug`, `trace`, `silent`; `LOG_LEVEL` wins when set',
        ),
        recipients: z.enum(['full', 'hash', 'drop']).default('full').describe(
          'recipient addresses in `transaction` lines and in the `refused` lines of refused recipients: `full` as given; `hash`: `sha256:` and the first 16 hex digits of the SHA-256 of the lower-cased address (the same on every instance and every day, so still greppable — a pseudonym, not a secret: whoever guesses an address can confirm it); `drop`: left out, each recipient\'s reply kept. Needs a restart',
        ),
      })
      .prefault({}),
    shutdown_timeout_ms: millis.default(30_000).describe('how long a stop waits for transactions in flight'),
  })
  .superRefine((c, ctx) => {
    c.listeners.forEach((l, i) => {
      if (l.implicit_tls && !c.inbound.tls) {
        ctx.addIssue({ code: 'custom', path: ['listeners', i, 'implicit_tls'], message: 'needs inbound.tls (cert_file and key_file): the certificate this listener presents' });
      }
    });
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
