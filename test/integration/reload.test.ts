// SIGHUP on a real `serve` process: relay.yaml is re-read while a client keeps sending; an
// account added there sends at once, one removed there is no longer routed, nothing in flight is
// dropped; a setting that needs a restart is reported, not silently ignored; and a config that
// does not load is refused with its error while the old one keeps relaying.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { sandboxRelayConfig, type SandboxRelayAccount } from '../../src/sandbox/relay-config.js';
import { startServe, writeYaml, type ServeProcess } from '../helpers/cli.js';
import { drive, Ledger } from '../helpers/ledger.js';
import { sendOnce } from '../helpers/smtp-client.js';
import { KEY_ENV, rawMessage } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const STEADY = 'steady@gmail.test';
const LEAVING = 'leaving@gmail.test';
const JOINING = 'joining@gmail.test';

describe('reload on SIGHUP', () => {
  let sandbox: SandboxProvider;
  let dir: string;
  let relay: ServeProcess;
  let accounts: Map<string, SandboxRelayAccount>;

  const config = (emails: string[], overrides: Record<string, unknown> = {}) =>
    writeYaml(dir, sandboxRelayConfig(sandbox, emails.map((e) => accounts.get(e)!), { store: { path: join(dir, 'relay.db') }, ...overrides }));

  /** Sends SIGHUP and waits for the n-th log line of `event`. */
  const hup = async (event: string) => {
    const seen = relay.output().split(`"event":"${event}"`).length;
    relay.child.kill('SIGHUP');
    await until(() => relay.output().split(`"event":"${event}"`).length > seen, 15_000, `${event} logged`);
  };

  beforeAll(async () => {
    sandbox = await SandboxProvider.start();
    dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-reload-'));
    accounts = new Map([STEADY, LEAVING, JOINING].map((email) => [email, { account: sandbox.addAccount({ email, kind: 'google' }), senders: [email] }]));
    relay = await startServe(['--config', config([STEADY, LEAVING])], { env: KEY_ENV });
  });
  afterAll(async () => {
    if (relay.child.exitCode === null) relay.child.kill('SIGTERM');
    await relay.exited;
    await sandbox.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('adds and removes accounts from relay.yaml without dropping a session, and reports what needs a restart', async () => {
    expect(await sendOnce(relay.port, LEAVING, ['x@example.net'], rawMessage(LEAVING, ['x@example.net'], 'before-reload'))).toMatch(/^250 /);
    const ledger = new Ledger('reload-steady', 3_000, [STEADY]);
    let reloaded = false;
    const load = drive(relay.port, ledger.entries, { connections: 2, timeLimitMs: 60_000, stop: () => reloaded });
    await until(() => ledger.entries.filter((e) => e.attempts.length).length >= 20, 10_000, 'load under way');

    // The listen address is not changed under running sessions: reported, not applied.
    config([STEADY, JOINING], { listen: { host: '127.0.0.1', port: 2 }, upstream: { idle_timeout_ms: 60_000 } });
    await hup('reloaded');
    reloaded = true;
    await load;

    const out = relay.output();
    expect(out).toMatch(/"event":"reloaded"[^\n]*"added":\["joining@gmail\.test"\][^\n]*"removed":\["leaving@gmail\.test"\]/);
    expect(out).toMatch(/"event":"reload_restart_needed"[^\n]*"keys":\["listen","upstream\.idle_timeout_ms"\]/);
    expect(await sendOnce(relay.port, JOINING, ['y@example.net'], rawMessage(JOINING, ['y@example.net'], 'after-reload'))).toMatch(/^250 /);
    expect(await sendOnce(relay.port, LEAVING, ['z@example.net'], rawMessage(LEAVING, ['z@example.net'], 'gone'))).toMatch(/^550 5\.7\.1 /);

    const counts = ledger.counts(sandbox.messages);
    expect(counts.sent).toBeGreaterThan(20);
    expect(counts).toMatchObject({ accepted: counts.sent, deferred: 0, refused: 0, noReply: 0, unknown: 0, lost: 0, duplicated: 0 });
  });

  it('refuses a config that does not load, logs why, and keeps relaying on the old one', async () => {
    const file = join(dir, 'relay.yaml');
    writeFileSync(file, 'listen: { host: 127.0.0.1, prot: 25 }\n');
    await hup('reload_failed');
    expect(relay.output()).toMatch(/"event":"reload_failed"[^\n]*"error":"config error at listen\.prot \(line 1\): unknown key \(did you mean port\?\)"/);
    expect(await sendOnce(relay.port, STEADY, ['w@example.net'], rawMessage(STEADY, ['w@example.net'], 'old-config'))).toMatch(/^250 /);
    expect(await sendOnce(relay.port, JOINING, ['v@example.net'], rawMessage(JOINING, ['v@example.net'], 'old-config-2'))).toMatch(/^250 /);
    expect(relay.child.exitCode).toBeNull();
  });
});
