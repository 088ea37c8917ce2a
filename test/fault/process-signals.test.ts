// The relay as a real process (`serve`, from source), killed or stopped in the middle of a load.
// SIGKILL: nothing the relay acknowledged is missing upstream, and after a restart (same store)
// the messages the client still holds go through once; a message arrives twice only if its
// final dot was cut off unanswered, and the ledger counts those apart. SIGTERM: transactions in flight
// get their real final replies, new connections are refused, the process exits 0 in time.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SandboxProvider } from '../../src/sandbox/index.js';
import { sandboxRelayConfig } from '../../src/sandbox/relay-config.js';
import { startServe, writeYaml, type ServeProcess } from '../helpers/cli.js';
import { drive, Ledger, resendPending, type DriveOptions } from '../helpers/ledger.js';
import { KEY_ENV } from '../helpers/stack.js';
import { until } from '../helpers/wait.js';

const SENDERS = ['k1@gmail.test', 'k2@gmail.test'];
const COUNT = 500;
const LOAD: DriveOptions = { connections: 20, timeLimitMs: 40_000 };
const SHUTDOWN_MS = 5_000;
// Each test starts the relay from source twice and runs a 500-message load: on a loaded 2-core
// machine that can take well over vitest's default 30 s without anything being wrong.
const TEST_MS = 120_000;

/** Whether a new TCP connection to the port is refused outright. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

describe('the relay process under load', () => {
  let sandbox: SandboxProvider;
  let dir: string;
  let config: string;
  const running: ServeProcess[] = [];

  const serve = async () => {
    const relay = await startServe(['--config', config], { env: KEY_ENV });
    running.push(relay);
    return relay;
  };

  beforeEach(async () => {
    sandbox = await SandboxProvider.start();
    dir = mkdtempSync(join(tmpdir(), 'xoauth2-relay-signals-'));
    const accounts = SENDERS.map((email) => ({ account: sandbox.addAccount({ email, kind: 'google' }), senders: [email] }));
    const doc = sandboxRelayConfig(sandbox, accounts, { store: { path: join(dir, 'relay.db') }, shutdown_timeout_ms: SHUTDOWN_MS });
    config = writeYaml(dir, doc);
  });
  afterEach(async () => {
    for (const r of running.splice(0)) {
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
      await r.exited;
    }
    await sandbox.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('SIGKILL mid-load: nothing acknowledged is lost; after a restart the rest arrives once, a duplicate only after a final dot that got no reply', async () => {
    const relay = await serve();
    const ledger = new Ledger('sigkill', COUNT, SENDERS);
    let accepted = 0;
    await drive(relay.port, ledger.entries, {
      ...LOAD,
      onOutcome: (_, o) => {
        if (o.code === 250 && ++accepted === 150) relay.child.kill('SIGKILL');
      },
    });
    expect(await relay.exited).toBeNull(); // killed, not exited
    const c = ledger.report('SIGKILL', sandbox.messages);
    expect(c.accepted).toBeGreaterThanOrEqual(150);
    expect(c).toMatchObject({ sent: COUNT, refused: 0, lost: 0, duplicated: 0, duplicatedAfterSilence: 0 });

    const tokenRequests = sandbox.state.tokenRequests();
    const restarted = await serve();
    // The tokens survived in the store: the restart asks the endpoint for none.
    expect(sandbox.state.tokenRequests()).toBe(tokenRequests);
    await resendPending(restarted.port, ledger, LOAD);
    expect(ledger.problems(sandbox.messages)).toEqual([]);
    const after = ledger.report('SIGKILL (after restart and resend)', sandbox.messages);
    // The kill cut off final dots in flight: those the provider had already taken come back
    // with the resend, the duplicate SMTP allows and the ledger counts apart. No other.
    expect(after.duplicated).toBe(0);
    expect(after.duplicatedAfterSilence).toBeLessThanOrEqual(c.unknown);
  }, TEST_MS);

  it('SIGTERM mid-load: transactions in flight get their real replies, new connections are refused, exit 0 in time', async () => {
    const relay = await serve();
    const ledger = new Ledger('sigterm', COUNT, SENDERS, 8_000);
    let accepted = 0;
    let signalledAt = 0;
    let refusedAfterSignal: Promise<boolean> | null = null;
    await drive(relay.port, ledger.entries, {
      ...LOAD,
      onOutcome: (_, o) => {
        if (o.code !== 250 || ++accepted !== 150) return;
        signalledAt = Date.now();
        relay.child.kill('SIGTERM');
        refusedAfterSignal = until(() => relay.output().includes('"event":"stopping"'), 15_000).then(() => refused(relay.port));
      },
    });
    expect(await relay.exited).toBe(0);
    const stoppedIn = Date.now() - signalledAt;
    // In time: shutdown_timeout_ms, not the 30 s default, with a margin a loaded machine cannot eat.
    expect(stoppedIn).toBeLessThan(SHUTDOWN_MS + 15_000);
    expect(await refusedAfterSignal).toBe(true);

    const c = ledger.report('SIGTERM', sandbox.messages);
    expect(c).toMatchObject({ sent: COUNT, refused: 0, unknown: 0, lost: 0, duplicated: 0, duplicatedAfterSilence: 0 });
    const attempts = ledger.entries.flatMap((e) => e.attempts);
    // A session is only ever closed between transactions: no silence and no 421 after MAIL was accepted.
    expect(attempts.filter((o) => (o.code === null || o.code === 421) && o.stage !== 'mail' && o.stage !== 'connect')).toEqual([]);
    // Some transactions were in flight at the signal and completed with the provider's reply.
    expect(attempts.filter((o) => o.stage === 'final' && o.code === 250 && o.at > signalledAt).length).toBeGreaterThan(0);
    console.log(`[signals] SIGTERM: exited 0 in ${stoppedIn} ms`);

    const restarted = await serve();
    await resendPending(restarted.port, ledger, LOAD);
    expect(ledger.problems(sandbox.messages)).toEqual([]);
    ledger.report('SIGTERM (after restart and resend)', sandbox.messages);
  }, TEST_MS);
});
