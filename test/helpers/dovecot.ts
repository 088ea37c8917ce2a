// Dovecot's submission service as the relay's provider: an XOAUTH2 server written independently
// of this project (Debian's dovecot-core + dovecot-submissiond, installed by scripts/test-deps.sh).
// One instance of its own per test: config, base_dir, state_dir and logs in a temporary
// directory, its own instance_name, run in the foreground (`dovecot -F -c FILE`). Tokens are
// checked by its oauth2 passdb against the sandbox token endpoint's introspection route; what it
// accepts it relays (submission_relay_host) to a sink the test reads.
//
// Dovecot's master leaves children serving when it alone gets SIGTERM, so it is started in a
// process group of its own and stop() signals the whole group.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { SANDBOX_TLS_FILES } from '../../src/sandbox/index.js';
import { freePort } from './cli.js';
import { RawSmtp } from './smtp-client.js';
import { sleep } from './wait.js';

const DOVECOT = '/usr/sbin/dovecot';

export interface SinkMessage {
  mailFrom: string;
  rcptTo: string[];
  body: Buffer;
}

/**
 * What Dovecot relays to: a terminating SMTP server without AUTH that keeps every message and
 * refuses recipients whose local part is `refused` with a permanent 550 (so a per-recipient
 * refusal has Dovecot's words on it).
 */
export class SmtpSink {
  readonly messages: SinkMessage[] = [];
  private constructor(
    private readonly server: SMTPServer,
    readonly port: number,
  ) {}

  static async start(): Promise<SmtpSink> {
    const messages: SinkMessage[] = [];
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      onRcptTo(address, _session, callback) {
        if (address.address.startsWith('refused@')) {
          const err = Object.assign(new Error('5.1.1 <' + address.address + '>: Recipient address rejected: no such user'), { responseCode: 550 });
          callback(err);
        } else callback();
      },
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          messages.push({
            mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            rcptTo: session.envelope.rcptTo.map((r) => r.address),
            body: Buffer.concat(chunks),
          });
          callback();
        });
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const sink = new SmtpSink(server, (server.server.address() as AddressInfo).port);
    (sink as { messages: SinkMessage[] }).messages = messages;
    return sink;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export class DovecotSubmission {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly child: ChildProcess,
  ) {}

  /** Starts an instance on a free port of 127.0.0.1, checking tokens at `introspectionUrl`, relaying to `sinkPort`. */
  static async start(introspectionUrl: string, sinkPort: number): Promise<DovecotSubmission> {
    if (!existsSync(DOVECOT) || !existsSync('/usr/lib/dovecot/submission')) {
      throw new Error(`${DOVECOT} or its submission service not found: install dovecot-core and dovecot-submissiond (scripts/test-deps.sh)`);
    }
    if (userInfo().uid !== 0) throw new Error('Dovecot test: an instance of its own needs root (CI runs as root)');
    const dir = mkdtempSync(join(tmpdir(), 'relay-dovecot-'));
    // Dovecot's login and auth processes run as its own users and must reach their sockets here.
    chmodSync(dir, 0o755);
    // Dovecot's listener cannot report a port it got for port 0.
    const port = await freePort();
    const nobody = spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim();
    const nogroup = spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim();
    writeFileSync(
      join(dir, 'oauth2.conf.ext'),
      [
        `introspection_url = ${introspectionUrl}`,
        'introspection_mode = post',
        'username_attribute = email',
        'active_attribute = active',
        'active_value = true',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'dovecot.conf'),
      [
        `base_dir = ${join(dir, 'run')}`,
        `state_dir = ${join(dir, 'state')}`,
        `instance_name = relay-test-${port}`,
        `log_path = ${join(dir, 'dovecot.log')}`,
        'protocols = submission',
        'listen = 127.0.0.1',
        'hostname = submission.dovecot.test',
        'ssl = required',
        `ssl_cert = <${SANDBOX_TLS_FILES.cert}`,
        `ssl_key = <${SANDBOX_TLS_FILES.key}`,
        'auth_mechanisms = xoauth2 oauthbearer',
        'passdb {',
        '  driver = oauth2',
        '  mechanisms = xoauth2 oauthbearer',
        `  args = ${join(dir, 'oauth2.conf.ext')}`,
        '}',
        'userdb {',
        '  driver = static',
        `  args = uid=${nobody} gid=${nogroup} home=/nonexistent`,
        '}',
        // Submission reads no mail, but without a mail location its user setup fails and AUTH
        // answers `451 4.7.0 Internal error`.
        `mail_location = maildir:${join(dir, 'mail')}/%u`,
        'submission_relay_host = 127.0.0.1',
        `submission_relay_port = ${sinkPort}`,
        'submission_relay_ssl = no',
        'service submission-login {',
        '  inet_listener submission {',
        '    address = 127.0.0.1',
        `    port = ${port}`,
        '  }',
        '}',
        // The system's default listeners (imap-login's, lmtp's sockets) are not wanted here.
        'service anvil {',
        '  chroot =',
        '}',
        '',
      ].join('\n'),
    );
    const child = spawn(DOVECOT, ['-F', '-c', join(dir, 'dovecot.conf')], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const instance = new DovecotSubmission(dir, port, child);
    try {
      await instance.waitReady(() => stderr);
    } catch (e) {
      await instance.stop();
      throw e;
    }
    return instance;
  }

  log(): string {
    const file = join(this.dir, 'dovecot.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /** Signals Dovecot's whole process group (bounded wait), then removes the directory. */
  async stop(): Promise<void> {
    const pid = this.child.pid;
    if (pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      signalGroup(pid, 'SIGTERM');
      await Promise.race([exited, sleep(5000)]);
    }
    // Children the master left behind, if any, go with the group.
    if (pid !== undefined) signalGroup(pid, 'SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async waitReady(stderr: () => string): Promise<void> {
    const end = Date.now() + 15_000;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`dovecot exited ${this.child.exitCode}: ${stderr()}\n${this.log()}`);
      try {
        const { client, greeting } = await RawSmtp.connect(this.port);
        client.close();
        if (greeting.code === 220) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > end) throw new Error(`dovecot did not greet on ${this.port} within 15 s: ${stderr()}\n${this.log()}`);
      await sleep(100);
    }
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is already gone
  }
}
