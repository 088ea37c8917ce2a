// The keys of issue 21 in relay.yaml: `listeners` (implicit TLS, the PROXY protocol),
// `listen.proxy_protocol` and `log.recipients`; `listen` as written before keeps working.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { buildConfig } from '../../src/config/load.js';
import { restartNeeded } from '../../src/config/reload-diff.js';
import { configWarnings, describeWarning } from '../../src/config/warnings.js';
import { SANDBOX_TLS_FILES } from '../../src/sandbox/index.js';
import { thrown } from '../helpers/thrown.js';

const build = (doc: unknown) => buildConfig(doc, null, { env: {}, checkHost: false });
const refused = (doc: unknown) => String(thrown(() => build(doc), ConfigError));
const TLS = { cert_file: SANDBOX_TLS_FILES.cert, key_file: SANDBOX_TLS_FILES.key };

describe('listeners and log.recipients', () => {
  it('`listen: {host, port}` as written before: no PROXY protocol, no other listener, recipients logged in full', () => {
    const c = build({ listen: { host: '127.0.0.1', port: 2525 } });
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 2525 });
    expect(c.listeners).toEqual([]);
    expect(c.log.recipients).toBe('full');
  });

  it('a 465 listener and a PROXY protocol one, with their defaults', () => {
    const c = build({
      inbound: { tls: TLS },
      listen: { port: 2525, proxy_protocol: { from: ['10.0.0.5/32'] } },
      listeners: [{ port: 465, implicit_tls: true }, { host: '0.0.0.0', port: 2526, proxy_protocol: { from: ['10.0.0.0/24', 'fd00::5'], timeout_ms: 2000 } }],
    });
    expect(c.listen.proxy_protocol).toEqual({ from: ['10.0.0.5/32'], timeout_ms: 5000 });
    expect(c.listeners).toEqual([
      { host: '127.0.0.1', port: 465, implicit_tls: true },
      { host: '0.0.0.0', port: 2526, implicit_tls: false, proxy_protocol: { from: ['10.0.0.0/24', 'fd00::5'], timeout_ms: 2000 } },
    ]);
  });

  it('refuses a PROXY listener without balancers, or with something that is no address', () => {
    expect(refused({ listeners: [{ port: 2526, proxy_protocol: { from: [] } }] })).toMatch(/listeners\[0\]\.proxy_protocol\.from: name the balancers/);
    expect(refused({ listen: { proxy_protocol: { from: ['balancer.example'] } } })).toMatch(/listen\.proxy_protocol\.from\[0\]: must be an IP address or CIDR block/);
    expect(refused({ listeners: [{ port: 2526, proxy: true }] })).toMatch(/proxy/);
  });

  it('log.recipients is full, hash or drop', () => {
    expect(build({ log: { recipients: 'hash' } }).log).toEqual({ level: 'info', recipients: 'hash' });
    expect(refused({ log: { recipients: 'none' } })).toMatch(/log\.recipients/);
  });

  it('a reload reports listeners and log.recipients as needing a restart, not log.level', () => {
    const running = build({});
    expect(restartNeeded(running, build({ log: { level: 'debug' } }))).toEqual([]);
    expect(restartNeeded(running, build({ log: { recipients: 'drop' } }))).toEqual(['log.recipients']);
    expect(restartNeeded(running, build({ inbound: { tls: TLS }, listeners: [{ port: 465, implicit_tls: true }] }))).toEqual(['listeners', 'inbound.tls']);
  });

  it('warns when proxy_protocol.from lets internet addresses name their own address', () => {
    const warnings = (doc: unknown) => configWarnings(build(doc)).map(describeWarning).filter((w) => w.includes('PROXY'));
    expect(warnings({ listeners: [{ port: 2526, proxy_protocol: { from: ['0.0.0.0/0'] } }] })).toEqual([
      'listeners[0].proxy_protocol.from: lets internet addresses (1.1.1.1 among them) send a PROXY header: they can claim any client address, trusted_networks included; name only the balancers',
    ]);
    expect(warnings({ listen: { proxy_protocol: { from: ['::/0'] } } })[0]).toMatch(/^listen\.proxy_protocol\.from: lets internet addresses \(/);
    expect(warnings({ listen: { proxy_protocol: { from: ['10.0.0.5/32'] } } })).toEqual([]);
  });

  it('warns of an open relay when any listener, not only `listen`, is off loopback', () => {
    const warnings = configWarnings(build({ inbound: { trusted_networks: ['0.0.0.0/0'] }, listeners: [{ host: '0.0.0.0', port: 2526 }] })).map(describeWarning);
    expect(warnings).toContain(
      'inbound.trusted_networks: 0.0.0.0/0 trusts every address, and listeners[0].host 0.0.0.0 is not loopback: anyone who can connect may send, without AUTH, as any configured sender (an open relay for those addresses)',
    );
    expect(configWarnings(build({ inbound: { trusted_networks: ['0.0.0.0/0'] } })).map(describeWarning).filter((w) => w.includes('open relay'))).toEqual([]);
  });
});
