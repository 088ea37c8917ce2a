// Configs that load but cannot work as meant, or that are dangerous: `check-config` prints these
// (exit 0) and `serve` logs them at start-up. Each says why, so the operator can decide.
import type { ConfigProblem } from './errors.js';
import { isLoopbackHost, networkList } from './networks.js';
import type { Config } from './schema.js';

// Probes for "this list reaches the internet": well-known public resolvers, v4 and v6. A
// company's own public block (a /24 of an office) is left alone; a /0 or a /1 is not.
const PUBLIC_PROBES: Array<[string, 'ipv4' | 'ipv6']> = [
  ['1.1.1.1', 'ipv4'],
  ['8.8.8.8', 'ipv4'],
  ['2606:4700:4700::1111', 'ipv6'],
  ['2001:4860:4860::8888', 'ipv6'],
];

/** The SPEC's floor: Exchange's high-volume endpoint refuses tokens close to expiry. */
const MIN_REFRESH_BEFORE_EXPIRY_MS = 10 * 60_000;

export function configWarnings(config: Config): ConfigProblem[] {
  const warnings: ConfigProblem[] = [];
  const warn = (reason: string, path: string | null) => warnings.push({ reason, path });
  const trusted = networkList(config.inbound.trusted_networks);
  // `listen` and `listeners`, each with the key a warning names it by.
  const listeners = [{ key: 'listen', ...config.listen }, ...config.listeners.map((l, i) => ({ key: `listeners[${i}]`, ...l }))];
  // The first one clients off this host can reach, if any.
  const exposed = listeners.find((l) => !isLoopbackHost(l.host));
  const listenLocal = !exposed;
  const where = exposed ? `${exposed.key}.host ${exposed.host}` : '';
  // On loopback listeners every client comes from 127.0.0.1 or ::1.
  const trustedCanConnect = listenLocal
    ? trusted.check('127.0.0.1', 'ipv4') || trusted.check('::1', 'ipv6')
    : config.inbound.trusted_networks.length > 0;

  if (!config.accounts.length) warn('no accounts in the config: unless the store holds some (xoauth2-relay accounts add), the relay has nowhere to send', 'accounts');

  config.accounts.forEach((a, i) => {
    if (a.password) return;
    // Without a password the only way in is MAIL FROM routing from a trusted network.
    if (!a.senders.length) {
      warn(`${a.email} has no password and no senders: no session can send through it (AUTH needs the password; trusted networks are routed by senders)`, `accounts[${i}]`);
    } else if (!trustedCanConnect) {
      warn(
        `${a.email} has no password and no trusted network can reach the relay (listen ${config.listen.host}, trusted_networks [${config.inbound.trusted_networks.join(', ')}]): no session can send through it`,
        `accounts[${i}].password`,
      );
    }
  });

  if (!listenLocal) {
    const everything = config.inbound.trusted_networks.filter((n) => /\/0$/.test(n));
    const publicProbe = PUBLIC_PROBES.find(([ip, type]) => trusted.check(ip, type));
    if (everything.length) {
      warn(
        `${everything.join(', ')} trusts every address, and ${where} is not loopback: anyone who can connect may send, without AUTH, as any configured sender (an open relay for those addresses)`,
        'inbound.trusted_networks',
      );
    } else if (publicProbe) {
      warn(
        `trusts internet addresses (${publicProbe[0]} among them) and ${where} is not loopback: those hosts may send without AUTH as any configured sender`,
        'inbound.trusted_networks',
      );
    }
    if (!config.inbound.tls && config.accounts.some((a) => a.password)) {
      warn(`${where} is not loopback and inbound.tls is not set: clients outside trusted_networks cannot authenticate (AUTH needs TLS) and trusted ones send their passwords in clear`, 'inbound.tls');
    }
  }

  // A PROXY header names the client: whoever may send one chooses its own address.
  for (const { key, proxy_protocol: proxy } of listeners) {
    if (!proxy) continue;
    const from = networkList(proxy.from);
    const open = PUBLIC_PROBES.find(([ip, type]) => from.check(ip, type));
    if (open) {
      warn(`lets internet addresses (${open[0]} among them) send a PROXY header: they can claim any client address, trusted_networks included; name only the balancers`, `${key}.proxy_protocol.from`);
    }
  }

  if (config.tokens.refresh_before_expiry_ms < MIN_REFRESH_BEFORE_EXPIRY_MS) {
    warn(`${config.tokens.refresh_before_expiry_ms} ms is under 10 minutes: Exchange refuses tokens that close to expiry, so connections may fail to authenticate`, 'tokens.refresh_before_expiry_ms');
  }
  return warnings;
}

/** One line per warning, as `check-config` prints it and `serve` logs it. */
export const describeWarning = (w: ConfigProblem): string => (w.path ? `${w.path}: ${w.reason}` : w.reason);
