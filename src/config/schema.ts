// The one source of truth for relay.yaml: every key, its type, its default. Types come from
// the schema (z.infer), so a key cannot exist in code without existing here.
import { z } from 'zod';

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

export const accountSchema = z.strictObject({
  email,
  provider: z.string().min(1),
  client_id: z.string().min(1),
  client_secret: z.string().min(1).optional(),
  refresh_token: z.string().min(1),
  password: z.string().min(1).optional(),
  senders: z.array(senderPattern).default([]),
  source_ip: z.ipv4().or(z.ipv6()).nullable().default(null),
  max_connections: positiveInt.default(5),
  min_idle: z.number().int().min(0).default(1),
  messages_per_connection: positiveInt.default(100),
});

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

export const configSchema = z
  .strictObject({
    listen: hostPort('127.0.0.1', 2525).default({ host: '127.0.0.1', port: 2525 }),
    inbound: z
      .strictObject({
        trusted_networks: z.array(cidr).default(['127.0.0.0/8', '::1/128']),
        tls: z
          .strictObject({ cert_file: z.string().min(1), key_file: z.string().min(1) })
          .nullable()
          .default(null),
        max_message_bytes: positiveInt.default(36_700_160),
        max_recipients: positiveInt.default(100),
        max_connections: positiveInt.default(1000),
        /** Seconds a client may stay silent before the session is closed with 421. */
        idle_timeout_ms: millis.default(300_000),
        hostname: z.string().min(1).optional(),
      })
      .default({
        trusted_networks: ['127.0.0.0/8', '::1/128'],
        tls: null,
        max_message_bytes: 36_700_160,
        max_recipients: 100,
        max_connections: 1000,
        idle_timeout_ms: 300_000,
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
        startup_concurrency: positiveInt.default(16),
        retry_min_ms: millis.default(1_000),
        retry_max_ms: millis.default(300_000),
      })
      .default({
        refresh_before_expiry_ms: 15 * 60_000,
        request_timeout_ms: 10_000,
        startup_wait_ms: 20_000,
        startup_concurrency: 16,
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
        ehlo_name: z.string().min(1).optional(),
      })
      .default({
        connect_timeout_ms: 15_000,
        command_timeout_ms: 60_000,
        data_timeout_ms: 180_000,
        idle_timeout_ms: 120_000,
        acquire_timeout_ms: 30_000,
      }),
    store: z
      .union([
        z.strictObject({ path: z.string().min(1) }),
        z.strictObject({ url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL') }),
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
export type SmtpSecurity = z.infer<typeof smtpSecurity>;
export type ProviderKind = 'google' | 'microsoft';

/** A provider with its defaults merged in: everything the token and upstream stages need. */
export interface ProviderConfig {
  name: string;
  kind: ProviderKind;
  tokenUrl: string;
  scope: string | null;
  smtp: { host: string; port: number; security: SmtpSecurity };
  caFile: string | null;
}

/** The validated config with providers resolved; what the rest of the relay is built from. */
export interface Config extends Omit<RawConfig, 'providers'> {
  providers: Record<string, ProviderConfig>;
  /** The file it came from, or null for the built-in defaults. */
  source: string | null;
}
